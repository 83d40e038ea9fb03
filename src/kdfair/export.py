"""Stored models back as modules: ``load_model`` (a ready ``nn.Module``) and ``export_model``
(the weights plus what rebuilding them needs, for use outside kdfair)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch.nn as nn

from kdfair.errors import StoreError
from kdfair.spec import RunSpec
from kdfair.store import ResultsDir
from kdfair.store.files import read_json
from kdfair.train.engine import build_spec_model


def stored_model(store: ResultsDir, spec: RunSpec, num_classes: int,
                 input_shape: tuple[int, ...]) -> nn.Module:
    """The model of a finished run with its saved weights (on the CPU, eval mode)."""
    model = build_spec_model(spec, num_classes, input_shape)
    path = store.weights_path(spec.run_id)
    try:
        model.load_state_dict(store.load_weights(spec.run_id))
    except RuntimeError as err:  # wrong keys or shapes
        raise StoreError(f"{path} does not fit a {spec.arch} ({str(err).splitlines()[0]}); "
                         "run `kdfair run` again after deleting that run directory") from None
    return model.eval()


def _data(store: ResultsDir) -> dict:
    info = read_json(store.root / "data.json", "the study's data.json")
    if "input_shape" not in info:
        raise StoreError(f"{store.root / 'data.json'} does not record the input shape (a store "
                         "of an earlier kdfair): run `kdfair run` on the study once more, which "
                         "records it and trains nothing that is done")
    return info


def _spec(store: ResultsDir, run_id: str) -> RunSpec:
    if not store.run_dir(run_id).is_dir():
        runs = sorted(p.name for p in store.runs_dir.iterdir()) if store.runs_dir.is_dir() else []
        close = [r for r in runs if r.startswith(run_id.rsplit("-", 1)[0])][:5]
        raise StoreError(f"{store.root} has no run {run_id!r}"
                         + (f"; runs like it: {', '.join(close)}" if close else "")
                         + " (`kdfair status` lists them)")
    return store.load_spec(run_id)


def load_model(results: str | Path, run_id: str) -> nn.Module:
    """The trained model of run ``run_id`` of a results directory, ready to use (CPU, eval).

    Inputs are what the study fed it: images scaled to [0, 1] and normalised with data.json's
    ``mean`` / ``std``. Students have weights with ``store.keep_weights: all`` (the default).
    """
    store = ResultsDir(results)
    spec = _spec(store, run_id)
    info = _data(store)
    return stored_model(store, spec, int(info["num_classes"]), tuple(info["input_shape"]))


def export_model(results: str | Path, run_id: str, out: str | Path) -> Path:
    """Write ``<out>/<run_id>.safetensors`` and ``<run_id>.json`` (architecture, options, class
    names, input shape and normalisation, the full spec); returns the weights' path."""
    store = ResultsDir(results)
    spec = _spec(store, run_id)
    info = _data(store)
    store.load_weights(run_id)  # verified: a damaged or missing file is one message
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    weights = out / f"{run_id}.safetensors"
    shutil.copyfile(store.weights_path(run_id), weights)
    meta = {"run_id": run_id, "arch": spec.arch, "model_options": spec.model_options,
            "num_classes": info["num_classes"], "class_names": info["class_names"],
            "input_shape": info["input_shape"], "mean": info.get("mean"), "std": info.get("std"),
            "spec": spec.to_json(),
            "load": "kdfair.models.registry.build_model(arch, num_classes, input_shape, "
                    "**model_options) then load_state_dict(safetensors.torch.load_file(path))"}
    (out / f"{run_id}.json").write_text(json.dumps(meta, indent=2, default=str))
    return weights
