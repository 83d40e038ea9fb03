"""The README's quick start names real commands with valid options, its parameter table lists
kdfair.study's real parameters, and its audit example runs."""

import inspect
import re
import shlex
from pathlib import Path

import click
import numpy as np
import pytest
from typer.main import get_command

import kdfair
from kdfair.cli import app

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def _block(heading: str, lang: str) -> str:
    return re.search(rf"## {heading}\n.*?```{lang}\n(.*?)```", README, re.S).group(1)


def test_quick_start_commands_parse():
    group = get_command(app)
    lines = _block("Quick start", "bash").replace("\\\n", " ").splitlines()
    commands = [shlex.split(line.split("  #")[0]) for line in lines if line.startswith("kdfair ")]
    assert len(commands) >= 5
    for argv in commands:
        cmd = group.commands[argv[1]]
        with click.Context(group, info_name="kdfair") as ctx:
            cmd.make_context(argv[1], argv[2:], parent=ctx)  # raises on a bad option or value
    assert "make demo" in lines[0]
    assert any(line.startswith("python examples/audit_digits.py") for line in lines)


def test_parameter_table_lists_study_parameters():
    section = README.split("Its parameters\nand what they default to:", 1)[1].split("Errors", 1)[0]
    listed = set()
    for cell in re.findall(r"^\| ([^|]+) \|", section, re.M):
        listed |= set(re.findall(r"`(\w+)`", cell))
    params = set(inspect.signature(kdfair.study).parameters)
    assert params <= listed, f"undocumented: {sorted(params - listed)}"


@pytest.mark.slow
def test_audit_example_runs(tmp_path, monkeypatch):
    code = _block("Auditing predictions made elsewhere", "python")
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    (tmp_path / "preds").mkdir()
    y = rng.integers(0, 10, 200)
    np.save("preds/labels.npy", y)
    np.save("preds/sex.npy", rng.integers(0, 2, 200))
    np.save("preds/features.npy", rng.normal(size=(200, 5)).astype(np.float32))
    for f in re.findall(r'"preds/((?:teacher|nds|ds)[^"]+)"', code):
        logits = rng.normal(size=(200, 10)).astype(np.float32)
        logits[np.arange(200), y] += 2
        np.save(f"preds/{f}", logits)
    exec(compile(code, "README.md", "exec"), {})  # noqa: S102 - our own documentation
    assert (tmp_path / "results" / "my-audit" / "report" / "report.html").exists()
    tables = kdfair.analyze(tmp_path / "results" / "my-audit")
    assert set(tables["accuracy"]["role"]) == {"teacher", "nds", "ds"}


@pytest.mark.parametrize("heading", ["Auditing predictions made elsewhere"])
def test_audit_file_example_validates(tmp_path, heading):
    import yaml

    from kdfair.auditing import _file_model

    spec = yaml.safe_load(_block(heading, "yaml"))
    _file_model().model_validate(spec)
