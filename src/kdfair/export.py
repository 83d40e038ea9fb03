"""Stored models back as modules: ``load_model`` (a ready ``nn.Module``), ``export_model`` (the
weights plus what rebuilding them needs, for use outside kdfair) and ``load_exported`` (an
exported pair back as a module, in any process).

A model kdfair knows by name (``resnet20``, ``torchvision:resnet18``) is rebuilt from the
registry. A custom architecture (a factory given to ``kdfair.study`` or registered at run time)
is rebuilt from its factory's import path ``"package.module:function"`` — recorded in the store's
``factories.json`` by ``kdfair.study`` and in the export's JSON when the factory can be imported
in another process — or from the factory passed as ``factory=``. Either way it is called as
``factory(num_classes, input_shape, **model_options)``.
"""

from __future__ import annotations

import importlib
import json
import shutil
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from kdfair.errors import ConfigError, StoreError
from kdfair.integrity import atomic_write
from kdfair.models.factories import FACTORIES
from kdfair.spec import RunSpec
from kdfair.store import ResultsDir
from kdfair.store.files import atomic_json, read_json

FACTORIES_FILE = "factories.json"  # {arch: "package.module:function"}, written by kdfair.study
Factory = Callable[..., nn.Module]


def factory_path(factory: Any) -> str | None:
    """``"package.module:function"`` of a factory that a fresh process can import (a
    module-level function or class outside ``__main__``), else None. A registered wrapper with a
    ``build`` attribute (``kdfair.study``'s) is unwrapped."""
    target = getattr(factory, "build", factory)
    module, name = getattr(target, "__module__", None), getattr(target, "__qualname__", "")
    if not module or module == "__main__" or "<" in name:  # <lambda>, <locals>
        return None
    path = f"{module}:{name}"
    try:
        return path if import_factory(path) is target else None
    except ConfigError:
        return None


def import_factory(path: str) -> Factory:
    """The object an import path ``"package.module:function"`` names."""
    module, colon, name = path.partition(":") if isinstance(path, str) else ("", "", "")
    if not colon or not module or not name:
        raise ConfigError(f"factory {path!r} is not an import path: give it as "
                          "'package.module:function'")
    try:
        obj: Any = importlib.import_module(module)
        for part in name.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as err:
        raise ConfigError(f"factory {path!r} cannot be imported ({err}): put its module on the "
                          "Python path (PYTHONPATH) or pass the function as factory=") from None
    if not callable(obj):
        raise ConfigError(f"factory {path!r} is not callable")
    return obj


def record_factories(results: str | Path, archs: Mapping[str, Any]) -> dict[str, str]:
    """Record in ``<results>/factories.json`` the import path of each custom architecture's
    factory that another process can import (merged with what is there); returns them."""
    path = Path(results) / FACTORIES_FILE
    known = read_json(path) if path.exists() else {}
    known = known if isinstance(known, dict) else {}
    found = {a: p for a, f in archs.items() if (p := factory_path(f)) is not None}
    if found and {**known, **found} != known:
        atomic_json(path, {**known, **found})
    return found


def _recorded(results: Path, arch: str) -> str | None:
    path = results / FACTORIES_FILE
    known = read_json(path) if path.exists() else {}
    return known.get(arch) if isinstance(known, dict) else None


def _trusted(recorded: Any, where: str) -> str:
    """A factory path read from a file, refused when it names Python's standard library (or
    builtins): no model factory lives there, and importing and calling one of its functions is
    how an edited file would run a command. A user's own module is imported as recorded."""
    top = str(recorded).partition(":")[0].split(".")[0]
    if top in sys.stdlib_module_names or top in ("builtins", "__main__"):
        raise ConfigError(f"{where} names the factory {str(recorded)[:80]!r}, from Python's "
                          "standard library, which builds no model: kdfair does not import it. "
                          "Pass the function that builds the model yourself (factory=)")
    return str(recorded) if isinstance(recorded, str) else recorded


def _builder(arch: str, factory: Factory | str | None, recorded: str | None,
             where: str, trust: bool = True) -> Callable[[int, tuple[int, ...], dict], nn.Module]:
    """How to build ``arch``: the factory given, the registry's, or the recorded import path
    (followed only when ``trust``: importing and calling it runs code the file names)."""
    from kdfair.models.registry import build_model, get_factory

    if isinstance(factory, str):
        factory = import_factory(factory)
    if factory is None:
        try:
            get_factory(arch)
            return lambda k, shape, opts: build_model(arch, k, shape, **opts)
        except ConfigError:
            if recorded is None:
                raise ConfigError(
                    f"architecture {arch!r} is not one kdfair knows: it was registered at run "
                    f"time by the process that trained it, and {where} records no importable "
                    "factory for it. Pass the function that builds it: factory=make_model (or "
                    "'package.module:function'; `kdfair export --factory` on the command "
                    "line), called as factory(num_classes, input_shape)") from None
            recorded = _trusted(recorded, where)  # the standard library: refused either way
            if not trust:
                raise ConfigError(
                    f"{where} says {arch!r} is built by the factory {str(recorded)[:80]!r}: "
                    "that is code, and kdfair imports code a file names only when you say so. "
                    "If you trust where this export came from: load_exported(path, "
                    "trust_factory=True); or pass the function that builds the model yourself "
                    "(factory=)") from None
            factory = import_factory(recorded)
    chosen = factory

    def build(k: int, shape: tuple[int, ...], opts: dict) -> nn.Module:
        try:
            model = chosen(k, tuple(shape), **opts)
        except TypeError as err:
            raise ConfigError(f"factory of {arch!r} cannot be called as factory(num_classes, "
                              f"input_shape{', **' + str(opts) if opts else ''}): {err}") from None
        if not isinstance(model, nn.Module):
            raise ConfigError(f"factory of {arch!r} returned {type(model).__name__}, not a "
                              "torch.nn.Module: give the function that builds the model")
        return model
    return build


def _loaded(model: nn.Module, weights: dict[str, torch.Tensor], path: Path, arch: str) -> nn.Module:
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:  # wrong keys or shapes
        raise StoreError(f"{path} does not fit a {arch} ({str(err).splitlines()[0]}): a custom "
                         "architecture needs the factory that built it; a damaged run is "
                         "trained again by `kdfair run` after deleting its directory") from None
    return model.eval()


def stored_model(store: ResultsDir, spec: RunSpec, num_classes: int,
                 input_shape: tuple[int, ...], factory: Factory | str | None = None) -> nn.Module:
    """The model of a finished run with its saved weights (on the CPU, eval mode)."""
    build = _builder(spec.arch, factory, _recorded(store.root, spec.arch), str(store.root))
    opts = {k: v for k, v in spec.model_options.items() if k != "checkpoint"}
    with torch.random.fork_rng(devices=[]):  # building draws initial weights: not the caller's
        model = build(num_classes, tuple(input_shape), opts)
    return _loaded(model, store.load_weights(spec.run_id), store.weights_path(spec.run_id),
                   spec.arch)


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
    spec = store.load_spec(run_id)
    if "audit" in spec.model_options:
        raise StoreError(f"{store.root} is an audit: it holds predictions made outside kdfair, "
                         "no models, so there is nothing to load or export; the models are "
                         "where they were trained")
    return spec


def load_model(results: str | Path, run_id: str,
               factory: Factory | str | None = None) -> nn.Module:
    """The trained model of run ``run_id`` of a results directory, ready to use (CPU, eval).

    Inputs are what the study fed it: images scaled to [0, 1] and normalised with data.json's
    ``mean`` / ``std``; features as given. Students have weights with ``store.keep_weights: all``
    (the default). ``factory``: for a custom architecture in a process that does not know it
    (and whose import path the store does not record), the function that builds it, or its
    import path ``"package.module:function"``; called as ``factory(num_classes, input_shape)``.
    """
    store = ResultsDir(results)
    spec = _spec(store, run_id)
    info = _data(store)
    return stored_model(store, spec, int(info["num_classes"]), tuple(info["input_shape"]),
                        factory)


def export_model(results: str | Path, run_id: str, out: str | Path,
                 factory: Factory | str | None = None) -> Path:
    """Write ``<out>/<run_id>.safetensors`` and ``<run_id>.json`` (architecture, options, the
    custom factory's import path, class names, input shape and normalisation, the full spec);
    returns the weights' path. ``kdfair.load_exported`` reads the pair back.

    ``factory`` (a custom architecture): its import path, or the function; recorded when it can
    be imported in another process. The export is checked by rebuilding the model first.
    """
    store = ResultsDir(results)
    spec = _spec(store, run_id)
    info = _data(store)
    custom = _custom(spec.arch)
    recorded = _recorded(store.root, spec.arch)
    path = factory if isinstance(factory, str) else factory_path(factory) if factory else None
    path = path or recorded or (factory_path(FACTORIES[spec.arch]) if custom and
                                spec.arch in FACTORIES else None)
    stored_model(store, spec, int(info["num_classes"]), tuple(info["input_shape"]),
                 factory)  # the weights verified and fitting the architecture
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    weights = out / f"{run_id}.safetensors"
    source = store.weights_path(run_id)  # whole or not at all: a full disk leaves no stub
    atomic_write(weights, lambda tmp: shutil.copyfile(source, tmp))
    meta = {"run_id": run_id, "arch": spec.arch, "model_options": spec.model_options,
            "factory": path if custom else None,
            "num_classes": info["num_classes"], "class_names": info["class_names"],
            "input_shape": info["input_shape"],
            **_normalisation(info),
            "spec": spec.to_json(),
            "load": "kdfair.load_exported(path) (a custom factory: add trust_factory=True, or "
                    "factory=); or build the model (kdfair's registry: "
                    "kdfair.models.registry.build_model(arch, num_classes, input_shape, "
                    "**model_options); a custom one: factory(num_classes, input_shape, "
                    "**model_options)) and load_state_dict(safetensors.torch.load_file(path)). "
                    "Inputs: uint8 images scaled to [0, 1] then normalised with mean/std; "
                    "mean/std null: inputs used as given"}
    text = json.dumps(meta, indent=2, default=str)
    atomic_write(out / f"{run_id}.json", lambda tmp: tmp.write_text(text))
    return weights


def _normalisation(info: dict) -> dict[str, list[float] | None]:
    """The mean / std applied to the inputs: images' only ([C, H, W]); features and text are
    used as given, whatever an older data.json says (it recorded 0.5 for them)."""
    images = len(info.get("input_shape") or ()) == 3
    return {k: (info.get(k) or None) if images else None for k in ("mean", "std")}


def _custom(arch: str) -> bool:
    from kdfair.models.registry import is_builtin

    return not is_builtin(arch)


def load_exported(path: str | Path, factory: Factory | str | None = None, *,
                  trust_factory: bool = False) -> nn.Module:
    """The model of an export (``kdfair export``'s ``.safetensors`` + ``.json`` pair; ``path``
    names either file or their common stem), ready to use (CPU, eval mode).

    A custom architecture is built by ``factory`` when given. The import path the JSON records
    is code (kdfair would import its module and call it with the JSON's options), and an export
    is a file that travels: it is followed only with ``trust_factory=True``, and never into
    Python's standard library. The weights are safetensors, never unpickled.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    p = Path(path)
    stem = p.with_suffix("") if p.suffix in (".json", ".safetensors") else p
    meta_path, weights = Path(f"{stem}.json"), Path(f"{stem}.safetensors")
    for f in (meta_path, weights):
        if not f.is_file():
            raise StoreError(f"{f} is missing: an export is the pair {stem.name}.json + "
                             f"{stem.name}.safetensors, written by `kdfair export`")
    meta = read_json(meta_path, "an export's description")
    for key in ("arch", "num_classes", "input_shape"):
        if key not in meta:
            raise StoreError(f"{meta_path} has no {key!r}: not a kdfair export")
    build = _builder(meta["arch"], factory, meta.get("factory"), str(meta_path), trust_factory)
    opts = {k: v for k, v in (meta.get("model_options") or {}).items() if k != "checkpoint"}
    with torch.random.fork_rng(devices=[]):
        model = build(int(meta["num_classes"]), tuple(meta["input_shape"]), opts)
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError) as err:
        raise StoreError(f"{weights} cannot be read ({err})") from None
    return _loaded(model, state, weights, meta["arch"])
