"""Plan a study into RunSpecs, group them into bundles, and execute what the store lacks."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from kdfair import tracking
from kdfair.config import Experiment, RoleConfig
from kdfair.data.base import SplitData
from kdfair.data.registry import load_dataset
from kdfair.errors import DatasetError, StoreError
from kdfair.method_options import TEACHER_FREE
from kdfair.paths import cache_dir
from kdfair.spec import RunSpec
from kdfair.store import RunStore
from kdfair.train.device import resolve_device
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
        method = None if m.name == "kd" else m.name  # kd runs keep the ids they always had
        for t in d.temperatures:
            for s in exp.seeds:
                teacher = teachers[s if d.teacher_policy == "paired" and not given else t_seeds[0]]
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


def test_features(data: SplitData, max_side: int = 16) -> np.ndarray:
    """Test inputs in the input-similarity space: pixels in [0, 1], at most 16×16, flattened."""
    if data.test_features is not None:
        return np.asarray(data.test_features, dtype=np.float32)
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
    return {"dataset": data.name, "fingerprint": data.fingerprint,
            "num_classes": data.num_classes, "class_names": list(data.class_names),
            "n_test": len(data.test), "attributes": dict(data.attribute_groups),
            "notes": list(data.notes)}


@dataclass
class StudyStatus:
    done: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def check_store(store: RunStore, specs: list[RunSpec]) -> None:
    """Refuse to mix: every stored run must belong to the current plan."""
    planned = {s.run_id for s in specs}
    stale = sorted(store.done_ids() - planned)
    if stale:
        raise StoreError(
            f"{store.root} holds {len(stale)} finished run(s) from a different configuration of "
            f"this experiment (e.g. {stale[0]}); their specs no longer match the experiment file. "
            "Write to a new directory (--out), or move the old one aside, so that results are "
            "never mixed."
        )


def load_data(exp: Experiment, data_root: Path | None = None) -> SplitData:
    cfg = exp.dataset
    if data_root is not None:  # the command line overrides the experiment file
        cfg = cfg.model_copy(update={"root": Path(data_root)})
    try:
        return load_dataset(cfg, cache_dir())
    except FileNotFoundError as err:
        raise DatasetError(f"dataset {cfg.name!r}: {err}") from None


def prepare(exp: Experiment, out: Path, data: SplitData) -> tuple[RunStore, list[RunSpec]]:
    """Plan the study, check the store holds nothing stale, write the per-experiment files."""
    specs = plan(exp, data.fingerprint)
    store = RunStore(out)
    if (store.root / "experiment.json").exists():
        check_store(store, specs)
    store.init(exp.model_dump(mode="json"))
    store.write_plan([s.run_id for s in specs])
    if not store.has_data_files(data.fingerprint):  # a resumed study: the test set is unchanged
        store.write_data_files(data_info(data), data.test.attributes,
                               np.arange(len(data.test)), test_features(data))
    return store, specs


def phases(store: RunStore, specs: list[RunSpec]) -> list[list[list[RunSpec]]]:
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
    store = RunStore(out)
    device = resolve_device(exp.device)
    teachers: dict[str, tuple[torch.nn.Module, RunSpec]] = {}
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
            t_spec = RunSpec.from_json(store.load_spec(t))  # type: ignore[arg-type]
            teachers[t] = (_load_teacher(store, t_spec, data, device), t_spec)  # type: ignore
        model, t_spec = teachers[t]  # type: ignore[index]
        jobs.append(RunJob(s, teacher=model, teacher_spec=t_spec))
    if jobs:
        log.info("bundle %s: %d run(s) to train on %s", jobs[0].spec.arch, len(jobs), device)

    def save(job: RunJob, result: TrainedRun | Exception) -> None:
        if isinstance(result, Exception):
            store.record_failure(job.spec, f"{type(result).__name__}: {result}")
            state = "failed"
        else:
            keep = job.spec.role == "teacher"
            store.save_run(job.spec, result.metrics, result.logits, data.test.y.numpy(),
                           np.arange(len(data.test)),
                           weights=result.model.state_dict() if keep else None)
            tracking.record_run(exp, out, job.spec.run_id, result.metrics)
            state = "done"
        if on_run:
            on_run(job.spec, state)

    eng = exp.engine
    train_bundle(jobs, data, device, save, reporter, grouped=eng.grouped,
                 max_group=eng.max_group, compile=eng.compile)


def teacher_finished(store: RunStore, spec: RunSpec) -> bool:
    """Whether a run can train now: anything but a distilled student whose teacher did not
    finish — that student is recorded as failed, with the reason."""
    t = spec.teacher_run_id
    if spec.role != "ds" or t is None or store.is_done(t):
        return True
    store.record_failure(spec, f"its teacher run {t} did not finish")
    return False


def _given_weights(spec: RunSpec) -> dict[str, torch.Tensor] | None:
    ckpt = spec.model_options.get("checkpoint")
    if not ckpt:
        return None
    path = Path(ckpt)
    if not path.exists():
        raise DatasetError(f"teacher checkpoint {path} not found (model.checkpoint); give the "
                           "path of a .safetensors file")
    return load_file(str(path))


def _load_teacher(store: RunStore, spec: RunSpec, data: SplitData,
                  device: torch.device) -> torch.nn.Module:
    model = build_run_model(spec, data)
    model.load_state_dict(store.load_weights(spec.run_id))
    model.to(device).eval()
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def status(store: RunStore, run_ids: list[str]) -> StudyStatus:
    """Which of the runs ``run_ids`` (a plan's, in order) are done, failed (why) or missing."""
    done_ids, failed = store.done_ids(), store.failed()
    st = StudyStatus()
    for r in run_ids:
        if r in done_ids:
            st.done.append(r)
        elif r in failed:
            st.failed[r] = failed[r].get("error", "")
        else:
            st.missing.append(r)
    return st
