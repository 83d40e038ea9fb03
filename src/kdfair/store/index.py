"""StudyIndex: what the analysis knows about a results directory before reading any logits.

Only small files are read up front (spec.json, metrics.json, manifests and the .npy headers);
logits are read one run at a time with :func:`read_predictions`. A run that cannot be used is
named in ``StudyIndex.skipped`` with the reason, never raised: one bad directory must not stop a
report over hundreds of good ones.
"""

from __future__ import annotations

import math
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kdfair.errors import StoreError
from kdfair.inputs import shown
from kdfair.spec import ROLES, method_name
from kdfair.store.arrays import (
    COUNTERFACTUAL_PREFIX,
    CorruptRun,
    check_shapes,
    counterfactual_attributes,
    json_object,
    open_array,
    read_into,
)
from kdfair.store.files import seal_problem
from kdfair.store.results import ResultsDir, derived_problem, failure_records, finite_number
from kdfair.studies import not_a_study

ROLE_LABELS = {"teacher": "teacher", "nds": "NDS", "ds": "DS"}


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

    @property
    def method(self) -> str | None:
        """``kd``, ``dkd``, … for DS runs (``kd`` for runs made before methods existed), a
        teacher-free control (``ls``) for NDS runs, else None."""
        return method_name(self.role, self.spec.get("method"))


@dataclass
class StudyIndex:
    """The usable runs of one results directory, with the test set's metadata."""

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
    # attribute -> group each test input's counterfactual was given, -1: none (index order)
    counterfactual_targets: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def features_path(self) -> Path:
        return self.root / "test_features.npy"


def _temperature(spec: dict[str, Any]) -> float:
    if spec["role"] != "ds":
        return math.nan
    t = finite_number(spec.get("temperature"))
    if t is None or not t > 0:
        raise CorruptRun(f"spec.json: a DS run needs a temperature > 0, got "
                         f"{spec.get('temperature')!r}")
    return t


def _check_run(d: Path, n_test: int | None, num_classes: int | None,
               fingerprint: str | None, experiment: str | None) -> RunInfo:
    spec = json_object(d / "spec.json")
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
    metrics = json_object(d / "metrics.json")
    if metrics.get("status", "ok") != "ok":
        raise CorruptRun(f"metrics.json status is {metrics.get('status')!r}")
    check_shapes(d, n_test, num_classes)
    return RunInfo(run_id=d.name, role=role, temperature=temperature, seed=seed, path=d,
                   spec=spec, metrics=metrics, given=bool(spec.get("given", False)))


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
        arrays = _coded_arrays(path, n_test)
    except (CorruptRun, OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        notes.append(f"attributes.npz cannot be used ({err}); group fairness is skipped.")
        return {}, {}
    out: dict[str, np.ndarray] = {}
    for name, names in groups.items():
        codes = arrays.get(name)
        if codes is None:
            notes.append(f"attributes.npz has no usable array for {name!r}; it is skipped.")
            continue
        if codes.min(initial=0) < -1 or codes.max(initial=-1) >= len(names):
            notes.append(f"attribute {name!r} has group codes outside -1..{len(names) - 1}; "
                         "it is skipped.")
            continue
        if not (codes >= 0).any():  # nothing to measure
            notes.append(f"attribute {name!r}: the group of every test input is unknown (-1); "
                         "it is skipped.")
            continue
        out[name] = codes
    return out, {k: groups[k] for k in out}


def _coded_arrays(path: Path, n_test: int) -> dict[str, np.ndarray]:
    """The int64 [n_test] arrays of an .npz with an ``index`` (attributes.npz,
    counterfactuals.npz), reordered to index order; arrays of another shape are left out."""
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: np.asarray(z[k]) for k in z.files}
    index = arrays.pop("index").astype(np.int64)
    if sorted(index.tolist()) != list(range(n_test)):
        raise CorruptRun(f"its index is not a permutation of 0..{n_test - 1}")
    order = np.argsort(index, kind="stable")
    return {k: v.astype(np.int64)[order] for k, v in arrays.items() if v.shape == (n_test,)}


def _counterfactual_targets(root: Path, data: dict[str, Any], n_test: int,
                            notes: list[str]) -> dict[str, np.ndarray]:
    """attribute -> the group each test input's counterfactual was given (-1: the input has
    none), from counterfactuals.npz; empty when the study has no counterfactuals."""
    path = root / "counterfactuals.npz"
    if not data.get("counterfactuals") or not path.exists():
        return {}
    try:
        return _coded_arrays(path, n_test)
    except (CorruptRun, OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        notes.append(f"counterfactuals.npz cannot be used ({err}); every test input counts as "
                     "having a counterfactual.")
        return {}


def _empty_classes_note(labels: np.ndarray, names: list[str]) -> str | None:
    """A note naming declared classes with no test input (labels coded from 1 with class 0
    declared, say): their accuracy is undefined and their one-vs-rest group measures count
    only the inputs wrongly predicted as them, so every average over classes includes them."""
    counts = np.bincount(labels[labels >= 0], minlength=len(names))
    empty = [names[c] for c in range(len(names)) if counts[c] == 0]
    if not empty:
        return None
    return (f"{len(empty)} of {len(names)} declared classes have no test input "
            f"({shown(empty)}): their accuracy is undefined, and their one-vs-rest group "
            "measures (DPD, EOD) and every average over classes include a class the data lack. "
            "If the labels are coded from 1, give classes= (e.g. classes={1: 'a', 2: 'b'}) or "
            "subtract 1 from the labels.")


def run_precision(metrics: dict[str, Any]) -> str:
    """The precision a run trained and was evaluated at (``engine.precision`` resolved): as
    recorded, or for runs made before it was recorded, what the engine then did — bf16
    autocast on CUDA, fp32 elsewhere; ``NOT_RECORDED`` where neither is known (an audit's
    given predictions: kdfair trained nothing)."""
    recorded = metrics.get("precision")
    if recorded:
        return str(recorded)
    if "device_type" not in metrics:
        return NOT_RECORDED
    return "bf16" if metrics["device_type"] == "cuda" else "fp32"


NOT_RECORDED = "not recorded"


def settings_note(runs: list[RunInfo]) -> str | None:
    """A note when runs were made under different thread counts, device types, precisions or
    determinism settings (results depend on each: floating-point reductions run in another
    order, rounded, or by other algorithms)."""
    seen: dict[tuple[Any, Any, str, Any], list[str]] = {}
    for r in runs:
        device = str(r.metrics.get("device", "?")).split(":")[0]
        key = (r.metrics.get("threads"), device, run_precision(r.metrics),
               r.metrics.get("deterministic", False))
        seen.setdefault(key, []).append(r.run_id)
    if len(seen) < 2:
        return None
    parts = [f"{len(ids)} with threads={t}, device {d}, precision {p}, deterministic {det} "
             f"(e.g. {ids[0]})" for (t, d, p, det), ids in seen.items()]
    return ("runs were made under different settings — " + "; ".join(parts) + ". Results "
            "depend on the thread count, device type, precision and deterministic algorithms "
            "(floating-point order and rounding), so differences between these runs mix "
            "settings with seeds.")


def _read_meta(root: Path, notes: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    experiment: dict[str, Any] = {}
    if (root / "experiment.json").exists():
        try:
            experiment = json_object(root / "experiment.json")
        except CorruptRun as err:
            experiment = {}
            notes.append(f"experiment.json cannot be read ({err}); configuration unknown.")
    data: dict[str, Any] = {}
    try:
        data = json_object(root / "data.json")
    except CorruptRun as err:
        data = {}
        notes.append(f"data.json: {err}; class names and sensitive attributes are unknown "
                     "(group fairness is skipped) and sizes are taken from the runs.")
    return experiment, data


class NoRuns(StoreError):
    """A study with no usable run: what it has instead (failure records, skipped runs), so that
    a report of its failures can still be written."""

    def __init__(self, message: str, *, root: Path, experiment: dict[str, Any],
                 failed: list[dict[str, Any]], skipped: list[tuple[str, str]]) -> None:
        super().__init__(message)
        self.root, self.experiment, self.failed, self.skipped = root, experiment, failed, skipped


def open_store(root: str | Path) -> StudyIndex:
    """Index a results directory: usable runs, skipped runs with reasons, failed runs, metadata.

    Runs are checked against their manifests, sizes and SHA-256 of every file the analysis
    reads (an edited file, even of the same size, makes its run skipped, never read as good).
    Raises StoreError only when there is nothing to analyse at all.
    """
    root = Path(root)
    if not root.is_dir() or not ((root / "experiment.json").exists()
                                 or (root / "runs").is_dir()):
        raise StoreError(not_a_study(root))
    notes: list[str] = []
    experiment, data = _read_meta(root, notes)
    why = seal_problem(data, "data.json") or derived_problem(root, data)
    if why:  # never analyse edited test-set files: they are rewritten by the next run
        raise StoreError(f"{root}: {why}; run `kdfair run` (or `kdfair audit`) on the study "
                         "again: it writes the test-set files anew")
    notes.extend(str(n) for n in data.get("notes") or [])  # the loader's own notes
    n_test, num_classes = data.get("n_test"), data.get("num_classes")
    runs: list[RunInfo] = []
    skipped: list[tuple[str, str]] = []
    seen: dict[tuple[str, str | None, float, int], str] = {}
    for run_id, chk in ResultsDir(root).checks(deep=False).items():
        try:
            if chk.state != "done":
                raise CorruptRun(chk.reason)
            run = _check_run(root / "runs" / run_id, n_test, num_classes,
                             data.get("fingerprint"), experiment.get("name"))
        except CorruptRun as err:
            skipped.append((run_id, str(err)))
            continue
        key = (run.role, run.method, -1.0 if math.isnan(run.temperature) else run.temperature,
               run.seed)
        if key in seen:
            skipped.append((run_id, f"duplicate of {seen[key]} (same role, method, T and seed)"))
            continue
        seen[key] = run_id
        if n_test is None or num_classes is None:  # the first good run fixes the sizes
            n, c = check_shapes(run.path)
            n_test, num_classes = n_test or n, num_classes or c
        runs.append(run)
    done = {r.run_id for r in runs}
    failed = [f for f in failure_records(root) if f["run_id"] not in done]
    if not runs:
        what = f"{len(skipped)} run directories, none usable" if skipped else "no finished runs"
        fix = (f"{len(failed)} run(s) failed (failed/*.json say why); fix the cause and run "
               "`kdfair run` again" if failed else "run `kdfair run` first")
        raise NoRuns(f"{root}: {what} under runs/; {fix}"
                     + ("".join(f"\n  {n}: {why}" for n, why in skipped[:10])),
                     root=root, experiment=experiment, failed=failed, skipped=skipped)
    n_test, num_classes = int(n_test), int(num_classes)  # type: ignore[arg-type]
    names = [str(c) for c in data.get("class_names") or []]
    if len(names) != num_classes:
        names = [str(i) for i in range(num_classes)]
    attributes, groups = _attributes(root, data, n_test, notes)
    note = _empty_classes_note(read_labels(runs[0], n_test), names)
    if note:
        notes.append(note)
    note = settings_note(runs)
    if note:
        notes.append(note)
    return StudyIndex(root=root, experiment=experiment, data=data, num_classes=num_classes,
                      class_names=names, n_test=n_test, runs=runs, skipped=skipped,
                      failed=failed, attributes=attributes, attribute_groups=groups, notes=notes,
                      counterfactual_targets=_counterfactual_targets(root, data, n_test, notes))


# --- reading one run's arrays: each reader touches only the files it needs ------------------


def _index_order(run: RunInfo, n_test: int) -> np.ndarray | None:
    """None when the stored rows are already in index order, else the permutation."""
    index = np.asarray(open_array(run.path, "index"), dtype=np.int64)
    if len(index) != n_test:
        raise CorruptRun(f"{len(index)} predictions, expected {n_test}")
    if np.array_equal(index, np.arange(n_test)):
        return None
    order = np.argsort(index, kind="stable")
    if not np.array_equal(index[order], np.arange(n_test)):
        raise CorruptRun(f"predictions index is not a permutation of 0..{n_test - 1}")
    return order


def read_labels(run: RunInfo, n_test: int) -> np.ndarray:
    """The run's test labels [N] in index order (does not touch the logits)."""
    labels = np.asarray(open_array(run.path, "labels"), dtype=np.int64)
    order = _index_order(run, n_test)
    return labels if order is None else labels[order]


def read_logits(run: RunInfo, n_test: int, out: np.ndarray | None = None) -> np.ndarray:
    """The run's logits [N, C] in index order: into ``out`` (float32, reused across runs) when
    given, else a read-only memmap (float16 when stored so) where no reordering is needed."""
    order = _index_order(run, n_test)
    if out is not None:
        read_into(run.path, "logits", out)
        if order is not None:
            out[:] = out[order]
        return out
    logits = open_array(run.path, "logits")
    return logits if order is None else np.asarray(logits)[order]


def read_predictions(run: RunInfo, n_test: int,
                     out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(logits [N, C] in index order, labels [N]) of one run (see :func:`read_logits`).

    Raises CorruptRun when a file is truncated or the index is not a permutation of 0..N-1.
    """
    return read_logits(run, n_test, out), read_labels(run, n_test)


def read_counterfactual_logits(run: RunInfo, n_test: int) -> dict[str, np.ndarray]:
    """attribute -> the run's logits [N, C] on the test set's counterfactuals, in index order
    (row i: the counterfactual of test input i); empty for a run stored without them."""
    order = _index_order(run, n_test)
    out = {}
    for attr in counterfactual_attributes(run.path):
        arr = open_array(run.path, f"{COUNTERFACTUAL_PREFIX}{attr}")
        out[attr] = np.asarray(arr if order is None else np.asarray(arr)[order], np.float32)
    return out
