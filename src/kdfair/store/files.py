"""File primitives of the run store: checked paths, JSON files and run manifests (atomic writes
and file hashes: ``kdfair.integrity``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kdfair.errors import StoreError
from kdfair.integrity import atomic_write, digest, sha256_file
from kdfair.paths import is_safe_name
from kdfair.reading import MAX_JSON_BYTES, ReadError, read_text

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1


def safe_component(name: str, what: str = "name") -> str:
    """``name`` if it is one harmless path component (no separator, not '.', '..', hidden)."""
    if not is_safe_name(name):
        raise StoreError(f"{what} {name!r} cannot be used as a file name: use letters, digits, "
                         "'_', '-' and '.', not starting with a dot")
    return name


def inside(root: Path, *parts: str) -> Path:
    """``root / parts``, refused unless it lies inside ``root`` (symlinks resolved) and no part
    of it below ``root`` is a symbolic link: nothing is written or moved through a link inside
    a results directory (``root`` itself may be one)."""
    path = root.joinpath(*parts)
    base = root.resolve()
    at = root
    for part in Path(*parts).parts if parts else ():
        at = at / part
        if at.is_symlink():
            target = at.resolve()
            where = "" if target.is_relative_to(base) else ", outside the results directory"
            raise StoreError(f"{at} is a symbolic link (to {target}{where}); kdfair writes "
                             "nothing through links inside a results directory: replace it "
                             "with a folder or file of its own (or remove it)")
    if not path.resolve().is_relative_to(base):
        raise StoreError(f"{path} lies outside the results directory {base}; refusing to write")
    return path


def write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str))


def sealed(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` with a ``seal``: the digest of its content as JSON stores it, so that an edit of
    the file (even of the same size) is seen when it is read back (``seal_problem``)."""
    body = json.loads(json.dumps({k: v for k, v in obj.items() if k != "seal"}, default=str))
    return {**body, "seal": digest(body)}


def seal_problem(obj: dict[str, Any], name: str) -> str | None:
    """Why ``obj`` (read from ``name``) does not match its seal; None when it does, or when it
    has none (written before seals)."""
    seal = obj.get("seal")
    if seal is None:
        return None
    if seal != digest({k: v for k, v in obj.items() if k != "seal"}):
        return f"{name} was edited after kdfair wrote it (its content does not match its seal)"
    return None


def read_json(path: Path, what: str | None = None) -> Any:
    """Parse a JSON file; a missing, unreadable or corrupt one raises StoreError naming it."""
    try:
        return json.loads(read_text(path, MAX_JSON_BYTES))
    except FileNotFoundError:
        raise StoreError(f"{path} is missing{f' ({what})' if what else ''}") from None
    except ReadError as err:
        raise StoreError(f"{err}; {what or 'restore or delete it'}") from None
    except json.JSONDecodeError as err:
        raise StoreError(f"{path} is corrupt ({err}); {what or 'restore or delete it'}") from None


def atomic_json(path: Path, obj: Any) -> None:
    atomic_write(path, lambda p: write_json(p, obj))


# What Windows' Explorer writes into a folder it shows: a reader never opens it, so it does not
# unseal a run (which would move the run aside and train it again).
FILE_MANAGER_FILES = frozenset({"Thumbs.db", "desktop.ini", "Desktop.ini", "ehthumbs.db"})


def _ignored(name: str) -> bool:
    """A file no reader opens: hidden, or left by a file manager. Neither listed nor unsealing."""
    return name.startswith(".") or name in FILE_MANAGER_FILES


def write_manifest(run_dir: Path) -> dict[str, Any]:
    """Record every file of a run directory (size, SHA-256) but the ignored ones (``_ignored``);
    written last, so it seals the run."""
    files = {p.name: {"size": p.stat().st_size, "sha256": sha256_file(p)}
             for p in sorted(run_dir.iterdir()) if p.is_file() and p.name != MANIFEST
             and not _ignored(p.name)}
    manifest = {"format": MANIFEST_FORMAT, "files": files}
    atomic_json(run_dir / MANIFEST, manifest)
    return manifest


def manifest_problem(run_dir: Path, required: tuple[str, ...], deep: bool = True,
                     unhashed: tuple[str, ...] = ()) -> str | None:
    """Why a run directory does not match its manifest (None when it does).

    ``deep`` compares SHA-256 digests too (except of the files ``unhashed``: those a reader
    does not open); without it only presence and sizes are compared.
    """
    try:
        manifest = json.loads(read_text(run_dir / MANIFEST, MAX_JSON_BYTES))
        files = manifest["files"]
        if not isinstance(files, dict):
            raise TypeError
    except FileNotFoundError:
        return f"no {MANIFEST}"
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as err:
        return f"{MANIFEST} is corrupt ({type(err).__name__})"
    for name in required:
        if name not in files:
            return f"{MANIFEST} does not list {name}"
    extra = sorted(p.name for p in run_dir.iterdir()
                   if p.name not in files and p.name != MANIFEST and not _ignored(p.name))
    if extra:  # sealed both ways; hidden files (NFS's .nfs*, macOS's .DS_Store) and the files a
        # file manager leaves (FILE_MANAGER_FILES) are never read: ignored, the run kept
        return f"{extra[0]} is not listed in {MANIFEST}"
    for name, entry in files.items():
        path = run_dir / name
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return f"{name} is missing"
        if not isinstance(entry, dict):
            return f"{MANIFEST} entry of {name} is corrupt"
        if size != entry.get("size"):
            return f"{name} has {size} bytes, the manifest says {entry.get('size')}"
        if deep and name not in unhashed and sha256_file(path) != entry.get("sha256"):
            return f"{name} does not match its SHA-256 in {MANIFEST}"
    return None
