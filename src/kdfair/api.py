"""The public Python API: load an experiment, run it, analyse the store; or study your own data."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from kdfair import tracking
from kdfair.auditing import audit
from kdfair.config import (
    Experiment,
    SlurmConfig,
    cpu_workers,
    engine_threads,
    load_experiment,
)
from kdfair.data.base import Part, SplitData
from kdfair.data.registry import register_dataset
from kdfair.errors import ConfigError
from kdfair.executors import EXECUTORS, Executor, SlurmExecutor, SlurmView, execute, local_executor
from kdfair.export import export_model, load_exported, load_model, record_factories
from kdfair.inference import predict
from kdfair.inputs import Classes, check_lengths, encode_groups, encode_labels
from kdfair.integrity import digest
from kdfair.models.registry import register_model
from kdfair.overrides import Overrides
from kdfair.planning import StudyPlan, plan_study, progress_schedule
from kdfair.progress import study_reporter, warn_if_threads_hurt
from kdfair.runner import StudyStatus, load_data
from kdfair.spec import RunSpec
from kdfair.train.device import resolve_device
from kdfair.train.engine import Reporter

__all__ = ["audit", "load_experiment", "plan", "run", "analyze", "report", "compare", "study",
           "results_dir", "load_model", "export_model", "load_exported", "predict", "make_executor"]

# load_experiment is kdfair.config's, the one way in; the registries imported above add their
# checks of data set and model names to it


def results_dir(exp: Experiment, out: str | Path = "results") -> Path:
    """Where an experiment's store lives: ``<out>/<experiment name>``."""
    return Path(out) / exp.name


def make_executor(name: str, exp: Experiment, out: str | Path = "results", *, wait: bool = True,
                  reporter: Reporter | None = None,
                  on_run: Callable[[RunSpec, str], None] | None = None,
                  view: SlurmView | None = None) -> Executor:
    """The executor ``name`` for ``exp``, its checks made before anything is written.

    ``local``: this process, or one worker per GPU (``engine.workers`` processes on a CPU);
    ``reporter`` and ``on_run`` follow its runs. ``slurm``: one job per bundle with the
    experiment's ``slurm`` settings; the cluster's partition, limits and earlier jobs are checked
    now; ``wait``: return when the jobs have ended (else submit and return); ``view`` shows them.
    """
    if name == "local":
        return local_executor(exp, reporter, on_run)
    if name == "slurm":
        ex = SlurmExecutor(exp.slurm or SlurmConfig(), wait=wait, view=view)
        ex.start(exp, results_dir(exp, out).resolve())
        return ex
    raise ConfigError(f"unknown executor {name!r}: choose one of {', '.join(EXECUTORS)}")


def plan(experiment: Experiment | str | Path, out: str | Path = "results", *,
         data_root: str | Path | None = None, overrides: Overrides | None = None,
         data: SplitData | None = None, probe: bool = True,
         on_step: Callable[[str], None] | None = None) -> StudyPlan:
    """What :func:`run` would do, without writing or training anything: the resolved experiment
    (``.yaml()``), its runs, done and to train per role (``.roles()``), and the time estimate
    from a short timed probe of each role's model on this device (``.estimate``; ``probe``
    False: none). ``on_step(text)``: each step as it starts (loading data, timing a model)."""
    return plan_study(experiment, out, overrides=overrides, data_root=data_root, data=data,
                      probe=probe, on_step=on_step)


def run(experiment: Experiment | str | Path, out: str | Path = "results", *,
        data_root: str | Path | None = None, overrides: Overrides | None = None,
        executor: Executor | str | None = None, wait: bool = True,
        progress: bool | None = None,
        reporter: Reporter | None = None,
        on_run: Callable[[RunSpec, str], None] | None = None,
        on_plan: Callable[[list[RunSpec], set[str]], None] | None = None,
        data: SplitData | None = None, write_report: bool = True) -> StudyStatus:
    """Run a study (an Experiment, a YAML path or a preset name) into ``<out>/<name>``.

    Finished runs already in the store are not trained again. ``overrides`` change fields
    first (see :func:`load_experiment`). ``executor``: where bundles train, by name (see
    :func:`make_executor`, default ``local``; ``wait`` is the SLURM executor's) or one made.
    ``progress``: None (default) shows a live view in a terminal or notebook and time-stamped
    lines (at most every 30 s) elsewhere; False is silent; a ``reporter`` given replaces it.
    ``on_run(spec, state)``: each run as it ends; ``on_plan(specs, done_ids)``: the plan, once,
    before training; ``data``: the loaded data set, if already in memory. Ends by writing the
    report unless ``write_report`` is false.
    """
    exp = load_experiment(experiment, overrides or ())
    where = results_dir(exp, out)
    root = Path(data_root) if data_root else None
    if tracking.enabled(exp):
        tracking.check_available()  # before anything trains
    by_name = executor is None or isinstance(executor, str)
    own = study_reporter(progress) if reporter is None and executor in (None, "local") else None
    if by_name:
        executor = make_executor(executor or "local", exp, out, wait=wait,
                                 reporter=reporter or own, on_run=on_run)

    def planned(specs: list[RunSpec], done: set[str]) -> None:
        if on_plan is not None:  # the caller's heading first, then the live view
            if own is not None:
                own.hold()
            on_plan(specs, done)
        if own is not None:
            schedule = None
            if len(done) < len(specs):
                if resolve_device(exp.device).type == "cpu" \
                        and engine_threads(exp.engine, cpu_workers(exp.engine)) != 1:
                    warn_if_threads_hurt(own)  # (one thread per run: nothing to warn about)
                schedule = progress_schedule(exp, specs, done, data, own.step)
            own.plan(len(specs), len(done), schedule)

    with own if own is not None else contextlib.nullcontext():
        if own is not None and data is None:  # no silent second: loading can take a while
            own.step(f"loading data set {exp.dataset.name}")
            data = load_data(exp, root)
        st = execute(exp, where, executor, data=data, data_root=root, on_plan=planned)
    if tracking.enabled(exp) and where.is_dir():
        tracking.sync(where)  # runs trained before tracking was set
    if write_report:
        report(where)
    return st


def analyze(results: str | Path, options: Any = None, *,
            groups: Sequence[str] | Sequence[Sequence[str]] | None = None) -> dict:
    """All tables of a results directory as numeric pandas DataFrames (percent for accuracy,
    DPD, EOD and disagreement; ``*_ci_low``/``*_ci_high``: 95 % intervals over seeds).

    ``options``: an ``AnalysisConfig`` or a dict of its fields (e.g. ``{"pairing": "paired"}``);
    default: the store's experiment.json ``analysis`` section. Besides the report's tables:
    ``group_rates`` (per model × attribute × group × class: selection rate, TPR, FPR and
    accuracy in percent, with counts) and ``group_measures`` (per model × attribute × class:
    every group measure, differences and ratios), each with seed mean, std and interval
    (``kdfair.analysis.groups``). ``groups``: intersections of attributes to add, e.g.
    ``["sex", "age"]`` (or a list of such lists).
    """
    from kdfair.analysis.groups import group_tables
    from kdfair.analysis.report import analyze as _analyze
    from kdfair.analysis.report import resolve_options
    from kdfair.store import open_store

    opts = _analysis_options(options)
    store = open_store(Path(results))  # opened (and its runs verified) once for both
    used = resolve_options(store, opts, [])[0]
    per_group = group_tables(store, groups, used.seed_resamples, used.random_seed,
                             used.seed_ci)  # first: bad groups are refused before the rest
    return {**_analyze(store, opts), **per_group}


def report(results: str | Path, options: Any = None):
    """Write report.md, report.html, the CSV tables and figures under ``<results>/report``
    (only the files it owns, listed in report/manifest.json); ``options`` as for analyze."""
    from kdfair.analysis.report import write_report

    return write_report(Path(results), _analysis_options(options))


def compare(studies: Sequence[str | Path], out: str | Path | None = None, options: Any = None,
            changes: Mapping[str, Any] | None = None):
    """Several studies side by side: write ``report.md``, ``report.html`` and CSVs under
    ``out`` (default ``<their common parent>/comparison``) and return them as a
    ``Comparison`` (``.table``: every study's registry measures with seed CIs, long form).

    ``studies``: results directories, or ``--out`` roots standing for every study under them
    (a sweep's). Columns are headed by the settings in which the studies differ
    (``alpha=0.5``); ``options`` as for analyze, one analysis for all (default: each study's
    own); ``changes`` (``{"pairing": "paired"}``): these analysis options changed in each
    study's own, as ``kdfair report --set`` changes them (stated in the comparison).
    """
    import os

    from kdfair.analysis.compare import write_comparison
    from kdfair.studies import find_studies

    if isinstance(studies, (str, Path)):
        studies = [studies]
    roots = find_studies(list(studies))
    if out is None:
        out = Path(os.path.commonpath([str(r.resolve().parent) for r in roots])) / "comparison"
    if changes:
        if options is not None:
            raise ConfigError("compare: give options= (one analysis for all) or changes= (each "
                              "study's own, changed), not both")
        for root in roots:  # every study's changed options valid before anything is analysed
            analysis_options(root, changes)
        return write_comparison(roots, out, lambda r: analysis_options(r, changes),
                                changed=changes)
    return write_comparison(roots, out, _analysis_options(options))


def analysis_options(results: str | Path, changes: Mapping[str, Any]):
    """The study's own analysis options (experiment.json's ``analysis`` section, else the
    defaults) with ``changes`` (``{field: value}``) applied, validated as an ``AnalysisConfig``."""
    from kdfair.store.files import read_json

    path = Path(results) / "experiment.json"
    section = read_json(path).get("analysis") if path.exists() else None
    return _analysis_options({**(section if isinstance(section, dict) else {}), **changes},
                             "analysis")


def _analysis_options(options: Any, prefix: str = "options"):
    from pydantic import ValidationError

    from kdfair.config import AnalysisConfig
    from kdfair.options import invalid

    if options is None or isinstance(options, AnalysisConfig):
        return options
    if isinstance(options, Mapping):
        try:
            return AnalysisConfig.model_validate(dict(options))
        except ValidationError as err:
            raise invalid(err, AnalysisConfig, "invalid analysis options:", prefix) from None
    raise ConfigError(f"options must be an AnalysisConfig or a dict, got {type(options).__name__}")


# --- your own data and models --------------------------------------------------------------

ArrayLike = np.ndarray | torch.Tensor


VAL_FRACTION = 0.1  # of train, held out as val when study() is given val=None


def _arrays(split: Sequence[Any] | None, name: str
            ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """(x, y, {attribute: groups}) of one split as given, their lengths checked."""
    if split is None or isinstance(split, str | Path | Mapping) or len(split) not in (2, 3):
        raise ConfigError(f"{name}: give (x, y) or (x, y, {{attribute: groups}})")
    named = split[2] if len(split) == 3 else {}
    if not isinstance(named, Mapping):
        raise ConfigError(f"{name}: the third item is {{attribute: group of each input}}, got "
                          f"{type(named).__name__}")
    x, y = (np.asarray(a.detach().cpu() if hasattr(a, "detach") else a) for a in split[:2])
    if x.dtype.kind not in "biuf":
        try:  # numbers held as objects (a DataFrame of mixed columns) are numbers
            x = x.astype(np.float32)
        except (TypeError, ValueError):
            raise ConfigError(f"{name} x: features must be numbers (or uint8 images), got values "
                              f"of type {x.dtype}: encode text columns as numbers first (e.g. "
                              "pandas.get_dummies)") from None
    attrs = {str(a): np.asarray(v) for a, v in named.items()}
    check_lengths(len(y), {f"{name} x": len(x), **{f"{name} groups {a!r}": len(v)
                                                   for a, v in attrs.items()}},
                  labels=f"{name} labels (y)")
    return x, y, attrs


def _held_out(x: np.ndarray, y: np.ndarray, attrs: dict[str, np.ndarray]
              ) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """(train, val): ``VAL_FRACTION`` of train (at least 1 input), drawn with a fixed seed."""
    n = len(y)
    if n < 2:
        raise ConfigError("val: None holds out part of train, which has fewer than 2 inputs; "
                          "give val = (x, y)")
    order = np.random.default_rng(0).permutation(n)
    k = max(1, round(VAL_FRACTION * n))
    va, tr = np.sort(order[:k]), np.sort(order[k:])
    return ((x[tr], y[tr], {a: v[tr] for a, v in attrs.items()}),
            (x[va], y[va], {a: v[va] for a, v in attrs.items()}))


def _part(x: np.ndarray, y: np.ndarray, attrs: dict[str, np.ndarray]) -> Part:
    xt, yt = torch.as_tensor(x), torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64))
    if xt.dtype == torch.uint8 and xt.ndim == 4:  # images: the fast on-device path
        return Part(y=yt, x=xt, attributes=attrs)
    return Part(y=yt, dataset=torch.utils.data.TensorDataset(xt.float(), yt), attributes=attrs)


def _fingerprint(*arrays: ArrayLike) -> str:
    """The data fingerprint of a custom study: the one array digest, over dtypes and shapes too.
    Object arrays (text labels from pandas) are digested as text: their bytes are pointers,
    which differ between processes (a resumed study would not find its runs)."""
    as_given = (np.asarray(a) for a in arrays)
    return digest(*(a.astype(str) if a.dtype == object else a for a in as_given))[:16]


@dataclass(frozen=True)
class _UserModel:
    """A caller's ``build(num_classes, input_shape) -> nn.Module`` as a registry factory.

    Picklable when ``build`` is (a module-level function or class), so that worker processes
    started by spawn can build it too.
    """

    build: Callable[..., nn.Module]
    name: str

    def __call__(self, num_classes: int, input_shape: tuple[int, ...],
                 members: int = 1) -> nn.Module:
        if members != 1:
            raise ConfigError(f"{self.name}: a custom model trains one member at a time")
        return self.build(num_classes, input_shape)


def _as_arch(model: str | Callable[..., nn.Module], name: str) -> str:
    if isinstance(model, str):
        return model
    register_model(name, _UserModel(model, name))
    return name


# the experiment's field paths as kdfair.study's parameters (longest first; others unchanged)
_STUDY_PARAMETERS = (("teacher.model.arch", "teacher"), ("student.model.arch", "student"),
                    ("teacher.train", "teacher_train"), ("student.train", "student_train"),
                    ("distill.temperatures", "temperatures"))


def _study_parameter(path: str) -> str:
    """The parameter of :func:`study` that sets the experiment field ``path``."""
    for field, parameter in _STUDY_PARAMETERS:
        if path == field or path.startswith(field + "."):
            return parameter + path[len(field):]
    return path


def study(
    name: str,
    train: Sequence[Any],
    val: Sequence[Any] | None,
    test: Sequence[Any],
    teacher: str | Callable[[int, tuple[int, ...]], nn.Module],
    student: str | Callable[[int, tuple[int, ...]], nn.Module],
    *,
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
    classes: Classes | None = None,
    attribute_groups: Mapping[str, Sequence[str]] | None = None,
    temperatures: Sequence[float] = (1, 2, 4, 8),
    seeds: Sequence[int] = (0, 1, 2),
    teacher_train: Mapping[str, Any] | None = None,
    student_train: Mapping[str, Any] | None = None,
    distill: Mapping[str, Any] | None = None,
    device: str = "auto",
    out: str | Path = "results",
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    reporter: Reporter | None = None,
    write_report: bool = True,
    progress: bool | None = None,
    tracking: str = "none",
) -> StudyStatus:
    """Run the whole study on your own arrays and models; same plan, store and report as YAML.
    ``tracking="tensorboard"``: every run's curves, validation DPD / EOD per epoch included,
    under ``<out>/<name>/tensorboard`` (``kdfair.tracking``).

    ``train``/``val``/``test`` are ``(x, y)`` or ``(x, y, {attribute: groups})``: uint8
    images [N, C, H, W] take the on-device path with augmentation; any other array is used as
    float features as given. ``val=None`` holds out ``VAL_FRACTION`` (10 %) of train, drawn
    with a fixed seed. ``teacher``/``student`` are registry names or factories
    ``f(num_classes, input_shape) -> nn.Module``.

    Checked before anything runs (``kdfair.inputs``): labels are class indices 0..C−1 or
    class names, every class labelled in train and test unless ``num_classes``/``class_names``
    say C; ``classes`` maps another coding (``{1: "good", 2: "bad"}``). Groups are codes or
    names matching ``attribute_groups``.

    The default recipe (``teacher_train``/``student_train`` unset: SGD, lr 0.1, cosine, 30
    epochs, batch 128) suits the image presets; on tabular features it can leave the teacher
    below the NDS (the report warns): set ``teacher_train``. Each epoch drops the last partial
    batch (a train set smaller than one batch is one batch).
    """
    given = {"train": _arrays(train, "train"), "test": _arrays(test, "test")}
    if val is None:
        given["train"], given["val"] = _held_out(*given["train"])
    else:
        given["val"] = _arrays(val, "val")
    ys, names = encode_labels({k: given[k][1] for k in ("train", "val", "test")},
                              classes=classes, class_names=class_names,
                              num_classes=num_classes, required=("train", "test"))
    codes, groups = encode_groups({k: v[2] for k, v in given.items() if v[2]},
                                  attribute_groups, names_param="attribute_groups")
    parts = {k: _part(given[k][0], ys[k], codes.get(k, {})) for k in ("train", "val", "test")}
    c = parts["train"].x.shape[1] if parts["train"].in_memory else 1
    data = SplitData(
        name=name, num_classes=len(names), class_names=names,
        fingerprint=_fingerprint(*(given[k][i] for k, i in (("train", 0), ("train", 1),
                                                            ("val", 0), ("test", 0),
                                                            ("test", 1))),
                                 *([ys["train"], ys["test"]] if classes is not None else [])),
        attribute_groups=groups, **_normalisation(parts["train"].in_memory, c, mean, std),
        **parts,
    )
    dataset_name = f"custom-{name}"
    register_dataset(dataset_name, lambda cfg, cache: data)
    no_aug = {} if data.in_memory else {"augment": "none"}
    try:
        exp = _study_experiment(name, dataset_name, teacher, student, temperatures, seeds,
                                teacher_train, student_train, distill, device, no_aug,
                                tracking)
    except ConfigError as err:
        if not err.problems:
            raise
        raise ConfigError.listing(f"invalid arguments of kdfair.study({name!r}, …):",
                                  [(_study_parameter(p), what) for p, what in err.problems]
                                  ) from None
    status = run(exp, out=out, data=data, reporter=reporter, write_report=write_report,
                 progress=progress)
    from kdfair.models.registry import get_factory, is_builtin

    archs = {exp.teacher.model.arch, exp.student.model.arch}  # custom ones: for load_model
    record_factories(results_dir(exp, out), {a: get_factory(a) for a in archs
                                             if not is_builtin(a)})
    return status


def _normalisation(images: bool, channels: int, mean: Sequence[float] | None,
                   std: Sequence[float] | None) -> dict[str, tuple[float, ...]]:
    """SplitData's mean/std: uint8 images are normalised with them (0.5 per channel unless
    given); features are used as given, so nothing is recorded for them."""
    if not images:
        return {"mean": (), "std": ()}
    return {"mean": tuple(mean or (0.5,) * channels), "std": tuple(std or (0.5,) * channels)}


def _study_experiment(name: str, dataset_name: str, teacher: Any, student: Any,
                      temperatures: Sequence[float], seeds: Sequence[int],
                      teacher_train: Mapping[str, Any] | None,
                      student_train: Mapping[str, Any] | None,
                      distill: Mapping[str, Any] | None, device: str,
                      no_aug: dict[str, str], tracking: str = "none") -> Experiment:
    return load_experiment({
        "name": name,
        "dataset": {"name": dataset_name},
        "teacher": {"model": {"arch": _as_arch(teacher, f"custom-{name}-teacher")},
                    "train": {**no_aug, **(teacher_train or {})}},
        "student": {"model": {"arch": _as_arch(student, f"custom-{name}-student")},
                    "train": {**no_aug, **(student_train or {})}},
        "distill": {"temperatures": list(temperatures), **(distill or {})},
        "seeds": list(seeds), "device": device, "tracking": tracking,
        "analysis": {"tests": len(seeds) >= 2},
    })
