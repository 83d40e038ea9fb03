"""Bundle invariance: a member of a bank trains exactly as the same run alone (a bank of one)."""

import numpy as np
import pytest
import torch

from kdfair.data.base import Part, SplitData
from kdfair.spec import RunSpec
from kdfair.train.batches import Batches
from kdfair.train.engine import (
    RunJob,
    Silent,
    build_run_model,
    can_group,
    teacher_table,
    train_group,
)
from tests.toy import toy_split


@pytest.fixture(scope="module")
def data():
    parts = {k: toy_part(n, s) for k, n, s in (("train", 96, 0), ("val", 16, 1), ("test", 32, 2))}
    return SplitData(name="toy", num_classes=4, class_names=list("abcd"), fingerprint="x",
                     **parts)


def toy_part(n, seed):
    """tests.toy's images as a data part (on the device path: uint8 images)."""
    x, y, attrs = toy_split(n, seed)
    return Part(y=torch.as_tensor(y), x=torch.as_tensor(x), attributes=attrs)


def _parts(data):
    dev = torch.device("cpu")
    return {k: Batches(getattr(data, k), data, dev) for k in ("train", "val", "test")}


def _spec(role, seed, t=None, augment="crop_flip", arch="lenet5"):
    train = {"epochs": 2, "batch_size": 16, "lr": 0.05, "augment": augment, "crop_padding": 2}
    kw = dict(temperature=t, alpha=0.8, t2_scaling=True) if role == "ds" else {}
    return RunSpec(experiment="g", role=role, arch=arch, seed=seed, train=train,
                   dataset={}, data_fingerprint="x", **kw)


def _teacher(data):
    torch.manual_seed(0)
    t = build_run_model(_spec("teacher", 0, arch="resnet8"), data).eval()
    return t.requires_grad_(False)


def _alone(job, data, parts, tables, **kw):
    (res,) = train_group([job], data, torch.device("cpu"), parts, Silent(), tables, **kw)
    assert not isinstance(res, Exception), res
    return res


def _assert_same_run(res, alone, atol=2e-4):
    np.testing.assert_allclose(res.logits, alone.logits, atol=atol, rtol=1e-4)
    for k, v in alone.model.state_dict().items():
        torch.testing.assert_close(res.model.state_dict()[k], v, atol=atol / 10, rtol=1e-4)
    assert res.metrics["test_acc"] == alone.metrics["test_acc"]
    for a, b in zip(res.history, alone.history, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)
        assert a["val_acc"] == pytest.approx(b["val_acc"], abs=1e-6)


@pytest.mark.parametrize("augment,bank", [("crop_flip", "grouped"), ("none", "grouped"),
                                          ("crop_flip", "list")])
def test_each_member_matches_the_run_trained_alone(data, augment, bank):
    parts = _parts(data)
    teacher = _teacher(data)
    jobs = [RunJob(_spec("nds", 1, augment=augment)),
            RunJob(_spec("ds", 1, 2.0, augment), teacher=teacher),
            RunJob(_spec("ds", 2, 6.0, augment), teacher=teacher),
            RunJob(_spec("nds", 2, augment=augment))]
    assert can_group(jobs, data)
    tables = {id(teacher): teacher_table(teacher, parts["train"], torch.device("cpu"))} \
        if augment == "none" else {}
    grouped = train_group(jobs, data, torch.device("cpu"), parts, Silent(), tables,
                          bank_kind=bank)
    for job, res in zip(jobs, grouped, strict=True):
        _assert_same_run(res, _alone(job, data, parts, tables))
        assert res.metrics["group_size"] == 4 and len(res.history) == 2


def test_a_list_bank_member_is_bitwise_the_run_alone(data):
    """On a CPU members run as plain models side by side: not merely close, identical."""
    parts = _parts(data)
    teacher = _teacher(data)
    jobs = [RunJob(_spec("ds", 1, 4.0), teacher=teacher), RunJob(_spec("nds", 1))]
    grouped = train_group(jobs, data, torch.device("cpu"), parts, Silent(), {}, bank_kind="list")
    for job, res in zip(jobs, grouped, strict=True):
        assert np.array_equal(res.logits, _alone(job, data, parts, {}).logits)


def test_paired_teachers_run_as_one_bank_with_the_same_logits(data):
    """Two teachers (paired policy), banked: same training as with one forward per teacher."""
    from kdfair.train.teachers import TeacherLogits

    parts = _parts(data)
    t_specs = [_spec("teacher", s, arch="resnet8") for s in (1, 2)]
    teachers = [build_run_model(sp, data).eval().requires_grad_(False) for sp in t_specs]
    jobs = [RunJob(_spec("ds", s, t), teacher=teachers[i], teacher_spec=t_specs[i])
            for i, s in enumerate((1, 2)) for t in (2.0, 4.0)]
    from kdfair.train import engine

    made = []
    real = engine._teachers

    def spy(*a, **kw):
        made.append(real(*a, **kw))
        return made[-1]

    engine._teachers = spy
    try:
        banked = train_group(jobs, data, torch.device("cpu"), parts, Silent(), {},
                             bank_kind="grouped")
    finally:
        engine._teachers = real
    assert isinstance(made[0], TeacherLogits) and made[0].banked is not None
    plain = [RunJob(j.spec, teacher=j.teacher) for j in jobs]  # no specs: one pass per teacher
    alone = train_group(plain, data, torch.device("cpu"), parts, Silent(), {},
                        bank_kind="grouped")
    for a, b in zip(banked, alone, strict=True):
        np.testing.assert_allclose(a.logits, b.logits, atol=2e-4, rtol=1e-4)


def test_bf16_autocast_and_compile_paths_run_on_the_cpu(data):
    """The CUDA-only paths (bf16 autocast, torch.compile of the bank) exercised on the CPU:
    a bf16 member stays close to the fp32 run; a compiled bank reproduces the eager one."""
    parts = _parts(data)
    teacher = _teacher(data)
    job = RunJob(_spec("ds", 1, 4.0), teacher=teacher)
    fp32 = _alone(job, data, parts, {})
    bf16 = _alone(job, data, parts, {}, precision="bf16")
    assert np.isfinite(bf16.logits).all()
    assert abs(bf16.metrics["test_acc"] - fp32.metrics["test_acc"]) <= 0.25
    assert np.corrcoef(bf16.logits.ravel(), fp32.logits.ravel())[0, 1] > 0.9


def test_only_runs_of_one_architecture_and_recipe_group(data):
    from kdfair.models.registry import bankable

    assert not can_group([RunJob(_spec("nds", 0)), RunJob(_spec("nds", 1, arch="resnet8"))], data)
    assert not can_group([RunJob(_spec("nds", 0)), RunJob(_spec("nds", 1, augment="none"))], data)
    assert bankable("lenet5", 4, (3, 16, 16)) and bankable("resnet8", 4, (3, 16, 16))


def test_groups_that_do_not_fit_are_split_and_max_group_is_respected(data, monkeypatch, caplog):
    """A group that runs out of memory is retried in halves; every run still completes."""
    from kdfair.train import engine

    teacher = _teacher(data)
    jobs = [RunJob(_spec("ds", s, t), teacher=teacher) for s in (1, 2) for t in (2.0, 4.0, 8.0)]
    sizes = []
    real = engine.train_group

    def small_device(group, *args, **kw):
        sizes.append(len(group))
        if len(group) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(group, *args, **kw)

    monkeypatch.setattr(engine, "train_group", small_device)
    done = []
    with caplog.at_level("WARNING", logger="kdfair"):
        engine.train_bundle(jobs, data, torch.device("cpu"), lambda j, r: done.append((j, r)),
                            grouped=True, max_group=3)
    assert sizes == [3, 2, 1, 3, 2, 1]  # max_group 3; each 3 splits into 2 + a bank of one
    assert sorted(j.spec.run_id for j, _ in done) == sorted(j.spec.run_id for j in jobs)
    assert not any(isinstance(r, Exception) for _, r in done)
    assert "do not fit on cpu together; training them in groups of 2" in caplog.text


@pytest.mark.slow
def test_a_compiled_bank_trains_as_the_eager_one(data):
    """engine.compile (meant for CUDA) on the CPU: the compiled grouped bank's members end where
    the eager bank's do."""
    parts = _parts(data)
    teacher = _teacher(data)
    jobs = [RunJob(_spec("ds", 1, 4.0), teacher=teacher), RunJob(_spec("nds", 2))]
    dev = torch.device("cpu")
    eager = train_group(jobs, data, dev, parts, Silent(), {}, bank_kind="grouped")
    compiled = train_group(jobs, data, dev, parts, Silent(), {}, compile=True,
                           bank_kind="grouped")
    for a, b in zip(eager, compiled, strict=True):
        np.testing.assert_allclose(a.logits, b.logits, atol=2e-3, rtol=1e-3)


def _gpu_check():
    """benchmarks/gpu_check.py as a module: its checks run on a CPU at a small size too."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
    spec = importlib.util.spec_from_file_location("gpu_check", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_grouped_bank_differs_from_the_run_alone_no_more_than_training_chaos(one_thread):
    """gpu_check's invariance on a CPU at a small size (ResNet-8 with BatchNorm, grouped
    convolutions, a trained teacher): after one step in fp32 each member equals the run alone to
    1e-4; after two epochs grouped-vs-alone is within the chaos of the run alone (alone twice is
    bitwise equal on a CPU; alone vs its initial weights moved by one ulp is not)."""
    check = _gpu_check()
    out = check.invariance(torch.device("cpu"), arch="resnet8", teacher_arch="resnet8", px=16,
                           n_train=256, epochs=2, precisions=("fp32",), compile=False)
    assert out["ok"], out
    assert all(r["max_abs_logit_diff"] <= 1e-4 for r in out["fp32_one_step"])
    for row in out["fp32"]:
        assert row["alone_twice"]["max_abs_logit_diff"] == 0.0  # deterministic on a CPU
        assert row["chaos"]["max_abs_logit_diff"] > 0.0  # one ulp at step 0 is not lost
        assert row["disagree"] <= row["chaos"]["disagree"] + check.MARGIN_DISAGREE


def test_the_chaos_check_fails_a_member_beyond_the_chaos_and_margins():
    """Hand-made results: the alone runs agree on 100 test inputs, the nudged one disagrees on
    1; a tested member disagreeing on 2 passes (1 % + the 2 % margin), on 5 it fails."""
    from types import SimpleNamespace

    check = _gpu_check()
    y = np.arange(100) % 4

    def result(flipped):
        logits = np.eye(4, dtype=np.float32)[y]
        logits[:flipped] = np.roll(logits[:flipped], 1, axis=1)
        return SimpleNamespace(logits=logits, metrics={"test_acc": 1 - flipped / 100})

    jobs = [RunJob(_spec("nds", 1))]
    alone, nudge = [result(0)], [result(1)]
    (near,) = check.within_chaos(jobs, [result(2)], alone, alone, [nudge])
    assert near["ok"] and near["chaos"]["disagree"] == 0.01 and near["disagree"] == 0.02
    (far,) = check.within_chaos(jobs, [result(5)], alone, alone, [nudge])
    assert not far["ok"] and far["disagree"] == 0.05 and far["acc_gap"] == pytest.approx(0.05)


def test_a_throughput_run_cut_by_its_time_limit_keeps_the_ratio_it_printed(monkeypatch):
    """gpu_check's throughput step: the benchmark prints its ratio before profiling; a run
    stopped by its time limit during the profile keeps that ratio and holds (the profile is
    marked incomplete); a benchmark that fails after printing a ratio fails the step."""
    import subprocess

    check = _gpu_check()

    def cut(cmd, **kw):
        raise subprocess.TimeoutExpired(cmd, kw["timeout"], output=b"grid: paper\nratio: 41.50\n",
                                        stderr=b"profiling")

    monkeypatch.setattr(check.subprocess, "run", cut)
    out = check.throughput(5)
    assert out["ratio"] == 41.5 and out["meets_goal"] and out["ok"]
    assert not out["profile_complete"] and out["profile"] is None
    assert out["returncode"] is None and out["stdout"].endswith("ratio: 41.50\n")
    assert out["stderr"].startswith("profiling") and "--throughput-timeout" in out["stderr"]
    monkeypatch.setattr(check.subprocess, "run", lambda cmd, **kw: subprocess.CompletedProcess(
        cmd, 1, stdout="ratio: 12.00\n", stderr="Traceback …"))
    out = check.throughput(5)
    assert out["ratio"] == 12.0 and not out["meets_goal"] and not out["ok"]


def test_a_failing_compiler_fails_its_row_and_keeps_the_eager_invariance(monkeypatch):
    """gpu_check's invariance: torch.compile raising (no Triton on the GPU machine, say) is
    recorded as the compile row's failure; the fp32 rows measured before it are kept."""
    check = _gpu_check()

    def no_compiler(*a, **kw):
        raise RuntimeError("no Triton")

    monkeypatch.setattr(torch, "compile", no_compiler)
    out = check.invariance(torch.device("cpu"), arch="lenet5", teacher_arch="lenet5", px=16,
                           n_train=128, epochs=1, precisions=("fp32",), compile=True)
    assert out["compile"] == [{"run": "torch.compile", "ok": False,
                               "error": "RuntimeError: no Triton"}]
    assert len(out["fp32"]) == 4 and len(out["fp32_one_step"]) == 4 and not out["ok"]
