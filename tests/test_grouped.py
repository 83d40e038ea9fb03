"""Bundle invariance: a member of a grouped bank trains exactly as the same run alone."""

import numpy as np
import pytest
import torch

from kdfair.api import _part
from kdfair.data.base import SplitData
from kdfair.spec import RunSpec
from kdfair.train.engine import RunJob, _Batches, _Silent, build_run_model, train_run
from kdfair.train.grouped import can_group, member_losses, train_group
from kdfair.train.loss import kd_loss
from tests.toy import toy_split


@pytest.fixture(scope="module")
def data():
    parts = {k: _part(toy_split(n, s), k) for k, n, s in (("train", 96, 0), ("val", 16, 1),
                                                          ("test", 32, 2))}
    return SplitData(name="toy", num_classes=4, class_names=list("abcd"), fingerprint="x",
                     **parts)


def _spec(role, seed, t=None, augment="crop_flip", arch="lenet5"):
    train = {"epochs": 2, "batch_size": 16, "lr": 0.05, "augment": augment, "crop_padding": 2}
    kw = dict(temperature=t, alpha=0.8, t2_scaling=True) if role == "ds" else {}
    return RunSpec(experiment="g", role=role, arch=arch, seed=seed, train=train,
                   dataset={}, data_fingerprint="x", **kw)


def _teacher(data):
    torch.manual_seed(0)
    t = build_run_model(_spec("teacher", 0, arch="resnet8"), data).eval()
    for p in t.parameters():
        p.requires_grad_(False)
    return t


@pytest.mark.parametrize("augment,bank", [("crop_flip", "grouped"), ("none", "grouped"),
                                          ("crop_flip", "list")])
def test_each_member_matches_the_run_trained_alone(data, augment, bank):
    dev = torch.device("cpu")
    parts = {k: _Batches(getattr(data, k), data, dev) for k in ("train", "val", "test")}
    teacher = _teacher(data)
    jobs = [RunJob(_spec("nds", 1, augment=augment)),
            RunJob(_spec("ds", 1, 2.0, augment), teacher=teacher),
            RunJob(_spec("ds", 2, 6.0, augment), teacher=teacher),
            RunJob(_spec("nds", 2, augment=augment))]
    assert can_group(jobs, data)
    tables = {}
    if augment == "none":
        from kdfair.train.engine import teacher_table

        tables[id(teacher)] = teacher_table(teacher, parts["train"], dev)
    grouped = train_group(jobs, data, dev, parts, _Silent(), tables, bank_kind=bank)
    for job, res in zip(jobs, grouped, strict=True):
        alone = train_run(job, data, dev, parts, _Silent(), tables.get(id(job.teacher)))
        np.testing.assert_allclose(res.logits, alone.logits, atol=2e-4, rtol=1e-4)
        for k, v in alone.model.state_dict().items():
            torch.testing.assert_close(res.model.state_dict()[k], v, atol=2e-5, rtol=1e-4)
        assert res.metrics["test_acc"] == alone.metrics["test_acc"]
        assert res.history[-1]["loss"] == pytest.approx(alone.history[-1]["loss"], rel=1e-4)


def test_paired_teachers_run_as_one_bank_with_the_same_logits(data):
    """Two teachers (paired policy), banked: same training as with one forward per teacher."""
    dev = torch.device("cpu")
    parts = {k: _Batches(getattr(data, k), data, dev) for k in ("train", "val", "test")}
    t_specs = [_spec("teacher", s, arch="resnet8") for s in (1, 2)]
    teachers = []
    for sp in t_specs:
        t = build_run_model(sp, data).eval()
        teachers.append(t.requires_grad_(False))
    jobs = [RunJob(_spec("ds", s, t), teacher=teachers[i], teacher_spec=t_specs[i])
            for i, s in enumerate((1, 2)) for t in (2.0, 4.0)]
    from kdfair.train.grouped import teacher_bank

    assert teacher_bank(jobs, teachers, [(0, 0), (1, 1)], data, dev) is not None
    banked = train_group(jobs, data, dev, parts, _Silent(), {}, bank_kind="grouped")
    plain = [RunJob(j.spec, teacher=j.teacher) for j in jobs]  # no specs: one pass per teacher
    alone = train_group(plain, data, dev, parts, _Silent(), {}, bank_kind="grouped")
    for a, b in zip(banked, alone, strict=True):
        np.testing.assert_allclose(a.logits, b.logits, atol=2e-4, rtol=1e-4)


def test_member_losses_equal_kd_loss_per_member():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(8, 3, 5, generator=g), torch.randn(8, 3, 5, generator=g)
    y = torch.randint(0, 5, (8, 3), generator=g)
    temps, alphas = torch.tensor([1.0, 3.0, 1.0]), torch.tensor([0.8, 0.5, 0.0])
    scales = temps**2
    got = member_losses(s, y, t, temps, alphas, scales, 0.0)
    for m in range(3):
        ref = kd_loss(s[:, m], t[:, m], y[:, m], float(temps[m]), float(alphas[m]), True)
        assert torch.isclose(got[m], ref, atol=1e-6)


def test_only_runs_of_one_architecture_and_recipe_group(data):
    from kdfair.train.grouped import bankable

    assert not can_group([RunJob(_spec("nds", 0)), RunJob(_spec("nds", 1, arch="resnet8"))], data)
    assert not can_group([RunJob(_spec("nds", 0)), RunJob(_spec("nds", 1, augment="none"))], data)
    assert bankable("lenet5", data, {}) and bankable("resnet8", data, {})


def test_groups_that_do_not_fit_are_split_and_max_group_is_respected(data, monkeypatch, caplog):
    """A group that runs out of memory is retried in halves; every run still completes."""
    from kdfair.train import engine, grouped

    dev = torch.device("cpu")
    teacher = _teacher(data)
    jobs = [RunJob(_spec("ds", s, t), teacher=teacher) for s in (1, 2) for t in (2.0, 4.0, 8.0)]
    sizes = []
    real = grouped.train_group

    def small_device(group, *args, **kw):
        sizes.append(len(group))
        if len(group) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(group, *args, **kw)

    monkeypatch.setattr(grouped, "train_group", small_device)
    done = []
    with caplog.at_level("WARNING", logger="kdfair"):
        engine.train_bundle(jobs, data, dev, lambda j, r: done.append((j, r)), grouped=True,
                            max_group=3)
    assert sizes == [3, 2, 3, 2]  # max_group 3; each 3 splits into 2 (grouped) + 1 (alone)
    assert sorted(j.spec.run_id for j, _ in done) == sorted(j.spec.run_id for j in jobs)
    assert not any(isinstance(r, Exception) for _, r in done)
    assert "do not fit on cpu together; training them in groups of 2" in caplog.text
