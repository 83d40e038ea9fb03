"""Plan a study into RunSpecs, group them into bundles, and execute what the store lacks."""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from kdfair import tracking
from kdfair.config import Experiment, RoleConfig
from kdfair.data.base import SplitData
from kdfair.data.checks import check_split
from kdfair.data.registry import load_dataset
from kdfair.errors import SETTING, ConfigError, DatasetError, StoreError
from kdfair.export import stored_model
from kdfair.method_options import TEACHER_FREE
from kdfair.overrides import differences
from kdfair.paths import cache_dir
from kdfair.spec import RunSpec, stored_method
from kdfair.store import ResultsDir
from kdfair.store.checkpoint import check_fits, load_checkpoint
from kdfair.train.device import prepare_module, resolve_device
from kdfair.train.engine import Reporter, RunJob, TrainedRun, build_run_model, train_bundle

log = logging.getLogger("kdfair")


def _model_options(role: RoleConfig) -> dict:
    m = role.model
    opts = dict(m.options)
    if m.weights:
        opts.update(weights=m.weights, download=m.download)
    elif m.download:
        opts["download"] = True
    if m.checkpoint:
        opts["checkpoint"] = str(m.checkpoint)
    return opts


def teacher_is_given(exp: Experiment) -> bool:
    return bool(exp.teacher.model.weights or exp.teacher.model.checkpoint)


def teacher_seed(seed: int, teacher_seeds: list[int], policy: str) -> int:
    """The seed of the teacher a DS of ``seed`` distils from: its own seed's under the
    ``paired`` policy, else the first teacher's (``single``, or one given teacher). Under
    ``paired`` with several teachers none of which has the DS's seed (an audit whose seeds do
    not pair), no teacher is *the* one: refused rather than guessed."""
    if policy == "paired" and seed in teacher_seeds:
        return seed
    if policy != "paired" or len(teacher_seeds) == 1:
        return teacher_seeds[0]
    raise ConfigError(
        f"a DS of seed {seed} has no teacher of seed {seed} (teacher seeds: "
        f"{', '.join(map(str, teacher_seeds))}); teacher_policy paired pairs each DS with the "
        f"teacher of its own seed. Give the teachers under the DS's seeds, or set {SETTING} "
        "to single (every DS distilled from the first teacher)",
        setting="distill.teacher_policy")


def plan(exp: Experiment, data_fingerprint: str) -> list[RunSpec]:
    """Every run of the study: teachers, then NDS, then each method's students (DS at each
    temperature, or a teacher-free control), each per seed."""
    dataset = exp.dataset.model_dump(mode="json", exclude={"root", "download"})
    common = dict(experiment=exp.name, dataset=dataset, data_fingerprint=data_fingerprint)
    given = teacher_is_given(exp)
    t_seeds = exp.seeds[:1] if given else exp.seeds
    teachers = {
        s: RunSpec(role="teacher", arch=exp.teacher.model.arch, seed=s, given=given,
                   train=exp.teacher.train.model_dump(mode="json"),
                   model_options=_model_options(exp.teacher), **common)
        for s in t_seeds
    }
    student = dict(arch=exp.student.model.arch, train=exp.student.train.model_dump(mode="json"),
                   model_options=_model_options(exp.student), **common)
    specs = list(teachers.values())
    specs += [RunSpec(role="nds", seed=s, **student) for s in exp.seeds]
    d = exp.distill
    for m in d.methods:
        if m.name in TEACHER_FREE:  # a control: a student of its own, one per seed
            specs += [RunSpec(role="nds", seed=s, method=m.name, method_options=m.options,
                              **student) for s in exp.seeds]
            continue
        method = stored_method(m.name)
        for t in d.temperatures:
            for s in exp.seeds:
                teacher = teachers[teacher_seed(s, list(t_seeds), d.teacher_policy)]
                specs.append(RunSpec(role="ds", seed=s, temperature=t, alpha=d.alpha,
                                     t2_scaling=d.t2_scaling, teacher_run_id=teacher.run_id,
                                     method=method, method_options=m.options, **student))
    return specs


def bundles(specs: list[RunSpec]) -> list[list[RunSpec]]:
    """Teachers first (they must exist before anyone distils from them), then one bundle per
    student architecture: runs that share data and architecture train together."""
    out: dict[tuple[int, str], list[RunSpec]] = {}
    for s in specs:
        out.setdefault((0 if s.role == "teacher" else 1, s.arch), []).append(s)
    return [out[k] for k in sorted(out)]


def test_features(data: SplitData, max_side: int = 16) -> np.ndarray | None:
    """Test inputs in the input-similarity space: pixels in [0, 1], at most 16×16, flattened;
    None for a test set given without inputs (an audit without features)."""
    if data.test_features is not None:
        return np.asarray(data.test_features, dtype=np.float32)
    if data.test.x is None and data.test.dataset is None:
        return None
    chunks = []
    if data.test.in_memory:
        it = (data.test.x[i : i + 1024].float() / 255 for i in range(0, len(data.test), 1024))
    else:
        loader = torch.utils.data.DataLoader(data.test.dataset, batch_size=256)
        it = (xb for xb, _ in loader)
    for xb in it:
        if xb.ndim == 4:  # images: average-pool to at most max_side × max_side
            xb = F.adaptive_avg_pool2d(xb, min(max_side, xb.shape[-1]))
        chunks.append(xb.flatten(1).numpy())
    return np.concatenate(chunks).astype(np.float32)


def data_info(data: SplitData) -> dict:
    """data.json: what the analysis needs of the test set, and what rebuilding a stored model
    needs (input shape, normalisation)."""
    return {"dataset": data.name, "fingerprint": data.fingerprint,
            "num_classes": data.num_classes, "class_names": list(data.class_names),
            "n_test": len(data.test), "attributes": dict(data.attribute_groups),
            "input_shape": list(data.input_shape), "mean": list(data.mean),
            "std": list(data.std), "notes": list(data.notes),
            "counterfactuals": dict(data.counterfactual_notes)}


@dataclass
class StudyStatus:
    """Where each planned run stands; ``repaired``: damaged runs moved to damaged/ (and why)."""

    done: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    damaged: dict[str, str] = field(default_factory=dict)
    repaired: dict[str, str] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return not (self.missing or self.failed or self.damaged)


SHOWN_DIFFERENCES = 12  # differing fields a "different configuration" error lists


def check_store(store: ResultsDir, specs: list[RunSpec],
                experiment: dict[str, Any] | None = None) -> None:
    """Refuse to mix: every stored run must belong to the current plan (a study's or an
    audit's: a run id hashes the settings, the data's fingerprint and an audit's predictions).
    ``experiment``: the one now (as experiment.json holds it), so the refusal can list the
    fields that differ from the stored one (``path: old → new``)."""
    planned = {s.run_id for s in specs}
    stale = sorted(store.done_ids() - planned)
    if stale:
        why, listing = _what_differs(store, experiment)
        raise StoreError(
            f"{store.root} holds {len(stale)} finished run(s) from a different configuration of "
            f"this experiment (e.g. {stale[0]}): {why}. Write to a new directory ({SETTING}), or "
            "move the old one aside, so that results are never mixed." + listing, setting="out"
        )


def _what_differs(store: ResultsDir, experiment: dict[str, Any] | None) -> tuple[str, str]:
    """(why the runs are stale, the fields that differ between the stored experiment and
    ``experiment`` as lines ``path: old → new``, "" when none do or either is unknown)."""
    vague = "other settings, other data or, for an audit, other predictions than now"
    if experiment is None:
        return vague, ""
    try:
        old = store.experiment()
    except StoreError:
        return vague, ""
    diff = [d for d in differences(old, experiment) if d[0] != "name"]
    if not diff:
        return ("the same settings as now, so other data or, for an audit, other predictions "
                "than now"), ""
    lines = [f"\n  {path}: {a} → {b}" for path, a, b in diff[:SHOWN_DIFFERENCES]]
    more = len(diff) - SHOWN_DIFFERENCES
    return (f"other settings ({len(diff)} listed below)",
            "\nThese settings differ (stored → now):" + "".join(lines)
            + (f"\n  … and {more} more" if more > 0 else ""))


def load_data(exp: Experiment, data_root: Path | None = None) -> SplitData:
    cfg = exp.dataset
    if data_root is not None:  # the command line overrides the experiment file
        cfg = cfg.model_copy(update={"root": Path(data_root)})
    try:
        data = load_dataset(cfg, cache_dir())
    except FileNotFoundError as err:
        raise DatasetError(f"dataset {cfg.name!r}: {err}") from None
    check_split(data, f"dataset {cfg.name!r}")
    return data


def prepare(exp: Experiment, out: Path, data: SplitData,
            repaired: dict[str, str] | None = None) -> tuple[ResultsDir, list[RunSpec]]:
    """Plan the study, move damaged runs to damaged/, check the store holds nothing stale,
    write the per-experiment files. ``repaired`` receives the moved runs (run id -> why)."""
    specs = plan(exp, data.fingerprint)
    resolve_device(exp.device)  # refused before anything is written
    for s in {s.arch: s for s in specs if "weights" not in s.model_options}.values():
        try:  # so is a model or option that does not fit the data
            build_run_model(s, data)
        except (ValueError, TypeError) as err:
            raise ConfigError(f"{s.role if s.role == 'teacher' else 'student'}.model "
                              f"({s.arch}): {err}; change the model or its options") from None
    for s in specs:  # a given checkpoint that cannot load would fail the run every time
        if s.model_options.get("checkpoint"):
            check_fits(Path(s.model_options["checkpoint"]), _given_weights(s) or {},
                       build_run_model(s, data), s.arch)
    return write_store(exp, out, specs, data, repaired), specs


def write_store(exp: Experiment, out: Path, specs: list[RunSpec], data: SplitData,
                repaired: dict[str, str] | None = None) -> ResultsDir:
    """The store side of :func:`prepare`, which `kdfair audit` shares: move damaged runs to
    damaged/, refuse a store holding runs of another plan, write experiment.json, plan.json and
    the test-set files (data.json last). ``repaired`` receives the moved runs (run id -> why)."""
    store = ResultsDir(out)
    if (store.root / "experiment.json").exists():
        moved = store.repair()
        if repaired is not None:
            repaired.update(moved)
        check_store(store, specs, exp.model_dump(mode="json"))
    store.init(exp.model_dump(mode="json"))
    store.write_plan([s.run_id for s in specs])
    # a resumed study keeps them: the test set is unchanged (stores of an earlier release lack
    # the input shape, which rebuilding a stored model needs: written again)
    if not store.has_data_files(data.fingerprint,
                                needs=("input_shape", "counterfactuals", "files")):
        store.write_data_files(data_info(data), data.test.attributes,
                               np.arange(len(data.test)), test_features(data),
                               {a: p.attributes[a] for a, p in data.counterfactuals.items()})
    return store


def phases(store: ResultsDir, specs: list[RunSpec]) -> list[list[list[RunSpec]]]:
    """What is left to train, as phases of bundles: teachers, then students.

    Every bundle of a phase can run at the same time, on any worker; a phase starts only when
    the one before it has ended, as students distil from finished teachers.
    """
    done = store.done_ids()
    out: list[list[list[RunSpec]]] = [[], []]
    for bundle in bundles(specs):
        todo = [s for s in bundle if s.run_id not in done]
        if todo:
            out[0 if bundle[0].role == "teacher" else 1].append(todo)
    return [p for p in out if p]


def train_runs(exp: Experiment, out: Path, specs: list[RunSpec], data: SplitData | None = None,
               data_root: Path | None = None, reporter: Reporter | None = None,
               on_run: Callable[[RunSpec, str], None] | None = None) -> None:
    """Train runs of a study (one bundle) into its store; skips those already done.

    Self-contained — loads the data and the teachers from the store — so that a worker process
    or a cluster job can call it with nothing but the experiment and the specs.
    """
    data = data if data is not None else load_data(exp, data_root)
    store = ResultsDir(out)
    device = resolve_device(exp.device)
    teachers: dict[str, tuple[torch.nn.Module, RunSpec, str | None]] = {}
    jobs = []
    for s in (s for s in specs if not store.is_done(s.run_id)):
        if s.role != "ds":
            jobs.append(RunJob(s, init_weights=_given_weights(s)))
            continue
        t = s.teacher_run_id
        if not teacher_finished(store, s):
            if on_run:
                on_run(s, "failed")
            continue
        if t not in teachers:
            t_spec = store.load_spec(t)  # type: ignore[arg-type]
            teachers[t] = (_load_teacher(store, t_spec, data, device), t_spec,  # type: ignore
                           store.weights_sha256(t))  # type: ignore[arg-type]
        model, t_spec, _ = teachers[t]  # type: ignore[index]
        jobs.append(RunJob(s, teacher=model, teacher_spec=t_spec))
    if jobs:
        log.info("bundle %s: %d run(s) to train on %s", jobs[0].spec.arch, len(jobs), device)
    eng = exp.engine
    deferred = _AfterSave(reporter)

    def save(job: RunJob, result: TrainedRun | Exception) -> None:
        if isinstance(result, Exception):
            store.record_failure(job.spec, f"{type(result).__name__}: {result}")
            state = "failed"
        else:
            keep = job.spec.role == "teacher" or exp.store.keep_weights == "all"
            metrics = {**result.metrics, "threads": torch.get_num_threads(),
                       "device_type": device.type}
            if job.spec.teacher_run_id in teachers:
                metrics["teacher_sha256"] = teachers[job.spec.teacher_run_id][2]
            store.save_run(job.spec, metrics, result.logits, data.test.y.numpy(),
                           np.arange(len(data.test)),
                           weights=result.model.state_dict() if keep else None,
                           logits_dtype=eng.logits_dtype,
                           counterfactual_logits=result.counterfactual_logits)
            tracking.record_run(exp, out, job.spec.run_id, result.metrics)
            state = "done"
        deferred.finished(job.spec.run_id, state)  # "X: done" only once X is saved
        if on_run:
            on_run(job.spec, state)

    with _threads(eng.threads):
        train_bundle(jobs, data, device, save, deferred, grouped=eng.grouped,
                     max_group=eng.max_group, compile=eng.compile, precision=eng.precision,
                     deterministic=eng.deterministic)


class _AfterSave:
    """A reporter whose ``finish`` waits for the runner's save (the engine reports first)."""

    def __init__(self, reporter: Reporter | None):
        self.reporter = reporter

    def start(self, run_id: str, epochs: int) -> None:
        if self.reporter:
            self.reporter.start(run_id, epochs)

    def epoch(self, run_id: str, epoch: int, loss: float, images_per_s: float) -> None:
        if self.reporter:
            self.reporter.epoch(run_id, epoch, loss, images_per_s)

    def finish(self, run_id: str, status: str) -> None:
        """Ignored: :meth:`finished` reports once the run is saved."""

    def finished(self, run_id: str, status: str) -> None:
        if self.reporter:
            self.reporter.finish(run_id, status)


@contextmanager
def _threads(n: int):
    """``torch.set_num_threads(n)`` for the block; n = 0: the process' setting (which executors
    share out among their workers), at most the cores this process may run on."""
    from kdfair.config import available_cores

    before = torch.get_num_threads()
    torch.set_num_threads(n or min(before, available_cores()))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def teacher_finished(store: ResultsDir, spec: RunSpec) -> bool:
    """Whether a run can train now: anything but a distilled student whose teacher did not
    finish — that student is recorded as failed, with the reason."""
    t = spec.teacher_run_id
    if spec.role != "ds" or t is None:
        return True
    chk = store.check(t)
    if chk.state == "done":
        return True
    why = "it was not trained" if chk.state == "missing" else f"it is damaged: {chk.reason}"
    store.record_failure(spec, f"its teacher run {t} did not finish ({why}); run `kdfair run` "
                               "again: it trains the teacher first, then this run")
    return False


def _given_weights(spec: RunSpec) -> dict[str, torch.Tensor] | None:
    ckpt = spec.model_options.get("checkpoint")
    return load_checkpoint(Path(ckpt)) if ckpt else None


def _load_teacher(store: ResultsDir, spec: RunSpec, data: SplitData,
                  device: torch.device) -> torch.nn.Module:
    model = stored_model(store, spec, data.num_classes, data.input_shape)
    return prepare_module(model, device).requires_grad_(False)


def status(store: ResultsDir, run_ids: list[str]) -> StudyStatus:
    """Where each of the runs ``run_ids`` (a plan's, in order) stands."""
    checks, failed = store.checks(), store.failed()
    st = StudyStatus()
    for r in run_ids:
        c = checks.get(r)
        if c is not None and c.state == "done":
            st.done.append(r)
        elif c is not None and c.state == "damaged":
            st.damaged[r] = c.reason
        elif r in failed:
            st.failed[r] = failed[r].get("error", "")
        else:
            st.missing.append(r)
    return st
