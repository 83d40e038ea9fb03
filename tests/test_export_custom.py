"""Custom architectures come back: a study's factory is recorded by import path, an export
holds it, and a fresh process rebuilds the student from the export and reproduces its logits."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import kdfair
from kdfair.errors import ConfigError, StoreError
from kdfair.store.arrays import load_predictions

MODULE = textwrap.dedent("""
    import torch.nn as nn

    def tabular_net(num_classes, input_shape):
        return nn.Sequential(nn.Linear(input_shape[0], 12), nn.ReLU(),
                             nn.Linear(12, num_classes))
""")


def _split(rng, n):
    x = rng.normal(size=(n, 5)).astype(np.float32)
    y = (x[:, 0] + 0.3 * x[:, 1] > 0).astype(np.int64)
    return x, y, {"sex": rng.integers(0, 2, n)}


@pytest.fixture(scope="module")
def custom(tmp_path_factory):
    where = tmp_path_factory.mktemp("custom")
    (where / "kdfair_tabular_net.py").write_text(MODULE)
    sys.path.insert(0, str(where))
    try:
        import kdfair_tabular_net
        rng = np.random.default_rng(0)
        train, val, test = _split(rng, 96), _split(rng, 32), _split(rng, 64)
        kdfair.study("tabular", train, val, test, teacher=kdfair_tabular_net.tabular_net,
                     student=kdfair_tabular_net.tabular_net, temperatures=[2], seeds=[0],
                     teacher_train={"epochs": 1, "batch_size": 32},
                     student_train={"epochs": 1, "batch_size": 32}, device="cpu",
                     out=where / "results", progress=False, write_report=False)
    finally:
        sys.path.remove(str(where))
    return where, where / "results" / "tabular", test


def _run(root, prefix):
    return next(p.name for p in (root / "runs").iterdir() if p.name.startswith(prefix))


def _python(code, path):
    env = {"PYTHONPATH": str(path), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=120)


def test_features_record_no_normalisation_and_the_factory_is_recorded(custom):
    _, root, _ = custom
    info = json.loads((root / "data.json").read_text())
    assert info["mean"] == [] and info["std"] == []
    assert json.loads((root / "factories.json").read_text()) == {
        "custom-tabular-teacher": "kdfair_tabular_net:tabular_net",
        "custom-tabular-student": "kdfair_tabular_net:tabular_net"}


def test_a_fresh_process_reloads_an_exported_custom_student_exactly(custom, tmp_path):
    where, root, test = custom
    rid = _run(root, "ds-T2-s0")
    np.save(tmp_path / "x.npy", test[0])
    # export from a fresh process through the command line: the store's factories.json says how
    done = subprocess.run([sys.executable, "-m", "kdfair.cli", "export", str(root), rid,
                           "--out", str(tmp_path)], capture_output=True, text=True,
                          env={"PYTHONPATH": str(where), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    meta = json.loads((tmp_path / f"{rid}.json").read_text())
    assert meta["factory"] == "kdfair_tabular_net:tabular_net"
    assert meta["mean"] is None and meta["std"] is None and meta["input_shape"] == [5]
    code = textwrap.dedent(f"""
        import numpy as np, torch, kdfair
        model = kdfair.load_exported({str(tmp_path / (rid + '.json'))!r}, trust_factory=True)
        loader = torch.utils.data.DataLoader(
            torch.utils.data.TensorDataset(torch.from_numpy(np.load({str(tmp_path / 'x.npy')!r})),
                                           torch.zeros(64, dtype=torch.long)), batch_size=512)
        logits, _ = kdfair.predict(model, loader)
        np.save({str(tmp_path / 'out.npy')!r}, logits)
        print(type(model).__name__)
    """)
    ran = _python(code, where)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "Sequential"
    stored = load_predictions(root / "runs" / rid)["logits"]
    assert np.array_equal(np.load(tmp_path / "out.npy"), stored)


def test_without_the_factory_the_error_says_to_pass_it(custom, tmp_path):
    _, root, test = custom
    rid = _run(root, "nds-s0")
    bare = tmp_path / "bare"
    import shutil

    shutil.copytree(root, bare)
    (bare / "factories.json").unlink()
    code = f"import kdfair; kdfair.load_model({str(bare)!r}, {rid!r})"
    ran = _python(code, tmp_path)  # a process that knows neither the arch nor its module
    assert "architecture 'custom-tabular-student' is not one kdfair knows" in ran.stderr
    assert "Pass the function that builds it: factory=make_model" in ran.stderr
    # given the factory (here by import path, made importable), it loads
    sys.path.insert(0, str(custom[0]))
    try:
        model = kdfair.load_model(bare, rid, factory="kdfair_tabular_net:tabular_net")
    finally:
        sys.path.remove(str(custom[0]))
    with torch.no_grad():
        logits = model(torch.from_numpy(test[0])).numpy()
    np.testing.assert_allclose(logits, load_predictions(bare / "runs" / rid)["logits"],
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(ConfigError, match="factory 'nowhere:make' cannot be imported"):
        kdfair.load_model(bare, rid, factory="nowhere:make")
    with pytest.raises(ConfigError, match="is not an import path: give it as "
                                          "'package.module:function'"):
        kdfair.load_model(bare, rid, factory="nowhere")


def test_a_factory_without_members_registers_and_builds(tmp_path):
    from kdfair.models.registry import bankable, build_model, register_model

    def make(num_classes, input_shape):
        return torch.nn.Linear(input_shape[0], num_classes)

    register_model("test-no-members", make)
    assert build_model("test-no-members", 3, (4,)).out_features == 3
    assert not bankable("test-no-members", 3, (4,))


def test_an_export_pair_missing_a_file_and_an_audit_are_one_message(tmp_path):
    (tmp_path / "m.json").write_text("{}")
    with pytest.raises(StoreError, match="m.safetensors is missing: an export is the pair "
                                         "m.json \\+ m.safetensors"):
        kdfair.load_exported(tmp_path / "m.json")
    y = np.arange(40) % 2
    logits = np.eye(2, dtype=np.float32)[y] + 0.1
    kdfair.audit(y, teacher=[logits, logits], nds=[logits, logits], ds={4: [logits, logits]},
                 out=tmp_path, name="aud", write_report=False)
    rid = _run(tmp_path / "aud", "nds")
    from typer.testing import CliRunner

    from kdfair.cli import app

    res = CliRunner().invoke(app, ["export", str(tmp_path / "aud"), rid, "--out",
                                   str(tmp_path / "x")])
    assert res.exit_code != 0
    assert "is an audit: it holds predictions made outside kdfair, no models" in res.output
    assert "kdfair run" not in res.output


def test_an_older_store_s_normalisation_of_features_is_not_exported(custom, tmp_path):
    import shutil

    _, root, _ = custom
    old = tmp_path / "old"
    shutil.copytree(root, old)
    info = json.loads((old / "data.json").read_text())
    info["mean"], info["std"] = [0.5], [0.5]  # what kdfair recorded for features before
    (old / "data.json").write_text(json.dumps(info))
    sys.path.insert(0, str(custom[0]))
    try:
        kdfair.export_model(old, _run(old, "nds-s0"), tmp_path / "x")
    finally:
        sys.path.remove(str(custom[0]))
    meta = json.loads(next((tmp_path / "x").glob("*.json")).read_text())
    assert meta["mean"] is None and meta["std"] is None


def test_an_export_whose_factory_is_not_a_model_builder_is_one_message(tmp_path):
    """The JSON's factory is called as factory(num_classes, input_shape): a path that is not a
    string, or a callable that returns no nn.Module, is a ConfigError naming it (no
    AttributeError), before any weights are read."""
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(1)}, str(tmp_path / "m.safetensors"))
    meta = {"arch": "custom-review-net", "num_classes": 2, "input_shape": [3]}
    (tmp_path / "m.json").write_text(json.dumps({**meta, "factory": 123}))
    with pytest.raises(ConfigError, match="factory 123 is not an import path"):
        kdfair.load_exported(tmp_path / "m.json", trust_factory=True)
    (tmp_path / "m.json").write_text(json.dumps({**meta, "factory": "numpy:add"}))
    with pytest.raises(ConfigError, match="factory of 'custom-review-net' returned ndarray, not "
                                          "a torch.nn.Module"):
        kdfair.load_exported(tmp_path / "m.json", trust_factory=True)


def test_an_export_s_factory_is_imported_only_when_trusted(tmp_path, monkeypatch):
    """An export travels: the factory path its JSON names is code, so without trust_factory=True
    nothing is imported or called and the message names the path and both ways on; with it (or
    with factory= given) the model loads."""
    import importlib

    from safetensors.torch import save_file

    where = tmp_path / "mods"
    where.mkdir()
    (where / "kdfair_trust_net.py").write_text(
        "import torch.nn as nn\nCALLS = []\n"
        "def make(num_classes, input_shape):\n"
        "    CALLS.append(num_classes)\n"
        "    return nn.Linear(input_shape[0], num_classes)\n")
    monkeypatch.syspath_prepend(str(where))
    net = torch.nn.Linear(3, 2)
    save_file(dict(net.state_dict()), str(tmp_path / "m.safetensors"))
    (tmp_path / "m.json").write_text(json.dumps({
        "arch": "custom-trust-net", "num_classes": 2, "input_shape": [3],
        "factory": "kdfair_trust_net:make"}))
    imported = []
    real = importlib.import_module
    monkeypatch.setattr(importlib, "import_module",
                        lambda name, *a: imported.append(name) or real(name, *a))
    with pytest.raises(ConfigError) as err:
        kdfair.load_exported(tmp_path / "m.json")
    assert ("says 'custom-trust-net' is built by the factory 'kdfair_trust_net:make': that is "
            "code") in str(err.value)
    assert "load_exported(path, trust_factory=True)" in str(err.value)
    assert "factory=" in str(err.value)
    assert "kdfair_trust_net" not in imported
    model = kdfair.load_exported(tmp_path / "m.json", trust_factory=True)
    assert "kdfair_trust_net" in imported
    x = torch.randn(4, 3)
    assert torch.equal(model(x), net(x))
    mod = importlib.import_module("kdfair_trust_net")
    assert mod.CALLS == [2]
    given = kdfair.load_exported(tmp_path / "m.json", factory=lambda k, shape: torch.nn.Linear(
        shape[0], k))  # the caller's own function: no trust needed
    assert torch.equal(given(x), net(x)) and mod.CALLS == [2]


@pytest.mark.parametrize("path", ["os:system", "builtins:exec", "subprocess:run",
                                  "importlib.util:find_spec"])
def test_an_export_naming_a_standard_library_function_is_refused_unimported(tmp_path, path,
                                                                           monkeypatch):
    """An edited export JSON must not be a way to run a command: a factory path into Python's
    standard library is refused before anything is imported or called."""
    import importlib

    from safetensors.torch import save_file

    save_file({"w": torch.zeros(1)}, str(tmp_path / "m.safetensors"))
    (tmp_path / "m.json").write_text(json.dumps({"arch": "custom-evil-net", "num_classes": 2,
                                                 "input_shape": [3], "factory": path}))
    imported = []
    real = importlib.import_module
    monkeypatch.setattr(importlib, "import_module",
                        lambda name, *a: imported.append(name) or real(name, *a))
    with pytest.raises(ConfigError, match=f"names the factory '{path}', from Python's standard "
                                          "library, which builds no model: kdfair does not "
                                          "import it"):
        kdfair.load_exported(tmp_path / "m.json", trust_factory=True)  # not even when trusted
    with pytest.raises(ConfigError, match="from Python's standard library"):  # no advice to
        kdfair.load_exported(tmp_path / "m.json")  # trust a path that is refused anyway
    assert path.split(":")[0] not in imported
