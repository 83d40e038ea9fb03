"""Every trained model is kept: a finished study's student comes back as a module that
reproduces its stored test logits exactly; export writes weights plus what rebuilding needs."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import kdfair
from kdfair.cli import app
from kdfair.config import experiment_from_dict
from kdfair.errors import StoreError
from kdfair.store.arrays import load_predictions

EXP = {"name": "keep", "dataset": {"name": "digits", "size": 16},
       "teacher": {"model": {"arch": "resnet8"}, "train": {"epochs": 1, "batch_size": 128}},
       "student": {"model": {"arch": "lenet5"}, "train": {"epochs": 1, "batch_size": 128}},
       "distill": {"temperatures": [4], "methods": ["kd", "dkd"]}, "seeds": [0, 1],
       "device": "cpu", "analysis": {"tests": False}}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    out = tmp_path_factory.mktemp("keep")
    exp = experiment_from_dict(EXP)
    torch.set_num_threads(1)
    kdfair.run(exp, out=out, progress=False, write_report=False)
    return exp, out / "keep"


def _run(root, prefix):
    return next(p.name for p in (root / "runs").iterdir() if p.name.startswith(prefix))


@pytest.mark.parametrize("prefix", ["ds-dkd-T4-s1", "nds-s0", "ds-T4-s0"])
def test_a_stored_student_reproduces_its_test_logits(study, prefix):
    from kdfair.runner import load_data
    from kdfair.train.batches import Batches
    from kdfair.train.engine import predict

    exp, root = study
    rid = _run(root, prefix)
    model = kdfair.load_model(root, rid)
    assert isinstance(model, torch.nn.Module) and not model.training
    data = load_data(exp)
    cpu = torch.device("cpu")
    logits = predict(model, Batches(data.test, data, cpu), cpu).numpy()
    assert np.array_equal(logits, load_predictions(root / "runs" / rid)["logits"])


def test_export_writes_the_weights_and_how_to_rebuild_them(study, tmp_path):
    from safetensors.torch import load_file

    from kdfair.models.registry import build_model

    _, root = study
    rid = _run(root, "ds-T4-s1")
    res = CliRunner().invoke(app, ["export", str(root), rid, "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    meta = json.loads((tmp_path / f"{rid}.json").read_text())
    assert meta["arch"] == "lenet5" and meta["input_shape"] == [1, 16, 16]
    assert meta["num_classes"] == 10 and len(meta["mean"]) == 1
    model = build_model(meta["arch"], meta["num_classes"], tuple(meta["input_shape"]),
                        **meta["model_options"])
    model.load_state_dict(load_file(str(tmp_path / f"{rid}.safetensors")))
    ref = kdfair.load_model(root, rid).state_dict()
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in ref.items())


def test_unknown_runs_and_students_without_weights_are_one_message(study, tmp_path):
    _, root = study
    with pytest.raises(StoreError, match="has no run 'ds-T4-s0-00000000'; runs like it: ds-T4-s0"):
        kdfair.load_model(root, "ds-T4-s0-00000000")
    teachers_only = experiment_from_dict({**EXP, "name": "lean", "seeds": [0],
                                          "analysis": {"tests": False},
                                          "store": {"keep_weights": "teachers"}})
    kdfair.run(teachers_only, out=tmp_path, progress=False, write_report=False)
    lean = tmp_path / "lean"
    assert (lean / "runs" / _run(lean, "teacher-s0") / "model.safetensors").exists()
    nds = _run(lean, "nds-s0")
    assert not (lean / "runs" / nds / "model.safetensors").exists()
    with pytest.raises(StoreError, match="no usable weights"):
        kdfair.load_model(lean, nds)


def test_a_store_of_an_earlier_release_says_how_to_record_the_input_shape(study, tmp_path):
    import shutil

    _, root = study
    old = tmp_path / "old"
    shutil.copytree(root, old)
    info = json.loads((old / "data.json").read_text())
    del info["input_shape"]
    (old / "data.json").write_text(json.dumps(info))
    with pytest.raises(StoreError, match="does not record the input shape.*`kdfair run`"):
        kdfair.load_model(old, _run(old, "nds-s0"))
