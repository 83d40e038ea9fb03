"""A tiny document model rendered twice: Markdown (report.md) and one self-contained HTML page.

Blocks are headings, paragraphs, bullet lists, tables (DataFrames of display strings), links
and images (PNG files, linked from Markdown with their SVG / PDF twins, embedded as base64 in
HTML). Both renderings open with a table of contents of the level-2 headings. Text is escaped in
both: a class named ``<script>`` appears as ``&lt;script&gt;``, never as markup.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;
margin:1.2em auto;padding:0 1em;color:#222;line-height:1.35;font-size:15px}
ul{margin:.4em 0;padding-left:1.4em}h1{margin:.3em 0;font-size:1.6em}
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.9em}
th,td{border:1px solid #ccc;padding:.2em .35em;text-align:right}
th{background:#f2f2f2}td:first-child,th:first-child{text-align:left}
td:only-child,td:nth-child(2):last-child{text-align:left}
nav{font-size:.85em;margin:.3em 0 1em}nav a{white-space:nowrap}
img{max-width:100%;border:1px solid #eee;margin:.4em 0}
figcaption{color:#555;font-size:.9em;margin-bottom:1.2em}
h1{border-bottom:2px solid #444}h2{border-bottom:1px solid #bbb;margin:1em 0 .4em}
.beside{display:flex;gap:1.5em;align-items:flex-start}
.beside ul{flex:2;margin-top:0;font-size:.95em}
.beside figure{flex:1;margin:0}
details summary{cursor:pointer}details ul{font-size:.95em;color:#333}
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

    def groups(self, items: list[tuple[str, list[str]]]) -> None:
        """Bullets, each with its evidence nested under it (collapsed in HTML: <details>)."""
        if items:
            self.blocks.append(("groups", [(head, list(ev)) for head, ev in items]))

    def table(self, df: pd.DataFrame, caption: str = "") -> None:
        self.blocks.append(("table", df, caption))

    def image(self, path: Path, caption: str) -> None:
        self.blocks.append(("img", Path(path), caption, path.with_suffix(".svg").exists()))

    def ul_beside(self, items: list[str], path: Path, caption: str) -> None:
        """A bullet list with a figure beside it (below it in Markdown)."""
        self.blocks.append(("beside", list(items), Path(path), caption))

    def links(self, names: list[str]) -> None:
        """A bullet list of links to files beside the report (e.g. the CSV tables)."""
        if names:
            self.blocks.append(("links", list(names)))

    def _toc(self) -> list[tuple[str, str]]:
        return [(b[2], anchor(b[2])) for b in self.blocks if b[0] == "h" and b[1] == 2]

    # --- rendering ---------------------------------------------------------------------------
    def markdown(self) -> str:
        t = _md_text
        out = [f"# {t(self.title)}", "", "Contents: " + " · ".join(
            f"[{t(h)}](#{a})" for h, a in self._toc()), ""]
        for b in self.blocks:
            kind = b[0]
            if kind == "h":
                out += [f'<a id="{anchor(b[2])}"></a>', "", "#" * b[1] + " " + t(b[2]), ""]
            elif kind == "p":
                out += [t(b[1]), ""]
            elif kind == "ul":
                out += [f"- {t(item)}" for item in b[1]] + [""]
            elif kind == "groups":
                for head, evidence in b[1]:
                    out += [f"- {t(head)}"] + [f"  - {t(item)}" for item in evidence]
                out += [""]
            elif kind == "table":
                out += _md_table(b[1]) + [""] + ([f"*{t(b[2])}*", ""] if b[2] else [])
            elif kind == "links":
                out += [f"- [{t(n)}]({n})" for n in b[1]] + [""]
            elif kind == "beside":
                out += [f"- {t(item)}" for item in b[1]] + [""]
                out += [f"![{t(b[3])}]({b[2].name})", "", f"*{t(b[3])}*", ""]
            elif kind == "img":
                stem = b[1].stem
                vector = f" ([SVG]({stem}.svg), [PDF]({stem}.pdf))" if b[3] else ""
                out += [f"![{t(b[2])}]({b[1].name})", "", f"*{t(b[2])}*{vector}", ""]
        return "\n".join(out)

    def html(self) -> str:
        e = html.escape
        out = ["<!DOCTYPE html>", "<html><head><meta charset='utf-8'>",
               f"<title>{e(self.title)}</title><style>{_CSS}</style></head><body>",
               f"<h1>{e(self.title)}</h1>",
               "<nav><b>Contents:</b> " + " · ".join(
                   f"<a href='#{a}'>{e(h)}</a>" for h, a in self._toc()) + "</nav>"]
        for b in self.blocks:
            kind = b[0]
            if kind == "h":
                out.append(f"<h{b[1]} id='{anchor(b[2])}'>{e(b[2])}</h{b[1]}>")
            elif kind == "p":
                out.append(f"<p>{e(b[1])}</p>")
            elif kind == "ul":
                out.append("<ul>" + "".join(f"<li>{e(i)}</li>" for i in b[1]) + "</ul>")
            elif kind == "groups":
                out.append("<ul>" + "".join(
                    f"<li>{e(head)}</li>" if not ev else
                    f"<li><details><summary>{e(head)}</summary><ul>"
                    + "".join(f"<li>{e(i)}</li>" for i in ev) + "</ul></details></li>"
                    for head, ev in b[1]) + "</ul>")
            elif kind == "table":
                out.append(b[1].to_html(index=False, escape=True, na_rep="–", border=0))
                if b[2]:
                    out.append(f"<p><em>{e(b[2])}</em></p>")
            elif kind == "links":
                out.append("<ul>" + "".join(f"<li><a href='{e(n)}'>{e(n)}</a></li>"
                                            for n in b[1]) + "</ul>")
            elif kind == "beside":
                out.append("<div class='beside'><ul>" + "".join(f"<li>{e(i)}</li>" for i in b[1])
                           + "</ul>" + _figure(b[2], b[3]) + "</div>")
            elif kind == "img":
                out.append(_figure(b[1], b[2]))
        out.append("</body></html>")
        return "\n".join(out)


def _figure(path: Path, caption: str) -> str:
    """A PNG embedded in the page, with its caption."""
    e = html.escape
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f"<figure><img alt='{e(caption)}' src='data:image/png;base64,{data}'>"
            f"<figcaption>{e(caption)}</figcaption></figure>")


def anchor(heading: str) -> str:
    """A stable HTML id for a heading."""
    return "".join(ch if ch.isalnum() else "-" for ch in heading.lower()).strip("-")


_TAG_START = re.compile(r"<(?=[A-Za-z/!?])")
_ENTITY = re.compile(r"&(?=#?[A-Za-z0-9]+;)")


_LINE_BREAK = re.compile(r"\r\n?|\n")
_HEADING = re.compile(r"#{1,6}(?:[ \t]|$)")  # '# x' is a heading, '#SC' is not


def _md_text(text: str) -> str:
    """Markdown text that stays text (names and labels come from users' data): anything that
    could start HTML markup escaped ('<script>' becomes '&lt;script>', '&lt;' '&amp;lt;'), no
    link ('[x](javascript:…)' and '[x]: url' keep their brackets but link nowhere), no line
    break (a newline in a class name cannot start a heading or a link definition), no leading
    '# ' (a heading); 'p < 0.05', 'A & B' and '[95 % CI]' stay as they are."""
    t = _TAG_START.sub("&lt;", _ENTITY.sub("&amp;", str(text)))
    t = _LINE_BREAK.sub(" ", t).replace("](", "]\\(").replace("]:", "]\\:")
    return "\\" + t if _HEADING.match(t) else t


_FORMULA = ("=", "+", "-", "@", "\t", "\r")  # what makes a spreadsheet read a cell as a formula


def csv_cell(v: object) -> object:
    """A CSV cell a spreadsheet will not run: a string starting with '=', '+', '-', '@', a tab
    or a carriage return gets a leading "'" (OWASP's advice), unless it is a number as text
    ('-1.5'); numbers and everything else are kept as they are."""
    if not isinstance(v, str) or not v.startswith(_FORMULA):
        return v
    try:
        float(v)
        return v
    except ValueError:
        return "'" + v


def csv_safe(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with every text cell and column name passed through :func:`csv_cell`."""
    out = df.rename(columns=lambda c: csv_cell(c) if isinstance(c, str) else c)
    text = [c for c in out.columns if out[c].dtype == object or pd.api.types.is_string_dtype(
        out[c])]
    if text:
        out = out.copy()
        for c in text:
            out[c] = out[c].map(csv_cell)
    return out


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
