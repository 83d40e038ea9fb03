"""Logs that read (issue 24): with stdout redirected (SLURM, nohup), the summary prints in full —
one line per model, nothing cut to 80 columns — after the report's path, with at most 10
findings (the rest stay in the report); the report's steps go to stderr, one line each."""

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from kdfair.cli import FINDINGS_SHOWN, app, summary_lines
from tests.analysis_fixtures import write_store


def _check_log(stdout: str, where, shown: int = FINDINGS_SHOWN) -> list[str]:
    """The summary part of a redirected log, checked: the report's path first, a full line per
    model, at most 10 findings and then where the others are. Returns the model lines."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("report: "))
    assert lines[start] == (f"report: {where / 'report' / 'report.md'}  "
                            f"{where / 'report' / 'report.html'}")
    assert lines[start + 1] == f"summary — {where}"
    models = []
    for line in lines[start + 2:]:
        if line.startswith("• ") or line.startswith("… "):
            break
        models.append(line)
    findings = [line for line in lines if line.startswith("• ")]
    assert 0 < len(findings) <= shown
    more = [line for line in lines if line.startswith("… ")]
    if more:
        assert lines[-1] == more[0] and more[0].endswith(f"in {where / 'report' / 'report.md'}")
    assert not any(("…" in line or "│" in line) for line in models)  # nothing cut, no table
    return models


def test_a_redirected_report_prints_the_path_first_and_the_summary_in_full(tmp_path,
                                                                          monkeypatch):
    from kdfair import api, cli

    results = []
    real = api.report
    monkeypatch.setattr(api, "report", lambda *a, **k: results.append(real(*a, **k))
                        or results[-1])
    monkeypatch.setattr(cli, "FINDINGS_SHOWN", 3)
    where = write_store(tmp_path / "toy", num_classes=3, n_per_class=20, seeds=(0, 1, 2),
                        temperatures=(2.0, 4.0), attributes={"sex": ["f", "m"]})
    res = CliRunner().invoke(app, ["report", str(where)])
    assert res.exit_code == 0, res.output
    models = _check_log(res.stdout, where, shown=3)
    summary, findings = results[0].summary, results[0].findings
    assert models == summary_lines(summary)  # one line per model, every column
    assert [m.split(":", 1)[0] for m in models] == list(summary.iloc[:, 0])
    for line, row in zip(models, summary.itertuples(index=False), strict=True):
        for col, value in zip(summary.columns[1:], row[1:], strict=True):
            assert f"{col} {value}" in line
    assert max(len(m) for m in models) > 80  # wider than a terminal, and whole
    # 3 findings shown, in full; the others are in the report
    shown = [line for line in res.stdout.splitlines() if line.startswith("• ")]
    assert len(findings) > 3 and shown == [f"• {f}" for f in findings[:3]]
    assert res.stdout.splitlines()[-1] == (f"… {len(findings) - 3} more finding(s) in "
                                           f"{where / 'report' / 'report.md'}")
    # the report's progress: a line per step on stderr
    assert "report: class-wise tests…" in res.stderr
    assert "report: figures and the document…" in res.stderr


EXPERIMENT = """
name: tiny-log
dataset: {name: digits, size: 16}
teacher:
  model: {arch: lenet5}
  train: {epochs: 1, batch_size: 256, augment: none}
student:
  model: {arch: lenet5}
  train: {epochs: 1, batch_size: 256, augment: none}
distill: {temperatures: [2, 8]}
seeds: [0, 1]
device: cpu
engine: {threads: 1, workers: 1}
"""


@pytest.mark.slow
def test_a_redirected_run_log_reads_in_order_without_truncation(tmp_path):
    exp = tmp_path / "tiny-log.yaml"
    exp.write_text(EXPERIMENT)
    with open(tmp_path / "out.log", "w") as out, open(tmp_path / "err.log", "w") as err:
        proc = subprocess.run([sys.executable, "-m", "kdfair.cli", "run", str(exp), "--out",
                               str(tmp_path / "results")], stdout=out, stderr=err)
    stdout, stderr = (tmp_path / "out.log").read_text(), (tmp_path / "err.log").read_text()
    assert proc.returncode == 0, stderr
    where = tmp_path / "results" / "tiny-log"
    lines = stdout.splitlines()
    assert lines[0] == f"tiny-log: 8 runs (0 already done) → {where}"
    assert lines[1].startswith("trained in ") and lines[2].startswith("report: ")
    models = _check_log(stdout, where)
    assert [m.split(":", 1)[0] for m in models] == ["teacher", "NDS", "DS T=2", "DS T=8"]
    # stderr: data, the probe, the estimate, the end of training, the report's steps
    steps = [line.split("] ", 1)[1] for line in stderr.splitlines() if line.startswith("[")]
    assert steps[0] == "loading data set digits…"
    assert any(s.startswith("study: 0/8 runs done at start, estimate ") for s in steps)
    assert steps.index("report: class-wise tests…") > next(
        i for i, s in enumerate(steps) if s.startswith("study: 8/8 runs"))


@pytest.mark.parametrize("width, table", [(60, False), (300, True)])
def test_a_terminal_gets_the_table_only_when_it_fits(monkeypatch, tmp_path, width, table):
    import io

    import pandas as pd
    from rich.console import Console

    from kdfair import cli, progress

    summary = pd.DataFrame({"model": ["teacher", "DS T=4"], "runs": ["3", "3"],
                            "accuracy (%)": ["99.72 [99.48, 99.96]", "95.83 [94.74, 96.93]"],
                            "DPD colour (%)": ["0.39 [0.15, 0.63]", "3.44 [all seeds equal]"]})
    out = io.StringIO()
    monkeypatch.setattr(cli, "console", Console(file=out, width=width))
    monkeypatch.setattr(progress, "interactive", lambda stream=None: True)  # a terminal
    cli.print_summary(summary, tmp_path)
    text = out.getvalue()
    if table:
        assert "┃ model" in text and "3.44 [all seeds equal]" in text and "…" not in text
    else:
        assert text.splitlines() == [f"summary — {tmp_path}", *summary_lines(summary)]
        assert text.splitlines()[2] == ("DS T=4: runs 3; accuracy (%) 95.83 [94.74, 96.93]; "
                                        "DPD colour (%) 3.44 [all seeds equal]")
