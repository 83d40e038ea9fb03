"""RunStore: one directory per finished run, written atomically (format: docs/store.md)."""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from kdfair.errors import StoreError
from kdfair.spec import RunSpec


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str))


def _atomic_file(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    write(tmp)
    os.replace(tmp, path)


class RunStore:
    """The results directory of one experiment."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.runs_dir = self.root / "runs"
        self.failed_dir = self.root / "failed"
        self.tmp_dir = self.root / ".tmp"

    # --- experiment-level files -------------------------------------------------------------
    def init(self, experiment: dict[str, Any]) -> None:
        """Create the directory and record the experiment; refuse a different one."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.runs_dir.mkdir(exist_ok=True)
        path = self.root / "experiment.json"
        if path.exists():
            old = json.loads(path.read_text())
            if old.get("name") != experiment.get("name"):
                raise StoreError(
                    f"{self.root} holds experiment {old.get('name')!r}, not "
                    f"{experiment.get('name')!r}; choose another --out directory"
                )
        _atomic_file(path, lambda p: _write_json(p, experiment))
        if self.tmp_dir.exists():  # runs that were in progress when a previous process died
            shutil.rmtree(self.tmp_dir, ignore_errors=True)

    def experiment(self) -> dict[str, Any]:
        path = self.root / "experiment.json"
        if not path.exists():
            raise StoreError(f"{self.root} is not a kdfair results directory (no experiment.json)")
        return json.loads(path.read_text())

    def has_data_files(self, fingerprint: str) -> bool:
        """Whether the per-experiment test-set files exist and describe data ``fingerprint``."""
        names = ("data.json", "attributes.npz", "test_features.npy")
        if not all((self.root / n).exists() for n in names):
            return False
        try:
            info = json.loads((self.root / "data.json").read_text())
        except (OSError, json.JSONDecodeError):
            return False
        return info.get("fingerprint") == fingerprint

    def write_data_files(self, data_info: dict[str, Any], attributes: dict[str, np.ndarray],
                         index: np.ndarray, features: np.ndarray) -> None:
        """Per-experiment test-set files: data.json, attributes.npz, test_features.npy."""
        _atomic_file(self.root / "data.json", lambda p: _write_json(p, data_info))

        def save_attrs(p: Path) -> None:
            with open(p, "wb") as f:
                np.savez(f, index=index.astype(np.int64),
                         **{k: v.astype(np.int64) for k, v in attributes.items()})

        _atomic_file(self.root / "attributes.npz", save_attrs)

        def save_feats(p: Path) -> None:
            with open(p, "wb") as f:
                np.save(f, features.astype(np.float32))

        _atomic_file(self.root / "test_features.npy", save_feats)

    def write_plan(self, run_ids: list[str]) -> None:
        """The run ids of the current plan, in order (what `kdfair status` compares against)."""
        _atomic_file(self.root / "plan.json", lambda p: _write_json(p, {"runs": run_ids}))

    def load_plan(self) -> list[str]:
        path = self.root / "plan.json"
        if not path.exists():
            raise StoreError(f"{self.root} has no plan.json: was it written by `kdfair run`?")
        return list(json.loads(path.read_text())["runs"])

    # --- runs ------------------------------------------------------------------------------
    def run_dir(self, run_id: str) -> Path:
        return self.runs_dir / run_id

    def is_done(self, run_id: str) -> bool:
        return (self.run_dir(run_id) / "predictions.npz").exists()

    def done_ids(self) -> set[str]:
        if not self.runs_dir.exists():
            return set()
        return {p.name for p in self.runs_dir.iterdir() if (p / "predictions.npz").exists()}

    def failed(self) -> dict[str, dict[str, Any]]:
        if not self.failed_dir.exists():
            return {}
        out = {}
        for p in sorted(self.failed_dir.glob("*.json")):
            try:
                out[p.stem] = json.loads(p.read_text())
            except (OSError, json.JSONDecodeError):
                out[p.stem] = {"run_id": p.stem, "error": "unreadable failure record"}
        return out

    def save_run(self, spec: RunSpec, metrics: dict[str, Any], logits: np.ndarray,
                 labels: np.ndarray, index: np.ndarray,
                 weights: dict[str, torch.Tensor] | None = None) -> Path:
        """Write a finished run: into .tmp first, then one rename makes it visible."""
        run_id = spec.run_id
        final = self.run_dir(run_id)
        if final.exists():
            raise StoreError(f"run {run_id} already exists in {self.runs_dir}")
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.tmp_dir / f"{run_id}.{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        _write_json(tmp / "spec.json", spec.to_json())
        _write_json(tmp / "metrics.json", {"status": "ok", **metrics})
        if weights is not None:
            save_file({k: v.detach().cpu().contiguous() for k, v in weights.items()},
                      str(tmp / "model.safetensors"))
        with open(tmp / "predictions.npz", "wb") as f:
            np.savez(f, logits=logits.astype(np.float32), labels=labels.astype(np.int64),
                     index=index.astype(np.int64))
            f.flush()
            os.fsync(f.fileno())
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, final)
        (self.failed_dir / f"{run_id}.json").unlink(missing_ok=True)
        return final

    def record_failure(self, spec: RunSpec, error: str) -> None:
        self.failed_dir.mkdir(parents=True, exist_ok=True)
        rec = {"run_id": spec.run_id, "spec": spec.to_json(), "error": error,
               "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
        _atomic_file(self.failed_dir / f"{spec.run_id}.json", lambda p: _write_json(p, rec))

    def load_weights(self, run_id: str) -> dict[str, torch.Tensor]:
        path = self.run_dir(run_id) / "model.safetensors"
        if not path.exists():
            raise StoreError(f"run {run_id} has no saved weights ({path})")
        return load_file(str(path))

    def load_metrics(self, run_id: str) -> dict[str, Any]:
        return json.loads((self.run_dir(run_id) / "metrics.json").read_text())

    def load_spec(self, run_id: str) -> dict[str, Any]:
        return json.loads((self.run_dir(run_id) / "spec.json").read_text())
