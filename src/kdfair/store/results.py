"""ResultsDir: one study's results directory — what training writes and verifies (docs/store.md).

A run directory is written into ``.tmp/``, sealed by a manifest (size and SHA-256 of each file,
written last) and renamed into ``runs/``. A run is *done* only while its files match its
manifest; one that does not is *damaged*, and the next ``kdfair run`` moves it to
``damaged/<run_id>/`` and trains it again.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import shutil
import time
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from kdfair.errors import SETTING, StoreError
from kdfair.integrity import atomic_write, sha256_file
from kdfair.paths import is_safe_name
from kdfair.spec import RunSpec
from kdfair.store.arrays import (
    CorruptRun,
    check_shapes,
    is_legacy,
    json_object,
    prediction_files,
    write_counterfactuals,
    write_predictions,
)
from kdfair.store.files import (
    MANIFEST,
    atomic_json,
    inside,
    manifest_problem,
    read_json,
    safe_component,
    seal_problem,
    sealed,
    write_json,
    write_manifest,
)
from kdfair.studies import not_a_study

log = logging.getLogger(__name__)
State = Literal["done", "damaged", "missing"]
_WARNED: set[str] = set()  # folders under runs/ that are not runs: warned about once
WEIGHTS = "model.safetensors"
# run dir -> (signature of its files, check): a study's runs are hashed once per process, not
# once per question (a 75-run ImageNet study holds 15 GB of logits)
_VERIFIED: dict[tuple[str, bool], tuple[tuple, RunCheck]] = {}


def _signature(d: Path) -> tuple:
    """What changes when any file of a run directory is written, replaced or removed."""
    out = [d.stat().st_ino]
    for p in sorted(d.iterdir()):
        st = p.stat()
        out.append((p.name, st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(out)


@dataclass(frozen=True)
class RunCheck:
    """What a run directory is: done, damaged (with the reason) or missing."""

    state: State
    reason: str = ""


class ResultsDir:
    """The results directory of one experiment: writing, verifying and repairing runs."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.runs_dir = self.root / "runs"
        self.failed_dir = self.root / "failed"
        self.damaged_dir = self.root / "damaged"
        self.tmp_dir = self.root / ".tmp"
        self.lock_path = self.root / ".lock"

    # --- experiment-level files -------------------------------------------------------------
    def init(self, experiment: dict[str, Any]) -> None:
        """Create the directory and record the experiment; refuse a different one."""
        safe_component(str(experiment.get("name")), "experiment name")
        self.root.mkdir(parents=True, exist_ok=True)
        inside(self.root, "runs").mkdir(exist_ok=True)
        path = self.root / "experiment.json"
        if path.exists():
            try:
                old = self.experiment()
            except StoreError:  # corrupt: rewritten (each run's spec.json still names its study)
                old = experiment
            if old.get("name") != experiment.get("name"):
                raise StoreError(
                    f"{self.root} holds experiment {old.get('name')!r}, not "
                    f"{experiment.get('name')!r}; choose another {SETTING} directory",
                    setting="out")
        atomic_json(path, experiment)
        tmp = inside(self.root, ".tmp")
        if tmp.is_dir() and not tmp.is_symlink():  # runs in progress when a writer died
            shutil.rmtree(tmp, ignore_errors=True)

    def experiment(self) -> dict[str, Any]:
        path = self.root / "experiment.json"
        if not path.exists():
            raise StoreError(not_a_study(self.root))
        exp = read_json(path, "it is rewritten by `kdfair run EXPERIMENT --out …`: run the study "
                              "again to restore it")
        if not isinstance(exp, dict):
            raise StoreError(f"{path} is corrupt (not a JSON object); run the study again to "
                             "restore it")
        return exp

    def has_data_files(self, fingerprint: str, needs: tuple[str, ...] = ()) -> bool:
        """Whether the per-experiment test-set files are readable, describe ``fingerprint`` and
        data.json has the keys ``needs`` (derived files: when this is False they are simply
        written again)."""
        try:
            info = read_json(self.root / "data.json")
            n = int(info["n_test"])
            feats = np.load(self.root / "test_features.npy", mmap_mode="r", allow_pickle=False)
            with np.load(self.root / "attributes.npz", allow_pickle=False) as z:
                index = z["index"]
        except (StoreError, OSError, ValueError, KeyError, TypeError, EOFError,
                zipfile.BadZipFile):
            return False
        return (info.get("fingerprint") == fingerprint and feats.ndim == 2
                and feats.shape[0] == n and index.shape == (n,) and all(k in info for k in needs)
                and seal_problem(info, "data.json") is None
                and derived_problem(self.root, info) is None)

    def write_data_files(self, data_info: dict[str, Any], attributes: dict[str, np.ndarray],
                         index: np.ndarray, features: np.ndarray | None,
                         counterfactual_targets: dict[str, np.ndarray] | None = None) -> None:
        """Per-experiment test-set files: data.json, attributes.npz, test_features.npy and,
        for data with counterfactuals, counterfactuals.npz (attribute -> the group each test
        input's counterfactual was given, -1 for none). ``features`` None (an audit given no
        inputs): no test_features.npy, so the analysis skips individual fairness and says so."""
        def codes_writer(arrays: dict[str, np.ndarray]):
            def save(p: Path) -> None:
                with open(p, "wb") as f:
                    np.savez(f, index=index.astype(np.int64),
                             **{k: v.astype(np.int64) for k, v in arrays.items()})
            return save

        save_attrs = codes_writer(attributes)
        if counterfactual_targets:
            atomic_write(self.root / "counterfactuals.npz", codes_writer(counterfactual_targets))

        atomic_write(self.root / "attributes.npz", save_attrs)
        if features is None:
            (self.root / "test_features.npy").unlink(missing_ok=True)
        else:
            feats = features.astype(np.float32)

            def save_feats(p: Path) -> None:
                with open(p, "wb") as f:
                    np.save(f, feats, allow_pickle=False)

            atomic_write(self.root / "test_features.npy", save_feats)
        files = {name: sha256_file(self.root / name) for name in DERIVED
                 if (self.root / name).is_file()}
        # last: it vouches for the others, by their digests
        atomic_json(self.root / "data.json", sealed({**data_info, "files": files}))

    def write_plan(self, run_ids: list[str]) -> None:
        """The run ids of the current plan, in order (what `kdfair status` compares against)."""
        atomic_json(self.root / "plan.json", sealed({"runs": run_ids}))

    def load_plan(self) -> list[str]:
        path = self.root / "plan.json"
        if not path.exists():
            raise StoreError(f"{self.root} has no plan.json: was it written by `kdfair run`?")
        fix = "run `kdfair run` on the experiment again to rewrite it"
        plan = read_json(path, fix)
        runs = plan.get("runs") if isinstance(plan, dict) else None
        edited = seal_problem(plan, "plan.json") if isinstance(plan, dict) else None
        if edited:
            raise StoreError(f"{self.root}: {edited}; {fix}")
        if not isinstance(runs, list) or not all(isinstance(r, str) for r in runs):
            raise StoreError(f"{path} is corrupt (no list of run ids under 'runs'); {fix}")
        return list(runs)

    # --- runs ------------------------------------------------------------------------------
    def run_dir(self, run_id: str) -> Path:
        return inside(self.root, "runs", safe_component(run_id, "run id"))

    def check(self, run_id: str, deep: bool = True) -> RunCheck:
        """Whether a run is done (its files match its manifest), damaged or missing.

        Both compare every file's size and SHA-256 with the manifest; ``deep`` (training) also
        hashes the weights and wants a teacher's; without it (analysis) the weights, which the
        analysis never opens, are not hashed, and the predictions' shapes are checked.
        """
        d = self.run_dir(run_id)
        if not d.is_dir():
            return RunCheck("missing")
        key = (str(d.resolve()), deep)
        try:
            sig = _signature(d)
        except OSError:  # a dangling link, a file removed meanwhile: checked, not remembered
            sig = None
        hit = _VERIFIED.get(key)
        if sig is not None and hit is not None and hit[0] == sig:
            return hit[1]  # files untouched since they were checked
        why = self._problem(d, deep)
        result = RunCheck("damaged", why) if why else RunCheck("done")
        if sig is not None:
            _VERIFIED[key] = (sig, result)
        return result

    def _problem(self, d: Path, deep: bool) -> str | None:
        legacy = is_legacy(d)  # release before manifests: checked by parsing alone
        if not legacy:
            why = manifest_problem(d, ("spec.json", "metrics.json", *prediction_files(d)),
                                   unhashed=() if deep else (WEIGHTS,))
            if why:
                return why
        try:
            spec, metrics = json_object(d / "spec.json"), json_object(d / "metrics.json")
            if spec.get("run_id") != d.name:
                return f"spec.json names run {spec.get('run_id')!r}, not {d.name!r}"
            if metrics.get("status", "ok") != "ok":
                return f"metrics.json status is {metrics.get('status')!r}"
            audited = "audit" in (spec.get("model_options") or {})  # predictions, no model
            if deep and spec.get("role") == "teacher" and not audited \
                    and not (d / WEIGHTS).exists():
                return f"a teacher run without {WEIGHTS}"
            if legacy or not deep:
                check_shapes(d)
        except CorruptRun as err:
            return str(err)
        return None

    def checks(self, deep: bool = True) -> dict[str, RunCheck]:
        """The check of every run directory under runs/; a folder whose name no run id can
        have ('old copy') is not a run: ignored, with a warning."""
        if not self.runs_dir.is_dir():
            return {}
        out = {}
        for p in sorted(self.runs_dir.iterdir()):
            if not p.is_dir() or p.name.startswith("."):
                continue
            if not is_safe_name(p.name):
                if str(p) not in _WARNED:
                    _WARNED.add(str(p))
                    log.warning("%s is not a run (no run id is named %r): ignored; move it out "
                                "of runs/", p, p.name)
                continue
            out[p.name] = self.check(p.name, deep)
        return out

    def is_done(self, run_id: str) -> bool:
        return self.check(run_id).state == "done"

    def done_ids(self, deep: bool = True) -> set[str]:
        return {r for r, c in self.checks(deep).items() if c.state == "done"}

    def damaged(self, deep: bool = True) -> dict[str, str]:
        """run id -> why, for run directories that do not match their manifest."""
        return {r: c.reason for r, c in self.checks(deep).items() if c.state == "damaged"}

    def quarantine(self, run_id: str, reason: str) -> Path:
        """Move a damaged run to ``damaged/<run_id>[.n]/`` with ``reason.json``; returns it."""
        src = self.run_dir(run_id)
        inside(self.root, "damaged").mkdir(parents=True, exist_ok=True)
        dst, n = inside(self.root, "damaged", run_id), 1
        while dst.exists() or dst.is_symlink():
            dst, n = inside(self.root, "damaged", f"{run_id}.{n}"), n + 1
        os.replace(src, dst)
        write_json(dst / "reason.json", {"run_id": run_id, "reason": reason,
                                         "time": time.strftime("%Y-%m-%dT%H:%M:%S")})
        return dst

    def repair(self, run_ids: set[str] | None = None) -> dict[str, str]:
        """Quarantine every damaged run (of ``run_ids``, if given); returns run id -> why."""
        moved = {}
        for run_id, why in self.damaged().items():
            if run_ids is None or run_id in run_ids:
                self.quarantine(run_id, why)
                moved[run_id] = why
        return moved

    def failed(self) -> dict[str, dict[str, Any]]:
        """run id -> failure record, each normalised (error: str; spec: dict)."""
        return {r["run_id"]: r for r in failure_records(self.root)}

    def save_run(self, spec: RunSpec, metrics: dict[str, Any], logits: np.ndarray,
                 labels: np.ndarray, index: np.ndarray,
                 weights: dict[str, torch.Tensor] | None = None,
                 logits_dtype: str = "float32",
                 counterfactual_logits: dict[str, np.ndarray] | None = None) -> Path:
        """Write a finished run: into .tmp, sealed by its manifest, then one rename.

        ``counterfactual_logits`` (attribute -> [N, C], rows as ``logits``): the model's logits on
        the test set's counterfactuals, kept as ``counterfactual-<attribute>.npy``.

        A valid twin already in runs/ (another job finished the same run) makes this a no-op;
        a damaged one is moved to damaged/ first.
        """
        from safetensors.torch import save_file

        run_id = spec.run_id
        final = self.run_dir(run_id)
        if self._keep_twin(run_id):
            return final
        tmp = inside(self.root, ".tmp", f"{run_id}.{uuid.uuid4().hex[:8]}")
        tmp.mkdir(parents=True)
        try:
            write_json(tmp / "spec.json", spec.to_json())
            write_json(tmp / "metrics.json", {"status": "ok", **metrics})
            if weights is not None:
                _save_weights(save_file, weights, tmp / WEIGHTS)
            write_predictions(tmp, logits, labels, index, logits_dtype)
            for attr, cf in (counterfactual_logits or {}).items():
                safe_component(attr, "attribute name")
                if cf.shape != logits.shape:
                    raise ValueError(f"counterfactual logits for {attr!r} have shape "
                                     f"{cf.shape}, the test logits {logits.shape}")
            write_counterfactuals(tmp, counterfactual_logits or {}, logits_dtype)
            write_manifest(tmp)
            _fsync_dir(tmp)
            self.runs_dir.mkdir(parents=True, exist_ok=True)
            try:
                os.rename(tmp, final)
            except OSError:
                if not self._keep_twin(run_id):  # lost a race to a writer of a damaged twin
                    raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        _fsync_dir(self.runs_dir)
        inside(self.root, "failed", f"{run_id}.json").unlink(missing_ok=True)
        return final

    def _keep_twin(self, run_id: str) -> bool:
        """True when runs/<run_id> is already done; a damaged one is moved aside."""
        c = self.check(run_id)
        if c.state == "done":
            inside(self.root, "failed", f"{run_id}.json").unlink(missing_ok=True)
            return True
        if c.state == "damaged":
            self.quarantine(run_id, c.reason)
        return False

    def record_failure(self, spec: RunSpec, error: str) -> None:
        path = inside(self.root, "failed", safe_component(spec.run_id, "run id") + ".json")
        self.failed_dir.mkdir(parents=True, exist_ok=True)
        rec = {"run_id": spec.run_id, "spec": spec.to_json(), "error": error,
               "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
        atomic_json(path, rec)

    def weights_path(self, run_id: str) -> Path:
        return self.run_dir(run_id) / WEIGHTS

    def weights_sha256(self, run_id: str) -> str | None:
        """SHA-256 of a run's weights as its manifest records it."""
        try:
            manifest = read_json(self.run_dir(run_id) / MANIFEST)
            return manifest["files"][WEIGHTS]["sha256"]
        except (StoreError, KeyError, TypeError):
            return None

    def load_weights(self, run_id: str) -> dict[str, torch.Tensor]:
        """A done run's weights; StoreError naming the file and the fix when they cannot be."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        path = self.weights_path(run_id)
        c = self.check(run_id)
        if c.state != "done" or not path.exists():
            why = c.reason or f"{WEIGHTS} is missing"
            raise StoreError(f"run {run_id} has no usable weights ({path}: {why}); run "
                             "`kdfair run` again: it moves the run to damaged/ and retrains it")
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as err:
            raise StoreError(f"{path} cannot be read ({err}); run `kdfair run` again: it moves "
                             "the run to damaged/ and retrains it") from None

    def load_spec(self, run_id: str) -> RunSpec:
        """The RunSpec of a finished run (e.g. the teacher a student distils from)."""
        path = self.run_dir(run_id) / "spec.json"
        try:
            return RunSpec.from_json(read_json(path))
        except (OSError, ValueError, TypeError) as err:
            raise StoreError(f"{path} cannot be read as a run spec ({err}); `kdfair run` "
                             "moves the damaged run aside and trains it again") from None

    def load_metrics(self, run_id: str) -> dict[str, Any]:
        return read_json(self.run_dir(run_id) / "metrics.json")


DERIVED = ("attributes.npz", "test_features.npy", "counterfactuals.npz")  # vouched by data.json


def derived_problem(root: Path, data: dict[str, Any]) -> str | None:
    """Why the test-set files do not match the digests data.json records for them (None when
    they do, or data.json is older and records none): one missing or edited, or one present
    that it does not list (sealed both ways)."""
    files = data.get("files")
    if not isinstance(files, dict):
        return None
    for name in DERIVED:
        path = root / name
        if name not in files:
            if path.exists():
                return f"{name} is not listed in data.json"
            continue
        if not path.is_file():
            return f"{name} is missing"
        if sha256_file(path) != files[name]:
            return f"{name} does not match its SHA-256 in data.json"
    return None


def finite_number(v: Any) -> float | None:
    """``v`` as a float when it is a finite number (not a bool), else None."""
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    return float(v) if ok else None


def failure_records(root: Path) -> list[dict[str, Any]]:
    """Every ``failed/*.json``, normalised: run_id, role, T (float or None), seed, error, spec.

    An unreadable record is kept (as such): it still says that the run failed.
    """
    out = []
    for p in sorted((root / "failed").glob("*.json")):
        try:
            rec = read_json(p)
            if not isinstance(rec, dict):
                raise StoreError("not an object")
        except (StoreError, OSError):
            rec = {"run_id": p.stem, "error": f"unreadable failure record {p.name}"}
        spec = rec.get("spec") if isinstance(rec.get("spec"), dict) else {}
        seed = spec.get("seed")
        out.append({"run_id": str(rec.get("run_id") or p.stem), "role": spec.get("role"),
                    "T": finite_number(spec.get("temperature")),
                    "seed": seed if isinstance(seed, int) and not isinstance(seed, bool)
                    else None,
                    "error": str(rec.get("error", "")), "time": rec.get("time"), "spec": spec})
    return out


def upgrade_run_dir(d: Path, logits_dtype: str = "float32") -> None:
    """Rewrite a run directory of the previous release (predictions.npz, no manifest) in the
    current format: .npy predictions, sealed by a manifest. A current one is left alone."""
    from kdfair.store.arrays import LEGACY, load_predictions

    if not is_legacy(d):
        return
    arrays = load_predictions(d)
    write_predictions(d, arrays["logits"], arrays["labels"], arrays["index"], logits_dtype)
    (d / LEGACY).unlink()
    write_manifest(d)


def _save_weights(save_file: Any, weights: dict[str, torch.Tensor], path: Path) -> None:
    """safetensors reports a failed write as SafetensorError; make it the OSError it is."""
    from safetensors import SafetensorError

    try:
        save_file({k: v.detach().cpu().contiguous() for k, v in weights.items()}, str(path))
    except SafetensorError as err:
        text = str(err)
        code = errno.ENOSPC if "No space" in text else errno.EROFS if "Read-only" in text \
            else errno.EACCES if "ermission" in text else errno.EIO
        raise OSError(code, os.strerror(code), str(path)) from None


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
