"""The frozen teachers' logits a group's distilled members learn from, computed once per step.

Member m distils from (its teacher, its seed's batch). Each distinct (teacher, seed) pair is
computed once: a lookup in a table of precomputed logits when training inputs are unaugmented,
one forward of a frozen grouped bank when several teachers of one architecture serve the group on
CUDA, else one forward per teacher over the batches of all its seeds.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from kdfair.data.base import SplitData
from kdfair.models.bank import bank_from_members
from kdfair.models.registry import bankable, build_model
from kdfair.spec import RunSpec
from kdfair.train.batches import Step
from kdfair.train.device import channels_last, prepare_module
from kdfair.train.methods import find_layer


class TeacherLogits:
    """Callable: a step's batches -> per member, the teacher logits [B, K] and the output of the
    member's ``layers`` entry in its teacher (None where a member has no teacher or layer)."""

    def __init__(self, teachers: list[nn.Module | None], seed_index: list[int],
                 tables: dict[int, torch.Tensor], banked: nn.Module | None = None,
                 layers: list[str | None] | None = None):
        self.teachers = list({id(t): t for t in teachers if t is not None}.values())
        self.pairs = sorted({(self._which(t), s) for t, s in zip(teachers, seed_index, strict=True)
                             if t is not None})
        self.pair_of = [None if t is None else self.pairs.index((self._which(t), s))
                        for t, s in zip(teachers, seed_index, strict=True)]
        self.layers = layers or [None] * len(teachers)
        self.taps = LayerTaps([(t, name) for t, name in zip(teachers, self.layers, strict=True)
                               if t is not None and name is not None])
        needs_features = bool(self.taps.modules)
        self.tables = (tables if not needs_features and all(id(t) in tables for t in self.teachers)
                       else None)
        self.banked = None if needs_features else banked
        self._features: dict[tuple[int, int], dict[str, torch.Tensor]] = {}

    def _which(self, teacher: nn.Module) -> int:
        return next(i for i, t in enumerate(self.teachers) if t is teacher)

    @torch.no_grad()
    def __call__(self, step: Step) -> tuple[list[torch.Tensor | None],
                                            list[torch.Tensor | None]]:
        n = len(self.pair_of)
        if not self.teachers:
            return [None] * n, [None] * n
        out = self._pair_logits(step)
        logits = [None if p is None else out[p] for p in self.pair_of]
        feats = [None if p is None or name is None else self._features[self.pairs[p]][name]
                 for p, name in zip(self.pair_of, self.layers, strict=True)]
        return logits, feats

    def _pair_logits(self, step: Step) -> list[torch.Tensor]:
        if self.tables is not None:
            return [self.tables[id(self.teachers[t])][step.idx[s]]  # type: ignore[index]
                    for t, s in self.pairs]
        if self.banked is not None:
            return self._banked(step)
        out: dict[tuple[int, int], torch.Tensor] = {}
        for ti, teacher in enumerate(self.teachers):
            mine = [s for t, s in self.pairs if t == ti]
            xs = [step.x[s] for s in mine]
            if all(isinstance(x, torch.Tensor) for x in xs):  # one forward over all its seeds
                sizes = [len(x) for x in xs]
                logits = teacher(channels_last(torch.cat(xs))).split(sizes)
                feats = {name: f.split(sizes) for name, f in self.taps.take(teacher).items()}
            else:  # tokenised text: batches of different lengths
                logits, per_seed = [], []
                for x in xs:
                    logits.append(teacher(x))
                    per_seed.append(self.taps.take(teacher))
                feats = {name: [f[name] for f in per_seed] for name in per_seed[0]}
            out.update(zip(((ti, s) for s in mine), logits, strict=True))
            for k, s in enumerate(mine):
                self._features[(ti, s)] = {name: f[k] for name, f in feats.items()}
        return [out[p] for p in self.pairs]

    def _banked(self, step: Step) -> list[torch.Tensor]:
        """One forward of the teacher bank: teacher i sees its seeds' batches, stacked."""
        mine = [[s for t, s in self.pairs if t == ti] for ti in range(len(self.teachers))]
        n, b = len(mine[0]), len(step.y[0])
        x = torch.cat([torch.cat([step.x[s] for s in m]) for m in mine], dim=1)  # type: ignore
        logits = self.banked(channels_last(x))  # type: ignore[misc]  # [n·B, teachers, K]
        out = {(ti, s): logits[k * b : (k + 1) * b, ti]
               for ti, m in enumerate(mine) for k, s in enumerate(m)}
        assert all(len(m) == n for m in mine)
        return [out[p] for p in self.pairs]


class LayerTaps:
    """Forward hooks that keep the output of named submodules of some models until taken;
    ``close`` removes them."""

    def __init__(self, wanted: list[tuple[nn.Module, str]], who: str = "teacher"):
        self.modules: dict[tuple[int, str], nn.Module] = {}
        self.seen: dict[tuple[int, str], torch.Tensor] = {}
        self.handles = []
        for model, name in wanted:
            key = (id(model), name)
            if key not in self.modules:
                self.modules[key] = find_layer(model, name, who)
                self.handles.append(self.modules[key].register_forward_hook(self._keep(key)))

    def close(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles, self.seen = [], {}

    def _keep(self, key: tuple[int, str]):
        def hook(module, inputs, output):
            self.seen[key] = output
        return hook

    def take(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """The kept outputs of ``model``'s tapped layers, by name (cleared once taken)."""
        return {name: self.seen.pop((i, name)) for (i, name) in list(self.seen) if i == id(model)}


def teacher_bank(teachers: list[nn.Module], specs: list[RunSpec | None], pairs_per_teacher:
                 list[int], data: SplitData, device: torch.device) -> nn.Module | None:
    """Several teachers of one architecture as one frozen grouped bank, where each serves the
    same number of seeds; None where that does not apply."""
    if len(teachers) < 2 or any(s is None for s in specs) or len(set(pairs_per_teacher)) != 1:
        return None
    first = specs[0]
    if any(s.arch != first.arch or s.model_options != first.model_options  # type: ignore
           for s in specs):
        return None
    if not bankable(first.arch, data.num_classes, data.input_shape,  # type: ignore[union-attr]
                    **first.model_options):  # type: ignore[union-attr]
        return None
    bank = build_model(first.arch, data.num_classes, data.input_shape,  # type: ignore[union-attr]
                       members=len(teachers), **first.model_options)  # type: ignore[union-attr]
    bank_from_members(bank, teachers)
    return prepare_module(bank, device).eval().requires_grad_(False)
