"""One pass over the runs: read each run's logits once and keep only what the analysis needs.

A run's logits can be 200 MB (50 000 inputs × 1 000 classes); a study has dozens of runs. Each
run is therefore reduced right after reading (predictions, class accuracies, its individual
fairness numbers) and its logits are dropped. Runs are reduced in a small thread pool: the heavy
NumPy work releases the GIL, and each thread reuses one probability buffer.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from kdfair.analysis.classwise import class_accuracy
from kdfair.analysis.individual import (
    NeighbourGraph,
    Norm,
    consistency,
    counterfactual_distance,
    counterfactual_flip_rate,
    individual_unfairness,
    pair_distances,
    softmax,
)
from kdfair.config import available_cores
from kdfair.integrity import digest
from kdfair.store import (
    CorruptRun,
    RunInfo,
    read_counterfactual_logits,
    read_labels,
    read_predictions,
)


@dataclass
class ReducedRun:
    """What is kept of one run."""

    info: RunInfo
    pred: np.ndarray  # predicted class per test input (index order), int32 [N]
    labels_digest: str
    accuracy: float
    class_acc: np.ndarray  # float64 [C]
    confidence: float = float("nan")  # mean max-probability over the test inputs
    individual: float = float("nan")
    consistency: float = float("nan")
    # attribute -> (I_cf: mean D(f(x), f(x')), flip rate 0–1, number of pairs) on the test
    # set's counterfactuals
    counterfactual: dict[str, tuple[float, float, int]] = field(default_factory=dict)


def reduce_logits(logits: np.ndarray, labels: np.ndarray, num_classes: int,
                  graph: NeighbourGraph | None = None, norm: Norm = "tv",
                  in_place: bool = False) -> dict:
    """Predictions, accuracies and individual-fairness numbers of one model's logits.

    With ``in_place`` the logits array is overwritten by the probabilities (saves 200 MB and a
    pass per run at ImageNet scale).
    """
    if logits.shape[1] != num_classes:
        raise CorruptRun(f"{logits.shape[1]} logits per input, expected {num_classes}")
    pred = logits.argmax(1)
    row_max = np.take_along_axis(logits, pred[:, None], 1)[:, 0]
    if not np.isfinite(row_max).all():  # argmax returns the first NaN, if any
        raise CorruptRun("logits contain NaN or infinite values")
    pred = pred.astype(np.int32)
    if labels.min(initial=0) < 0 or labels.max(initial=0) >= num_classes:
        raise CorruptRun(f"labels outside 0..{num_classes - 1}")
    out = {"pred": pred, "accuracy": float(np.mean(pred == labels)),
           "class_acc": class_accuracy(pred, labels, num_classes)}
    if graph is None:  # confidence only: max-probability = 1 / Σ exp(logit − max)
        out["confidence"] = mean_confidence(logits, row_max)
    else:
        probs = softmax(logits, out=logits if in_place else None, row_max=row_max)
        out["confidence"] = float(np.mean(probs[np.arange(len(pred)), pred], dtype=np.float64))
        pair_d = pair_distances(probs, graph.neighbours, norm, graph.order)
        out["individual"] = individual_unfairness(pair_d, graph.distances)
        out["consistency"] = consistency(pred, graph.neighbours)
    return out


def reduce_counterfactuals(logits: np.ndarray, counterfactual: dict[str, np.ndarray],
                           norm: Norm = "tv", targets: dict[str, np.ndarray] | None = None
                           ) -> dict[str, tuple[float, float, int]]:
    """attribute -> (I_cf, flip rate, pairs) of one run, from its test logits and its logits on
    each attribute's counterfactuals (rows aligned); ``targets[attr]`` < 0 marks the inputs
    that have no counterfactual (e.g. a post without identity terms): they are left out."""
    if not counterfactual:
        return {}
    probs = softmax(logits)
    pred = probs.argmax(1)
    out = {}
    for attr, cf in counterfactual.items():
        keep = (targets or {}).get(attr)
        keep = np.ones(len(cf), bool) if keep is None or keep.shape != (len(cf),) else keep >= 0
        if not keep.any():
            continue
        if cf.shape != logits.shape:
            raise CorruptRun(f"counterfactual logits for {attr!r} have shape {cf.shape}, the "
                             f"test logits {logits.shape}")
        if not np.isfinite(cf).all():
            raise CorruptRun(f"counterfactual logits for {attr!r} contain NaN or infinite values")
        cf_probs = softmax(cf[keep])
        out[attr] = (counterfactual_distance(probs[keep], cf_probs, norm),
                     counterfactual_flip_rate(pred[keep], cf_probs.argmax(1)), int(keep.sum()))
    return out


def mean_confidence(logits: np.ndarray, row_max: np.ndarray, block: int = 4096) -> float:
    """Mean over inputs of the largest softmax probability, in blocks (no [N, C] copy)."""
    total = 0.0
    for s in range(0, len(logits), block):
        z = np.exp(np.asarray(logits[s:s + block], np.float64) - row_max[s:s + block, None])
        total += float((1.0 / z.sum(1)).sum())
    return total / max(len(logits), 1)


def reduce_runs(runs: list[RunInfo], n_test: int, num_classes: int,
                graph: NeighbourGraph | None = None, norm: Norm = "tv",
                workers: int | None = None,
                counterfactual_targets: dict[str, np.ndarray] | None = None
                ) -> tuple[list[ReducedRun], list[tuple[str, str]]]:
    """Reduce every run; returns (results in input order, skipped (run_id, reason)).

    Runs whose labels differ from the majority's are skipped: they were scored on other data.
    """
    local = threading.local()

    def one(run: RunInfo) -> ReducedRun | tuple[str, str]:
        try:
            if getattr(local, "buffer", None) is None:  # one logits buffer per thread, reused
                local.buffer = np.empty((n_test, num_classes), np.float32)
            logits, labels = read_predictions(run, n_test, out=local.buffer)
            cf = reduce_counterfactuals(logits, read_counterfactual_logits(run, n_test), norm,
                                        counterfactual_targets)
            r = reduce_logits(logits, labels, num_classes, graph, norm, in_place=True)
            return ReducedRun(info=run, labels_digest=digest(labels), counterfactual=cf, **r)
        except CorruptRun as err:
            return run.run_id, str(err)
        except (OSError, ValueError) as err:  # e.g. a file truncated after it was indexed
            return run.run_id, f"predictions.npz cannot be read ({err})"

    workers = workers or available_cores()
    if workers == 1 or len(runs) == 1:
        outs = [one(r) for r in runs]
    else:
        with ThreadPoolExecutor(max_workers=min(workers, len(runs))) as pool:
            outs = list(pool.map(one, runs))
    results = [o for o in outs if isinstance(o, ReducedRun)]
    skipped = [o for o in outs if not isinstance(o, ReducedRun)]
    if results:
        digests = [r.labels_digest for r in results]
        majority = max(set(digests), key=digests.count)
        skipped += [(r.info.run_id, "its test labels differ from the other runs' labels")
                    for r in results if r.labels_digest != majority]
        results = [r for r in results if r.labels_digest == majority]
    return results, skipped


def labels_of(results: list[ReducedRun], n_test: int) -> np.ndarray:
    """The test labels (index order) shared by all kept runs, re-read from the first one (its
    labels only: the logits are not touched)."""
    return read_labels(results[0].info, n_test)
