"""Which study a path means: the study's results directory itself, the ``--out`` root that holds
it (``kdfair run demo --out q`` writes ``q/demo``), or a path inside it.

A study's results directory is one holding ``experiment.json``. A root holding one study means
that study; one holding several is refused with their list; anything else is refused saying what
the path holds and the likely path. Only the file system is read (no torch, no kdfair store).
"""

from __future__ import annotations

from pathlib import Path

from kdfair.errors import StoreError
from kdfair.suggest import did_you_mean

MARKER = "experiment.json"
SHOWN = 8  # entries named in a message


def is_study(path: str | Path) -> bool:
    """Whether ``path`` is a study's results directory (it holds experiment.json)."""
    return (Path(path) / MARKER).is_file()


def studies_under(root: str | Path) -> list[Path]:
    """The studies directly under ``root`` (an ``--out`` root), by name."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and is_study(p))


def find_study(path: str | Path) -> tuple[Path, str]:
    """(the study ``path`` means, a note saying which was chosen or "" when ``path`` is one);
    a StoreError saying what was found otherwise (several studies: their list)."""
    path = Path(path)
    if is_study(path) or (path / "runs").is_dir():  # (runs without experiment.json: the
        return path, ""                             # readers say what they can use)
    found = studies_under(path)
    if len(found) == 1:
        return found[0], f"{path} holds one study: using {found[0]}"
    raise StoreError(not_a_study(path))


def find_studies(paths: list[str | Path]) -> list[Path]:
    """Each path as studies: a study itself, or every study under an ``--out`` root (a sweep's
    studies are siblings under one); refused, as by :func:`find_study`, when a path holds none."""
    out: list[Path] = []
    seen: set[Path] = set()
    for p in map(Path, paths):
        found = [p] if is_study(p) else studies_under(p)
        if not found:
            raise StoreError(not_a_study(p))
        for f in found:  # one study given twice (a/x and ./a/x) counts once
            if f.resolve() not in seen:
                seen.add(f.resolve())
                out.append(f)
    return out


def _listing(names: list[str]) -> str:
    more = f", … ({len(names) - SHOWN} more)" if len(names) > SHOWN else ""
    return ", ".join(names[:SHOWN]) + more


def not_a_study(path: str | Path) -> str:
    """Why ``path`` is not a study's results directory: what it is or holds, and the likely path
    (the one study under it, the study it lies in, a close name beside it)."""
    path = Path(path)
    hint = ("a study's results directory is <out>/<name> as `kdfair run` writes it "
            "(e.g. results/demo)")
    if not path.exists():
        parent = path.parent if str(path.parent) else Path(".")
        near = [p.name for p in parent.iterdir() if p.is_dir()] if parent.is_dir() else []
        return f"{path} does not exist{did_you_mean(path.name, near)}; {hint}"
    if not path.is_dir():
        return f"{path} is a file, not a results directory; {hint}"
    for up in path.resolve().parents:
        if is_study(up):
            return (f"{path} lies inside the study {up}: give the study's directory, {up}")
    found = studies_under(path)
    if len(found) > 1:
        return (f"{path} holds {len(found)} studies ({_listing([p.name for p in found])}): "
                f"give one of them, e.g. {found[0]}")
    if found:
        return f"{path} is not a study's results directory; the study under it is {found[0]}"
    entries = sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir())
    held = f"it holds {_listing(entries)}" if entries else "it is empty"
    return (f"{path} is not a kdfair results directory (no {MARKER}; {held}); {hint}")
