"""The public Python API: load an experiment, run it, analyse the store; or study your own data."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from kdfair import tracking
from kdfair.auditing import audit
from kdfair.config import Experiment, cpu_workers, engine_threads, experiment_from_dict
from kdfair.config import load_experiment as _load_file
from kdfair.data.base import Part, SplitData
from kdfair.data.registry import register_dataset
from kdfair.errors import ConfigError, KdfairError
from kdfair.executors import Executor, execute, local_executor
from kdfair.export import export_model, load_model
from kdfair.integrity import digest
from kdfair.models.registry import register_model
from kdfair.overrides import Overrides, override_experiment
from kdfair.progress import study_reporter, warn_if_threads_hurt
from kdfair.runner import StudyStatus
from kdfair.spec import RunSpec
from kdfair.train.device import resolve_device
from kdfair.train.engine import Reporter

__all__ = ["audit", "load_experiment", "run", "analyze", "report", "study", "results_dir",
           "load_model", "export_model"]


# how messages written for the command line read to a Python caller
API_WORDS = (
    ("Write to a new directory (--out)", "Write to a new directory (the `out` argument)"),
    ("choose another --out directory", "choose another `out` directory"),
    ("no longer match the experiment file", "no longer match the experiment"),
    ("(`--data-root DIR` on the command line)", "(the `data_root` argument)"),
    ("with --device cpu", "with device='cpu'"),
)
# the experiment's field paths as kdfair.study's parameters
STUDY_WORDS = (
    ("teacher.train.", "teacher_train."), ("student.train.", "student_train."),
    ("distill.temperatures:", "temperatures:"),
)


@contextlib.contextmanager
def api_errors(words: Sequence[tuple[str, str]] = API_WORDS):
    """Re-raise a KdfairError with its command-line wording (``--out``, field paths) replaced
    by the Python API's parameter names."""
    try:
        yield
    except KdfairError as err:
        msg = str(err)
        for old, new in words:
            msg = msg.replace(old, new)
        if msg == str(err):
            raise
        raise type(err)(msg) from None


def load_experiment(path: str | Path, overrides: Overrides | None = None) -> Experiment:
    """An experiment from a YAML file or a preset name, with optional ``overrides``:
    ``["distill.alpha=0.5", "seeds=[0,1,2]"]`` (values parsed as YAML) or
    ``{"distill.alpha": 0.5}``, validated like the file."""
    return override_experiment(_load_file(path), overrides or [], str(path), label="overrides")


def results_dir(exp: Experiment, out: str | Path = "results") -> Path:
    """Where an experiment's store lives: ``<out>/<experiment name>``."""
    return Path(out) / exp.name


def run(experiment: Experiment | str | Path, out: str | Path = "results", *,
        data_root: str | Path | None = None, overrides: Overrides | None = None,
        executor: Executor | None = None, progress: bool | None = None,
        reporter: Reporter | None = None,
        on_run: Callable[[RunSpec, str], None] | None = None,
        on_plan: Callable[[list[RunSpec], set[str]], None] | None = None,
        data: SplitData | None = None, write_report: bool = True,
        messages: str = "api") -> StudyStatus:
    """Run a study (an Experiment, a YAML path or a preset name) into ``<out>/<name>``.

    Finished runs already in the store are not trained again. ``overrides`` change fields
    first (see :func:`load_experiment`). ``executor``: where bundles train (default: this
    process, or one worker per GPU). ``progress``: None (default) shows a live view in a terminal
    or notebook and time-stamped lines (at most every 30 s) elsewhere; False is silent; a
    ``reporter`` given replaces it. ``on_run(spec, state)``: each run as it ends;
    ``on_plan(specs, done_ids)``: the plan, once, before training; ``data``: the loaded data
    set, if already in memory. Ends by writing the report unless ``write_report`` is false.
    ``messages="cli"`` keeps errors in command-line wording (``--out``); by default they name
    this function's arguments.
    """
    words = API_WORDS if messages == "api" else ()
    with api_errors(words):
        return _run(experiment, out, data_root, overrides, executor, progress, reporter, on_run,
                    on_plan, data, write_report)


def _run(experiment, out, data_root, overrides, executor, progress, reporter, on_run, on_plan,
         data, write_report) -> StudyStatus:
    if isinstance(experiment, Experiment):
        exp = override_experiment(experiment, overrides or [], "experiment", label="overrides")
    else:
        exp = load_experiment(experiment, overrides)
    where = results_dir(exp, out)
    root = Path(data_root) if data_root else None
    if tracking.enabled(exp):
        tracking.check_available()  # before anything trains
    own = study_reporter(progress) if reporter is None and executor is None else None
    rep = reporter or own

    def planned(specs: list[RunSpec], done: set[str]) -> None:
        if own is not None:
            own.plan(len(specs), len(done))
            if len(done) < len(specs) and resolve_device(exp.device).type == "cpu" \
                    and engine_threads(exp.engine, cpu_workers(exp.engine)) != 1:
                warn_if_threads_hurt(own)  # (one thread per run: nothing to warn about)
        if on_plan is not None:
            on_plan(specs, done)

    with own if own is not None else contextlib.nullcontext():
        st = execute(exp, where, executor or local_executor(exp, rep, on_run), data=data,
                     data_root=root, on_plan=planned)
    if tracking.enabled(exp) and where.is_dir():
        tracking.sync(where)  # runs trained before tracking was set
    if write_report:
        report(where)
    return st


def analyze(results: str | Path, options: Any = None) -> dict:
    """All tables of a results directory as numeric pandas DataFrames (percent for accuracy,
    DPD, EOD and disagreement; ``*_ci_low``/``*_ci_high``: 95 % bootstrap CIs over seeds).

    ``options``: an ``AnalysisConfig`` or a dict of its fields (e.g. ``{"pairing": "paired"}``);
    default: the store's experiment.json ``analysis`` section.
    """
    from kdfair.analysis.report import analyze as _analyze

    return _analyze(Path(results), _analysis_options(options))


def report(results: str | Path, options: Any = None):
    """Write report.md, report.html, the CSV tables and figures under ``<results>/report``
    (only the files it owns, listed in report/manifest.json); ``options`` as for analyze."""
    from kdfair.analysis.report import write_report

    return write_report(Path(results), _analysis_options(options))


def _analysis_options(options: Any):
    from pydantic import ValidationError

    from kdfair.config import AnalysisConfig
    from kdfair.options import format_errors

    if options is None or isinstance(options, AnalysisConfig):
        return options
    if isinstance(options, Mapping):
        try:
            return AnalysisConfig.model_validate(dict(options))
        except ValidationError as err:
            raise ConfigError(format_errors(err, AnalysisConfig, "invalid analysis options:",
                                            "options")) from None
    raise ConfigError(f"options must be an AnalysisConfig or a dict, got {type(options).__name__}")


# --- your own data and models --------------------------------------------------------------

ArrayLike = np.ndarray | torch.Tensor


def _part(split: Sequence[Any], name: str) -> Part:
    if len(split) not in (2, 3):
        raise ConfigError(f"{name}: give (x, y) or (x, y, {{attribute: groups}})")
    x, y = torch.as_tensor(np.asarray(split[0])), torch.as_tensor(np.asarray(split[1]))
    named = split[2] if len(split) == 3 else {}
    attrs = {k: np.asarray(v).astype(np.int64) for k, v in named.items()}
    if len(x) != len(y) or any(len(v) != len(y) for v in attrs.values()):
        raise ConfigError(f"{name}: x, y and every attribute need the same length")
    y = y.long()
    if x.dtype == torch.uint8 and x.ndim == 4:  # images: the fast on-device path
        return Part(y=y, x=x, attributes=attrs)
    return Part(y=y, dataset=torch.utils.data.TensorDataset(x.float(), y), attributes=attrs)


def _fingerprint(*arrays: ArrayLike) -> str:
    """The data fingerprint of a custom study: the one array digest, over dtypes and shapes too."""
    return digest(*(np.asarray(a) for a in arrays))[:16]


def _as_arch(model: str | Callable[..., nn.Module], name: str) -> str:
    if isinstance(model, str):
        return model

    def factory(num_classes: int, input_shape: tuple[int, ...], members: int = 1) -> nn.Module:
        if members != 1:
            raise ConfigError(f"{name}: a custom model trains one member at a time")
        return model(num_classes, input_shape)

    register_model(name, factory)
    return name


def study(
    name: str,
    train: Sequence[Any],
    val: Sequence[Any],
    test: Sequence[Any],
    teacher: str | Callable[[int, tuple[int, ...]], nn.Module],
    student: str | Callable[[int, tuple[int, ...]], nn.Module],
    *,
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
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
) -> StudyStatus:
    """Run the whole study on your own arrays and models; same plan, store and report as YAML.

    ``train``/``val``/``test`` are ``(x, y)`` or ``(x, y, {attribute: group codes})``: uint8
    images [N, C, H, W] take the on-device path with augmentation; any other array is used as
    float features as given. ``teacher``/``student`` are registry names or factories
    ``f(num_classes, input_shape) -> nn.Module``.
    """
    parts = {k: _part(v, k) for k, v in (("train", train), ("val", val), ("test", test))}
    k = int(num_classes or int(max(int(p.y.max()) for p in parts.values())) + 1)
    groups = {a: list(g) for a, g in (attribute_groups or {}).items()}
    for a in parts["test"].attributes:
        if a not in groups:
            n = int(parts["test"].attributes[a].max()) + 1
            groups[a] = [str(i) for i in range(n)]
    c = parts["train"].x.shape[1] if parts["train"].in_memory else 1
    data = SplitData(
        name=name, num_classes=k, class_names=list(class_names or [str(i) for i in range(k)]),
        fingerprint=_fingerprint(train[0], train[1], val[0], test[0], test[1]),
        attribute_groups=groups, mean=tuple(mean or (0.5,) * c), std=tuple(std or (0.5,) * c),
        **parts,
    )
    dataset_name = f"custom-{name}"
    register_dataset(dataset_name, lambda cfg, cache: data)
    no_aug = {} if data.in_memory else {"augment": "none"}
    with api_errors(STUDY_WORDS + ((f"invalid experiment study {name!r}:",
                                    f"invalid arguments of kdfair.study({name!r}, …):"),)):
        exp = _study_experiment(name, dataset_name, teacher, student, temperatures, seeds,
                                teacher_train, student_train, distill, device, no_aug)
    return run(exp, out=out, data=data, reporter=reporter, write_report=write_report,
               progress=progress)


def _study_experiment(name: str, dataset_name: str, teacher: Any, student: Any,
                      temperatures: Sequence[float], seeds: Sequence[int],
                      teacher_train: Mapping[str, Any] | None,
                      student_train: Mapping[str, Any] | None,
                      distill: Mapping[str, Any] | None, device: str,
                      no_aug: dict[str, str]) -> Experiment:
    return experiment_from_dict({
        "name": name,
        "dataset": {"name": dataset_name},
        "teacher": {"model": {"arch": _as_arch(teacher, f"custom-{name}-teacher")},
                    "train": {**no_aug, **(teacher_train or {})}},
        "student": {"model": {"arch": _as_arch(student, f"custom-{name}-student")},
                    "train": {**no_aug, **(student_train or {})}},
        "distill": {"temperatures": list(temperatures), **(distill or {})},
        "seeds": list(seeds), "device": device,
        "analysis": {"tests": len(seeds) >= 2},
    }, source=f"study {name!r}")
