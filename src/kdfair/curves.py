"""Learning curves for the report: one figure per role, train loss and accuracy per epoch (and
validation accuracy where the runs recorded it), one line per run, from ``metrics.json``'s
per-epoch ``history``."""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ROLE_TITLES = {"teacher": "teacher", "nds": "NDS", "ds": "DS"}


def _label(run: Any) -> str:
    t = getattr(run, "temperature", None)
    seed = f"seed {run.seed}"
    return seed if t is None or (isinstance(t, float) and math.isnan(t)) else f"T={t:g}, {seed}"


def curves_by_role(runs: Iterable[Any]) -> dict[str, list[tuple[Any, list[dict]]]]:
    """Runs (anything with ``role``, ``temperature``, ``seed``, ``metrics``) that have a
    history, grouped by role in the study's order."""
    out: dict[str, list[tuple[Any, list[dict]]]] = {}
    for run in runs:
        history = [h for h in (run.metrics or {}).get("history") or [] if isinstance(h, dict)]
        if history:
            out.setdefault(run.role, []).append((run, history))
    return {r: out[r] for r in ROLE_TITLES if r in out}


def plot_role(role: str, runs: list[tuple[Any, list[dict]]], path: Path,
              formats: Iterable[str] = ("png",)) -> list[Path]:
    """One role's learning curves: panels for train loss and accuracy (train solid, validation
    dashed, in percent); DS lines coloured by temperature."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    temps = sorted({r.temperature for r, _ in runs if role == "ds"})
    cmap = plt.get_cmap("viridis")
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.6))
    for i, (run, hist) in enumerate(runs):
        color = cmap(temps.index(run.temperature) / max(1, len(temps) - 1)) if temps \
            else f"C{i % 10}"
        epochs = [h.get("epoch", j + 1) for j, h in enumerate(hist)]
        kw = dict(color=color, lw=1.2, alpha=0.85)
        ax_loss.plot(epochs, [h.get("loss", math.nan) for h in hist], label=_label(run), **kw)
        ax_acc.plot(epochs, [100 * h.get("train_acc", math.nan) for h in hist], **kw)
        val = [h.get("val_acc") for h in hist]
        if any(v is not None for v in val):
            ax_acc.plot(epochs, [math.nan if v is None else 100 * v for v in val], ls="--",
                        **kw)
    title = ROLE_TITLES.get(role, role)
    ax_loss.set(xlabel="epoch", ylabel="train loss", title=f"{title}: training loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)",
               title=f"{title}: accuracy (train solid, validation dashed)")
    if len(runs) <= 12:
        ax_loss.legend(fontsize=7, ncol=2)
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    written = []
    for fmt in formats:
        target = path.with_suffix(f".{fmt}")
        fig.savefig(target, dpi=150 if fmt == "png" else None)
        written.append(target)
    plt.close(fig)
    return written


def write_learning_curves(runs: Iterable[Any], out: str | Path,
                          formats: Iterable[str] = ("png",)) -> dict[str, Path]:
    """Write ``learning_curves_<role>.<fmt>`` under ``out`` for every role with histories;
    returns role → the first file written (the PNG by default)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fmts = tuple(formats)
    return {role: plot_role(role, items, out / f"learning_curves_{role}", fmts)[0]
            for role, items in curves_by_role(runs).items()}
