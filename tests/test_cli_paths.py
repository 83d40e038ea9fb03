"""Paths that forgive: status / report / export given the --out root find the study inside it,
and every "not a results directory" message says what was found and the likely path."""

import json

import pytest
from analysis_fixtures import write_store
from typer.testing import CliRunner

from kdfair.cli import app
from kdfair.errors import StoreError
from kdfair.store import open_store
from kdfair.studies import find_studies, find_study, not_a_study


def _study(root, name="toy"):
    """A small finished study at root/name, with the plan `kdfair run` writes."""
    where = write_store(root / name, num_classes=3, n_per_class=20, seeds=(0, 1),
                        temperatures=(2.0,), features=False, name=name)
    runs = sorted(p.name for p in (where / "runs").iterdir())
    (where / "plan.json").write_text(json.dumps({"runs": runs}))
    return where


def _text(res) -> str:
    return " ".join(res.output.split())


def test_status_and_report_given_the_out_root_use_its_one_study_and_say_so(tmp_path):
    where = _study(tmp_path / "q")
    st = CliRunner().invoke(app, ["status", str(tmp_path / "q")])
    assert st.exit_code == 3, st.output  # the fixture's teachers have no weights: damaged
    assert f"{tmp_path / 'q'} holds one study: using {where}" in _text(st)
    assert "4 done, 2 damaged, 0 missing, 0 failed" in _text(st)
    rep = CliRunner().invoke(app, ["report", str(tmp_path / "q")])
    assert rep.exit_code == 0, rep.output
    assert (where / "report" / "report.md").is_file()
    assert not (tmp_path / "q" / "report").exists()


def test_export_given_the_out_root_looks_inside_its_study(tmp_path):
    where = _study(tmp_path / "q")
    res = CliRunner().invoke(app, ["export", str(tmp_path / "q"), "nds-s9-x",
                                   "--out", str(tmp_path / "m")])
    assert res.exit_code == 1
    assert f"{where} has no run 'nds-s9-x'" in _text(res)


def test_a_root_with_several_studies_lists_them_and_asks_which(tmp_path):
    _study(tmp_path / "q", "demo-alpha0.5")
    _study(tmp_path / "q", "demo-alpha0.8")
    for command in ("status", "report"):
        res = CliRunner().invoke(app, [command, str(tmp_path / "q")])
        assert res.exit_code == 1
        assert (f"{tmp_path / 'q'} holds 2 studies (demo-alpha0.5, demo-alpha0.8): give one of "
                f"them, e.g. {tmp_path / 'q' / 'demo-alpha0.5'}") in _text(res), res.output
    assert find_studies([tmp_path / "q"]) == [tmp_path / "q" / "demo-alpha0.5",
                                              tmp_path / "q" / "demo-alpha0.8"]


def test_not_a_results_directory_says_what_was_found_and_the_likely_path(tmp_path):
    where = _study(tmp_path / "q", "demo")
    empty = tmp_path / "empty"
    empty.mkdir()
    res = CliRunner().invoke(app, ["status", str(empty)])
    assert res.exit_code == 1
    assert f"{empty} is not a kdfair results directory (no experiment.json; it is empty)" \
        in _text(res)
    assert "<out>/<name> as `kdfair run` writes it" in _text(res)

    (empty / "notes.txt").write_text("x")
    (empty / "old").mkdir()
    assert "it holds notes.txt, old/" in not_a_study(empty)

    res = CliRunner().invoke(app, ["report", str(tmp_path / "q" / "dem0")])
    assert res.exit_code == 1
    assert f"{tmp_path / 'q' / 'dem0'} does not exist (did you mean 'demo'?)" in _text(res)

    res = CliRunner().invoke(app, ["status", str(where / "runs")])
    assert res.exit_code == 1
    assert f"lies inside the study {where.resolve()}: give the study's directory" in _text(res)

    res = CliRunner().invoke(app, ["report", str(where / "experiment.json")])
    assert res.exit_code == 1 and "is a file, not a results directory" in _text(res)


def test_the_api_readers_give_the_same_message(tmp_path):
    where = _study(tmp_path / "q", "demo")
    assert find_study(where) == (where, "")
    assert find_study(tmp_path / "q") == (where, f"{tmp_path / 'q'} holds one study: using "
                                                 f"{where}")
    with pytest.raises(StoreError) as err:
        open_store(tmp_path / "q")
    assert str(err.value) == (f"{tmp_path / 'q'} is not a study's results directory; the study "
                              f"under it is {where}")
    (tmp_path / "e").mkdir()
    with pytest.raises(StoreError, match="it is empty"):
        find_study(tmp_path / "e")
    with pytest.raises(StoreError, match="holds no study|it is empty"):
        find_studies([where, tmp_path / "e"])
