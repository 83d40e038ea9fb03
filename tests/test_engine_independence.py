"""Conclusions that do not depend on the engine: a small study trained banked in bf16 and alone in
fp32 reaches the same conclusions up to seed noise (benchmarks/gpu_check.py's ``independence``
and ``agree``, which the GPU check runs on CUDA at a larger size)."""

import copy
import functools

import pytest
import torch

from kdfair.store import open_store
from tests.test_grouped import _gpu_check

pytestmark = pytest.mark.usefixtures("one_thread")


def _conclusions(shift: float = 0.0) -> dict:
    """Hand-made conclusions: three seeds of accuracy at two temperatures."""
    acc = {"accuracy ds T=1": {"0": 80.0, "1": 82.0, "2": 81.0},
           "accuracy ds T=8": {"0": 70.0, "1": 73.0, "2": 71.0}}
    return {"vs_nds": {"T=1": {"verdict": "above", "mean_above": True},
                       "T=8": {"verdict": "overlap", "mean_above": False}},
            "trends": {"accuracy (all T)": {"rho": -0.9, "p": 0.01, "significant": True}},
            "counts": {"#SC relative T=1": 2, "#SC relative T=8": 4},
            "values": {k: {s: x + shift for s, x in v.items()} for k, v in acc.items()}}


def test_agree_passes_seed_noise_and_fails_a_reversal_an_engine_effect_and_counts():
    check = _gpu_check()
    a = _conclusions()
    noisy = copy.deepcopy(a)
    noisy["values"]["accuracy ds T=1"] = {"0": 81.5, "1": 80.0, "2": 82.5}
    noisy["vs_nds"]["T=1"]["verdict"] = "overlap"  # only just: the same side of the NDS
    noisy["trends"]["accuracy (all T)"] = {"rho": -0.7, "p": 0.08, "significant": False}
    noisy["counts"]["#SC relative T=8"] = 6  # 4 vs 6 of 10: p = 0.5, noise 2·sqrt(2.5) = 3.16
    ok = check.agree(a, noisy, num_classes=10)
    assert ok["ok"] and len(ok["within_noise"]) == 2
    assert ok["counts"]["#SC relative T=8"] == {"counts": [4, 6], "noise": 3.16, "ok": True}

    flipped = copy.deepcopy(a)
    flipped["vs_nds"]["T=1"] = {"verdict": "below", "mean_above": False}
    flipped["trends"]["accuracy (all T)"]["rho"] = 0.9
    bad = check.agree(a, flipped, num_classes=10)
    assert not bad["checks"]["nothing_reverses"] and bad["reversed"] == [
        "DS vs NDS at T=1: above / below", "trend accuracy (all T): rho -0.90 / +0.90"]

    shifted = check.agree(a, _conclusions(shift=-8.0), num_classes=10)  # bf16 costing 8 points
    assert not shifted["checks"]["no_engine_effect"]
    assert set(shifted["engine_effects"]) == {"accuracy ds T=1", "accuracy ds T=8"}

    counts = copy.deepcopy(a)
    counts["counts"]["#SC relative T=1"] = 6  # 2 vs 6: p = 0.4, noise 2·sqrt(2.4) = 3.10
    far = check.agree(a, counts, num_classes=10)
    assert not far["checks"]["counts"] and not far["counts"]["#SC relative T=1"]["ok"]


ADAM = {"optimizer": "adam", "lr": 0.002, "weight_decay": 0.0, "epochs": 30, "batch_size": 64,
        "augment": "none"}
STUDY = {"name": "indep",
         "dataset": {"name": "trifeature", "size": 16, "images_per_combination": 1,
                     "test_images_per_combination": 2, "test_fraction": 0.4,
                     "val_fraction": 0.1, "seed": 0},
         "teacher": {"model": {"arch": "resnet8"},
                     "train": {"lr": 0.05, "epochs": 30, "batch_size": 64,
                               "augment": "crop_flip", "crop_padding": 2}},
         "student": {"model": {"arch": "lenet5"}, "train": ADAM},
         "distill": {"temperatures": [1, 4, 20], "alpha": 0.8, "t2_scaling": True},
         "seeds": [0, 1, 2], "device": "cpu"}


@pytest.mark.slow
def test_a_study_banked_in_bf16_concludes_what_it_does_alone_in_fp32(tmp_path, monkeypatch):
    """The data-scarce Trifeature regime, reduced (16 px, ResNet-8 teacher, 3 seeds, T = 1, 4,
    20): once with the students banked as one network of grouped convolutions in bf16, once each
    run alone in fp32; nothing reverses, no engine effect on any run-level value, #SC / #TC within
    their seed noise."""
    from kdfair.train import engine

    monkeypatch.setenv("KDFAIR_CACHE", str(tmp_path / "cache"))
    # grouped convolutions, as on CUDA (on a CPU a bank is otherwise plain models side by side)
    monkeypatch.setattr(engine, "train_group",
                        functools.partial(engine.train_group, bank_kind="grouped"))
    check = _gpu_check()
    out = check.independence(STUDY, tmp_path)
    banked = open_store(tmp_path / "banked-bf16" / "indep").runs
    alone = open_store(tmp_path / "alone-fp32" / "indep").runs
    assert {r.metrics["precision"] for r in banked} == {"bf16"}
    assert {r.metrics.get("group_size") for r in banked if r.role != "teacher"} == {12}
    assert {r.metrics["precision"] for r in alone} == {"fp32"}
    assert {r.metrics.get("group_size") for r in alone} == {None}
    assert out["ok"], out
    assert out["values_tested"] >= 45  # accuracy, group and counterfactual measures
    for found in out["conclusions"].values():  # a study with something to conclude
        assert found["trends"]["accuracy (all T)"]["significant"]
        assert found["trends"]["accuracy (all T)"]["rho"] < 0
    assert torch.get_num_threads() == 1
