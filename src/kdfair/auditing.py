"""Audit mode: analyse predictions made anywhere (torchdistill, mdistiller, your own code).

Give the test labels, optionally sensitive attributes and input features, and the predictions of
the teacher, the non-distilled student (NDS) and the distilled students (DS) at each temperature,
one per seed. kdfair writes a normal results directory — the same files ``kdfair run`` writes,
through the store's writer — so ``kdfair.report`` / ``kdfair report`` give the same report.
Nothing is trained.

Each prediction is an array (numpy or torch) or a file: ``.npy``, ``.npz`` / ``.safetensors``
(one array, or a member named ``logits``, ``probabilities``, ``probs`` or ``predictions``), or a
``.csv`` of predicted classes (one column, or a column named ``pred``/``prediction``/
``predicted``; class indices or class names). What it holds (``kind``):

- ``logits`` [N, C]: stored as given;
- ``probabilities`` [N, C] (each row ≥ 0, summing to 1): stored as ``log p`` (p floored at
  1e-30), so the softmax the analysis takes gives p back;
- ``classes`` [N] (integers, or a CSV): stored as the log of a one-hot distribution. Accuracy,
  class-wise tests, DPD/EOD, consistency and disagreement depend only on the predicted class and
  are exact; individual unfairness I(f) then measures how often the *predicted class* changes
  between neighbours (a distance of 0 or 1 per pair), an approximation of I(f) on the model's
  distributions.

``kind="auto"`` (the default) decides per array: 1-D integers are classes, rows that are
non-negative and sum to 1 (within 1e-3) are probabilities, anything else is logits. A binary
model's single output per input ([N] or [N, 1] floats) is the logit of class 1, or with
``kind="probabilities"`` its probability (``inputs.single_logit``).

Labels, groups, lengths and temperatures are checked by ``kdfair.inputs`` (as ``kdfair.study``
checks its own) before anything is written.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NoReturn

import numpy as np

from kdfair.errors import ConfigError
from kdfair.inputs import (
    Classes,
    check_lengths,
    class_lookup,
    encode_groups,
    encode_labels,
    map_classes,
    shown,
    single_logit,
    temperature,
)
from kdfair.integrity import digest

if TYPE_CHECKING:
    from kdfair.config import Experiment
    from kdfair.data.base import SplitData
    from kdfair.spec import RunSpec

Kind = Literal["auto", "logits", "probabilities", "classes"]
ArrayOrPath = Any  # np.ndarray | torch.Tensor | str | Path | a sequence of numbers
Seeds = Sequence[ArrayOrPath] | Mapping[int, ArrayOrPath]

PROB_FLOOR = 1e-30
_MEMBERS = ("logits", "probabilities", "probs", "predictions")
_COLUMNS = ("pred", "prediction", "predicted")
_LABEL_MEMBERS = ("labels", "label", "y", "target")
_RECIPE = ("alpha", "t2_scaling", "teacher_policy")  # what `distill` may say of the DS
MAX_CSV_BYTES = 64 << 20  # a CSV of predicted classes or groups (10 M rows); arrays: .npy


# --- reading arrays ----------------------------------------------------------------------------


def _pick(arrays: Mapping[str, np.ndarray], names: Sequence[str], what: str) -> np.ndarray:
    if len(arrays) == 1:
        return next(iter(arrays.values()))
    for n in names:
        if n in arrays:
            return arrays[n]
    raise ConfigError(f"{what}: holds arrays {', '.join(sorted(arrays))}; give a file with one "
                      f"array or one named {', '.join(names)}")


def _csv_frame(path: Path, what: str, header: int | None = 0) -> Any:
    """A CSV file as a DataFrame: a regular file of at most MAX_CSV_BYTES, read by pandas."""
    import pandas as pd

    try:
        size = path.stat().st_size
        if not path.is_file():
            raise ConfigError(f"{what}: {path} is not a regular file; give a file")
        if size > MAX_CSV_BYTES:
            raise ConfigError(f"{what}: {path} has {size} bytes, more than the {MAX_CSV_BYTES} a "
                              "CSV file may hold here; give the array as .npy instead")
        return pd.read_csv(path, header=header)
    except (OSError, ValueError, MemoryError) as err:
        raise ConfigError(f"{what}: cannot read {path} as CSV ({type(err).__name__})") from None


def _read_csv(path: Path, columns: Sequence[str], what: str) -> np.ndarray:
    df = _csv_frame(path, what)
    if len(df.columns) == 1 and str(df.columns[0]).strip().lstrip("-").isdigit():
        df = _csv_frame(path, what, header=None)  # no header: the first row is a value
    names = [c for c in columns if c in df.columns]
    if names:
        return df[names[0]].to_numpy()
    if len(df.columns) == 1:
        return df.iloc[:, 0].to_numpy()
    raise ConfigError(f"{what}: {path} has columns {shown(list(df.columns))}; give one "
                      f"column or one named {', '.join(columns)}")


def read_array(source: ArrayOrPath, what: str, members: Sequence[str] = _MEMBERS,
               columns: Sequence[str] = _COLUMNS) -> np.ndarray:
    """An array given directly or as a .npy/.npz/.safetensors/.csv file (never unpickled)."""
    if not isinstance(source, str | Path):
        if hasattr(source, "detach"):  # a torch tensor
            source = source.detach().cpu().numpy()
        return np.asarray(source)
    path = Path(source)
    if not path.is_file():
        raise ConfigError(f"{what}: no file {path}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            return np.load(path, allow_pickle=False)
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            if "index" in arrays and len(arrays) > 1:  # a kdfair predictions.npz: index order
                order = np.argsort(arrays.pop("index"), kind="stable")
                arrays = {k: v[order] for k, v in arrays.items()}
            return _pick(arrays, members, what)
        if suffix == ".safetensors":
            from safetensors.numpy import load_file

            return _pick(load_file(str(path)), members, what)
    except (OSError, ValueError) as err:
        raise ConfigError(f"{what}: cannot read {path} ({err})") from None
    if suffix == ".csv":
        return _read_csv(path, columns, what)
    raise ConfigError(f"{what}: {path.name} is not .npy, .npz, .safetensors or .csv")


def _class_codes(values: np.ndarray, class_names: Sequence[str] | None, what: str) -> np.ndarray:
    """Class indices from integers, or from class names when ``class_names`` is given."""
    if values.dtype.kind in "iu":
        return values.astype(np.int64)
    if values.dtype.kind == "f" and np.all(np.isfinite(values)) and np.all(values == values // 1):
        return values.astype(np.int64)
    if values.dtype.kind in "OUS" and class_names is not None:
        lookup = {n: i for i, n in enumerate(class_names)}
        unknown = sorted({str(v) for v in values} - set(lookup))
        if unknown:
            raise ConfigError(f"{what}: class names {shown(unknown)} are not in class_names")
        return np.array([lookup[str(v)] for v in values], dtype=np.int64)
    raise ConfigError(f"{what}: expected class indices (integers)"
                      + ("" if class_names else " or class names with class_names given")
                      + f", got values of type {values.dtype}")


# --- predictions → logits ----------------------------------------------------------------------


def detect_kind(a: np.ndarray) -> str:
    """``classes`` for 1-D integers, ``probabilities`` for rows ≥ 0 summing to 1, else logits."""
    if a.ndim == 1:
        return "classes"
    if a.ndim == 2 and a.size and np.isfinite(a).all() and a.min() >= 0 \
            and np.allclose(a.sum(1), 1.0, atol=1e-3):
        return "probabilities"
    return "logits"


def to_logits(a: np.ndarray, kind: str, num_classes: int, n: int, what: str,
              class_names: Sequence[str] | None = None,
              lookup: Mapping[Any, int] | None = None) -> tuple[np.ndarray, str]:
    """Float32 [n, num_classes] logits of one prediction, and the kind it was read as.

    A binary model's single output per input ([N] or [N, 1] floats) is the logit or the
    probability of class 1 (``inputs.single_logit``); predicted classes in the labels' own
    coding are mapped by ``lookup`` (label value → class index, from ``classes``)."""
    two = single_logit(a, kind, what)
    if two is not None:
        if num_classes != 2:
            raise ConfigError(f"{what}: one value per input is a binary model's output, but "
                              f"there are {num_classes} classes: give [{n}, {num_classes}] "
                              "logits or probabilities, or the predicted classes as integers")
        return two, "probabilities" if kind == "probabilities" else "logits"
    kind = detect_kind(a) if kind == "auto" else kind
    if kind == "classes":
        if a.ndim == 2 and a.shape[1] == 1:
            a = a[:, 0]
        if a.ndim != 1:
            raise ConfigError(f"{what}: predicted classes must be one value per input, got an "
                              f"array of shape {a.shape}")
        pred = map_classes(a, lookup, what) if lookup is not None \
            else _class_codes(a, class_names, what)
        if len(pred) != n:
            raise ConfigError(f"{what}: {len(pred)} predictions for {n} labels")
        if pred.min(initial=0) < 0 or pred.max(initial=0) >= num_classes:
            raise ConfigError(f"{what}: predicted classes outside 0..{num_classes - 1}")
        out = np.full((n, num_classes), np.log(PROB_FLOOR), dtype=np.float32)
        out[np.arange(n), pred] = 0.0
        return out, kind
    if kind not in ("logits", "probabilities"):
        raise ConfigError(f"kind: {kind!r} is not one of auto, logits, probabilities, classes")
    if a.ndim != 2 or a.shape != (n, num_classes):
        raise ConfigError(f"{what}: expected [{n}, {num_classes}] {kind} (inputs × classes), "
                          f"got shape {a.shape}")
    a = a.astype(np.float32)
    if not np.isfinite(a).all():
        raise ConfigError(f"{what}: contains NaN or infinite values")
    if kind == "probabilities":
        if a.min() < 0 or not np.allclose(a.sum(1), 1.0, atol=1e-3):
            raise ConfigError(f"{what}: probabilities must be ≥ 0 with rows summing to 1; "
                              "pass kind='logits' if these are logits")
        a = np.log(np.maximum(a, PROB_FLOOR))
    return np.ascontiguousarray(a), kind


# --- the audit ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prediction:
    """One run to write: its role, temperature, seed and raw prediction."""

    role: str
    seed: int
    temperature: float | None
    source: ArrayOrPath
    what: str  # how errors name it


def _seeds(given: Seeds | None, what: str) -> list[tuple[int, ArrayOrPath, str]]:
    if given is None:
        return []
    if isinstance(given, Mapping):
        items = list(given.items())
    elif isinstance(given, str | Path) or hasattr(given, "shape"):
        raise ConfigError(f"{what}: give a list with one prediction per seed (e.g. [{what}_s0, "
                          f"{what}_s1]), or a mapping {{seed: prediction}}")
    else:
        items = list(enumerate(given))
    out = []
    for seed, src in items:
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise ConfigError(f"{what}: seeds must be integers ≥ 0, got {seed!r}")
        label = f"{what}[{seed}]" + (f" ({src})" if isinstance(src, str | Path) else "")
        out.append((seed, src, label))
    return out


def collect(teacher: Seeds | None, nds: Seeds | None,
            ds: Mapping[float, Seeds] | None) -> list[Prediction]:
    """Every prediction given, in the order a study plans its runs: teacher, NDS, DS by T."""
    preds = [Prediction("teacher", s, None, src, w) for s, src, w in _seeds(teacher, "teacher")]
    preds += [Prediction("nds", s, None, src, w) for s, src, w in _seeds(nds, "nds")]
    if ds is not None and not isinstance(ds, Mapping):
        raise ConfigError("ds: give a mapping {temperature: [one prediction per seed]}")
    by_t = [(temperature(t), seeds) for t, seeds in (ds or {}).items()]  # "4" as 4.0
    if len({t for t, _ in by_t}) != len(by_t):
        raise ConfigError(f"ds: a temperature is given twice ({', '.join(map(repr, ds or {}))})")
    for temp, seeds in sorted(by_t, key=lambda kv: kv[0]):
        preds += [Prediction("ds", s, temp, src, w)
                  for s, src, w in _seeds(seeds, f"ds[{temp:g}]")]
    if not preds:
        raise ConfigError("give predictions for at least one role: teacher, nds or ds")
    return preds


def group_arrays(groups: ArrayOrPath | Mapping[str, ArrayOrPath] | None
                 ) -> dict[str, np.ndarray]:
    """The group array of each attribute as given: a mapping attribute → array or file, or one
    .npz/.csv file holding one array/column per attribute."""
    if groups is None:
        return {}
    if isinstance(groups, str | Path):
        path = Path(groups)
        if path.suffix.lower() == ".csv":
            df = _csv_frame(path, "groups")
            groups = {str(c): df[c].to_numpy() for c in df.columns}
        elif path.suffix.lower() == ".npz" and path.is_file():
            with np.load(path, allow_pickle=False) as z:
                groups = {k: z[k] for k in z.files if k != "index"}
        else:
            raise ConfigError(f"groups: {path} is not an .npz or .csv file")
    if not isinstance(groups, Mapping):
        raise ConfigError("groups: give a mapping {attribute: group of each input}")
    return {str(attr): read_array(src, f"groups[{attr!r}]", members=(str(attr),),
                                  columns=(str(attr),))
            for attr, src in groups.items()}


def audit(
    labels: ArrayOrPath,
    *,
    teacher: Seeds | None = None,
    nds: Seeds | None = None,
    ds: Mapping[float, Seeds] | None = None,
    groups: ArrayOrPath | Mapping[str, ArrayOrPath] | None = None,
    group_names: Mapping[str, Sequence[str]] | None = None,
    class_names: Sequence[str] | None = None,
    classes: Classes | None = None,
    features: ArrayOrPath | None = None,
    kind: Kind = "auto",
    name: str = "audit",
    out: str | Path = "results",
    teacher_arch: str = "external",
    student_arch: str = "external",
    dataset: str = "external",
    distill: Mapping[str, Any] | None = None,
    analysis: Mapping[str, Any] | None = None,
    write_report: bool = True,
) -> Path:
    """Write predictions made elsewhere as a kdfair results directory ``<out>/<name>`` and (with
    ``write_report``) its report; returns the directory. See the module docstring for formats.

    ``teacher`` and ``nds`` are lists with one prediction per seed (seed = position) or mappings
    ``{seed: prediction}``; ``ds`` maps each temperature to such a list. ``features`` [N, D] are
    the inputs in a similarity space for individual fairness (without them I(f) is skipped).
    ``distill`` (``alpha``, ``t2_scaling``, ``teacher_policy``) and the ``*_arch`` / ``dataset``
    names only describe how the models were made, for the report.

    Labels are class indices 0..C−1 or class names (with ``class_names``); ``classes`` maps
    any other coding, e.g. ``{1: "good", 2: "bad"}`` for labels coded 1/2 (predicted classes
    are read in the same coding; columns of logits or probabilities are the classes in
    ``classes``' order). Labels that would leave a class empty are refused
    (``kdfair.inputs``). A binary model's single output per input ([N] or [N, 1]) is the
    logit (``kind="logits"``) or probability (``kind="probabilities"``) of class 1.

    The store is written as a study's (``runner.write_store``): experiment.json is a valid
    Experiment, and the same name rule, two-seed rule, teacher pairing and stale-store check hold.
    """
    preds = collect(teacher, nds, ds)
    exp = audit_experiment(name, preds, teacher_arch, student_arch, dataset, distill, analysis)
    y = read_array(labels, "labels", members=_LABEL_MEMBERS, columns=("label", "labels", "y"))
    if y.ndim != 1 or not len(y):
        raise ConfigError(f"labels: expected one class per test input, got shape {y.shape}")
    raw = [(p, read_array(p.source, p.what)) for p in preds]
    group_raw = group_arrays(groups)
    check_lengths(len(y), {**{p.what: len(a) for p, a in raw},
                           **{f"groups[{a!r}]": len(v) for a, v in group_raw.items()}})
    width = _width(raw, kind)  # text labels name the classes in sorted order unless a
    ys, class_list = encode_labels(  # prediction has columns, whose order only class_names says
        {"labels": y}, classes=classes, class_names=class_names,
        names_from_values=width is None, width=width,
        shifted="the labels and the predicted classes")
    y, k, n = ys["labels"], len(class_list), len(y)
    lookup = class_lookup(classes, class_names)[0] if classes is not None else None
    codes, names = encode_groups({"groups": group_raw}, group_names)
    feats = None
    if features is not None:
        feats = read_array(features, "features").astype(np.float32)
        if feats.ndim == 1:
            feats = feats[:, None]
        if feats.ndim != 2 or len(feats) != n:
            raise ConfigError(f"features: expected [{n}, D] (one row per input), got shape "
                              f"{feats.shape}")
    logits = [to_logits(a, kind, k, n, p.what, class_list, lookup) for p, a in raw]
    notes = _notes(sorted({kd for _, kd in logits}), distill, any(p.role == "ds" for p in preds))
    notes += _pairing_notes(preds)
    data = audit_data(exp.dataset.name, y, class_list, codes["groups"], names, feats, notes)
    specs = audit_plan(exp, preds, logits, data.fingerprint)
    return _write_audit(Path(out) / exp.name, exp, specs, logits, data, write_report)


def _width(raw: list[tuple[Prediction, np.ndarray]], kind: str) -> int | None:
    """The number of classes the predictions' columns say (2 for a binary model's single
    output); None when every prediction is a predicted class."""
    widths = set()
    for _, a in raw:
        if a.ndim == 2 and a.shape[1] > 1:
            widths.add(a.shape[1])
        elif a.ndim in (1, 2) and (kind in ("logits", "probabilities") or (
                kind == "auto" and a.dtype.kind == "f" and not np.all(a == np.floor(a)))):
            widths.add(2)
    if len(widths) > 1:
        raise ConfigError(f"predictions have different numbers of classes: {sorted(widths)}; "
                          "give every prediction with one column per class")
    return widths.pop() if widths else None


def _pairing_notes(preds: list[Prediction]) -> list[str]:
    """How DS runs whose seed no NDS run has are compared with the NDS: said, not hidden."""
    nds = sorted({p.seed for p in preds if p.role == "nds"})
    alone = sorted({p.seed for p in preds if p.role == "ds"} - set(nds))
    if not nds or not alone:
        return []
    return [f"DS seed(s) {', '.join(map(str, alone))} have no NDS of the same seed (NDS seeds: "
            f"{', '.join(map(str, nds))}): DS-vs-NDS disagreement compares each such DS run with "
            "every NDS run, and paired tests (analysis.pairing: paired) use only the seeds both "
            "have. Give the NDS under the DS's seeds ({seed: prediction}) to pair them."]


def _recipe(distill: Mapping[str, Any] | None) -> dict[str, Any]:
    """How the DS were distilled, as given (only the keys the report states)."""
    if distill is None:
        return {}
    if not isinstance(distill, Mapping):
        raise ConfigError("distill: give a mapping, e.g. {'alpha': 0.9, 't2_scaling': True}")
    unknown = sorted(set(distill) - set(_RECIPE))
    if unknown:
        raise ConfigError(f"distill: unknown key(s) {', '.join(map(str, unknown))}; allowed: "
                          f"{', '.join(_RECIPE)}")
    return dict(distill)


# an audit's report: PNG figures only, unless asked (analysis={"vector_figures": True}, or
# `--set analysis.vector_figures=true`): the SVG / PDF twins would double its time
_AUDIT_ANALYSIS = {"vector_figures": False}


def audit_experiment(name: str, preds: list[Prediction], teacher_arch: str, student_arch: str,
                     dataset: str, distill: Mapping[str, Any] | None,
                     analysis: Mapping[str, Any] | None) -> Experiment:
    """The audit as the Experiment of a study: seeds and temperatures from the predictions, the
    rest as given, else kdfair's defaults. Validated like an experiment file (the study's name
    rule and two-seed rule); errors name the audit's parameter."""
    from pydantic import ValidationError

    from kdfair.config import Experiment
    from kdfair.options import invalid

    if analysis is not None and not isinstance(analysis, Mapping):
        raise ConfigError("analysis: give a mapping of analysis options, e.g. {'tests': False}")
    _register_external(dataset, (teacher_arch, student_arch))
    seeds = sorted({p.seed for p in preds})
    temps = sorted({p.temperature for p in preds if p.temperature is not None})
    spec = {"name": name, "dataset": {"name": dataset},
            "teacher": {"model": {"arch": teacher_arch}},
            "student": {"model": {"arch": student_arch}},
            "distill": {**_recipe(distill), **({"temperatures": temps} if temps else {})},
            "seeds": seeds,
            "analysis": {"tests": len(seeds) >= 2, **_AUDIT_ANALYSIS, **(analysis or {})}}
    try:
        return Experiment.model_validate(spec)
    except ValidationError as err:
        raise invalid(err, Experiment, f"invalid audit {name!r}:", noun="field") from None


def _register_external(dataset: Any, archs: Sequence[Any]) -> None:
    """Names of data and models made elsewhere, made valid in an Experiment as ``kdfair.study``
    makes its own: a name the registries do not know is registered as one that refuses to be
    loaded or built (there is nothing of it in kdfair)."""
    from kdfair.data.registry import dataset_names, register_dataset
    from kdfair.models.registry import get_factory, register_model

    if isinstance(dataset, str) and dataset not in dataset_names():
        register_dataset(dataset, partial(_external, f"data set {dataset!r}"))
    for arch in {a for a in archs if isinstance(a, str)}:
        try:
            get_factory(arch)
        except ConfigError:
            register_model(arch, partial(_external, f"architecture {arch!r}"))


def _external(what: str, *args: Any, **kwargs: Any) -> NoReturn:
    raise ConfigError(f"{what} only names what made the predictions of an audit (outside "
                      "kdfair): it cannot be loaded, built or trained")


def _notes(kinds: list[str], distill: Mapping[str, Any] | None, has_ds: bool) -> list[str]:
    """data.json's notes of an audit: how the predictions were given, and what is not known."""
    notes = [f"Audit of predictions made outside kdfair (given as {', '.join(kinds)}); nothing "
             "was trained."]
    if "classes" in kinds:
        notes.append("Some predictions were given as predicted classes: their distributions are "
                     "one-hot, so I(f) counts changes of the predicted class between neighbours "
                     "(an approximation); every other metric is exact.")
    missing = [k for k in _RECIPE if k not in (distill or {})]
    if has_ds and missing:
        notes.append(f"The audit was not told the distillation's {', '.join(missing)} "
                     "(audit(distill=…)): the configuration states kdfair's defaults for them.")
    return notes


def audit_data(dataset: str, y: np.ndarray, class_names: list[str], codes: dict[str, np.ndarray],
               groups: dict[str, list[str]], features: np.ndarray | None,
               notes: list[str]) -> SplitData:
    """The audit's data as a study's: a test set only (no train or val inputs, no input shape
    or normalisation: kdfair never sees the inputs), fingerprinted by the one array digest over
    everything data.json states of it."""
    import torch

    from kdfair.data.base import Part, SplitData

    fingerprint = digest(y, *(codes[a] for a in sorted(codes)),
                         *([features] if features is not None else []),
                         dataset, class_names, groups)[:16]
    nothing = Part(y=torch.zeros(0, dtype=torch.int64), x=torch.zeros(0))  # input shape ()
    return SplitData(name=dataset, train=nothing, val=nothing,
                     test=Part(y=torch.from_numpy(y), attributes=codes),
                     num_classes=len(class_names), class_names=class_names,
                     fingerprint=fingerprint, attribute_groups=groups, mean=(), std=(),
                     notes=notes, test_features=features)


def audit_plan(exp: Experiment, preds: list[Prediction], logits: list[tuple[np.ndarray, str]],
               fingerprint: str) -> list[RunSpec]:
    """One RunSpec per prediction, in the order given (teachers first). Its kind and digest go
    into ``model_options``, so other predictions make other run ids; each DS distils from the
    teacher the study's rule pairs it with (``runner.teacher_seed``)."""
    from kdfair.runner import teacher_seed
    from kdfair.spec import RunSpec

    dataset = exp.dataset.model_dump(mode="json", exclude={"root", "download"})
    t_seeds = [p.seed for p in preds if p.role == "teacher"]
    teachers: dict[int, str] = {}
    specs = []
    for p, (lg, kd) in zip(preds, logits, strict=True):
        tid = None
        if p.role == "ds" and t_seeds:
            tid = teachers[teacher_seed(p.seed, t_seeds, exp.distill.teacher_policy)]
        role = exp.teacher if p.role == "teacher" else exp.student
        spec = RunSpec(experiment=exp.name, role=p.role,  # type: ignore[arg-type]
                       arch=role.model.arch, seed=p.seed, train={}, dataset=dataset,
                       data_fingerprint=fingerprint,
                       model_options={"audit": {"kind": kd, "predictions": digest(lg)[:16]}},
                       temperature=p.temperature, teacher_run_id=tid)
        if p.role == "teacher":
            teachers[p.seed] = spec.run_id
        specs.append(spec)
    ids = [s.run_id for s in specs]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ConfigError(f"the same role, temperature and seed is given twice ({dup[0]})")
    return specs


def _write_audit(root: Path, exp: Experiment, specs: list[RunSpec],
                 logits: list[tuple[np.ndarray, str]], data: SplitData,
                 write_report: bool) -> Path:
    """Write the audit through the study's store writer, then each run it lacks."""
    from kdfair.runner import write_store

    store = write_store(exp, root, specs, data)
    y, done = data.test.y.numpy(), store.done_ids()
    for spec, (lg, kd) in zip(specs, logits, strict=True):
        if spec.run_id in done:
            continue
        acc = float(np.mean(lg.argmax(1) == y))
        store.save_run(spec, {"test_acc": acc, "epochs": 0, "history": [], "audit_kind": kd},
                       lg, y, np.arange(len(y)))
    if write_report:
        from kdfair.analysis.report import write_report as write_study_report

        write_study_report(root)
    return root


# --- the predictions file of `kdfair audit` ----------------------------------------------------


def _seed_files(v: Any) -> Any:
    """A list of file names (seed = position) or a mapping {seed: file name}."""
    ok = (isinstance(v, list) and all(isinstance(x, str) for x in v)) or (
        isinstance(v, dict) and all(isinstance(k, int) and isinstance(x, str)
                                    for k, x in v.items()))
    if v is not None and not ok:
        raise ValueError("give a list of files, one per seed, or a mapping {seed: file}")
    return v


def _file_model():
    from pydantic import BaseModel, ConfigDict, field_validator

    from kdfair.config import check_name

    class AuditFile(BaseModel):
        """``kdfair audit PREDICTIONS.yaml``: the arguments of :func:`audit`; paths are relative
        to the file's directory."""

        model_config = ConfigDict(extra="forbid")

        name: str
        labels: str
        teacher: Any = None
        nds: Any = None
        ds: dict[float, Any] | None = None
        groups: str | dict[str, str] | None = None
        group_names: dict[str, list[str]] | None = None
        class_names: list[str] | None = None
        classes: dict[int | str, str] | list[int | str] | None = None
        features: str | None = None
        kind: Literal["auto", "logits", "probabilities", "classes"] = "auto"
        teacher_arch: str = "external"
        student_arch: str = "external"
        dataset: str = "external"
        distill: dict[str, Any] | None = None
        analysis: dict[str, Any] | None = None

        @field_validator("name")
        @classmethod
        def _name(cls, v: str) -> str:
            return check_name(v)  # the study's rule

        @field_validator("teacher", "nds", mode="before")
        @classmethod
        def _seeds(cls, v: Any) -> Any:
            return _seed_files(v)

        @field_validator("ds")
        @classmethod
        def _ds(cls, v: Any) -> Any:
            for files in (v or {}).values():
                _seed_files(files)
            return v

    return AuditFile


def load_audit_file(path: str | Path) -> dict[str, Any]:
    """The keyword arguments of :func:`audit` from a predictions YAML file (``yaml.safe_load``),
    file paths resolved against the file's directory; errors name the bad key."""
    from pydantic import ValidationError

    from kdfair.options import invalid
    from kdfair.reading import ReadError, load_yaml_file

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"no predictions file {p}")
    try:  # bounded: a regular UTF-8 file, aliases that do not explode
        data = load_yaml_file(p)
    except ReadError as err:
        raise ConfigError(str(err)) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping (name, labels, teacher, nds, ds, …)")
    model = _file_model()
    try:
        cfg = model.model_validate(data)
    except ValidationError as err:
        raise invalid(err, model, f"invalid predictions file {p}:", noun="field") from None
    base = p.parent

    def at(x: str) -> Path:
        q = Path(x).expanduser()
        return q if q.is_absolute() else base / q

    def seeds(s: list[str] | dict[int, str] | None):
        if s is None:
            return None
        return {k: at(v) for k, v in s.items()} if isinstance(s, dict) else [at(v) for v in s]

    groups = cfg.groups
    return dict(
        labels=at(cfg.labels), teacher=seeds(cfg.teacher), nds=seeds(cfg.nds),
        ds={t: seeds(v) for t, v in cfg.ds.items()} if cfg.ds else None,
        groups=(at(groups) if isinstance(groups, str)
                else {k: at(v) for k, v in groups.items()} if groups else None),
        group_names=cfg.group_names, class_names=cfg.class_names, classes=cfg.classes,
        features=at(cfg.features) if cfg.features else None, kind=cfg.kind, name=cfg.name,
        teacher_arch=cfg.teacher_arch, student_arch=cfg.student_arch, dataset=cfg.dataset,
        distill=cfg.distill, analysis=cfg.analysis)


def audit_file(path: str | Path, out: str | Path = "results", write_report: bool = True,
               analysis: Mapping[str, Any] | None = None) -> Path:
    """:func:`audit` of a predictions YAML file into ``<out>/<name>``; ``analysis``: options
    changed over the file's ``analysis`` section (the command line's ``--set``)."""
    given = load_audit_file(path)
    if analysis:
        given["analysis"] = {**(given.get("analysis") or {}), **analysis}
    return audit(**given, out=out, write_report=write_report)
