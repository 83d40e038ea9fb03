"""A run's test-set predictions on disk: one ``.npy`` per array, memory-mappable, pickle-free.

``logits.npy`` (float32 or float16 [N, C]), ``labels.npy`` and ``index.npy`` (int64 [N]).
Run directories written before this format hold one ``predictions.npz`` instead; it is still read
(through ``np.load``, fully — an .npz cannot be memory-mapped).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from kdfair.integrity import naming
from kdfair.reading import MAX_JSON_BYTES, ReadError, read_text

ARRAYS = ("logits", "labels", "index")
LEGACY = "predictions.npz"


class CorruptRun(Exception):
    """A run directory that exists but cannot be used; the message is the reason."""


def json_object(path: Path) -> dict[str, Any]:
    """A run's small JSON file as a dict, or CorruptRun: "no X", "X does not parse (…)"."""
    try:
        obj = json.loads(read_text(path, MAX_JSON_BYTES))
    except FileNotFoundError:
        raise CorruptRun(f"no {path.name}") from None
    except (OSError, ReadError, json.JSONDecodeError) as err:
        raise CorruptRun(f"{path.name} does not parse ({err})") from None
    if not isinstance(obj, dict):
        raise CorruptRun(f"{path.name} is not an object")
    return obj


F16_MAX = float(np.finfo(np.float16).max)


def float16_keeping_argmax(logits: np.ndarray) -> np.ndarray | None:
    """``logits`` rounded to float16, each row's argmax kept (a row whose top two logits round
    to one value gets its top one raised by one float16 step). None when a logit is outside
    float16's range. So every prediction-based number of the analysis stays exact; only
    probability-based ones (individual unfairness) see the rounding."""
    x = np.asarray(logits, dtype=np.float32)
    if x.size and not float(np.abs(x).max()) < F16_MAX:
        return None
    h = x.astype(np.float16)
    want = x.argmax(1)
    for i in np.nonzero(h.argmax(1) != want)[0]:
        h[i, want[i]] = np.nextafter(h[i].max(), np.float16(np.inf))
    return h


def write_predictions(run_dir: Path, logits: np.ndarray, labels: np.ndarray, index: np.ndarray,
                      logits_dtype: str = "float32") -> None:
    """The three arrays of a run, as .npy files in ``run_dir`` (float16 logits keep every
    prediction; logits beyond float16's range are stored as float32)."""
    half = float16_keeping_argmax(logits) if logits_dtype == "float16" else None
    arrays = {"logits": half if half is not None else np.ascontiguousarray(logits, np.float32),
              "labels": np.ascontiguousarray(labels, dtype=np.int64),
              "index": np.ascontiguousarray(index, dtype=np.int64)}
    for key, arr in arrays.items():
        with naming(run_dir / f"{key}.npy"), open(run_dir / f"{key}.npy", "wb") as f:
            np.save(f, arr, allow_pickle=False)


COUNTERFACTUAL_PREFIX = "counterfactual-"


def write_counterfactuals(run_dir: Path, logits: dict[str, np.ndarray],
                          logits_dtype: str = "float32") -> None:
    """``counterfactual-<attribute>.npy`` per attribute: the logits on the test set's
    counterfactuals, rows in the order of ``logits.npy`` (stored like it)."""
    for attr, arr in logits.items():
        half = float16_keeping_argmax(arr) if logits_dtype == "float16" else None
        path = run_dir / f"{COUNTERFACTUAL_PREFIX}{attr}.npy"
        with naming(path), open(path, "wb") as f:
            np.save(f, half if half is not None else np.ascontiguousarray(arr, np.float32),
                    allow_pickle=False)


def counterfactual_attributes(run_dir: Path) -> list[str]:
    """The attributes a run has counterfactual logits for (sorted). A run of the release before
    manifests has none (counterfactuals came later, sealed by the manifest): a file added to
    one, which no manifest vouches for, is never read."""
    if is_legacy(run_dir):
        return []
    n = len(COUNTERFACTUAL_PREFIX)
    return sorted(p.name[n:-4] for p in run_dir.glob(f"{COUNTERFACTUAL_PREFIX}*.npy"))


def is_legacy(run_dir: Path) -> bool:
    """A run directory of the release before manifests: no manifest, no .npy predictions."""
    return not (run_dir / "manifest.json").exists() and not (run_dir / "logits.npy").exists()


def prediction_files(run_dir: Path) -> tuple[str, ...]:
    """The file names that hold a run's predictions in this directory's format."""
    return (LEGACY,) if is_legacy(run_dir) else tuple(f"{k}.npy" for k in ARRAYS)


def open_array(run_dir: Path, key: str) -> np.ndarray:
    """Array ``key`` of a run: a read-only memmap (.npy), or loaded from a legacy .npz."""
    try:
        if (run_dir / f"{key}.npy").exists() or not (run_dir / LEGACY).exists():
            path = run_dir / f"{key}.npy"
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
            if arr.size == 0:  # np.memmap cannot map 0 bytes; np.load returns an ndarray
                return np.asarray(arr)
            return arr
        with np.load(run_dir / LEGACY, allow_pickle=False) as z:
            if key not in z.files:
                raise CorruptRun(f"{LEGACY} lacks {key!r}")
            return z[key]
    except CorruptRun:
        raise
    except FileNotFoundError:
        raise CorruptRun(f"no {key}.npy") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:  # truncated, objects
        if (run_dir / f"{key}.npy").exists():
            raise CorruptRun(f"{key}.npy cannot be read ({err})") from None
        raise CorruptRun(f"{LEGACY} is not a readable .npz ({err})") from None


def _header(f) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(f)
    return np.lib.format.read_array_header_2_0(f)


def array_shapes(run_dir: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shape and dtype of each prediction array, reading headers only."""
    out = {}
    if prediction_files(run_dir) == (LEGACY,) and not (run_dir / LEGACY).exists():
        raise CorruptRun(f"no {LEGACY}")
    try:
        if prediction_files(run_dir) == (LEGACY,):
            with zipfile.ZipFile(run_dir / LEGACY) as zf:
                for key in ARRAYS:
                    with zf.open(f"{key}.npy") as m:
                        shape, _, dtype = _header(m)
                    out[key] = (tuple(shape), dtype)
            return out
        for key in ARRAYS:
            with open(run_dir / f"{key}.npy", "rb") as f:
                shape, _, dtype = _header(f)
            out[key] = (tuple(shape), dtype)
    except FileNotFoundError as err:
        raise CorruptRun(f"no {Path(str(err.filename)).name}") from None
    except KeyError as err:
        raise CorruptRun(f"{LEGACY} lacks {err}") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        what = f"{LEGACY} is not a readable .npz" if (run_dir / LEGACY).exists() else \
            "predictions cannot be read"
        raise CorruptRun(f"{what} ({err})") from None
    return out


def load_predictions(run_dir: Path) -> dict[str, np.ndarray]:
    """All three arrays of a run, in either format (for tests and tools)."""
    return {key: np.asarray(open_array(run_dir, key)) for key in ARRAYS}


def read_into(run_dir: Path, key: str, out: np.ndarray) -> None:
    """Read array ``key`` into ``out`` (same shape): one read() when the .npy file already has
    ``out``'s dtype and order (no page fault per 4 KB as with a memmap), else convert."""
    path = run_dir / f"{key}.npy"
    if path.exists():
        try:
            with open(path, "rb") as f:
                shape, fortran, dtype = _header(f)
                if tuple(shape) == out.shape and dtype == out.dtype and not fortran:
                    if f.readinto(memoryview(out).cast("B")) != out.nbytes:
                        raise CorruptRun(f"{key}.npy is truncated")
                    return
        except (OSError, ValueError) as err:
            raise CorruptRun(f"{key}.npy cannot be read ({err})") from None
    src = open_array(run_dir, key)
    if src.shape != out.shape:
        raise CorruptRun(f"{key} has shape {src.shape}, expected {out.shape}")
    try:
        np.copyto(out, src, casting="same_kind")
    except (OSError, ValueError) as err:  # a memmap over a file truncated meanwhile
        raise CorruptRun(f"{key}.npy cannot be read ({err})") from None


def check_shapes(run_dir: Path, n_test: int | None = None,
                 num_classes: int | None = None) -> tuple[int, int]:
    """(N, C) of a run's predictions, or CorruptRun saying what does not fit."""
    heads = array_shapes(run_dir)
    shape, dtype = heads["logits"]
    if len(shape) != 2 or dtype.kind != "f":
        raise CorruptRun(f"logits must be a float [N, C] array, got {shape} {dtype}")
    n, c = shape
    for key in ("labels", "index"):
        if heads[key][0] != (n,) or heads[key][1].kind not in "iu":
            raise CorruptRun(f"{key} must be an integer [{n}] array, got {heads[key]}")
    if n_test is not None and n != n_test:
        raise CorruptRun(f"{n} test predictions, data.json says n_test = {n_test}")
    if num_classes is not None and c != num_classes:
        raise CorruptRun(f"{c} logits per input, data.json says {num_classes} classes")
    for attr in counterfactual_attributes(run_dir):
        name = f"{COUNTERFACTUAL_PREFIX}{attr}.npy"
        try:
            with open(run_dir / name, "rb") as f:
                cf_shape, _, cf_dtype = _header(f)
        except (OSError, ValueError) as err:
            raise CorruptRun(f"{name} cannot be read ({err})") from None
        if tuple(cf_shape) != (n, c) or cf_dtype.kind != "f":
            raise CorruptRun(f"{name} must be a float [{n}, {c}] array like the logits, got "
                             f"{tuple(cf_shape)} {cf_dtype}")
    return n, c
