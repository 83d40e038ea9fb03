"""Individual fairness: a hand-worked example, the metric's properties, the neighbour graph."""

import os

import numpy as np
import pytest

from kdfair.analysis import individual
from kdfair.analysis.individual import (
    cached_graph,
    consistency,
    individual_unfairness,
    knn_graph,
    pair_distances,
    project,
    softmax,
    visiting_order,
)

# three inputs on a line at 0, 1 and 3; k = 1 pairs 0->1 (d 1), 1->0 (d 1), 2->1 (d 2)
X = np.array([[0.0], [1.0], [3.0]], dtype=np.float32)
P = np.array([[1.0, 0.0], [0.5, 0.5], [0.1, 0.9]], dtype=np.float32)


def test_hand_worked_example():
    nb, d = knn_graph(X, 1)
    assert nb[:, 0].tolist() == [1, 0, 1] and d[:, 0].tolist() == [1.0, 1.0, 2.0]
    # TV distances 0.5, 0.5, 0.4 -> ratios 0.5, 0.5, 0.2 -> mean 0.4
    assert individual_unfairness(pair_distances(P, nb, "tv"), d) == pytest.approx(0.4)
    assert individual_unfairness(pair_distances(P, nb, "l1"), d) == pytest.approx(0.8)
    l2 = (2 * np.sqrt(0.5) + np.sqrt(0.32) / 2) / 3
    assert individual_unfairness(pair_distances(P, nb, "l2"), d) == pytest.approx(l2, rel=1e-6)
    assert consistency(np.array([0, 0, 1]), nb) == pytest.approx(2 / 3)


def test_constant_model_scores_zero():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 5)).astype(np.float32)
    nb, d = knn_graph(x, 5)
    probs = np.tile(softmax(rng.normal(size=(1, 7)).astype(np.float32)), (200, 1))
    for norm in ("tv", "l1", "l2"):
        assert individual_unfairness(pair_distances(probs, nb, norm), d) == pytest.approx(
            0.0, abs=1e-6)
    assert consistency(np.full(200, 3), nb) == 1.0


def test_scaling_the_distance_scales_i_inversely():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 6)).astype(np.float32)
    logits = rng.normal(size=(300, 4)).astype(np.float32)
    nb, d = knn_graph(x, 4)
    nb2, d2 = knn_graph(3 * x, 4)
    np.testing.assert_array_equal(nb, nb2)
    probs = softmax(logits)
    i1 = individual_unfairness(pair_distances(probs, nb), d)
    i3 = individual_unfairness(pair_distances(probs, nb2), d2)
    assert i3 == pytest.approx(i1 / 3, rel=1e-5)


def test_pair_distances_match_naive_in_any_visiting_order():
    rng = np.random.default_rng(2)
    probs = softmax(rng.normal(size=(500, 30)).astype(np.float32) * 2)
    nb = rng.integers(0, 500, (500, 6))
    naive = np.abs(probs[:, None, :] - probs[nb]).sum(2)
    order = rng.permutation(500)
    np.testing.assert_allclose(pair_distances(probs, nb, "l1", order, block=7), naive, atol=2e-6)
    np.testing.assert_allclose(pair_distances(probs, nb, "tv"), naive / 2, atol=1e-6)
    l2 = np.sqrt(((probs[:, None, :] - probs[nb]) ** 2).sum(2))
    np.testing.assert_allclose(pair_distances(probs, nb, "l2", order), l2, atol=1e-3)
    with pytest.raises(ValueError, match="norm"):
        pair_distances(probs, nb, "cosine")


def test_consistency_equals_zemel_for_binary_predictions():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(400, 3))
    pred = (x[:, 0] + 0.5 * rng.normal(size=400) > 0).astype(int)
    nb, _ = knn_graph(x.astype(np.float32), 5)
    zemel = 1 - np.mean(np.abs(pred - pred[nb].mean(1)))
    assert consistency(pred, nb) == pytest.approx(zemel)


def test_knn_graph_is_exact_and_excludes_self_even_with_duplicates():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(150, 4)).astype(np.float32)
    x[10] = x[11]  # an exact duplicate
    nb, d = knn_graph(x, 3)
    full = np.sqrt(((x[:, None, :].astype(np.float64) - x[None]) ** 2).sum(2))
    np.fill_diagonal(full, np.inf)
    np.testing.assert_allclose(d, np.sort(full, 1)[:, :3], atol=1e-4)
    assert not (nb == np.arange(150)[:, None]).any()
    assert nb[10, 0] == 11 and d[10, 0] == 0.0
    # the zero-distance pair is left out of I(f)
    probs = softmax(rng.normal(size=(150, 3)).astype(np.float32))
    assert np.isfinite(individual_unfairness(pair_distances(probs, nb), d))


def test_pca_projection_keeps_the_scale_and_reduces_distances():
    rng = np.random.default_rng(5)
    x = (rng.normal(size=(400, 2)) @ rng.normal(size=(2, 20)) + 0.01 * rng.normal(
        size=(400, 20))).astype(np.float32)
    y = project(x, "pca", 2)
    assert y.shape == (400, 2)
    dx = np.linalg.norm(x[:50, None] - x[None, :50], axis=2)
    dy = np.linalg.norm(y[:50, None] - y[None, :50], axis=2)
    assert (dy <= dx + 1e-4).all() and np.allclose(dy, dx, rtol=0.05, atol=0.05)
    assert project(x, "pixels", 2) is not None and project(x, "pixels", 2).shape == (400, 20)
    np.testing.assert_array_equal(project(x, "pca", 2), y)  # deterministic


def test_graph_is_cached_and_recomputed_when_the_features_change(tmp_path, monkeypatch):
    rng = np.random.default_rng(6)
    np.save(tmp_path / "test_features.npy", rng.normal(size=(120, 8)).astype(np.float32))
    g1 = cached_graph(tmp_path, "pca", 4, 5)
    assert (tmp_path / "analysis_cache").is_dir()

    def boom(*a, **k):
        raise AssertionError("recomputed")

    monkeypatch.setattr(individual, "knn_graph", boom)
    g2 = cached_graph(tmp_path, "pca", 4, 5)
    np.testing.assert_array_equal(g1.neighbours, g2.neighbours)
    monkeypatch.undo()
    np.save(tmp_path / "test_features.npy", rng.normal(size=(120, 8)).astype(np.float32))
    os.utime(tmp_path / "test_features.npy", ns=(1, 1))
    g3 = cached_graph(tmp_path, "pca", 4, 5)
    assert not np.array_equal(g1.neighbours, g3.neighbours)
    assert g3.k == 5 and len(g3.order) == 120


def test_visiting_order_is_a_permutation_that_keeps_results():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(100, 3)).astype(np.float32)
    nb, d = knn_graph(x, 3)
    order = visiting_order(nb)
    assert sorted(order.tolist()) == list(range(100))
    probs = softmax(rng.normal(size=(100, 5)).astype(np.float32))
    np.testing.assert_allclose(pair_distances(probs, nb, "tv", order), pair_distances(probs, nb),
                               atol=1e-7)
