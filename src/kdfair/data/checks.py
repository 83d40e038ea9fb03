"""What a loader returns, checked before anything trains.

A registered loader (``register_dataset``) is the user's code: labels coded 1..C, a class name
list one short, or a group code without a name would not fail loudly. They would fail every run
deep in training, or drop an attribute from the report. ``check_split`` refuses each of them in
one message that names the part, the codes found and the fix. Integer labels of another width
become int64, exactly. A class that ``class_names`` declares but no input has is accepted, as
``kdfair.study`` accepts it when given class names; the report notes it (``store.index``).
Built-in loaders pass through the same check.
"""

from __future__ import annotations

from collections import Counter
from numbers import Integral

import numpy as np
import torch

from kdfair.data.base import Part, SplitData
from kdfair.errors import DatasetError
from kdfair.inputs import coding, shown

PARTS = ("train", "val", "test")


def _labels(part: Part, name: str, source: str) -> np.ndarray:
    y = part.y
    if not isinstance(y, torch.Tensor) or y.ndim != 1:
        raise DatasetError(f"{source}: the {name} part's labels (Part.y) must be a 1-D tensor of "
                           f"class indices, got {type(y).__name__}"
                           f"{' of shape ' + str(tuple(y.shape)) if hasattr(y, 'shape') else ''}")
    if y.dtype.is_floating_point or y.dtype == torch.bool or y.is_complex():
        raise DatasetError(f"{source}: the {name} part's labels are {y.dtype}: give class "
                           "indices as integers (torch.int64), 0..num_classes-1")
    if y.dtype != torch.int64:  # int32, uint8 …: exact as int64, which the losses need
        part.y = y = y.long()
    return y.detach().cpu().numpy()


def _names(kind: str, names: list, source: str) -> None:
    doubled = sorted(n for n, times in Counter(map(str, names)).items() if times > 1)
    if doubled:
        raise DatasetError(f"{source}: {kind} [{shown(doubled)}] appear more than once: each "
                           "code needs a name of its own (tables and the report are keyed by them)")


def check_split(data: SplitData, source: str) -> None:
    """Refuse what would make a study's numbers wrong: DatasetError naming what, where and the
    fix. Labels of another integer dtype become int64 in place."""
    k = data.num_classes
    if not isinstance(k, Integral) or isinstance(k, bool):
        raise DatasetError(f"{source}: num_classes is {k!r} ({type(k).__name__}): give the "
                           "number of classes as an integer")
    k = data.num_classes = int(k)
    if k < 2:
        raise DatasetError(f"{source}: num_classes is {k!r}; a classification study needs at "
                           "least 2 classes")
    if len(data.class_names) != k:
        raise DatasetError(f"{source}: {len(data.class_names)} class names for num_classes = "
                           f"{k}: give one name per class index 0..{k - 1}, in order")
    _names("class names", list(data.class_names), source)
    for attr, groups in data.attribute_groups.items():
        _names(f"the group names of {attr!r}", list(groups), source)
    for name in PARTS:
        part = getattr(data, name)
        y = _labels(part, name, source)
        inputs = part.x if part.x is not None else part.dataset
        if inputs is not None and hasattr(inputs, "__len__") and len(inputs) != len(y):
            raise DatasetError(f"{source}: the {name} part has {len(inputs)} inputs and "
                               f"{len(y)} labels: give one label per input")
        if len(y) and (y.min() < 0 or y.max() >= k):
            fix = (f"labels coded 1..{k}: subtract 1" if y.min() >= 1 and y.max() == k
                   else f"give class indices 0..{k - 1} (or raise num_classes)")
            raise DatasetError(f"{source}: the {name} part's labels are {coding(y)}, but "
                               f"num_classes is {k}, so class indices run 0..{k - 1}: {fix}")
        for attr, codes in part.attributes.items():
            _check_codes(data, name, attr, np.asarray(codes), len(y), source)
    for name in ("train", "test"):
        if not len(getattr(data, name)):
            raise DatasetError(f"{source}: the {name} part is empty: a study trains on the train "
                               "part and measures on the test part")
    missing = [attr for attr in data.attribute_groups if attr not in data.test.attributes]
    if missing:
        raise DatasetError(f"{source}: attribute_groups names [{shown(missing)}] but the test "
                           "part has no codes for them (Part.attributes): give them, or drop the "
                           "names")


def _check_codes(data: SplitData, part: str, attr: str, codes: np.ndarray, n: int,
                 source: str) -> None:
    groups = data.attribute_groups.get(attr)
    if groups is None:
        named = shown(sorted(data.attribute_groups))
        raise DatasetError(f"{source}: the {part} part has codes for attribute {attr!r}, which "
                           "attribute_groups does not name (it names "
                           f"{f'[{named}]' if named else 'none'}): add its group names")
    if codes.ndim != 1 or len(codes) != n:
        raise DatasetError(f"{source}: the {part} part has {len(codes)} codes of {attr!r} for "
                           f"{n} inputs: give one group code per input (-1: unknown)")
    if codes.dtype.kind not in "iu":
        raise DatasetError(f"{source}: the codes of {attr!r} ({part}) are {codes.dtype}: give "
                           "integer group codes, -1 for unknown")
    bad = codes[(codes < -1) | (codes >= len(groups))]
    if len(bad):
        raise DatasetError(f"{source}: the {part} part's codes of {attr!r} include "
                           f"{coding(bad)}, but {attr!r} has {len(groups)} group names, so "
                           f"codes run 0..{len(groups) - 1} (-1: unknown): name every group")
