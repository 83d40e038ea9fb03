"""The report's figures read at a glance: DS learning curves coloured by T with a colour bar,
#SC and #TC legible when equal, and the accuracy-vs-fairness trade-off with one point per model
at the tables' coordinates. Each draws and writes a PNG; the assertions read the artists."""

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import LineCollection
from matplotlib.colors import LogNorm

from kdfair.analysis import measures, plots
from kdfair.curves import curves_by_role, role_figure, temperature_scale, write_learning_curves

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def figures(monkeypatch):
    """The figures the plot functions save, kept open for inspection (PNG only)."""
    kept = []
    save = plots._save

    def keep(fig, path, tight=True):
        kept.append(fig)
        return save(fig, path, tight)

    monkeypatch.setattr(plots, "_save", keep)
    token = plots.VECTOR.set(False)
    yield kept
    plots.VECTOR.reset(token)


# --- learning curves -------------------------------------------------------------------------


@dataclass
class Run:
    role: str
    seed: int
    temperature: float = math.nan
    metrics: dict = field(default_factory=dict)


def history(k: float) -> dict:
    return {"history": [{"epoch": e, "loss": 1 / (e + k), "train_acc": 1 - 1 / (e + k + 1),
                         "val_acc": 1 - 1.5 / (e + k + 2)} for e in range(1, 4)]}


TEMPS = (1.0, 2.0, 5.0, 20.0)
RUNS = ([Run("teacher", s, metrics=history(s)) for s in range(3)]
        + [Run("nds", s, metrics=history(s)) for s in range(2)]
        + [Run("ds", s, t, history(t + s)) for t in TEMPS for s in range(3)])


def colorbars(fig):
    return [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]


def test_ds_curves_coloured_by_temperature_with_a_colour_bar(tmp_path):
    fig = role_figure("ds", curves_by_role(RUNS)["ds"])
    ax_loss = fig.axes[0]
    by_t: dict[str, set] = {}
    for line in ax_loss.get_lines():  # label "T=2, seed 0"
        by_t.setdefault(line.get_label().split(",")[0], set()).add(line.get_color())
    assert sorted(by_t, key=lambda s: float(s[2:])) == [f"T={t:g}" for t in TEMPS]
    assert all(len(c) == 1 for c in by_t.values())  # the seeds of one T share its colour
    assert len({next(iter(c)) for c in by_t.values()}) == len(TEMPS)  # each T its own
    assert ax_loss.get_legend() is None  # the colour bar replaces ~15 legend entries
    [bar] = colorbars(fig)
    assert bar.get_ylabel().startswith("temperature T")
    assert [t.get_text() for t in bar.get_yticklabels()] == ["1", "2", "5", "20"]
    written = write_learning_curves(RUNS, tmp_path)
    assert written["ds"].read_bytes()[:8] == PNG


def test_temperature_scale_is_logarithmic_beyond_a_tenfold_span():
    _, norm = temperature_scale([1, 2, 5, 20])
    assert isinstance(norm, LogNorm)
    _, norm = temperature_scale([1, 2, 4, 8])
    assert not isinstance(norm, LogNorm)
    assert norm(1) == 0 and norm(8) == 1


def test_teacher_and_nds_curves_have_a_legend_by_seed():
    for role, seeds in (("teacher", 3), ("nds", 2)):
        fig = role_figure(role, curves_by_role(RUNS)[role])
        legend = fig.axes[0].get_legend()
        assert [t.get_text() for t in legend.get_texts()] == [f"seed {s}" for s in range(seeds)]
        assert not colorbars(fig)
        assert len({ln.get_color() for ln in fig.axes[0].get_lines()}) == seeds


# --- #SC / #TC -------------------------------------------------------------------------------


def equal_counts() -> pd.DataFrame:
    rows = []
    for t, n in zip((1.0, 2.0, 4.0, 10.0), (3, 1, 0, 2), strict=True):
        for q in ("relative", "raw"):
            for label in ("#SC", "#TC"):  # #SC and #TC identical at every T
                rows.append({"count": label, "T": t, "quantity": q, "test": "welch",
                             "n_significant": n, "n_significant_bh": max(0, n - 1)})
    return pd.DataFrame(rows)


def test_equal_sc_and_tc_stay_distinct(tmp_path, figures):
    path = plots.counts_vs_t(tmp_path / "counts.png", equal_counts(), 10, 0.05)
    assert path.read_bytes()[:8] == PNG
    [fig] = figures
    temps = np.array([1.0, 2.0, 4.0, 10.0])
    for ax in fig.axes:
        lines = {ln.get_label(): ln for ln in ax.get_lines()}
        sc, tc = lines["#SC: DS(T) vs NDS"], lines["#TC: DS(T) vs teacher"]
        np.testing.assert_array_equal(sc.get_ydata(), tc.get_ydata())
        assert sc.get_marker() != tc.get_marker()
        assert sc.get_linestyle() != tc.get_linestyle()
        sx, tx = np.asarray(sc.get_xdata(), float), np.asarray(tc.get_xdata(), float)
        assert (sx < temps).all() and (tx > temps).all()  # dodged either side of T
        assert (tx / sx < 1.25).all()  # ... but still read at T
        for label, raw in (("#SC", sc), ("#TC", tc)):
            bh = lines[f"{label} after Benjamini–Hochberg"]
            assert bh.get_linestyle() == "--" and bh.get_linewidth() < raw.get_linewidth()
            np.testing.assert_array_equal(bh.get_xdata(), raw.get_xdata())
    [legend] = fig.legends  # one legend, outside every panel
    box = legend.get_window_extent()
    assert not any(box.overlaps(ax.get_window_extent()) for ax in fig.axes)


# --- trade-off -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    from analysis_fixtures import write_store

    from kdfair.analysis.report import analyze

    def acc(role, t, seed, c):
        return {"teacher": 0.9, "nds": 0.8}.get(role) or 0.8 - 0.02 * t

    root = write_store(tmp_path_factory.mktemp("tradeoff") / "s", seeds=(0, 1, 2),
                       temperatures=(1.0, 4.0, 10.0), features=False, accuracy=acc,
                       attributes={"colour": ["r", "g"], "shape": ["a", "b", "c"]})
    return analyze(root)


def test_tradeoff_one_point_per_model_at_the_tables_values(tmp_path, tables, figures):
    accuracy, fairness = tables["accuracy"], tables["fairness"]
    drawn = [measures.get("dpd"), measures.get("eod"), measures.get("dp_ratio")]
    path = plots.tradeoff(tmp_path / "tradeoff.png", accuracy, fairness, "shape", drawn)
    assert path.read_bytes()[:8] == PNG
    [fig] = figures
    fair = fairness[fairness["attribute"] == "shape"]
    ds_acc = accuracy[accuracy["role"] == "ds"].sort_values("T")
    ds_fair = fair[fair["role"] == "ds"].sort_values("T")
    panels = [ax for ax in fig.axes if ax.containers]
    assert len(panels) == len(drawn)
    for ax, m in zip(panels, drawn, strict=True):
        assert ax.get_ylabel().startswith(m.heading())
        bars = {c.get_label(): c for c in ax.containers}
        assert set(bars) == {"teacher", "NDS (no distillation)",
                             "DS (distilled), joined in order of T"}
        assert sum(len(c.lines[0].get_xdata()) for c in bars.values()) == 2 + len(ds_acc)
        for role, label in (("teacher", "teacher"), ("nds", "NDS (no distillation)")):
            line = bars[label].lines[0]
            assert line.get_xdata()[0] == pytest.approx(
                accuracy.loc[accuracy["role"] == role, "acc_mean"].iloc[0])
            assert line.get_ydata()[0] == pytest.approx(
                fair.loc[fair["role"] == role, f"{m.column}_mean"].iloc[0])
        ds = bars["DS (distilled), joined in order of T"]
        np.testing.assert_allclose(ds.lines[0].get_xdata(), ds_acc["acc_mean"])
        np.testing.assert_allclose(ds.lines[0].get_ydata(), ds_fair[f"{m.column}_mean"])
        assert ds.lines[0].get_linestyle() == "-"  # joined, in order of T
        # vertical error bars span the seed CI of the measure
        [ybars] = [lc for lc in ds.lines[2] if isinstance(lc, LineCollection)
                   and all(s[0][0] == s[1][0] for s in lc.get_segments())]
        lows = [min(s[0][1], s[1][1]) for s in ybars.get_segments()]
        highs = [max(s[0][1], s[1][1]) for s in ybars.get_segments()]
        np.testing.assert_allclose(lows, ds_fair[f"{m.column}_ci_low"])
        np.testing.assert_allclose(highs, ds_fair[f"{m.column}_ci_high"])
        texts = [t.get_text() for t in ax.texts]
        assert [t for t in texts if t.startswith("T=")] == ["T=1", "T=4", "T=10"]
        assert {"teacher", "NDS"} <= set(texts)


def test_tradeoff_without_cis_draws_points_without_bars(tmp_path, tables, figures):
    accuracy = tables["accuracy"].drop(columns=["acc_ci_low", "acc_ci_high"])
    fairness = tables["fairness"].drop(columns=["dpd_ci_low", "dpd_ci_high"])
    plots.tradeoff(tmp_path / "t.png", accuracy, fairness, "colour", [measures.get("dpd")])
    [fig] = figures
    for c in fig.axes[0].containers:
        assert not c.has_xerr and not c.has_yerr
