#!/usr/bin/env bash
# Check the lower bounds of pyproject.toml: install the lowest version of every dependency it
# allows ("pkg>=X" becomes "pkg==X"; the test extra too) into a fresh virtual environment, install
# kdfair itself without dependencies, import every module a user reaches, and run a few fast test
# files. A floor that is too low fails here (an ImportError, or a test that uses a newer API).
#
#   bash scripts/check-floors.sh             # or: make floors
#   PY=python3.10 bash scripts/check-floors.sh   # the oldest Python kdfair supports (best:
#                                                # old floors may lack wheels for new Pythons)
#
# Needs network access to PyPI (or a mirror pip is configured for) and a few GB of disk (torch).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
VENV=${FLOORS_VENV:-.venv-floors}

floors=$("$PY" - <<'PYEOF'
import pathlib
import re

text = pathlib.Path("pyproject.toml").read_text()
deps = re.search(r"^dependencies = \[(.*?)^\]", text, re.S | re.M).group(1)
test = re.search(r"^test = \[(.*?)\]", text, re.M).group(1)
for spec in re.findall(r'"([^"]+)"', deps + "\n" + test):
    name, _, low = spec.partition(">=")
    print(f"{name.strip()}=={low.strip()}" if low else name.strip())
PYEOF
)
echo "--- floor versions:" $floors
"$PY" -m venv --clear "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
# shellcheck disable=SC2086  # one argument per requirement
"$VENV/bin/pip" install -q $floors
"$VENV/bin/pip" install -q --no-deps -e .
"$VENV/bin/pip" check
"$VENV/bin/python" - <<'PYEOF'
import importlib

for m in ("kdfair", "kdfair.cli", "kdfair.api", "kdfair.auditing", "kdfair.progress",
          "kdfair.analysis.report", "kdfair.analysis.individual", "kdfair.executors",
          "kdfair.data.trifeature", "kdfair.data.digits", "kdfair.models.torchvision_models"):
    importlib.import_module(m)
from scipy.stats import false_discovery_control  # noqa: F401  (scipy >= 1.11)

print("every module imports with the floor versions")
PYEOF
OMP_NUM_THREADS=1 "$VENV/bin/python" -m pytest -q -x -m "not slow" -p no:cacheprovider \
  tests/test_config.py tests/test_overrides.py tests/test_audit.py \
  tests/test_analysis_classwise.py tests/test_analysis_fairness.py tests/test_analysis_individual.py
echo "--- the floors of pyproject.toml hold"
