""""Did you mean …?": the closest names to one a user mistyped (difflib), for messages.

A few names are what other tools call a field (``learning_rate`` for ``lr``): those are found
through :data:`SYNONYMS`, which difflib alone would never match. This module imports nothing of
kdfair: the command line's help loads it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence

# what other tools call a field -> kdfair's name for it (matched on the last key of a path)
SYNONYMS = {
    "learning_rate": "lr", "learningrate": "lr", "lr_rate": "lr", "base_lr": "lr",
    "num_epochs": "epochs", "n_epochs": "epochs", "epoch": "epochs", "max_epochs": "epochs",
    "wd": "weight_decay", "decay": "weight_decay",
    "bs": "batch_size", "batchsize": "batch_size", "batch": "batch_size",
    "optim": "optimizer", "optimiser": "optimizer", "scheduler": "schedule",
    "lr_schedule": "schedule", "augmentation": "augment", "augmentations": "augment",
    "temperature": "temperatures", "temp": "temperatures", "t": "temperatures",
    "seed": "seeds", "architecture": "arch", "model_name": "arch", "network": "arch",
    "method": "methods", "kd_alpha": "alpha", "data": "dataset", "data_set": "dataset",
}


def _norm(name: str) -> str:
    return name.lower().replace("-", "_")


def close_matches(word: str, choices: Iterable[str], n: int = 3,
                  cutoff: float = 0.6) -> list[str]:
    """The choices closest to ``word`` (case and ``-``/``_`` ignored): the same name, else
    the same path with a synonym's name for its last key, else any choice ending in that name,
    else difflib's close matches (a dotted word by its last key against the choices' last
    keys)."""
    options = list(dict.fromkeys(choices))
    by_norm: dict[str, list[str]] = {}
    for c in options:
        for key in {_norm(c), _norm(c.rsplit(".", 1)[-1])}:
            by_norm.setdefault(key, []).append(c)
    leaves = [_norm(c.rsplit(".", 1)[-1]) for c in options]
    w = _norm(word)
    head, _, leaf = w.rpartition(".")
    syn = SYNONYMS.get(w) or SYNONYMS.get(leaf)
    tiers = [[w], [f"{head}.{syn}" if head and syn else ""], [syn or ""],
             difflib.get_close_matches(leaf, leaves, n=n, cutoff=cutoff) if head else
             difflib.get_close_matches(w, list(by_norm), n=n, cutoff=cutoff)]
    out: list[str] = []
    for tier in tiers:  # the first tier that names a choice: a path's own field before others
        for key in tier:
            out += [c for c in by_norm.get(key, []) if c not in out] if key else []
        if out:
            break
    return out[:n]


def did_you_mean(word: str, choices: Iterable[str], n: int = 3) -> str:
    """`` (did you mean 'x'?)``, `` (did you mean 'x' or 'y'?)``, or "" when nothing is close."""
    found = close_matches(word, choices, n)
    return f" (did you mean {alternatives(found)}?)" if found else ""


def alternatives(names: Sequence[str]) -> str:
    """``'x'``, ``'x' or 'y'``, ``'x', 'y' or 'z'``."""
    quoted = [repr(f) for f in names]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"
