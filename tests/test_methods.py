"""Distillation methods: each formula against a hand computation in NumPy, the methods in one
study through the bank engine (each member equal to the same run alone), and their errors."""

import hashlib
import json
from dataclasses import asdict

import numpy as np
import pytest
import torch

from kdfair.api import _part
from kdfair.config import experiment_from_dict
from kdfair.data.base import SplitData
from kdfair.errors import ConfigError
from kdfair.spec import RunSpec
from kdfair.train.batches import Batches
from kdfair.train.engine import RunJob, Silent, build_run_model, train_group
from kdfair.train.methods import (
    CrossEntropy,
    DecoupledKD,
    FitNet,
    LogitStandardKD,
    MemberStep,
    objective_for,
)
from tests.toy import toy_split

G = np.random.default_rng(0)
S, T_, Y = G.normal(size=(6, 5)) * 3, G.normal(size=(6, 5)) * 3, G.integers(0, 5, 6)


def _step(s=S, t=T_, y=Y, epoch=0.0, **kw):
    return MemberStep(torch.tensor(s, dtype=torch.float32), torch.tensor(y),
                      None if t is None else torch.tensor(t, dtype=torch.float32), epoch, **kw)


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _ce(s, y, eps=0.0):
    logp = np.log(_softmax(s))
    k = s.shape[1]
    return float(np.mean([-(1 - eps) * logp[i, y[i]] - eps / k * logp[i].sum()
                          for i in range(len(y))]))


def _kl(p, q):
    return float(np.mean((p * (np.log(p) - np.log(q))).sum(-1)))


def test_label_smoothing_control_is_smoothed_cross_entropy():
    got = CrossEntropy(0.1)(_step(t=None))
    assert got.item() == pytest.approx(_ce(S, Y, 0.1), rel=1e-5)


def test_lskd_is_kd_on_z_scored_logits():
    def z(a):
        return (a - a.mean(1, keepdims=True)) / (a.std(1, ddof=1, keepdims=True) + 1e-7)

    T, alpha = 3.0, 0.7
    want = alpha * T * T * _kl(_softmax(z(T_) / T), _softmax(z(S) / T)) + (1 - alpha) * _ce(S, Y)
    assert LogitStandardKD(T, alpha)(_step()).item() == pytest.approx(want, rel=1e-5)
    # standardised logits make the loss blind to a shift and a scale of the teacher's logits
    moved = LogitStandardKD(T, alpha)(_step(t=5 * T_ + 2)).item()
    assert moved == pytest.approx(want, rel=1e-4)


def test_dkd_decouples_target_and_non_target_terms():
    T, a, b = 4.0, 1.0, 8.0
    ps, pt = _softmax(S / T), _softmax(T_ / T)
    tckd = nckd = 0.0
    for i, y in enumerate(Y):
        bs, bt = np.array([ps[i, y], 1 - ps[i, y]]), np.array([pt[i, y], 1 - pt[i, y]])
        tckd += (bt * np.log(bt / bs)).sum() / len(Y)
        qs, qt = _softmax(np.delete(S[i], y) / T), _softmax(np.delete(T_[i], y) / T)
        nckd += (qt * np.log(qt / qs)).sum() / len(Y)
    full = _ce(S, Y) + T * T * (a * tckd + b * nckd)
    assert DecoupledKD(T, a, b)(_step()).item() == pytest.approx(full, rel=1e-5)
    half = _ce(S, Y) + 0.5 * T * T * (a * tckd + b * nckd)  # warm-up: half way after 5 of 10
    assert DecoupledKD(T, a, b, warmup_epochs=10)(_step(epoch=5.0)).item() == pytest.approx(
        half, rel=1e-5)


def test_fitnet_hint_through_a_learned_1x1_regressor():
    torch.manual_seed(0)
    student = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Flatten(),
                                  torch.nn.LazyLinear(5))
    teacher = torch.nn.Sequential(torch.nn.Conv2d(3, 6, 3, padding=1, stride=2))
    x = torch.randn(2, 3, 8, 8)
    student(x)
    obj = FitNet("0", "0", weight=3.0)
    obj.setup(student, teacher, x)
    w = obj.regressor.weight.detach().numpy()[:, :, 0, 0]  # [6, 4]
    f_s, f_t = np.random.default_rng(1).normal(size=(2, 4, 8, 8)), np.random.default_rng(2)\
        .normal(size=(2, 6, 4, 4))
    pooled = f_s.reshape(2, 4, 4, 2, 4, 2).mean((3, 5))  # to the teacher's 4 × 4
    mapped = np.einsum("oc,bchw->bohw", w, pooled)
    want = _ce(S[:2], Y[:2]) + 3.0 * float(((mapped - f_t) ** 2).mean())
    got = obj(_step(S[:2], T_[:2], Y[:2], features=torch.tensor(f_s, dtype=torch.float32),
                    teacher_features=torch.tensor(f_t, dtype=torch.float32)))
    assert got.item() == pytest.approx(want, rel=1e-5)
    with pytest.raises(ConfigError, match="has no layer 'conv9'.*close names"):
        FitNet("conv9", "0").setup(student, teacher, x)


def test_runs_made_before_methods_keep_their_ids():
    spec = RunSpec(experiment="e", role="ds", arch="lenet5", seed=1, train={}, dataset={},
                   data_fingerprint="x", temperature=4.0, alpha=0.8, t2_scaling=True)
    old = {k: v for k, v in asdict(spec).items() if k not in ("method", "method_options")}
    canon = json.dumps(old, sort_keys=True, separators=(",", ":"), default=str)
    assert spec.run_id == f"ds-T4-s1-{hashlib.sha256(canon.encode()).hexdigest()[:8]}"
    assert RunSpec.from_json({"run_id": spec.run_id, **old}).method_name == "kd"
    dkd = RunSpec(**{**old, "method": "dkd", "method_options": {"beta": 4.0}})
    assert dkd.prefix == "ds-dkd-T4-s1" and dkd.run_id != spec.run_id


EXP = {"name": "m", "dataset": {"name": "digits"}, "teacher": {"model": {"arch": "resnet8"}},
       "student": {"model": {"arch": "lenet5"}}, "seeds": [0, 1],
       "distill": {"temperatures": [2, 4]}}


def test_methods_multiply_the_ds_grid_and_ls_is_one_control_per_seed():
    from kdfair.runner import plan

    exp = experiment_from_dict({**EXP, "distill": {"temperatures": [2, 4], "methods": [
        "kd", {"name": "dkd", "beta": 4}, "lskd", "ls"]}})
    specs = plan(exp, "fp")
    prefixes = sorted(s.prefix for s in specs)
    assert len(specs) == 2 + 2 + 3 * 2 * 2 + 2
    assert "ds-T2-s0" in prefixes and "ds-dkd-T4-s1" in prefixes and "nds-ls-s0" in prefixes
    dkd = next(s for s in specs if s.method == "dkd")
    assert dkd.method_options == {"beta": 4.0}
    assert objective_for(dkd, 0.0).beta == 4.0


@pytest.mark.parametrize("methods,message", [
    (["dkdd"], "unknown distillation method 'dkdd' \\(did you mean dkd"),
    ([{"name": "dkd", "gamma": 1}], "distill.methods.dkd.gamma"),
    ([{"name": "fitnet"}], "student_layer"),
    (["kd", "kd"], "methods must be distinct"),
])
def test_bad_methods_name_the_field(methods, message):
    with pytest.raises(ConfigError, match=message):
        experiment_from_dict({**EXP, "distill": {"methods": methods}})


@pytest.fixture(scope="module")
def data():
    parts = {k: _part(*toy_split(n, s)) for k, n, s in (("train", 96, 0), ("val", 16, 1),
                                                         ("test", 32, 2))}
    return SplitData(name="toy", num_classes=4, class_names=list("abcd"), fingerprint="x",
                     **parts)


def _spec(seed, method=None, options=None, role="ds", t=4.0):
    train = {"epochs": 2, "batch_size": 16, "lr": 0.05, "augment": "crop_flip", "crop_padding": 2}
    kw = dict(temperature=t, alpha=0.8, t2_scaling=True) if role == "ds" else {}
    return RunSpec(experiment="m", role=role, arch="lenet5", seed=seed, train=train, dataset={},
                   data_fingerprint="x", method=method, method_options=options or {}, **kw)


@pytest.mark.parametrize("bank", ["list", "grouped"])
def test_every_method_in_a_bank_matches_the_run_alone(data, bank):
    """Bundle invariance per method: kd, dkd, lskd, fitnet and the ls control side by side."""
    torch.manual_seed(0)
    t_spec = RunSpec(experiment="m", role="teacher", arch="resnet8", seed=0, train={},
                     dataset={}, data_fingerprint="x")
    teacher = build_run_model(t_spec, data).eval().requires_grad_(False)
    fit = {"student_layer": "conv2", "teacher_layer": "blocks", "weight": 10.0}
    jobs = [RunJob(_spec(1), teacher=teacher),
            RunJob(_spec(1, "dkd", {"warmup_epochs": 1.0}), teacher=teacher),
            RunJob(_spec(2, "lskd", t=2.0), teacher=teacher),
            RunJob(_spec(2, "fitnet", fit), teacher=teacher),
            RunJob(_spec(1, "ls", {"epsilon": 0.2}, role="nds"))]
    dev = torch.device("cpu")
    parts = {k: Batches(getattr(data, k), data, dev) for k in ("train", "val", "test")}
    banked = train_group(jobs, data, dev, parts, Silent(), {}, bank_kind=bank)
    logits = []
    for job, res in zip(jobs, banked, strict=True):
        assert not isinstance(res, Exception), res
        (alone,) = train_group([job], data, dev, parts, Silent(), {})
        if bank == "list":  # plain models side by side: identical, not merely close
            assert np.array_equal(res.logits, alone.logits), job.spec.prefix
        else:
            np.testing.assert_allclose(res.logits, alone.logits, atol=2e-4, rtol=1e-4)
        logits.append(res.logits)
    # the methods do differ: no two members end with the same outputs
    assert all(not np.allclose(a, b) for i, a in enumerate(logits) for b in logits[i + 1:])
