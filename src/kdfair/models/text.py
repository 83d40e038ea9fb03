"""Hugging Face sequence classifiers (BERT, DistilBERT, any ``transformers`` model) for text.

Architectures ``bert`` (default ``bert-base-uncased``), ``distilbert`` (default
``distilbert-base-uncased``) and ``hf`` (any model; ``pretrained`` required). Options:

- ``pretrained``: hub name or local directory of the initial weights of a model kdfair
  fine-tunes; the classification head is new and drawn from torch's RNG, so the engine's seeding
  makes it deterministic.
- ``weights``: a fine-tuned classifier (directory or hub name). On the teacher this makes the
  teacher *given*: evaluated and distilled from, not trained (``runner.teacher_is_given``).
- ``download``: allow fetching from the Hugging Face hub. Off by default, and always off while
  ``HF_HUB_OFFLINE`` is set; then a model must be a local directory or already in the hub cache,
  else a ``ConfigError`` says which directory is needed.

The module returned wraps ``AutoModelForSequenceClassification``: its forward takes the dict
batch of a text data set (``input_ids``, ``attention_mask``) and returns logits [B, C].
"""

from __future__ import annotations

import inspect
import os
import pickle
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from pydantic import BaseModel, ConfigDict

from kdfair.errors import ConfigError
from kdfair.models.factories import register_model
from kdfair.options import validate_options

DEFAULTS: dict[str, str | None] = {
    "bert": "bert-base-uncased",
    "distilbert": "distilbert-base-uncased",
    "hf": None,
}
MODEL_TYPES = {"bert": "bert", "distilbert": "distilbert"}  # config.model_type each arch expects
TEXT_EXTRA = "pip install 'kdfair[text]'"


def require_transformers() -> Any:
    """The ``transformers`` module, or a ConfigError naming the optional dependency group."""
    try:
        import transformers
    except ImportError:
        raise ConfigError(
            "text models and data sets need Hugging Face transformers and tokenizers, which are "
            f"not installed: {TEXT_EXTRA}"
        ) from None
    return transformers


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) forbids the hub."""
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def local_only(download: bool) -> bool:
    """``local_files_only`` for ``from_pretrained``: no hub unless asked and not offline."""
    return not download or hub_offline()


def not_found_message(what: str, source: str, field: str, download: bool, err: Exception) -> str:
    """Why ``source`` could not be loaded and what to put where."""
    lines = [f"{field}: cannot load the {what} {source!r} ({type(err).__name__}: "
             f"{str(err).splitlines()[0] if str(err) else 'no detail'})."]
    if Path(source).expanduser().exists():
        lines.append(f"{source} exists but is not a complete Hugging Face {what} directory "
                     "(config.json and weights for a model; tokenizer.json or vocab.txt and "
                     "tokenizer_config.json for a tokenizer; write one with save_pretrained).")
    elif not download or hub_offline():
        why = ("HF_HUB_OFFLINE is set" if hub_offline() and download
               else "downloads are off")
        lines.append(
            f"it is not a local directory and not in the Hugging Face cache, and {why}. Either "
            f"put the {what} in a directory (e.g. `huggingface-cli download {source} --local-dir "
            f"DIR` on a machine with internet, or save_pretrained) and give `{field}: DIR`, or "
            f"allow the download with `download: true`" + (" and unset HF_HUB_OFFLINE"
                                                           if hub_offline() else "") + ".")
    else:
        lines.append("the download failed; check the name and your connection, or give a local "
                     f"directory as `{field}: DIR`.")
    return "\n".join(lines)


@contextmanager
def quiet_transformers():
    """Silence transformers' load reports and progress bars while loading (restored after)."""
    t = require_transformers()
    log = t.utils.logging
    level, bars = log.get_verbosity(), log.is_progress_bar_enabled()
    log.set_verbosity_error()
    log.disable_progress_bar()
    try:
        yield
    finally:
        log.set_verbosity(level)
        if bars:
            log.enable_progress_bar()


def load_tokenizer(source: str, download: bool = False, field: str = "dataset.tokenizer"):
    """A (fast) tokenizer from a hub name or local directory; ConfigError naming ``field``."""
    t = require_transformers()
    try:
        with quiet_transformers():
            return t.AutoTokenizer.from_pretrained(str(Path(source).expanduser())
                                                   if Path(source).expanduser().exists()
                                                   else source,
                                                   local_files_only=local_only(download))
    except (OSError, ValueError) as err:
        raise ConfigError(not_found_message("tokenizer", source, field, download, err)) from None


class TextModelOptions(BaseModel):
    """Options of the text architectures (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pretrained: str | None = None
    weights: str | None = None
    download: bool = False


class SequenceClassifier(nn.Module):
    """A transformers sequence classifier taking kdfair's dict batches, returning logits."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self._inputs = set(inspect.signature(model.forward).parameters)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.model(**{k: v for k, v in batch.items() if k in self._inputs}).logits


def _source(path_or_name: str) -> str:
    p = Path(path_or_name).expanduser()
    return str(p) if p.exists() else path_or_name


def load_classifier(arch: str, num_classes: int, opts: TextModelOptions) -> nn.Module:
    """``AutoModelForSequenceClassification`` from ``weights`` (fine-tuned) or ``pretrained``."""
    t = require_transformers()
    field = "model.weights" if opts.weights else "model.pretrained"
    source = opts.weights or opts.pretrained or DEFAULTS[arch]
    if source is None:
        raise ConfigError(f"model {arch!r} needs `pretrained: <hub name or directory>` "
                          "(or `weights: DIR` of a fine-tuned classifier)")
    src, lfo = _source(source), local_only(opts.download)
    try:
        with quiet_transformers():
            config = t.AutoConfig.from_pretrained(src, local_files_only=lfo)
    except (OSError, ValueError) as err:
        raise ConfigError(not_found_message("model", source, field, opts.download, err)) from None
    want = MODEL_TYPES.get(arch)
    if want is not None and config.model_type != want:
        raise ConfigError(f"{field}: {source!r} is a {config.model_type!r} model, not {want!r}; "
                          "use `arch: hf` for other model families")
    if opts.weights and config.num_labels != num_classes:
        raise ConfigError(f"model.weights: {source!r} classifies into {config.num_labels} "
                          f"classes; the data set has {num_classes}")
    config.num_labels = num_classes
    try:
        with quiet_transformers():
            model, info = t.AutoModelForSequenceClassification.from_pretrained(
                src, config=config, local_files_only=lfo, output_loading_info=True)
    except pickle.UnpicklingError:  # a safe load refused a pickle: never advise an unsafe one
        raise ConfigError(
            f"{field}: {source!r} holds pickle-based weights (pytorch_model.bin) with objects a "
            "safe load refuses; kdfair never unpickles them. Save the model as safetensors "
            "(save_pretrained(DIR, safe_serialization=True) where it was made) and give that "
            "directory") from None
    except (OSError, ValueError) as err:
        raise ConfigError(not_found_message("model", source, field, opts.download, err)) from None
    if opts.weights and info.get("missing_keys"):
        raise ConfigError(
            f"model.weights: {source!r} is not a fine-tuned sequence classifier (missing "
            f"{sorted(info['missing_keys'])[:3]}); give it as `pretrained:` to fine-tune it")
    return model


def _factory(arch: str):
    def make(num_classes: int, input_shape: tuple[int, ...] = (), members: int = 1,
             **options: Any) -> nn.Module:
        if members != 1:
            raise ConfigError(f"model {arch!r} trains one run at a time (members=1)")
        opts = validate_options(TextModelOptions, options, "model", f"model {arch!r}")
        return SequenceClassifier(load_classifier(arch, num_classes, opts))

    make.__doc__ = f"{arch}: a Hugging Face sequence classifier (see kdfair.models.text)."
    return make


for _arch in DEFAULTS:
    register_model(_arch, _factory(_arch))
