"""Counterfactual individual fairness: Trifeature's counterfactual images, their predictions in
the store, and I_cf / flip rate in the analysis (checked against a plain recomputation)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from analysis_fixtures import write_store
from scipy.special import softmax

from kdfair.analysis.individual import counterfactual_distance, counterfactual_flip_rate
from kdfair.analysis.report import analyze, write_report
from kdfair.data import trifeature as tf
from kdfair.store.arrays import COUNTERFACTUAL_PREFIX, CorruptRun, check_shapes
from kdfair.store.files import write_manifest
from kdfair.store.results import upgrade_run_dir

GREY = 128  # the background, 0.5, as uint8


def implied_mask(img: np.ndarray, colour: str) -> tuple[np.ndarray, float]:
    """The mask m that rgb = 0.5 + m·(colour − 0.5) implies for an image [3, H, W], from the
    channel where the colour is furthest from 0.5, and the most uint8 rounding can move it."""
    c = np.asarray(tf.COLOUR_RGB[colour])
    k = int(np.abs(c - 0.5).argmax())
    return (img[k] / 255.0 - 0.5) / (c[k] - 0.5), 0.5 / 255 / abs(c[k] - 0.5)


@pytest.mark.parametrize(("shape", "texture", "colour", "k"), [(7, 1, 0, 0), (3, 5, 2, 1),
                                                               (0, 8, 9, 2), (4, 0, 7, 0)])
def test_colour_counterfactual_is_pixel_identical_except_the_colour(shape, texture, colour, k):
    orig = tf.render_small(shape, texture, colour, k, seed=0, size=32).transpose(2, 0, 1)
    other = tf.counterfactual_value("colour", colour, shape, texture, colour, k, seed=0)
    assert other != colour
    cf = tf.render_counterfactual(shape, texture, colour, k, 0, 32, "colour", other
                                  ).transpose(2, 0, 1)
    # the shape's coverage of each pixel (the mask) is the same, up to uint8 rounding: the
    # background stays where it was, and nothing moved
    mask, err = implied_mask(orig, tf.COLOURS[colour])
    assert (mask > 0.05).any() and not ((cf == GREY).all(0) & (mask > 0.05)).any()
    cf_mask, cf_err = implied_mask(cf, tf.COLOURS[other])
    np.testing.assert_allclose(cf_mask, mask, atol=err + cf_err + 1e-9)
    # the colour is what changed: in the shape, the pixels carry the other colour
    top = np.unravel_index(mask.argmax(), mask.shape)
    assert not np.array_equal(orig[:, top[0], top[1]], cf[:, top[0], top[1]])


def test_texture_counterfactual_keeps_shape_position_and_colour():
    shape, texture, colour, k = 1, 2, 0, 0  # a square: its solid version covers a large area
    other = tf.counterfactual_value("texture", texture, shape, texture, colour, k, seed=3)
    assert other != texture
    orig = tf.render_small(shape, texture, colour, k, seed=3, size=32).transpose(2, 0, 1)
    cf = tf.render_counterfactual(shape, texture, colour, k, 3, 32, "texture", other
                                  ).transpose(2, 0, 1)
    solid = tf.render_counterfactual(shape, texture, colour, k, 3, 32, "texture", 0
                                     ).transpose(2, 0, 1)
    outside = (solid == GREY).all(0)  # outside the placed, rotated shape
    assert outside.any() and (~outside).any()
    assert (orig[:, outside] == GREY).all() and (cf[:, outside] == GREY).all()
    assert not np.array_equal(orig, cf)
    # red stays red: no green or blue beyond the grey background in either image
    assert (orig[1:] <= GREY).all() and (cf[1:] <= GREY).all()


def test_counterfactual_values_are_uniform_over_the_others_and_reproducible():
    vals = [tf.counterfactual_value("colour", 4, s, t, 4, k, seed=0)
            for s in range(10) for t in range(10) for k in range(5)]
    assert 4 not in vals and set(vals) == set(range(10)) - {4}
    assert vals == [tf.counterfactual_value("colour", 4, s, t, 4, k, seed=0)
                    for s in range(10) for t in range(10) for k in range(5)]
    with pytest.raises(ValueError, match="no counterfactual for 'shape'"):
        tf.render_counterfactual(0, 0, 0, 0, 0, 16, "shape", 1)


def test_loaded_set_carries_aligned_counterfactuals_and_keeps_its_fingerprint(tmp_path):
    from kdfair.config import DatasetConfig

    opts = {"size": 16, "images_per_combination": 1, "test_fraction": 0.05}
    data = tf.load(DatasetConfig(name="trifeature", **opts), tmp_path)
    arrays = tf.load_arrays(tf.trifeature_options(opts), tmp_path)
    assert data.fingerprint == tf.to_split_data(arrays, tf.trifeature_options(opts)).fingerprint
    assert set(data.counterfactuals) == {"colour", "texture"}
    test = np.flatnonzero(arrays.split == 2)
    for attr, part in data.counterfactuals.items():
        assert len(part) == len(data.test) and np.array_equal(part.y, data.test.y)
        assert (part.attributes[attr] != data.test.attributes[attr]).all()
        i = 3  # row i is test image i's counterfactual
        s, t, c, k = (int(getattr(arrays, f)[test[i]]) for f in ("shape", "texture", "colour",
                                                                  "k"))
        want = tf.render_counterfactual(s, t, c, k, 0, 16, attr, int(part.attributes[attr][i]))
        assert np.array_equal(part.x[i].numpy(), want.transpose(2, 0, 1))
    # read back from the cache: the same images
    again = tf.load(DatasetConfig(name="trifeature", **opts), tmp_path)
    assert np.array_equal(again.counterfactuals["colour"].x, data.counterfactuals["colour"].x)
    assert list(tmp_path.glob("trifeature-*-counterfactuals.npz"))


def test_counterfactual_metrics_by_hand():
    p = np.array([[0.7, 0.2, 0.1], [0.5, 0.5, 0.0]])
    q = np.array([[0.1, 0.2, 0.7], [0.5, 0.5, 0.0]])
    # TV of row 0: ½(0.6 + 0 + 0.6) = 0.6, row 1: 0 -> mean 0.3
    assert counterfactual_distance(p, q) == pytest.approx(0.3)
    assert counterfactual_distance(p, q, "l1") == pytest.approx(0.6)
    assert counterfactual_distance(p, q, "l2") == pytest.approx(np.sqrt(0.72) / 2)
    assert counterfactual_flip_rate(np.array([0, 1, 2, 2]), np.array([0, 2, 2, 1])) == 0.5
    with pytest.raises(ValueError, match="norm must be"):
        counterfactual_distance(p, q, "kl")  # type: ignore[arg-type]


def _add_counterfactuals(root: Path, seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """Write counterfactual-<attr>.npy beside every run's predictions (rows in the stored
    order): the logits with a random share of rows redrawn. Returns them in index order."""
    rng = np.random.default_rng(seed)
    out = {}
    for d in sorted((root / "runs").iterdir()):
        with np.load(d / "predictions.npz") as z:
            logits, index = z["logits"], z["index"]
        upgrade_run_dir(d)  # counterfactuals exist only in runs sealed by a manifest
        out[d.name] = {}
        for attr, share in (("colour", 0.3), ("texture", 0.1)):
            cf = logits.copy()
            redo = rng.random(len(cf)) < share
            cf[redo] = rng.normal(0, 3, (int(redo.sum()), cf.shape[1]))
            np.save(d / f"{COUNTERFACTUAL_PREFIX}{attr}.npy", cf.astype(np.float32))
            order = np.argsort(index)
            out[d.name][attr] = (logits[order], cf[order])
        write_manifest(d)
    return out


def test_analysis_matches_a_plain_recomputation(tmp_path):
    root = write_store(tmp_path / "s", seeds=(0, 1, 2), attributes={"colour": ["a", "b"]},
                       shuffle_index=True)
    truth = _add_counterfactuals(root)
    tables = analyze(root)
    per_run = tables["counterfactual_runs"]
    assert len(per_run) == 2 * len(truth)
    for _, row in per_run.iterrows():
        logits, cf = truth[row["run_id"]][row["attribute"]]
        p, q = softmax(logits.astype(np.float64), 1), softmax(cf.astype(np.float64), 1)
        assert row["cf_distance"] == pytest.approx(0.5 * np.abs(p - q).sum(1).mean(), rel=1e-5)
        assert row["cf_flip"] == pytest.approx(100 * np.mean(p.argmax(1) != q.argmax(1)))
    summary = tables["counterfactual"]
    for _, row in summary.iterrows():
        same = per_run[(per_run["role"] == row["role"]) & (per_run["attribute"] == row["attribute"])
                       & ((per_run["T"] == row["T"]) | (per_run["T"].isna() & np.isnan(row["T"])))]
        assert row["cf_flip_mean"] == pytest.approx(same["cf_flip"].mean())
        assert row["cf_flip_ci_low"] <= row["cf_flip_mean"] <= row["cf_flip_ci_high"]
    assert {"cf_flip:colour_mean", "cf_flip:texture_ci_high"} <= set(tables["summary"].columns)
    trends = tables["trends"]
    assert {"cf_flip:colour", "cf_distance:texture"} <= set(trends["quantity"])

    result = write_report(root)
    md = result.md_path.read_text()
    assert "### Counterfactual pairs" in md and "Counterfactual flip rate for 'colour'" in md
    assert (result.md_path.parent / "counterfactual.csv").exists()
    assert "cf flips colour (%)" in result.summary.columns


def test_runs_without_counterfactuals_are_named_and_nothing_breaks(tmp_path):
    root = write_store(tmp_path / "s", seeds=(0, 1), attributes={"colour": ["a", "b"]})
    assert "counterfactual" not in analyze(root)  # a store from before: no such table
    _add_counterfactuals(root)
    first = sorted((root / "runs").iterdir())[0]
    for p in first.glob(f"{COUNTERFACTUAL_PREFIX}*"):
        p.unlink()
    write_manifest(first)
    notes = " ".join(analyze(root)["notes"]["note"])
    assert f"1 of {len(list((root / 'runs').iterdir()))} runs have no counterfactual" in notes


def test_a_counterfactual_file_of_the_wrong_shape_damages_the_run(tmp_path):
    root = write_store(tmp_path / "s", seeds=(0,), roles=("teacher",))
    d = next((root / "runs").iterdir())
    upgrade_run_dir(d)
    n, c = check_shapes(d)
    np.save(d / f"{COUNTERFACTUAL_PREFIX}colour.npy", np.zeros((n - 1, c), np.float32))
    with pytest.raises(CorruptRun, match=r"counterfactual-colour.npy must be a float"):
        check_shapes(d)


def test_a_study_stores_counterfactual_predictions_sealed_by_the_manifest(tmp_path, monkeypatch):
    """End to end through the public API: training keeps each run's logits on the
    counterfactuals, the manifest covers them, a tampered one makes the run damaged."""
    import kdfair
    from kdfair.config import Experiment
    from kdfair.store import ResultsDir

    monkeypatch.setenv("KDFAIR_CACHE", str(tmp_path / "cache"))
    exp = {"name": "cf", "dataset": {"name": "trifeature", "size": 16, "images_per_combination": 1,
                                     "test_fraction": 0.05},
           "teacher": {"model": {"arch": "lenet5"},
                       "train": {"optimizer": "adam", "lr": 0.003, "epochs": 1, "batch_size": 64,
                                 "augment": "none"}},
           "student": {"model": {"arch": "lenet5"},
                       "train": {"optimizer": "adam", "lr": 0.003, "epochs": 1, "batch_size": 64,
                                 "augment": "none"}},
           "distill": {"temperatures": [4]}, "seeds": [0], "device": "cpu",
           "analysis": {"tests": False}}
    kdfair.run(Experiment.model_validate(exp), out=tmp_path, progress=False, write_report=False)
    out = tmp_path / "cf"
    store = ResultsDir(out)
    run = next(p for p in store.runs_dir.iterdir() if p.name.startswith("ds-"))
    manifest = json.loads((run / "manifest.json").read_text())
    assert {"counterfactual-colour.npy", "counterfactual-texture.npy"} <= set(manifest["files"])
    cf = np.load(run / "counterfactual-colour.npy")
    assert cf.shape == np.load(run / "logits.npy").shape
    data_info = json.loads((out / "data.json").read_text())
    assert "colour" in data_info["counterfactuals"]
    tables = kdfair.analyze(out)
    assert set(tables["counterfactual"]["attribute"]) == {"colour", "texture"}
    cf[0, 0] += 1.0
    np.save(run / "counterfactual-colour.npy", cf)
    assert store.check(run.name).state == "damaged"
