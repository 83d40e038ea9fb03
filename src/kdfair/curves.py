"""Learning curves for the report: one figure per role, train loss and accuracy per epoch (and
validation accuracy where the runs recorded it), one line per run, from ``metrics.json``'s
per-epoch ``history``. DS runs are coloured by temperature (a colour bar, not a legend of ~15
lines); teacher and NDS runs get a small legend by seed."""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.colors import Colormap, Normalize
    from matplotlib.figure import Figure

ROLE_TITLES = {"teacher": "teacher", "nds": "NDS", "ds": "DS"}
NO_T_COLOR = "0.5"  # a DS run without a usable temperature


def _label(run: Any) -> str:
    t = _temperature(run)
    seed = f"seed {run.seed}"
    return seed if t is None else f"T={t:g}, {seed}"


def _temperature(run: Any) -> float | None:
    """The run's temperature as a float, None when absent or not finite."""
    t = getattr(run, "temperature", None)
    try:
        t = float(t)
    except (TypeError, ValueError):
        return None
    return t if math.isfinite(t) else None


def curves_by_role(runs: Iterable[Any]) -> dict[str, list[tuple[Any, list[dict]]]]:
    """Runs (anything with ``role``, ``temperature``, ``seed``, ``metrics``) that have a
    history, grouped by role in the study's order."""
    out: dict[str, list[tuple[Any, list[dict]]]] = {}
    for run in runs:
        history = [h for h in (run.metrics or {}).get("history") or [] if isinstance(h, dict)]
        if history:
            out.setdefault(run.role, []).append((run, history))
    return {r: out[r] for r in ROLE_TITLES if r in out}


def temperature_scale(temps: Iterable[float]) -> tuple[Colormap, Normalize]:
    """A sequential colormap and the norm of T: logarithmic when the positive temperatures
    span more than 10×, else linear."""
    import matplotlib
    import numpy as np
    from matplotlib.colors import ListedColormap, LogNorm, Normalize

    ts = sorted({float(t) for t in temps if t is not None and math.isfinite(t)})
    # viridis without its palest yellow, which vanishes on white
    cmap = ListedColormap(matplotlib.colormaps["viridis"](np.linspace(0.0, 0.88, 256)),
                          name="viridis_dark")
    if not ts:
        return cmap, Normalize(0.0, 1.0)
    lo, hi = ts[0], ts[-1]
    if lo > 0 and hi / lo > 10:
        return cmap, LogNorm(lo, hi)
    return cmap, Normalize(lo, hi if hi > lo else lo + 1.0)


def role_figure(role: str, runs: list[tuple[Any, list[dict]]]) -> Figure:
    """One role's learning curves: panels for train loss and accuracy (train solid, validation
    dashed, in percent). DS: colour = T with a colour bar; others: one colour per run and a
    legend by seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import LogNorm

    is_ds = role == "ds"
    run_temps = [_temperature(r) for r, _ in runs]
    temps = sorted({t for t in run_temps if t is not None})
    if is_ds:  # one scale for the lines and the colour bar: same T, same colour
        cmap, norm = temperature_scale(temps)
        colors = [NO_T_COLOR if t is None else cmap(float(norm(t))) for t in run_temps]
    else:
        colors = [f"C{i % 10}" for i in range(len(runs))]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10.5 if is_ds else 10, 3.6),
                                          layout="constrained")
    for (run, hist), color in zip(runs, colors, strict=True):
        epochs = [h.get("epoch", j + 1) for j, h in enumerate(hist)]
        kw = dict(color=color, lw=1.2, alpha=0.85)
        ax_loss.plot(epochs, [h.get("loss", math.nan) for h in hist], label=_label(run), **kw)
        ax_acc.plot(epochs, [100 * h.get("train_acc", math.nan) for h in hist],
                    label=f"_{_label(run)}, train", **kw)
        val = [h.get("val_acc") for h in hist]
        if any(v is not None for v in val):
            ax_acc.plot(epochs, [math.nan if v is None else 100 * v for v in val], ls="--",
                        label=f"_{_label(run)}, validation", **kw)
    title = ROLE_TITLES.get(role, role)
    ax_loss.set(xlabel="epoch", ylabel="train loss", title=f"{title}: training loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)",
               title=f"{title}: accuracy (train solid, validation dashed)")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
    if is_ds and temps:
        bar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=[ax_loss, ax_acc],
                           label="temperature T" + (" (log scale)"
                                                    if isinstance(norm, LogNorm) else ""),
                           pad=0.02, fraction=0.04)
        if len(temps) <= 15:
            bar.set_ticks(temps, labels=[f"{t:g}" for t in temps])
            bar.minorticks_off()
    elif not is_ds:
        ax_loss.legend(fontsize=7, ncol=1 + (len(runs) > 5), handlelength=1.5,
                       labelspacing=0.3)
    return fig


def plot_role(role: str, runs: list[tuple[Any, list[dict]]], path: Path,
              formats: Iterable[str] = ("png",)) -> list[Path]:
    """Write :func:`role_figure` as ``path`` with each suffix of ``formats``."""
    import matplotlib.pyplot as plt

    fig = role_figure(role, runs)
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
