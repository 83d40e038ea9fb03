"""Packaging: every third-party module kdfair imports is declared, the floors the code needs,
licence metadata, a dev extra for ruff, and `make demo` installing only kdfair itself."""

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = (ROOT / "pyproject.toml").read_text()

# import name -> distribution name, where they differ
DISTRIBUTION = {"PIL": "pillow", "yaml": "pyyaml", "sklearn": "scikit-learn"}
# imported only inside an optional extra's code path (name -> extra)
OPTIONAL = {"transformers": "text", "tokenizers": "text", "submitit": "slurm", "timm": "timm",
            "tensorboard": "tracking",
            "huggingface_hub": "timm"}


def requirements(block: str) -> dict[str, str]:
    """{distribution (normalised): lower bound or ''} of a TOML list of requirement strings."""
    out = {}
    for spec in re.findall(r'"([^"]+)"', block):
        name, _, low = spec.partition(">=")
        out[re.sub(r"[-_.]+", "-", name.strip().lower())] = low.strip()
    return out


def core() -> dict[str, str]:
    return requirements(re.search(r"^dependencies = \[(.*?)^\]", PYPROJECT, re.S | re.M).group(1))


def extra(name: str) -> dict[str, str]:
    return requirements(re.search(rf"^{name} = \[(.*?)\]", PYPROJECT, re.M).group(1))


def imported_modules() -> set[str]:
    names = set()
    for path in (ROOT / "src" / "kdfair").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"kdfair"}


def test_every_imported_package_is_declared():
    declared = core()
    for module in sorted(imported_modules()):
        dist = re.sub(r"[-_.]+", "-", DISTRIBUTION.get(module, module).lower())
        if module in OPTIONAL:
            assert dist in extra(OPTIONAL[module]), f"{module} not in extra {OPTIONAL[module]}"
        else:
            assert dist in declared, f"kdfair imports {module} but does not declare {dist}"


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split("."))


def test_floors_the_code_needs():
    deps = core()
    assert _version(deps["scipy"]) >= (1, 11)  # stats.false_discovery_control
    assert all(deps.values()), "every dependency has a lower bound"


def test_licence_and_metadata():
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "the kdfair authors" in text
    assert 'license = {text = "MIT"}' in PYPROJECT
    assert 'authors = [{name = "the kdfair authors"}]' in PYPROJECT
    assert "[project.urls]" not in PYPROJECT  # no public repository yet: no invented address


def test_ruff_in_dev_not_test_and_make_demo_installs_only_kdfair():
    assert "ruff" in extra("dev") and "ruff" not in extra("test")
    assert "tensorboard" in extra("tracking")
    make = (ROOT / "Makefile").read_text()
    demo_deps = re.search(r"^demo: (.*)$", make, re.M).group(1).split()
    assert demo_deps == ["$(CORE)"]
    core_recipe = re.search(r"^\$\(CORE\):.*?\n((?:\t.*\n)+)", make, re.M).group(1)
    assert 'pip install -q -e .\n' in core_recipe and "[" not in core_recipe.split("-e")[-1]
    test_recipe = re.search(r"^\$\(TESTS\):.*?\n((?:\t.*\n)+)", make, re.M).group(1)
    assert "test" in test_recipe and "tracking" in test_recipe
    assert re.search(r"^lint: \$\(DEV\)", make, re.M)


def test_the_floors_script_reads_the_floors():
    import subprocess

    script = (ROOT / "scripts" / "check-floors.sh").read_text()
    code = script.split("<<'PYEOF'\n", 1)[1].split("PYEOF", 1)[0]
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.split()
    assert "scipy==1.11" in out and "torch==2.4" in out and "pytest==7" in out
    assert len(out) == len(core()) + len(extra("test"))
