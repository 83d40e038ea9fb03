"""Individual fairness: I(f) after Dwork et al. (2012) and the k-NN consistency of Zemel et al.

I(f) = mean over pairs (x, x') of D(f(x), f(x')) / d(x, x'): f(x) the predicted probability
vector, pairs = every test input with each of its k nearest neighbours, d the Euclidean distance
between the inputs in a fixed similarity space. The paper leaves d, the pairing and D open; the
defaults here (stated in every report's Configuration section) are:

- similarity space ``pca``: test_features.npy (pixels in [0, 1], at most 16x16 per channel)
  projected on its first ``similarity_dim`` = 32 principal components. Raw pixels are an option;
  PCA keeps most of the pixel distance at a fraction of the cost and discards pixel noise that
  would make near-duplicates look far apart. d keeps the pixel scale (an orthogonal projection).
- k = 10 nearest neighbours (each input paired with each of them; pairs with d = 0 have no
  defined ratio and are left out and counted).
- D = total variation distance ½‖p − q‖₁ ∈ [0, 1], Dwork et al.'s statistical distance;
  ``l1`` and ``l2`` are options (read from ``AnalysisConfig.individual_norm`` when it exists).

With k = 10 the test input's neighbours are close enough to count as "similar" while the mean
over 10·N pairs is stable; the graph is exact (brute force), so its cost is quadratic in N:
about 10 CPU-seconds at 50 000 inputs in PCA-32, about 2 CPU-minutes with ``pixels`` (768
dimensions).

Counterfactual individual fairness, where the data can draw each test input's counterfactual x'
(the same input with one sensitive attribute changed, e.g. Trifeature's colour), needs no
similarity space: I_cf(f, a) = mean over test inputs of D(f(x), f(x'_a)), and the counterfactual
flip rate = the share of test inputs whose predicted class changes (counterfactual fairness in
the sense of Kusner et al. 2017, measured on pairs as in Garg et al. 2019). Both are 0 for a
model that ignores the attribute, whatever its confidence.

Consistency (Zemel et al. 2013) is 1 − mean_i |ŷ_i − mean_{j∈kNN(i)} ŷ_j| for binary ŷ; for C
classes we use 1 − mean_i mean_j 1[ŷ_i ≠ ŷ_j], which equals Zemel's value for binary tasks.

The neighbour graph is computed once per experiment and cached in ``<results>/analysis_cache``.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from kdfair.integrity import atomic_write, digest
from kdfair.store.files import inside

Norm = Literal["tv", "l1", "l2"]
GRAPH_VERSION = 1


@dataclass(frozen=True)
class NeighbourGraph:
    """Each test input's k nearest neighbours (itself excluded) and their distances."""

    neighbours: np.ndarray  # int64 [N, k]
    distances: np.ndarray  # float64 [N, k], Euclidean in the similarity space
    order: np.ndarray  # int64 [N]: a visiting order that keeps neighbours close (cache reuse)
    description: str  # the similarity space, e.g. "PCA-32 of the test features"

    @property
    def k(self) -> int:
        return int(self.neighbours.shape[1])


def project(features: np.ndarray, similarity: str, dim: int) -> np.ndarray:
    """The similarity space: the features as stored (``features``; ``pixels`` is the same) or
    their top-``dim`` principal components (``pca``).

    PCA is exact (eigenvectors of the D x D covariance, D <= 768 here), deterministic (each
    component's sign fixed so that its largest loading is positive) and an orthogonal projection,
    so distances keep the pixel scale.
    """
    x = np.asarray(features, dtype=np.float32).reshape(len(features), -1)
    if similarity not in ("features", "pixels", "pca"):
        raise ValueError(f"similarity must be 'features' or 'pca', got {similarity!r}")
    if similarity in ("features", "pixels") or dim >= x.shape[1]:
        return x
    from scipy.linalg import eigh
    from threadpoolctl import threadpool_limits

    centred = x - x.mean(0, dtype=np.float64).astype(np.float32)
    cov = (centred.T @ centred).astype(np.float64)
    d = cov.shape[0]
    with threadpool_limits(1):  # threaded LAPACK on a busy 2-core machine: 0.06 s -> 1.5 s
        _, vecs = eigh(cov, subset_by_index=[d - dim, d - 1])  # ascending eigenvalues
    comps = vecs[:, ::-1]
    comps *= np.sign(comps[np.abs(comps).argmax(0), np.arange(comps.shape[1])])
    return centred @ comps.astype(np.float32)


def knn_graph(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbours of every row of ``x`` among the other rows (Euclidean).

    sklearn's brute-force search (chunked, multithreaded) scales to 50 000 rows: memory stays
    O(chunk × N). Returns (neighbours int64 [N, k], distances float64 [N, k]).
    """
    from sklearn.neighbors import NearestNeighbors

    n = len(x)
    if n < 2:
        raise ValueError("individual fairness needs at least 2 test inputs")
    k = min(k, n - 1)
    nn = NearestNeighbors(n_neighbors=k + 1, algorithm="brute").fit(x)
    dist, idx = nn.kneighbors(x)
    # drop each row itself; with exact duplicates it need not come first
    rows = np.arange(n)[:, None]
    is_self = idx == rows
    drop = np.where(is_self.any(1), is_self.argmax(1), k)
    keep = np.ones_like(idx, dtype=bool)
    keep[np.arange(n), drop] = False
    return idx[keep].reshape(n, k).astype(np.int64), dist[keep].reshape(n, k).astype(np.float64)


def visiting_order(neighbours: np.ndarray) -> np.ndarray:
    """Reverse Cuthill–McKee order of the k-NN graph: inputs near in the graph come together."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import reverse_cuthill_mckee

    n, k = neighbours.shape
    a = csr_matrix((np.ones(n * k, np.int8), (np.repeat(np.arange(n), k), neighbours.ravel())),
                   shape=(n, n))
    return np.asarray(reverse_cuthill_mckee(a, symmetric_mode=False), dtype=np.int64)


def _features_key(path: Path, similarity: str, dim: int, k: int) -> str:
    st = path.stat()
    return digest(GRAPH_VERSION, st.st_size, st.st_mtime_ns, similarity, dim, k)[:16]


def cached_graph(results_dir: Path, similarity: str, dim: int, k: int) -> NeighbourGraph:
    """The k-NN graph of the test features, from ``analysis_cache/`` or computed and cached."""
    features = results_dir / "test_features.npy"
    key = _features_key(features, similarity, dim, k)
    desc = f"{'pixels' if similarity == 'pixels' else f'PCA-{dim}'} of the test features"
    cache = inside(results_dir, "analysis_cache", f"knn-{similarity}{dim}-k{k}.npz")
    if cache.exists():
        try:
            with np.load(cache, allow_pickle=False) as z:
                if str(z["key"]) == key:
                    return NeighbourGraph(z["neighbours"], z["distances"], z["order"], desc)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            pass  # unreadable cache (e.g. truncated): recompute
    x = project(np.load(features, mmap_mode="r", allow_pickle=False), similarity, dim)
    nb, dist = knn_graph(x, k)
    graph = NeighbourGraph(nb, dist, visiting_order(nb), desc)
    cache.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, key=np.str_(key), neighbours=nb, distances=dist, order=graph.order)

    atomic_write(cache, write)
    return graph


# --- the metrics -----------------------------------------------------------------------------


def pair_distances(probs: np.ndarray, neighbours: np.ndarray, norm: Norm = "tv",
                   order: np.ndarray | None = None, block: int = 64) -> np.ndarray:
    """D(f(x_i), f(x_j)) for every i and each of its neighbours j: float64 [N, k].

    Works in blocks of ``block`` rows so that the gathered neighbour rows stay in cache; visiting
    rows in ``order`` (e.g. :func:`visiting_order`) lets neighbours' rows be reused from cache.
    TV and L1 use Σ|p − q| = Σp + Σq − 2 Σ min(p, q) (one pass fewer than |p − q|); the sums
    over classes use einsum (float32, ~25 % faster than ndarray.sum here; error < 1e-6).
    """
    if norm not in ("tv", "l1", "l2"):
        raise ValueError(f"norm must be 'tv', 'l1' or 'l2', got {norm!r}")
    p = np.asarray(probs)
    n, k = neighbours.shape
    rows = np.arange(n) if order is None else order
    out = np.empty((n, k), dtype=np.float64)
    sums = p.sum(1, dtype=np.float64)
    for s in range(0, n, block):
        r = rows[s:s + block]
        nb = neighbours[r]
        g = np.take(p, nb.ravel(), axis=0).reshape(len(r), k, -1)
        pi = p[r][:, None, :]
        if norm == "l2":
            np.subtract(g, pi, out=g)
            np.multiply(g, g, out=g)
            out[r] = np.sqrt(np.einsum("ijk->ij", g))
        else:
            np.minimum(g, pi, out=g)
            l1 = sums[r][:, None] + sums[nb] - 2 * np.einsum("ijk->ij", g)
            out[r] = np.maximum(l1, 0.0) * (0.5 if norm == "tv" else 1.0)
    return out


def individual_unfairness(pair_d: np.ndarray, distances: np.ndarray) -> float:
    """I(f) = mean of D(f(x), f(x')) / d(x, x') over pairs with d > 0 (lower is fairer)."""
    ok = distances > 0
    if not ok.any():
        return float("nan")
    return float(np.mean(pair_d[ok] / distances[ok]))


def consistency(pred: np.ndarray, neighbours: np.ndarray) -> float:
    """Zemel et al.'s k-NN consistency: 1 − mean share of neighbours predicted differently."""
    pred = np.asarray(pred)
    return float(1.0 - np.mean(pred[neighbours] != pred[:, None]))


def neighbour_share(values: np.ndarray, neighbours: np.ndarray) -> float:
    """The share of (test input, neighbour) pairs with the same value (a label, or a group
    code; pairs where either has a negative code, no group, are left out): how far
    the similarity space groups inputs by that value. When it groups them by a sensitive
    attribute more than by the label, agreement between neighbours (consistency) rewards
    following the attribute, and higher is not fairer."""
    values = np.asarray(values)
    own, near = values[:, None], values[neighbours]
    valid = (own >= 0) & (near >= 0)
    if not valid.any():
        return float("nan")
    return float(((own == near) & valid).sum() / valid.sum())


def softmax(logits: np.ndarray, out: np.ndarray | None = None,
            row_max: np.ndarray | None = None) -> np.ndarray:
    """Row-wise softmax in float32, into ``out`` when given (saves a 200 MB allocation per run);
    ``row_max`` (the logits' row maxima) saves a pass when the caller has it."""
    x = np.asarray(logits)
    if out is None:
        out = np.empty(x.shape, dtype=np.float32)
    m = x.max(1) if row_max is None else row_max
    np.subtract(x, m[:, None], out=out)
    np.exp(out, out=out)
    out /= out.sum(1, keepdims=True)
    return out


def counterfactual_distance(probs: np.ndarray, cf_probs: np.ndarray, norm: Norm = "tv") -> float:
    """I_cf = mean over inputs of D(p_i, p'_i), row i of ``cf_probs`` the counterfactual of row i
    of ``probs`` (D as in :func:`pair_distances`; lower is fairer)."""
    if norm not in ("tv", "l1", "l2"):
        raise ValueError(f"norm must be 'tv', 'l1' or 'l2', got {norm!r}")
    diff = np.asarray(probs, np.float64) - np.asarray(cf_probs, np.float64)
    if norm == "l2":
        return float(np.mean(np.sqrt((diff**2).sum(1))))
    return float(np.mean(np.abs(diff).sum(1)) * (0.5 if norm == "tv" else 1.0))


def counterfactual_flip_rate(pred: np.ndarray, cf_pred: np.ndarray) -> float:
    """Share of inputs whose predicted class differs from their counterfactual's (0–1)."""
    return float(np.mean(np.asarray(pred) != np.asarray(cf_pred)))
