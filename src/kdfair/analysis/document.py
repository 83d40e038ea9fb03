"""A tiny document model rendered twice: Markdown (report.md) and one self-contained HTML page.

Blocks are headings, paragraphs, bullet lists, tables (DataFrames of display strings) and
images (PNG files, linked from Markdown, embedded as base64 in HTML).
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;
margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f2f2f2}td:first-child,th:first-child{text-align:left}
img{max-width:100%;border:1px solid #eee;margin:.4em 0}
figcaption{color:#555;font-size:.9em;margin-bottom:1.2em}
h1{border-bottom:2px solid #444}h2{border-bottom:1px solid #bbb;margin-top:1.6em}
"""


@dataclass
class Document:
    title: str
    blocks: list[tuple] = field(default_factory=list)

    def h(self, text: str, level: int = 2) -> None:
        self.blocks.append(("h", level, text))

    def p(self, text: str) -> None:
        self.blocks.append(("p", text))

    def ul(self, items: list[str]) -> None:
        if items:
            self.blocks.append(("ul", list(items)))

    def table(self, df: pd.DataFrame, caption: str = "") -> None:
        self.blocks.append(("table", df, caption))

    def image(self, path: Path, caption: str) -> None:
        self.blocks.append(("img", Path(path), caption))

    # --- rendering ---------------------------------------------------------------------------
    def markdown(self) -> str:
        out = [f"# {_md_text(self.title)}", ""]
        for b in self.blocks:
            kind = b[0]
            if kind == "h":
                out += ["#" * b[1] + " " + _md_text(b[2]), ""]
            elif kind == "p":
                out += [_md_text(b[1]), ""]
            elif kind == "ul":
                out += [f"- {_md_text(item)}" for item in b[1]] + [""]
            elif kind == "table":
                out += _md_table(b[1]) + [""] + ([f"*{_md_text(b[2])}*", ""] if b[2] else [])
            elif kind == "img":
                out += [f"![{_md_text(b[2])}]({b[1].name})", "", f"*{_md_text(b[2])}*", ""]
        return "\n".join(out)

    def html(self) -> str:
        e = html.escape
        out = ["<!DOCTYPE html>", "<html><head><meta charset='utf-8'>",
               f"<title>{e(self.title)}</title><style>{_CSS}</style></head><body>",
               f"<h1>{e(self.title)}</h1>"]
        for b in self.blocks:
            kind = b[0]
            if kind == "h":
                out.append(f"<h{b[1]}>{e(b[2])}</h{b[1]}>")
            elif kind == "p":
                out.append(f"<p>{e(b[1])}</p>")
            elif kind == "ul":
                out.append("<ul>" + "".join(f"<li>{e(i)}</li>" for i in b[1]) + "</ul>")
            elif kind == "table":
                out.append(b[1].to_html(index=False, escape=True, na_rep="–", border=0))
                if b[2]:
                    out.append(f"<p><em>{e(b[2])}</em></p>")
            elif kind == "img":
                data = base64.b64encode(b[1].read_bytes()).decode("ascii")
                out.append(f"<figure><img alt='{e(b[2])}' src='data:image/png;base64,{data}'>"
                           f"<figcaption>{e(b[2])}</figcaption></figure>")
        out.append("</body></html>")
        return "\n".join(out)


def _md_text(text: str) -> str:
    """Names and labels come from users: HTML in them is shown, never rendered."""
    return html.escape(str(text), quote=False)


def _md_cell(v) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "–"
    return _md_text(v).replace("|", "\\|").replace("\n", " ")


def _md_table(df: pd.DataFrame) -> list[str]:
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(_md_cell(c) for c in cols) + " |",
             "|" + "|".join("---" for _ in cols) + "|"]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(_md_cell(v) for v in row) + " |")
    return lines
