"""HateXplain loader, text models and the text study end to end, on tiny fake files and models."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from kdfair.config import DatasetConfig, load_experiment
from kdfair.data import hatexplain as hx
from kdfair.data.catalog import loader_options
from kdfair.errors import ConfigError, DatasetError
from kdfair.models import text
from kdfair.models.registry import build_model
from kdfair.options import validate_options
from kdfair.store.arrays import load_predictions
from tests.fake_hatexplain import (
    all_texts,
    annotator,
    build_tiny_models,
    post,
    random_posts,
    write_hatexplain,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models (tests/conftest.py)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    """Tiny BERT / DistilBERT (+ tokenizer) trained on the vocabulary of every fake post."""
    posts, _ = random_posts(n_train=200, n_val=60, n_test=80)
    texts = all_texts(posts) + all_texts(HAND_POSTS) + ["women men"]
    return build_tiny_models(texts, tmp_path_factory.mktemp("models"))


def load(root: Path, tiny: dict[str, Path], **options):
    cfg = DatasetConfig(name="hatexplain", root=root, tokenizer=str(tiny["bert"]), **options)
    return hx.load(cfg, root / "cache")


# hand-made posts: (annotator labels, annotator targets) -> expected label / groups
def _anns(labels, targets):
    return [annotator(lab, tg, i) for i, (lab, tg) in enumerate(zip(labels, targets, strict=True))]


N, H, OF = "normal", "hatespeech", "offensive"
NONE = ["None"]
HAND = {
    # id: (labels, targets, binary label | None (dropped), three-class label, task-vote label)
    "1_twitter": ([H, H, N], [["Women"], ["Women"], NONE], 1, 2, 1),
    "2_twitter": ([OF, OF, H], [["Men", "African"], ["Men"], ["African"]], 1, 1, 1),
    "3_gab": ([H, OF, N], [["Asian"], ["Arab"], ["Hispanic"]], None, None, 1),
    "4_gab": ([N, N, OF], [["Men", "Women"], ["Women", "Men"], NONE], 0, 0, 0),
    "5_gab": ([N, N, H, OF], [["Arab"], ["Arab"], ["Arab"], NONE], None, None, None),
    "6_twitter": ([N, N, N], [NONE, NONE, NONE], 0, 0, 0),
    "7_twitter": ([OF, H, OF], [["Caucasian", "Women"], ["Caucasian"], ["Women", "Islam"]],
                  1, 1, 1),
    "8_gab": ([OF, OF, OF], [["Jewish"], ["Jewish"], NONE], 1, 1, 1),
}
# expected (gender, race) codes: Men 0, Women 1; African 0 Arab 1 Asian 2 Caucasian 3 Hispanic 4
HAND_GROUPS = {"1_twitter": (1, -1), "2_twitter": (0, 0), "3_gab": (-1, -1),
               "4_gab": (-1, -1), "5_gab": (-1, 1), "6_twitter": (-1, -1),
               "7_twitter": (1, 3), "8_gab": (-1, -1)}
HAND_POSTS = {pid: post(pid, f"post number {i} about women and men".split(), _anns(lab, tg))
              for i, (pid, (lab, tg, *_)) in enumerate(HAND.items())}


@pytest.fixture
def hand_root(tmp_path) -> Path:
    """Every hand-made post in test; a few random ones in train and val."""
    posts, div = random_posts(n_train=12, n_val=4, n_test=0, seed=1)
    posts.update(HAND_POSTS)
    div["test"] = list(HAND_POSTS)
    write_hatexplain(tmp_path / "data", posts, div)
    return tmp_path / "data"


# --- labels and groups --------------------------------------------------------------------------


def test_majority_labels_and_dropped_counts(hand_root, tiny):
    kept = [pid for pid, v in HAND.items() if v[2] is not None]
    data = load(hand_root, tiny)
    assert data.num_classes == 2 and data.class_names == ["normal", "toxic"]
    assert data.test.y.tolist() == [HAND[p][2] for p in kept]
    assert data.test.dataset.labels.tolist() == data.test.y.tolist()
    note = next(n for n in data.notes if "dropped" in n)
    assert "test 2 of 8" in note  # 3-way split and a 2-2 tie among four annotators
    # random_posts makes every 7th post label-less: ids 7 (train) and 14 (val of 4 after 12)
    assert "train 1 of 12" in note and "val 1 of 4" in note


def test_three_class_and_task_vote(hand_root, tiny):
    three = load(hand_root, tiny, task="three_class")
    assert three.class_names == ["normal", "offensive", "hatespeech"]
    assert three.test.y.tolist() == [v[3] for v in HAND.values() if v[3] is not None]
    by_task = load(hand_root, tiny, vote="task")
    assert by_task.test.y.tolist() == [v[4] for v in HAND.values() if v[4] is not None]
    assert "test 1 of 8" in next(n for n in by_task.notes if "dropped" in n)
    assert by_task.fingerprint != load(hand_root, tiny).fingerprint


def test_group_assignment_by_annotator_majority(hand_root, tiny):
    data = load(hand_root, tiny)
    kept = [pid for pid, v in HAND.items() if v[2] is not None]
    assert data.attribute_groups == {"gender": ["Men", "Women"],
                                     "race": ["African", "Arab", "Asian", "Caucasian", "Hispanic"]}
    assert data.test.attributes["gender"].tolist() == [HAND_GROUPS[p][0] for p in kept]
    assert data.test.attributes["race"].tolist() == [HAND_GROUPS[p][1] for p in kept]
    assert data.test.attributes["gender"].dtype == np.int64
    gender = next(n for n in data.notes if n.startswith("gender (test)"))
    # kept: 1 (Women), 2 (Men), 4 (Men and Women: several), 6 (none), 7 (Women), 8 (none)
    assert "Men 1, Women 2" in gender
    assert "2 post(s) naming no gender group and 1 for which a majority names several" in gender
    race = next(n for n in data.notes if n.startswith("race (test)"))
    assert "African 1, Arab 0, Asian 0, Caucasian 1, Hispanic 0" in race
    assert "4 post(s) naming no race group and 0" in race
    assert set(data.train.attributes) == {"gender", "race"}
    assert len(data.train.attributes["race"]) == len(data.train)


def test_custom_sensitive_attributes(hand_root, tiny):
    data = load(hand_root, tiny, sensitive={"religion": ["Islam", "Jewish"]})
    assert data.attribute_groups == {"religion": ["Islam", "Jewish"]}
    kept = [pid for pid, v in HAND.items() if v[2] is not None]
    assert data.test.attributes["religion"].tolist() == [
        1 if p == "8_gab" else -1 for p in kept]


def test_unit_functions():
    assert hx.majority(["a", "a", "b"]) == "a" and hx.majority(["a", "b", "c"]) is None
    assert hx.majority(["a", "a", "b", "b"]) is None and hx.majority([]) is None
    anns = _anns([H, H, N], [["Men", "Women"], ["men", "Women"], ["Women"]])
    assert hx.post_groups(anns, ("Men", "Women")) == [0, 1]  # case-insensitive, both majority
    assert hx.post_label(_anns([H, OF, N], [NONE] * 3), "toxic", "task") == 1
    assert hx.post_label(_anns([H, OF, N], [NONE] * 3), "toxic", "labels") is None


# --- tokens, features, errors --------------------------------------------------------------------


def test_tokens_dynamic_padding_and_truncation(hand_root, tiny):
    data = load(hand_root, tiny, max_length=8)
    ds = data.test.dataset
    assert len(ds) == len(data.test)
    x, y = ds[0]
    assert set(x) == {"input_ids", "attention_mask"} and len(x["input_ids"]) == 8
    assert isinstance(y, int)
    long = load(hand_root, tiny)
    items = [long.train.dataset[i] for i in range(4)]
    lengths = [len(x["input_ids"]) for x, _ in items]
    xb, yb = long.train.dataset.collate(items)
    assert xb["input_ids"].shape == (4, max(lengths)) and yb.dtype == torch.int64
    assert xb["attention_mask"].sum(1).tolist() == lengths
    pad = xb["input_ids"][xb["attention_mask"] == 0]
    assert (pad == long.train.dataset.pad_id).all()
    assert data.fingerprint != long.fingerprint


def test_similarity_features(tmp_path, tiny):
    posts, div = random_posts(n_train=60, n_val=6, n_test=30)
    write_hatexplain(tmp_path / "data", posts, div)
    data = load(tmp_path / "data", tiny, features_dim=8)
    f = data.test_features
    assert f.dtype == np.float32 and f.shape == (len(data.test), 8)
    assert np.allclose(np.linalg.norm(f, axis=1), 1, atol=1e-4)
    again = load(tmp_path / "data", tiny, features_dim=8)
    assert np.array_equal(f, again.test_features)  # seeded: the same space every time
    # a post is closer to a near-copy than to a post of the other label and community
    base = ["we", "love", "music", "and", "coffee", "today"]
    g = hx.similarity_features(all_texts(posts), [" ".join(base), " ".join(base + ["friends"]),
                                                  "stupid vermin muslims go back"], 8)
    assert np.linalg.norm(g[0] - g[1]) < np.linalg.norm(g[0] - g[2])


def test_missing_files_say_what_goes_where(tmp_path, monkeypatch):
    monkeypatch.setenv("KDFAIR_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(DatasetError) as e:
        hx.load(DatasetConfig(name="hatexplain"), tmp_path)
    msg = str(e.value)
    assert str(tmp_path / "nowhere" / "hatexplain") in msg
    assert "dataset.json" in msg and "post_id_divisions.json" in msg
    assert "https://github.com/hate-alert/HateXplain/tree/master/Data" in msg
    assert "KDFAIR_DATA" in msg and "dataset.root" in msg
    # the setting travels with the error: Python names `data_root`, the CLI its flag
    assert e.value.setting == "data_root" and "`data_root`" in msg
    assert "--data-root" in e.value.worded(lambda s: "--data-root")
    (tmp_path / "nowhere" / "hatexplain").mkdir(parents=True)
    (tmp_path / "nowhere" / "hatexplain" / "dataset.json").write_text("{}")
    with pytest.raises(DatasetError, match=r"post_id_divisions.json  <- missing"):
        hx.load(DatasetConfig(name="hatexplain"), tmp_path)


def test_corrupt_files(tmp_path, tiny):
    posts, div = random_posts(n_train=4, n_val=2, n_test=2)
    d = write_hatexplain(tmp_path / "data", posts, div)
    (d / "dataset.json").write_text("{not json")
    with pytest.raises(DatasetError, match="not valid JSON"):
        load(tmp_path / "data", tiny)
    write_hatexplain(tmp_path / "data", posts, {**div, "test": div["test"] + ["999_gab"]})
    with pytest.raises(DatasetError, match="lacks"):
        load(tmp_path / "data", tiny)
    write_hatexplain(tmp_path / "data", posts, {**div, "test": div["test"] + div["val"][:1]})
    with pytest.raises(DatasetError, match="both val and test"):
        load(tmp_path / "data", tiny)
    bad = json.loads(json.dumps(posts))
    next(iter(bad.values()))["annotators"][0]["label"] = "spam"
    write_hatexplain(tmp_path / "data", bad, div)
    with pytest.raises(DatasetError, match="spam"):
        load(tmp_path / "data", tiny)


def test_bad_options_name_the_field(hand_root, tiny):
    with pytest.raises(ConfigError, match=r"dataset\.task"):
        load(hand_root, tiny, task="binary")
    with pytest.raises(ConfigError, match=r"dataset\.max_lenght: unknown option"):
        load(hand_root, tiny, max_lenght=64)
    with pytest.raises(ConfigError, match=r"dataset\.sensitive"):
        load(hand_root, tiny, sensitive={"gender": ["Men"]})


def test_missing_tokenizer_is_a_config_error_naming_the_directory(hand_root, monkeypatch):
    cfg = DatasetConfig(name="hatexplain", root=hand_root, tokenizer="no-such-org/no-tokenizer")
    with pytest.raises(ConfigError) as e:
        hx.load(cfg, hand_root)
    msg = str(e.value)
    assert "dataset.tokenizer" in msg and "download: true" in msg and "DIR" in msg
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = cfg.model_copy(update={"download": True})
    with pytest.raises(ConfigError, match="HF_HUB_OFFLINE"):
        hx.load(cfg, hand_root)


# --- models ---------------------------------------------------------------------------------------


def _batch(tiny):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny["bert"]), local_files_only=True)
    enc = tok(["women love music", "stupid vermin go back now"], padding=True,
              return_tensors="pt")
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


@pytest.mark.parametrize("arch", ["bert", "distilbert"])
def test_models_deterministic_under_seed(tiny, arch):
    def make(seed):
        torch.manual_seed(seed)
        return build_model(arch, 3, (), pretrained=str(tiny[arch]))

    a, b, c = make(0), make(0), make(1)
    x = _batch(tiny)
    a.eval(), b.eval(), c.eval()
    assert a(x).shape == (2, 3)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    differs = [k for k in sa if not torch.equal(sa[k], sc[k])]
    assert differs and all("classifier" in k for k in differs)  # only the new head is random


def test_hf_arch_and_fine_tuned_weights(tiny, tmp_path):
    torch.manual_seed(0)
    m = build_model("hf", 2, (), pretrained=str(tiny["distilbert"]))
    tuned = tmp_path / "tuned"
    m.model.save_pretrained(str(tuned))
    torch.manual_seed(5)
    given = build_model("distilbert", 2, (), weights=str(tuned))
    assert all(torch.equal(v, given.state_dict()[k]) for k, v in m.state_dict().items())
    with pytest.raises(ConfigError, match="classifies into 2 classes; the data set has 3"):
        build_model("distilbert", 3, (), weights=str(tuned))
    with pytest.raises(ConfigError, match="not a fine-tuned sequence classifier"):
        build_model("bert", 2, (), weights=str(tiny["bert"]))
    with pytest.raises(ConfigError, match="needs `pretrained"):
        build_model("hf", 2, ())
    with pytest.raises(ConfigError, match="'distilbert' model, not 'bert'"):
        build_model("bert", 2, (), pretrained=str(tiny["distilbert"]))
    with pytest.raises(ConfigError, match="members=1"):
        build_model("bert", 2, (), members=4, pretrained=str(tiny["bert"]))
    with pytest.raises(ConfigError, match=r"model\.pretraind: unknown option"):
        build_model("bert", 2, (), pretraind="x")


def test_missing_model_says_which_directory(monkeypatch, tmp_path):
    with pytest.raises(ConfigError) as e:
        build_model("bert", 2, (), pretrained="no-such-org/no-such-bert")
    msg = str(e.value)
    assert "model.pretrained" in msg and "no-such-org/no-such-bert" in msg
    assert "pretrained: DIR" in msg and "download: true" in msg
    with pytest.raises(ConfigError, match="not a complete Hugging Face model directory"):
        build_model("bert", 2, (), pretrained=str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert text.local_only(True) and text.local_only(False)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    assert not text.local_only(True) and text.local_only(False)


def test_missing_transformers_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(ConfigError, match=r"kdfair\[text\]"):
        text.require_transformers()
    with pytest.raises(ConfigError, match=r"kdfair\[text\]"):
        build_model("bert", 2, ())


# --- preset ---------------------------------------------------------------------------------------


def test_preset_states_the_paper_study():
    from kdfair.presets import preset_path

    exp = load_experiment("hatexplain")
    assert (exp.dataset.name, exp.teacher.model.arch, exp.student.model.arch) == (
        "hatexplain", "bert", "distilbert")
    assert exp.distill.temperatures == tuple(float(t) for t in [*range(1, 11), 20, 30, 40])
    assert exp.seeds == (0, 1, 2, 3, 4) and exp.distill.alpha == 0.8
    opts = loader_options(hx.HateXplainOptions, exp.dataset)
    assert opts.task == "toxic" and set(opts.sensitive) == {"gender", "race"}
    for role in (exp.teacher, exp.student):
        validate_options(text.TextModelOptions, role.model.options, "model",
                         f"model {role.model.arch!r}")
        assert role.train.optimizer == "adamw" and role.train.schedule == "linear"
        assert role.train.warmup_epochs > 0 and role.train.augment == "none"
    assert exp.teacher.model.options["pretrained"] == "bert-base-uncased"
    assert exp.student.model.options["pretrained"] == "distilbert-base-uncased"
    assert not exp.dataset.download and not exp.teacher.model.download
    assert "does not give its recipe" in preset_path("hatexplain").read_text()


# --- end to end through the CLI (slow) ------------------------------------------------------------

TRAIN = {"optimizer": "adamw", "lr": 3e-3, "weight_decay": 0.01, "schedule": "linear",
         "warmup_epochs": 1, "epochs": 8, "batch_size": 8, "augment": "none"}


def _experiment(tmp_path: Path, tiny: dict[str, Path], teacher: dict) -> Path:
    exp = {
        "name": "e2e-hatexplain", "device": "cpu", "seeds": [0, 1],
        "dataset": {"name": "hatexplain", "tokenizer": str(tiny["bert"]), "max_length": 32,
                    "features_dim": 16},
        "teacher": {"model": teacher, "train": TRAIN},
        "student": {"model": {"arch": "distilbert", "pretrained": str(tiny["distilbert"])},
                    "train": TRAIN},
        "distill": {"temperatures": [4]},
        "analysis": {"similarity": "pixels", "individual_k": 5},
    }
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(exp))
    return path


@pytest.mark.slow
def test_e2e_text_study_through_the_cli(tmp_path, tiny, monkeypatch):
    from typer.testing import CliRunner

    from kdfair.cli import app

    posts, div = random_posts(n_train=96, n_val=24, n_test=60)
    write_hatexplain(tmp_path / "data", posts, div)
    monkeypatch.setenv("KDFAIR_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("KDFAIR_WORKERS", "0")
    path = _experiment(tmp_path, tiny, {"arch": "bert", "pretrained": str(tiny["bert"])})
    res = CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path / "out"),
                                   "--data-root", str(tmp_path / "data")])
    assert res.exit_code == 0, res.output
    where = tmp_path / "out" / "e2e-hatexplain"
    runs = [p for p in (where / "runs").iterdir() if (p / "logits.npy").exists()]
    assert len(runs) == 6, res.output  # 2 teachers, 2 NDS, 2 DS
    info = json.loads((where / "data.json").read_text())
    assert info["attributes"]["gender"] == ["Men", "Women"] and info["num_classes"] == 2
    assert any("dropped" in n for n in info["notes"])
    feats = np.load(where / "test_features.npy")
    assert feats.shape == (info["n_test"], 16) and feats.dtype == np.float32
    with np.load(where / "attributes.npz") as z:
        assert (z["gender"] == -1).any() and (z["race"] >= 0).any()
    for r in runs:
        metrics = json.loads((r / "metrics.json").read_text())
        assert metrics["epochs"] == 8 and np.isfinite(metrics["train_loss"])
        assert load_predictions(r)["logits"].shape == (info["n_test"], 2)
    report = where / "report"
    assert (report / "report.md").exists() and (report / "report.html").exists()
    fair = pd.read_csv(report / "fairness.csv")
    assert {"gender", "race"} <= set(fair["attribute"])
    assert set(fair["role"]) >= {"teacher", "nds", "ds"}
    ind = pd.read_csv(report / "individual.csv")
    assert ind["individual_mean"].notna().all() and (ind["individual_mean"] > 0).all()
    acc = pd.read_csv(report / "accuracy.csv")
    assert (acc["acc_mean"] > 65).all(), acc  # the tiny models learn the fake posts' words
    md = (report / "report.md").read_text()
    assert "naming no gender group" in md  # the loader's counts reach the report
    cf = pd.read_csv(report / "counterfactual.csv")  # identity-term swaps, per attribute
    assert {"gender", "race"} <= set(cf["attribute"]) and set(cf["role"]) >= {"nds", "ds"}
    assert ((cf["cf_flip_mean"] >= 0) & (cf["cf_flip_mean"] <= 100)).all()
    with np.load(where / "counterfactuals.npz") as z:
        assert (z["gender"] >= 0).any() and (z["gender"] == -1).any()
    assert "### Counterfactual pairs" in md


@pytest.mark.slow
def test_e2e_given_fine_tuned_teacher(tmp_path, tiny, monkeypatch):
    """`weights: DIR` on the teacher: one teacher run, evaluated (not trained), distilled from."""
    from kdfair import api, runner
    from kdfair.config import load_experiment as load_exp

    posts, div = random_posts(n_train=48, n_val=12, n_test=24)
    write_hatexplain(tmp_path / "data", posts, div)
    monkeypatch.setenv("KDFAIR_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("KDFAIR_WORKERS", "0")
    torch.manual_seed(0)
    tuned = tmp_path / "tuned-bert"
    build_model("bert", 2, (), pretrained=str(tiny["bert"])).model.save_pretrained(str(tuned))
    exp = load_exp(_experiment(tmp_path, tiny, {"arch": "bert", "weights": str(tuned)}))
    assert runner.teacher_is_given(exp)
    st = api.run(exp, tmp_path, data_root=tmp_path / "data", write_report=False)
    assert not st.failed and not st.missing and len(st.done) == 5  # 1 teacher, 2 NDS, 2 DS
    teacher = next((tmp_path / exp.name / "runs").glob("teacher-*"))
    assert json.loads((teacher / "metrics.json").read_text())["epochs"] == 0


# --- counterfactual posts (identity-term swaps) ---------------------------------------------


def test_identity_terms_swap_between_groups_of_one_attribute():
    terms = hx.identity_terms()
    gender = hx.swap_table(terms["gender"], ("Men", "Women"))
    assert hx.counterfactual_tokens("all the Men and women said he".split(), gender, 2) == (
        "all the women and men said she".split(), 1)  # the first term was Men's: moved to Women
    assert hx.counterfactual_tokens("nice weather today".split(), gender, 2) == (
        "nice weather today".split(), -1)
    race = hx.swap_table(terms["race"], hx.SENSITIVE["race"])
    out, target = hx.counterfactual_tokens(["latinos", "and", "whites"], race, 5)
    assert out == ["africans", "and", "hispanics"] and target == 0  # Hispanic -> African
    with pytest.raises(ValueError, match="no identity terms for community 'Islam'"):
        hx.swap_table(terms["race"], ("African", "Islam"))
    with pytest.raises(ValueError, match="differ in length"):
        hx.swap_table({"A": ["a", "b"], "B": ["c"]}, ("A", "B"))


def test_loaded_test_set_carries_counterfactual_posts(hand_root, tiny):
    from transformers import AutoTokenizer

    data = load(hand_root, tiny)
    assert set(data.counterfactuals) == {"gender", "race"}
    tok = AutoTokenizer.from_pretrained(str(tiny["bert"]))
    gender = data.counterfactuals["gender"]
    assert len(gender) == len(data.test) and np.array_equal(gender.y, data.test.y)
    # every hand post says "... about women and men": each is swapped to "... men and women"
    assert (gender.attributes["gender"] == 0).all()  # first term "women" (Women) -> Men
    x, _ = gender.dataset[0]
    assert tok.decode(x["input_ids"], skip_special_tokens=True).endswith("about men and women")
    assert (data.counterfactuals["race"].attributes["race"] == -1).all()  # no race term there
    assert "gender" in data.counterfactual_notes and "identity_terms.yaml" in \
        data.counterfactual_notes["gender"]
    # attributes without word lists are named, not faked
    custom = load(hand_root, tiny, sensitive={"religion": ["Islam", "Jewish"]})
    assert custom.counterfactuals == {}
    assert any("no counterfactual posts for 'religion'" in n for n in custom.notes)
