"""The README's Python example runs as written, and its CLI table names real commands."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.slow
def test_python_api_example_runs(tmp_path, monkeypatch):
    text = README.read_text()
    block = re.search(r"## Python API\n\n```python\n(.*?)```", text, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(block, "README.md", "exec"), scope)  # noqa: S102 - our own documentation
    tables = scope["tables"]
    assert set(tables["accuracy"]["role"]) >= {"teacher", "nds", "ds"}
    assert (tmp_path / "results" / "readme-example" / "report" / "report.html").exists()


def test_cli_table_lists_existing_commands():
    from typer.main import get_command

    from kdfair.cli import app

    names = set(get_command(app).commands)
    listed = set(re.findall(r"^\| `kdfair (\w+)", README.read_text(), re.M))
    assert listed and listed <= names


def test_experiment_reference_in_readme_validates():
    import yaml

    from kdfair.config import experiment_from_dict

    block = re.search(r"## Writing an experiment file\n\n```yaml\n(.*?)```", README.read_text(),
                      re.S).group(1)
    exp = experiment_from_dict(yaml.safe_load(block), "README.md")
    assert exp.distill.alpha == 0.8 and exp.engine.grouped == "auto"


def test_method_comparison_example_in_readme_validates():
    import yaml

    from kdfair.config import experiment_from_dict
    from kdfair.runner import plan

    block = re.search(r"### Comparing distillation methods\n.*?```yaml\n(.*?)```",
                      README.read_text(), re.S).group(1)
    exp = experiment_from_dict(yaml.safe_load(block), "README.md")
    assert [m.name for m in exp.distill.methods] == ["kd", "dkd", "lskd", "fitnet", "ls"]
    specs = plan(exp, "fp")
    assert len(specs) == 3 + 3 + 4 * 4 * 3 + 3
