"""Read a run store (format: docs/store.md) for the analysis, skipping what cannot be used.

Only small files are read up front (spec.json, metrics.json and the array *headers* of
predictions.npz); logits are opened one run at a time with :func:`read_predictions`, memory-mapped
where the .npz member is stored uncompressed (what ``np.savez`` writes), so a 200 MB logits array
costs no copy. A run that cannot be used is named in ``Store.skipped`` with the reason, never
raised: one bad directory must not stop a report over hundreds of good ones.
"""

from __future__ import annotations

import json
import math
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kdfair.errors import StoreError

ROLES = ("teacher", "nds", "ds")
ROLE_LABELS = {"teacher": "teacher", "nds": "NDS", "ds": "DS"}


class CorruptRun(Exception):
    """A run directory that exists but cannot be used; the message is the reason."""


@dataclass(frozen=True)
class RunInfo:
    """One usable finished run: who it is, where it lives, what its files say."""

    run_id: str
    role: str
    temperature: float  # NaN unless role == "ds"
    seed: int
    path: Path
    spec: dict[str, Any]
    metrics: dict[str, Any]
    given: bool = False

    @property
    def teacher_run_id(self) -> str | None:
        return self.spec.get("teacher_run_id")


@dataclass
class Store:
    """What the analysis knows about one results directory before reading any logits."""

    root: Path
    experiment: dict[str, Any]
    data: dict[str, Any]
    num_classes: int
    class_names: list[str]
    n_test: int
    runs: list[RunInfo]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (run dir, reason)
    failed: list[dict[str, Any]] = field(default_factory=list)
    attributes: dict[str, np.ndarray] = field(default_factory=dict)  # codes in index order
    attribute_groups: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def features_path(self) -> Path:
        return self.root / "test_features.npy"


# --- .npz members without loading them ------------------------------------------------------


def _member_header(f, info: zipfile.ZipInfo) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """Shape, Fortran order, dtype and absolute data offset of a stored .npy member."""
    f.seek(info.header_offset)
    local = f.read(30)
    if len(local) != 30 or local[:4] != b"PK\x03\x04":
        raise CorruptRun(f"{info.filename}: bad zip local header")
    name_len, extra_len = struct.unpack("<HH", local[26:30])
    f.seek(info.header_offset + 30 + name_len + extra_len)
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
    else:
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
    return tuple(shape), bool(fortran), dtype, f.tell()


def npz_headers(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shape and dtype of every array in an .npz, reading headers only."""
    out: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    try:
        with zipfile.ZipFile(path) as zf, open(path, "rb") as f:
            for info in zf.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                key = info.filename[: -len(".npy")]
                if info.compress_type == zipfile.ZIP_STORED:
                    shape, _, dtype, _ = _member_header(f, info)
                else:
                    with zf.open(info) as m:
                        version = np.lib.format.read_magic(m)
                        read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                else np.lib.format.read_array_header_2_0)
                        shape, _, dtype = read(m)
                out[key] = (tuple(shape), dtype)
    except (OSError, ValueError, zipfile.BadZipFile, struct.error) as err:
        raise CorruptRun(f"{path.name} is not a readable .npz ({err})") from None
    return out


def load_npz(path: Path, keys: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
    """Arrays of an .npz: uncompressed members memory-mapped read-only, others read.

    Object arrays are refused (nothing is ever unpickled). A truncated file raises CorruptRun.
    """
    out: dict[str, np.ndarray] = {}
    try:
        with zipfile.ZipFile(path) as zf, open(path, "rb") as f:
            for info in zf.infolist():
                key = info.filename.removesuffix(".npy")
                if not info.filename.endswith(".npy") or (keys is not None and key not in keys):
                    continue
                if info.compress_type == zipfile.ZIP_STORED:
                    shape, fortran, dtype, offset = _member_header(f, info)
                    if dtype.hasobject:
                        raise CorruptRun(f"{path.name}:{key} holds Python objects; refused")
                    count = math.prod(shape)
                    if count == 0:
                        out[key] = np.zeros(shape, dtype)
                        continue
                    out[key] = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape,
                                         order="F" if fortran else "C")
                else:
                    with zf.open(info) as m:
                        out[key] = np.lib.format.read_array(m, allow_pickle=False)
    except CorruptRun:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, struct.error) as err:
        raise CorruptRun(f"{path.name} is not a readable .npz ({err})") from None
    missing = set(keys or ()) - set(out)
    if missing:
        raise CorruptRun(f"{path.name} lacks {', '.join(sorted(missing))}")
    return out


# --- the store --------------------------------------------------------------------------------


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CorruptRun(f"no {path.name}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CorruptRun(f"{path.name} does not parse ({err})") from None


def _temperature(spec: dict[str, Any]) -> float:
    t = spec.get("temperature")
    if spec["role"] != "ds":
        return math.nan
    if not isinstance(t, (int, float)) or isinstance(t, bool) or not t > 0:
        raise CorruptRun(f"spec.json: a DS run needs a temperature > 0, got {t!r}")
    return float(t)


def _check_run(d: Path, n_test: int | None, num_classes: int | None,
               fingerprint: str | None, experiment: str | None) -> RunInfo:
    spec = _read_json(d / "spec.json")
    if not isinstance(spec, dict):
        raise CorruptRun("spec.json is not an object")
    role = spec.get("role")
    if role not in ROLES:
        raise CorruptRun(f"spec.json: role must be one of {ROLES}, got {role!r}")
    seed = spec.get("seed")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise CorruptRun(f"spec.json: seed must be an integer, got {seed!r}")
    temperature = _temperature(spec)
    if experiment and spec.get("experiment") not in (None, experiment):
        raise CorruptRun(f"belongs to experiment {spec.get('experiment')!r}, not {experiment!r}")
    fp = spec.get("data_fingerprint")
    if fingerprint and fp and fp != fingerprint:
        raise CorruptRun(f"data fingerprint {fp} differs from data.json's {fingerprint}")
    metrics = _read_json(d / "metrics.json")
    if not isinstance(metrics, dict):
        raise CorruptRun("metrics.json is not an object")
    if metrics.get("status", "ok") != "ok":
        raise CorruptRun(f"metrics.json status is {metrics.get('status')!r}")
    pred = d / "predictions.npz"
    if not pred.exists():
        raise CorruptRun("no predictions.npz")
    heads = npz_headers(pred)
    for key in ("logits", "labels", "index"):
        if key not in heads:
            raise CorruptRun(f"predictions.npz lacks {key!r}")
    shape = heads["logits"][0]
    if len(shape) != 2 or heads["logits"][1].kind != "f":
        raise CorruptRun(f"logits must be a float [N, C] array, got {heads['logits']}")
    n, c = shape
    if heads["labels"][0] != (n,) or heads["index"][0] != (n,):
        raise CorruptRun(f"labels/index shapes {heads['labels'][0]}/{heads['index'][0]} "
                         f"do not match logits [{n}, {c}]")
    if n_test is not None and n != n_test:
        raise CorruptRun(f"{n} test predictions, data.json says n_test = {n_test}")
    if num_classes is not None and c != num_classes:
        raise CorruptRun(f"{c} logits per input, data.json says {num_classes} classes")
    return RunInfo(run_id=d.name, role=role, temperature=temperature, seed=seed, path=d,
                   spec=spec, metrics=metrics, given=bool(spec.get("given", False)))


def _failed_records(root: Path) -> list[dict[str, Any]]:
    out = []
    for p in sorted((root / "failed").glob("*.json")):
        try:
            rec = json.loads(p.read_text())
            if not isinstance(rec, dict):
                raise ValueError
        except (OSError, ValueError):
            rec = {"run_id": p.stem, "error": "unreadable failure record"}
        spec = rec.get("spec") if isinstance(rec.get("spec"), dict) else {}
        out.append({"run_id": rec.get("run_id", p.stem), "role": spec.get("role"),
                    "T": spec.get("temperature"), "seed": spec.get("seed"),
                    "error": str(rec.get("error", "")), "time": rec.get("time")})
    return out


def _attributes(root: Path, data: dict[str, Any], n_test: int,
                notes: list[str]) -> tuple[dict[str, np.ndarray], dict[str, list[str]]]:
    groups = {str(k): [str(g) for g in v] for k, v in (data.get("attributes") or {}).items()}
    path = root / "attributes.npz"
    if not groups:
        return {}, {}
    if not path.exists():
        notes.append(f"data.json names sensitive attributes ({', '.join(groups)}) but "
                     "attributes.npz is missing; group fairness is skipped.")
        return {}, {}
    try:
        arrays = {k: np.asarray(v) for k, v in load_npz(path).items()}
        index = arrays.pop("index").astype(np.int64)
        if sorted(index.tolist()) != list(range(n_test)):
            raise CorruptRun(f"its index is not a permutation of 0..{n_test - 1}")
        order = np.argsort(index, kind="stable")
    except CorruptRun as err:
        notes.append(f"attributes.npz cannot be used ({err}); group fairness is skipped.")
        return {}, {}
    out: dict[str, np.ndarray] = {}
    for name, names in groups.items():
        codes = arrays.get(name)
        if codes is None or codes.shape != (n_test,):
            notes.append(f"attributes.npz has no usable array for {name!r}; it is skipped.")
            continue
        codes = codes.astype(np.int64)[order]
        if codes.min(initial=0) < -1 or codes.max(initial=-1) >= len(names):
            notes.append(f"attribute {name!r} has group codes outside -1..{len(names) - 1}; "
                         "it is skipped.")
            continue
        out[name] = codes
    return out, {k: groups[k] for k in out}


def open_store(root: str | Path) -> Store:
    """Index a results directory: usable runs, skipped runs with reasons, failed runs, metadata.

    Raises StoreError only when there is nothing to analyse at all.
    """
    root = Path(root)
    if not root.is_dir():
        raise StoreError(f"{root} is not a directory; give the results directory of a study "
                         "(the --out of `kdfair run`)")
    notes: list[str] = []
    experiment: dict[str, Any] = {}
    if (root / "experiment.json").exists():
        try:
            experiment = _read_json(root / "experiment.json")
        except CorruptRun as err:
            notes.append(f"experiment.json cannot be read ({err}); configuration unknown.")
    data: dict[str, Any] = {}
    try:
        data = _read_json(root / "data.json")
    except CorruptRun as err:
        notes.append(f"data.json: {err}; class names and sensitive attributes are unknown "
                     "(group fairness is skipped) and sizes are taken from the runs.")
    notes.extend(str(n) for n in data.get("notes") or [])  # the loader's own notes
    n_test = data.get("n_test")
    num_classes = data.get("num_classes")
    runs_dir = root / "runs"
    dirs = sorted(p for p in runs_dir.iterdir() if p.is_dir() and not p.name.startswith(".")) \
        if runs_dir.is_dir() else []
    runs: list[RunInfo] = []
    skipped: list[tuple[str, str]] = []
    seen: dict[tuple[str, float, int], str] = {}
    for d in dirs:
        try:
            run = _check_run(d, n_test, num_classes, data.get("fingerprint"),
                             experiment.get("name"))
        except CorruptRun as err:
            skipped.append((d.name, str(err)))
            continue
        key = (run.role, -1.0 if math.isnan(run.temperature) else run.temperature, run.seed)
        if key in seen:
            skipped.append((d.name, f"duplicate of {seen[key]} (same role, T and seed)"))
            continue
        seen[key] = d.name
        if n_test is None or num_classes is None:  # the first good run fixes the sizes
            shape = npz_headers(d / "predictions.npz")["logits"][0]
            n_test, num_classes = n_test or shape[0], num_classes or shape[1]
        runs.append(run)
    done = {r.run_id for r in runs}
    failed = [f for f in _failed_records(root) if f["run_id"] not in done]
    if not runs:
        what = f"{len(skipped)} run directories, none usable" if skipped else "no finished runs"
        raise StoreError(f"{root}: {what} under runs/; run `kdfair run` first"
                         + ("".join(f"\n  {n}: {why}" for n, why in skipped[:10])))
    n_test, num_classes = int(n_test), int(num_classes)  # type: ignore[arg-type]
    names = [str(c) for c in data.get("class_names") or []]
    if len(names) != num_classes:
        names = [str(i) for i in range(num_classes)]
    attributes, groups = _attributes(root, data, n_test, notes)
    return Store(root=root, experiment=experiment, data=data, num_classes=num_classes,
                 class_names=names, n_test=n_test, runs=runs, skipped=skipped, failed=failed,
                 attributes=attributes, attribute_groups=groups, notes=notes)


def read_member_into(path: Path, key: str, out: np.ndarray) -> None:
    """Read array ``key`` of an .npz into ``out`` (same shape): one read() for an uncompressed
    float32 C-order member (no page-fault per 4 KB as with a memmap), else load and convert."""
    try:
        with zipfile.ZipFile(path) as zf, open(path, "rb") as f:
            info = zf.getinfo(f"{key}.npy")
            if info.compress_type == zipfile.ZIP_STORED:
                shape, fortran, dtype, offset = _member_header(f, info)
                if shape == out.shape and dtype == out.dtype and not fortran:
                    f.seek(offset)
                    if f.readinto(memoryview(out).cast("B")) != out.nbytes:
                        raise CorruptRun(f"{path.name}:{key} is truncated")
                    return
    except KeyError:
        raise CorruptRun(f"{path.name} lacks {key!r}") from None
    except (OSError, ValueError, zipfile.BadZipFile, struct.error) as err:
        raise CorruptRun(f"{path.name} is not a readable .npz ({err})") from None
    src = load_npz(path, keys=(key,))[key]
    if src.shape != out.shape:
        raise CorruptRun(f"{path.name}:{key} has shape {src.shape}, expected {out.shape}")
    np.copyto(out, src, casting="same_kind")


def read_predictions(run: RunInfo, n_test: int,
                     out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(logits [N, C] in index order, labels [N]) of one run.

    With ``out`` (float32 [N, C], reused across runs) the logits are read into it and ``out`` is
    returned; without, they may be a read-only memmap. Raises CorruptRun when the file is
    truncated or its index is not a permutation of 0..N-1.
    """
    path = run.path / "predictions.npz"
    arrays = load_npz(path, keys=("labels", "index") if out is not None else
                      ("logits", "labels", "index"))
    index = np.asarray(arrays["index"], dtype=np.int64)
    labels = np.asarray(arrays["labels"], dtype=np.int64)
    if len(index) != n_test:
        raise CorruptRun(f"{len(index)} predictions, expected {n_test}")
    if out is not None:
        read_member_into(path, "logits", out)
        logits = out
    else:
        logits = arrays["logits"]
    if not np.array_equal(index, np.arange(n_test)):
        order = np.argsort(index, kind="stable")
        if not np.array_equal(index[order], np.arange(n_test)):
            raise CorruptRun(f"predictions index is not a permutation of 0..{n_test - 1}")
        labels = labels[order]
        if out is not None:
            out[:] = out[order]
        else:
            logits = np.asarray(logits)[order]
    return logits, labels
