"""Help text that reads (issue 24): value types named plainly, arguments by name in the usage
line, examples and the presets in `run --help`, descriptions not squeezed at 80 columns."""

import re

import pytest
from typer.testing import CliRunner

from kdfair.cli import app
from kdfair.presets import preset_names

COMMANDS = ["run", "plan", "demo", "audit", "report", "compare", "status", "trifeature",
            "export", "presets", "datasets"]


def _help(*args: str) -> str:
    res = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": "80"}, prog_name="kdfair")
    assert res.exit_code == 0, res.output
    return res.stdout


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_names_value_types_plainly(command):
    text = _help(*([command] if command else []))
    assert not re.search(r"<(bool|int|str|float|path|list\[\w+\])>", text), text
    assert not re.search(r"\{\w+\}", text.splitlines()[0]), text  # usage: EXPERIMENT, not {…}
    assert all(len(line) <= 80 for line in text.splitlines()), text


def test_run_help_has_examples_presets_and_room_for_descriptions():
    text = _help("run")
    assert text.splitlines()[0] == "Usage: kdfair run [OPTIONS] EXPERIMENT"
    assert "  --out PATH " in text and "  --slurm-gpus INTEGER " in text
    assert re.search(r"^  --dry-run +train nothing", text, re.M)  # a flag: no type
    assert "Examples:\n    kdfair run demo " in text
    assert "kdfair run cifar100-r56-r20 --dry-run" in text
    listed = re.sub(r"\s+", " ", text.split("Presets (`kdfair presets` says what each is): ")[1])
    assert listed.strip() == ", ".join(preset_names())
    # the description column keeps more than 40 characters at 80 columns
    line = next(line for line in text.splitlines() if line.startswith("  --out PATH"))
    assert line.endswith("results root; the study goes to OUT/<name>")


def test_global_flags_show_no_type():
    text = _help()
    assert re.search(r"^  -q, --quiet +only errors", text, re.M)
    assert re.search(r"^  -v, --verbose +more log lines", text, re.M)
