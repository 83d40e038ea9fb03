"""kdfair.predict and the framework recipes (examples/recipes.py, shown in docs/recipes.md): each
recipe runs with tiny models and its audit holds exactly the logits the models give."""

import argparse
import inspect
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

import kdfair
from kdfair.errors import ConfigError
from kdfair.store.arrays import load_predictions

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
import recipes  # noqa: E402

N, K = 40, 3


def _data(shape=(3, 32, 32)):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, *shape, generator=g)
    y = torch.arange(N) % K
    sex = (torch.arange(N) // 2) % 2
    return x, y, {"sex": sex.numpy()}


def _loader(x, y, batch_size=16, shuffle=False):
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y),
                                       batch_size=batch_size, shuffle=shuffle)


def _checkpoints(write):
    """{"teacher": [..], "nds": [..], "ds": {4: [..]}}: 2 seeds each, ``write(role, seed)``."""
    return {"teacher": [write("teacher", s) for s in (0, 1)],
            "nds": [write("nds", s) for s in (0, 1)],
            "ds": {4: [write("ds", s) for s in (0, 1)]}}


def _stored(root):
    """(role, T, seed) -> logits of an audit's runs (in test order)."""
    out = {}
    for d in sorted((root / "runs").iterdir()):
        spec = json.loads((d / "spec.json").read_text())
        z = load_predictions(d)
        out[(spec["role"], spec["temperature"], spec["seed"])] = z["logits"][np.argsort(z["index"])]
    return out


def test_the_page_shows_the_recipes_as_they_are():
    page = (ROOT / "docs" / "recipes.md").read_text()
    for fn in (recipes.audit_models, recipes.load_torchdistill, recipes.load_mdistiller,
               recipes.hf_predictions):
        assert inspect.getsource(fn) in page, fn.__name__
    assert "docs/recipes.md" in (ROOT / "README.md").read_text()


def test_predict_is_ordered_eval_mode_without_grad_and_restores_the_mode():
    x, y, _ = _data((5,))
    model = nn.Sequential(nn.Linear(5, 8), nn.Dropout(0.5), nn.Linear(8, K)).train()
    logits, labels = kdfair.predict(model, _loader(x, y, batch_size=7))
    assert model.training  # restored
    model.eval()
    with torch.no_grad():
        expected = model(x).numpy()
    np.testing.assert_allclose(logits, expected, rtol=1e-6, atol=1e-6)  # dropout was off
    assert logits.dtype == np.float32 and labels.dtype == np.int64
    assert np.array_equal(labels, y.numpy())
    bare, none = kdfair.predict(model, [x[:10], x[10:]])  # inputs alone: no labels
    assert none is None and bare.shape == (N, K)
    with pytest.raises(ConfigError, match="shuffles \\(shuffle=True\\): predictions must "
                                          "follow the data set's order"):
        kdfair.predict(model, _loader(x, y, shuffle=True))
    class Words(nn.Module):
        def forward(self, x):
            return "no"

    with pytest.raises(ConfigError, match="the model returned str, not logits: return a "
                                          "tensor, a tuple with the logits first"):
        kdfair.predict(Words(), [x])
    with pytest.raises(ConfigError, match="model: expected a torch.nn.Module, got function"):
        kdfair.predict(lambda _: x, [x])


def test_torchdistill_checkpoints_are_audited_exactly(tmp_path):
    pytest.importorskip("torchdistill", reason="torchdistill is not installed "
                        "(pip install torchdistill)")
    from torchdistill.common.main_util import save_ckpt
    from torchdistill.models.registry import get_model

    x, y, groups = _data()
    models = {}

    def write(role, seed):
        torch.manual_seed(seed + 10 * len(models))
        model = get_model("resnet20", num_classes=K)
        path = tmp_path / f"{role}-s{seed}.pt"
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        save_ckpt(model, opt, None, 0.5, argparse.Namespace(config="kd.yaml"), str(path))
        models[(role, seed)] = model.eval()
        return str(path)

    ckpts = _checkpoints(write)
    where = recipes.audit_models(lambda p: recipes.load_torchdistill(p, "resnet20", K), ckpts,
                                 _loader(x, y), groups, {"sex": ["f", "m"]}, out=tmp_path,
                                 name="td")
    stored = _stored(where)
    with torch.no_grad():
        direct = models[("ds", 1)](x).numpy()
    np.testing.assert_allclose(stored[("ds", 4.0, 1)], direct, rtol=1e-5, atol=1e-5)
    assert len(stored) == 6 and (where / "report" / "report.md").exists()


class MdistillerLike(nn.Module):
    """An mdistiller model's shape: forward returns (logits, {"feats": …, "pooled_feat": …})."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 16), nn.ReLU())
        self.fc = nn.Linear(16, K)

    def forward(self, x):
        f = self.body(x)
        return self.fc(f), {"feats": [f], "pooled_feat": f}


def test_mdistiller_shaped_models_are_audited_exactly(tmp_path):
    x, y, groups = _data((3, 8, 8))
    models = {}

    def write(role, seed):
        torch.manual_seed(seed + 10 * len(models))
        model = MdistillerLike()
        path = tmp_path / f"{role}-s{seed}" / "student_best"
        path.parent.mkdir()
        torch.save({"model": model.state_dict(), "best_acc": 50.0, "epoch": 3}, path)
        models[(role, seed)] = model.eval()
        return path

    ckpts = _checkpoints(write)
    where = recipes.audit_models(lambda p: recipes.load_mdistiller(p, MdistillerLike), ckpts,
                                 _loader(x, y), groups, {"sex": ["f", "m"]}, out=tmp_path,
                                 name="md")
    with torch.no_grad():
        direct = models[("teacher", 0)](x)[0].numpy()
    np.testing.assert_allclose(_stored(where)[("teacher", None, 0)], direct, rtol=1e-6,
                               atol=1e-6)


def test_hugging_face_trainer_predictions_equal_trainer_predict(tmp_path):
    pytest.importorskip("transformers", reason="transformers is not installed "
                        "(pip install \"kdfair[text]\")")
    pytest.importorskip("accelerate", reason="a Trainer needs accelerate (pip install "
                        "accelerate)")
    from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

    g = torch.Generator().manual_seed(0)
    items = [{"input_ids": torch.randint(1, 30, (6,), generator=g),
              "attention_mask": torch.ones(6, dtype=torch.long), "labels": torch.tensor(i % 2)}
             for i in range(N)]
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(
        vocab_size=30, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=8, max_position_embeddings=16, num_labels=2))
    args = TrainingArguments(output_dir=str(tmp_path / "hf"), report_to=[], use_cpu=True,
                             per_device_eval_batch_size=7)
    trainer = Trainer(model=model, args=args)
    logits, labels = recipes.hf_predictions(trainer, items)
    reference = trainer.predict(items)
    np.testing.assert_allclose(logits, reference.predictions, rtol=1e-5, atol=1e-6)
    assert np.array_equal(labels, reference.label_ids)
    # the logits audit as any others
    sex = np.arange(N) % 2
    where = kdfair.audit(labels, teacher=[logits, logits], nds=[logits, logits],
                         ds={2: [logits, logits]}, groups={"sex": sex}, out=tmp_path,
                         name="hf", write_report=False)
    acc = kdfair.analyze(where)["accuracy"]["acc_mean"].iloc[0]
    assert acc == pytest.approx(100 * np.mean(logits.argmax(1) == labels))


def test_predict_refuses_random_and_weighted_samplers():
    """Any sampler that draws the inputs out of order is refused like shuffle=True: row i of
    the predictions must be input i (its label and groups)."""
    x, y, _ = _data((5,))
    model = nn.Linear(5, K)
    data = torch.utils.data.TensorDataset(x, y)
    for sampler in (torch.utils.data.SubsetRandomSampler(range(N)),
                    torch.utils.data.WeightedRandomSampler([1.0] * N, N),
                    torch.utils.data.DistributedSampler(data, num_replicas=1, rank=0)):
        with pytest.raises(ConfigError, match=r"shuffles \(shuffle=True\).* no random sampler "
                                              rf"\(it has a {type(sampler).__name__}\)"):
            kdfair.predict(model, torch.utils.data.DataLoader(data, sampler=sampler))
    ordered = torch.utils.data.DistributedSampler(data, num_replicas=1, rank=0, shuffle=False)
    logits, labels = kdfair.predict(model, torch.utils.data.DataLoader(data, sampler=ordered))
    assert np.array_equal(labels, y.numpy()) and logits.shape == (N, K)
