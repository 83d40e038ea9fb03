"""Checks of data given by a user, made before anything runs: one place for ``kdfair.study``,
``kdfair.audit`` and ``kdfair audit``.

Labels become class indices 0..C−1 and sensitive attributes group codes (−1: unknown), from
integers or from names (strings), the same way wherever they are given. A coding that would
silently change the numbers is refused with the coding found and the fix: labels coded 1..2
would add an empty class 0 that every per-class number (class-wise tests, one-vs-rest DPD/EOD)
averages over; a group code with no name, or a group name for an attribute the data lack,
would drop the attribute from the report. Every message names the parameter and the fix.

Pure functions of numpy arrays; nothing of kdfair but its errors (no torch).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from kdfair.errors import ConfigError

Classes = Mapping[Any, Any] | Sequence[Any]  # label value -> class name, or label values in order
MAX_UNNAMED_GROUPS = 1024  # group codes without names above this (and the inputs): refused


def _is_text(a: np.ndarray) -> bool:
    return a.dtype.kind in "OUS"


def _integers(a: np.ndarray) -> np.ndarray | None:
    """``a`` as int64 when it holds integers (or integral floats); else None."""
    if a.dtype.kind in "iub":
        return a.astype(np.int64)
    if a.dtype.kind == "f" and np.isfinite(a).all() and np.all(a == np.floor(a)):
        return a.astype(np.int64)
    return None


def _key(v: Any) -> Any:
    """A label value as a lookup key: numpy scalars as Python ones, integral floats as ints."""
    v = v.item() if isinstance(v, np.generic) else v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


def coding(values: Sequence[int] | np.ndarray) -> str:
    """The integer codes found, in words: ``1..2``, or ``0, 2, 5`` when not contiguous."""
    u = sorted({int(v) for v in np.asarray(values).ravel()})
    if not u:
        return "(none)"
    if u[-1] - u[0] + 1 == len(u) > 1:  # contiguous (never lists the range: ids 0, 10⁹)
        return f"{u[0]}..{u[-1]}"
    return ", ".join(map(str, u[:10])) + (" …" if len(u) > 10 else "")


def shown(values: Sequence[Any], n: int = 5, width: int = 40) -> str:
    """Up to ``n`` values for a message, each cut to ``width`` characters: a message never
    echoes a long value (a CSV cell, a file's line) at length."""
    vals = list(values)
    cut = [v if len(s := str(v)) <= width else s[:width] + "…" for v in vals[:n]]
    return ", ".join(map(repr, cut)) + (" …" if len(vals) > n else "")


def class_lookup(classes: Classes, class_names: Sequence[str] | None,
                 param: str = "classes") -> tuple[dict[Any, int], list[str]]:
    """``classes`` as (label value -> class index, class names): a mapping
    ``{label value: class name}`` in class order (class 0 first), or a sequence of the label
    values in class order (names: ``class_names``, else the values as text)."""
    if isinstance(classes, Mapping):
        if class_names is not None:
            raise ConfigError(f"{param} names the classes already: leave class_names out, or "
                              f"give {param} as a list of label values in class order")
        values, names = list(classes), [str(n) for n in classes.values()]
    elif isinstance(classes, Sequence) and not isinstance(classes, str | bytes):
        values = list(classes)
        names = [str(n) for n in class_names] if class_names is not None \
            else [str(_key(v)) for v in values]
        if len(names) != len(values):
            raise ConfigError(f"{param} has {len(values)} label values but class_names "
                              f"{len(names)} names: give one name per class")
    else:
        raise ConfigError(f"{param}: give a mapping {{label value: class name}} in class order "
                          "(class 0 first), e.g. {1: 'good', 2: 'bad'}, or a list of the label "
                          "values in class order")
    keys = [_key(v) for v in values]
    if len(set(map(str, keys))) != len(keys):
        raise ConfigError(f"{param}: a label value is given twice ({shown(keys)})")
    if len(keys) < 2:
        raise ConfigError(f"{param}: give at least 2 classes, got {len(keys)}")
    lookup = {k: i for i, k in enumerate(keys)}
    lookup.update({str(k): i for i, k in enumerate(keys)})  # '1' in a CSV is label 1
    return lookup, names


def map_classes(values: np.ndarray, lookup: Mapping[Any, int], what: str,
                param: str = "classes") -> np.ndarray:
    """Label values (or predicted classes in the labels' coding) as class indices."""
    flat = [_key(v) for v in np.asarray(values).ravel()]
    unknown = sorted({str(v) for v in flat if v not in lookup and str(v) not in lookup})
    if unknown:
        raise ConfigError(f"{what}: values [{shown(unknown)}] are not in {param}: give every "
                          f"label value a class in {param}")
    return np.array([lookup[v] if v in lookup else lookup[str(v)] for v in flat],
                    dtype=np.int64).reshape(np.shape(values))


def encode_labels(parts: Mapping[str, np.ndarray], *, classes: Classes | None = None,
                  class_names: Sequence[str] | None = None, num_classes: int | None = None,
                  names_from_values: bool = True, required: Sequence[str] | None = None,
                  width: int | None = None, shifted: str = "the labels"
                  ) -> tuple[dict[str, np.ndarray], list[str]]:
    """Labels of each part (``{what: values}``, e.g. ``{"train": y, "test": y}``) as class
    indices 0..C−1, and the C class names.

    - ``classes``: how the label values map to classes (see :func:`class_lookup`);
    - strings: class names, looked up in ``class_names``, else (``names_from_values``) coded
      in sorted order;
    - integers: class indices. C is ``num_classes``, ``len(class_names)`` or ``width`` (the
      number of columns of the predictions), else the largest label + 1. Unless C was given
      (``num_classes``/``class_names``), every class must have a label in each of the
      ``required`` parts (default: all): labels coded 1..2 would add an empty class 0 —
      refused, naming the coding found and the fix (``classes``, or subtracting the smallest
      label from ``shifted`` when they are coded m..m+j).
    """
    if num_classes is not None and class_names is not None and num_classes != len(class_names):
        raise ConfigError(f"num_classes is {num_classes} but class_names has "
                          f"{len(class_names)} names: give one name per class, or leave "
                          "num_classes out")
    arrays = {w: np.asarray(v) for w, v in parts.items()}
    for w, a in arrays.items():
        if a.ndim != 1 or not len(a):
            raise ConfigError(f"{w}: expected one class per input, got shape {a.shape}")
    if classes is not None:
        lookup, names = class_lookup(classes, class_names)
        if num_classes is not None and num_classes != len(names):
            raise ConfigError(f"num_classes is {num_classes} but classes names {len(names)}: "
                              "leave num_classes out, or give one class per label value")
        return {w: map_classes(a, lookup, w) for w, a in arrays.items()}, names
    texts = [w for w, a in arrays.items() if _is_text(a)]
    if texts:
        if class_names is not None:
            names = [str(n) for n in class_names]
        elif names_from_values:
            names = sorted({str(v) for w in texts for v in arrays[w]})
        else:
            raise ConfigError(f"{texts[0]}: class names (text) need class_names, the name of "
                              "each class in class order (class 0 first; the predictions' "
                              "columns)")
        lookup = {n: i for i, n in enumerate(names)}
        out = {}
        for w, a in arrays.items():
            if _is_text(a):
                unknown = sorted({str(v) for v in a} - set(lookup))
                if unknown:
                    raise ConfigError(f"{w}: class names [{shown(unknown)}] are not in "
                                      f"class_names ({shown(names)}): give every class its "
                                      "name")
                out[w] = np.array([lookup[str(v)] for v in a], dtype=np.int64)
            else:
                out[w] = _indices(a, w, len(names))
        if num_classes is not None and num_classes != len(names):
            raise ConfigError(f"num_classes is {num_classes} but the labels name "
                              f"{len(names)} classes ({shown(names)}): give class_names (one "
                              "per class), or leave num_classes out")
        return out, names
    ints = {w: _integers(a) for w, a in arrays.items()}
    for w, a in ints.items():
        if a is None:
            raise ConfigError(f"{w}: expected class indices (integers) or class names (text), "
                              f"got values of type {arrays[w].dtype}")
    found = np.concatenate([a for a in ints.values() if a is not None])
    given = num_classes if num_classes is not None else \
        len(class_names) if class_names is not None else None
    k = given if given is not None else width if width is not None else int(found.max()) + 1
    fix = _fix(found, shifted)
    if found.min() < 0 or found.max() >= k:
        what = next(w for w, a in ints.items() if a is not None and (a.min() < 0 or a.max() >= k))
        head = f"{what}: the labels are coded {coding(found)}, but the predictions have {k} " \
            "classes (columns; a binary model's single output counts as 2)"
        if given is None and width is not None and found.min() >= 0 and \
                (_shift(found) is None or len(np.unique(found)) > k):
            raise ConfigError(f"{head}: give one column per class, or class_names (one per "
                              "class, class 0 first)")
        if given is None and width is not None:  # e.g. 1..2 with 2 columns: another coding
            raise ConfigError(f"{head}, counted from 0: {fix}")
        raise ConfigError(f"{what}: labels are coded {coding(found)}, outside the classes "
                          f"0..{k - 1}: {fix}")
    if given is None:
        for w in (required if required is not None else list(ints)):
            present = np.unique(ints[w])
            if len(present) < k:
                missing = _absent(present, k)
                absent = coding(missing) if len(missing) <= 10 else \
                    ", ".join(map(str, missing[:10])) + f" … ({k - len(present)} classes)"
                raise ConfigError(
                    f"{w}: the labels are coded {coding(ints[w])}, so class {absent} of "
                    f"0..{k - 1} has no input: classes count from 0, and an empty class would "
                    "change every per-class number (one-vs-rest DPD/EOD, class-wise tests). "
                    f"{fix[0].upper()}{fix[1:]}; if the data really lack the class, give "
                    "class_names (one per class, class 0 first)")
    names = [str(n) for n in class_names] if class_names is not None else \
        [str(i) for i in range(k)]
    return {w: a for w, a in ints.items() if a is not None}, names


def _absent(present: np.ndarray, k: int, n: int = 11) -> list[int]:
    """Up to ``n`` of the classes 0..k−1 not in ``present`` (sorted), without listing all k
    (labels such as ids 0, 10⁹ make k huge)."""
    out: list[int] = []
    start = 0
    for v in [*present.tolist(), k]:
        out += range(start, min(v, start + n - len(out)))
        if len(out) >= n:
            break
        start = v + 1
    return out


def _shift(codes: np.ndarray) -> int | None:
    """m when the labels are m..m+j, every value present, m ≥ 1 (subtracting m codes them from
    0); else None (e.g. −1/1 or 0, 2, 5: only ``classes`` maps those)."""
    u = np.unique(codes)
    return int(u[0]) if len(u) and u[0] >= 1 and u[-1] - u[0] + 1 == len(u) else None


def _fix(codes: np.ndarray, shifted: str) -> str:
    """The fix of labels in another coding: ``classes``, or subtracting m where that works."""
    m = _shift(codes)
    return (f"give classes (label value → class name, class 0 first, e.g. "
            f"classes={_example(codes)})" + (f" or subtract {m} from {shifted}" if m else ""))


def _example(codes: np.ndarray) -> str:
    u = sorted(set(np.unique(codes).tolist()))[:3]
    return "{" + ", ".join(f"{v}: '{v}'" for v in u) + (", …" if len(np.unique(codes)) > 3
                                                       else "") + "}"


def _indices(a: np.ndarray, what: str, k: int) -> np.ndarray:
    c = _integers(a)
    if c is None:
        raise ConfigError(f"{what}: expected class indices (integers) or class names, got "
                          f"values of type {a.dtype}")
    if len(c) and (c.min() < 0 or c.max() >= k):
        raise ConfigError(f"{what}: classes coded {coding(c)}, outside 0..{k - 1}")
    return c


def encode_groups(parts: Mapping[str, Mapping[str, Any]],
                  group_names: Mapping[str, Sequence[str]] | None = None,
                  names_param: str = "group_names"
                  ) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, list[str]]]:
    """Sensitive attributes of each part (``{what: {attribute: values}}``) as group codes
    (−1: unknown), and the group names of each attribute.

    Values are codes (integers ≥ −1; code i is ``group_names[attribute][i]``) or group names
    (text: looked up in ``group_names``, else coded in sorted order; empty/None/NaN: unknown).
    Every attribute of ``group_names`` must be one the parts have, and every code a name: a
    mismatch is refused, naming both sides, never skipped.
    """
    names_given = {str(a): [str(g) for g in v] for a, v in (group_names or {}).items()}
    attrs: list[str] = []
    for groups in parts.values():
        attrs += [str(a) for a in groups if str(a) not in attrs]
    unknown = [a for a in names_given if a not in attrs]
    if unknown:
        have = ", ".join(map(repr, attrs)) or "none"
        raise ConfigError(f"{names_param} names attribute(s) {', '.join(map(repr, unknown))} "
                          f"that the data do not have (attributes given: {have}): name each "
                          f"attribute in {names_param} as in the groups given")
    for what, groups in parts.items():
        lacking = [a for a in attrs if a not in {str(k) for k in groups}]
        if lacking and len(parts) > 1:
            raise ConfigError(f"{what}: attribute(s) {', '.join(map(repr, lacking))} missing; "
                              "give the same attributes in every part")
    arrays = {w: {str(a): np.asarray(v) for a, v in g.items()} for w, g in parts.items()}
    for w, g in arrays.items():
        for a, v in g.items():
            if v.ndim != 1:
                raise ConfigError(f"{w}[{a!r}]: expected one group per input, got shape "
                                  f"{v.shape}")
    codes: dict[str, dict[str, np.ndarray]] = {w: {} for w in parts}
    names: dict[str, list[str]] = {}
    for a in attrs:
        given = names_given.get(a)
        if any(_is_text(g[a]) for g in arrays.values()):
            numbers = [w for w, g in arrays.items() if not _is_text(g[a])]
            if numbers and given is None:  # codes 0/1 would become groups '0'/'1' beside names
                raise ConfigError(f"groups of {a!r} are names (text) in some parts but codes "
                                  f"(numbers) in {', '.join(numbers)}: give them the same way in "
                                  f"every part, or {names_param}[{a!r}]")
            texts = {w: _texts(g[a]) for w, g in arrays.items()}
            found = sorted({v for t in texts.values() for v in t if v})
            order = given or found
            missing = sorted(set(found) - set(order))
            if missing:
                raise ConfigError(f"groups of {a!r}: {shown(missing)} are not in "
                                  f"{names_param}[{a!r}] ({shown(order)}): give every group "
                                  "its name")
            lookup = {g: i for i, g in enumerate(order)}
            for w, t in texts.items():
                codes[w][a] = np.array([lookup.get(v, -1) for v in t], dtype=np.int64)
            names[a] = list(order)
            continue
        top = -1
        for w, g in arrays.items():
            v = g[a]
            if v.dtype.kind == "f":  # a CSV column of codes with blanks: NaN is unknown
                v = np.where(np.isnan(v), -1.0, v)
            c = _integers(v)
            if c is None:
                raise ConfigError(f"{w}[{a!r}]: expected group codes (integers) or group names "
                                  f"(text), got values of type {g[a].dtype}")
            if len(c) and c.min() < -1:
                raise ConfigError(f"{w}[{a!r}]: group codes are {coding(c)}; codes count from "
                                  "0 (−1: unknown)")
            codes[w][a] = c
            top = max(top, int(c.max(initial=-1)))
        if given is not None and top >= len(given):
            found = np.concatenate([codes[w][a] for w in parts])
            raise ConfigError(f"groups of {a!r} are coded {coding(found[found >= 0])} but "
                              f"{names_param}[{a!r}] has {len(given)} name(s) "
                              f"({shown(given)}): give one name per code (code i is the i-th "
                              "name), or the groups as names")
        n = sum(len(codes[w][a]) for w in parts)
        if given is None and top >= max(n, MAX_UNNAMED_GROUPS):  # ids or amounts, not codes
            found = np.concatenate([codes[w][a] for w in parts])
            raise ConfigError(f"groups of {a!r} are coded {coding(found[found >= 0])}: code "
                              f"{top} means {top + 1} groups for {n} inputs. Group codes count "
                              f"0..G−1: give the groups as names (text) or {names_param}[{a!r}]")
        names[a] = given or [str(i) for i in range(top + 1)]
    return codes, names


def _texts(a: np.ndarray) -> list[str]:
    """Group names as text; missing values (None, NaN, '') as ''."""
    return ["" if v is None or (isinstance(v, float) and v != v) else str(v) for v in a]


def check_lengths(n_labels: int, lengths: Mapping[str, int], labels: str = "labels") -> None:
    """Every array given per input must have one row per label. When all of them agree on
    another length, the labels are what is wrong, and the message says so."""
    off = {w: m for w, m in lengths.items() if m != n_labels}
    if not off:
        return
    if len(lengths) > 1 and len(set(lengths.values())) == 1:
        m = next(iter(lengths.values()))
        names = list(lengths)
        listed = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
        raise ConfigError(f"{labels}: {n_labels} labels, but every array given per input "
                          f"({listed}) has {m} rows: give one label per input, in the same "
                          "order")
    w, m = next(iter(off.items()))
    raise ConfigError(f"{w}: {m} rows for {n_labels} {labels}: give one row per input, in "
                      f"the order of the {labels}")


def temperature(t: Any, param: str = "ds") -> float:
    """A temperature key (``4``, ``4.0`` or ``"4"``) as a float > 0."""
    try:
        v = float(t)
    except (TypeError, ValueError):
        raise ConfigError(f"{param}: temperature {shown([t])} is not a number; key each "
                          f"temperature by its value, e.g. {param}={{4: [...]}}") from None
    if not v > 0 or v != v:
        raise ConfigError(f"{param}: temperatures must be > 0, got {shown([t])}")
    return v


def single_logit(a: np.ndarray, kind: str, what: str) -> np.ndarray | None:
    """A binary model's one output per input ([N] or [N, 1] floats) as [N, 2] logits whose
    softmax is (1 − p, p): a logit z of class 1 becomes (0, z); a probability p of class 1
    becomes (log(1 − p), log p). None when ``a`` is not such an output (integers are classes).

    With ``kind="auto"``, values all in [0, 1] could be either: refused, naming both kinds.
    """
    if not (a.ndim == 1 or (a.ndim == 2 and a.shape[1] == 1)) or kind == "classes" \
            or a.dtype.kind not in "fiub":
        return None
    v = a.reshape(-1)
    if _integers(v) is not None and kind == "auto":
        return None
    v = v.astype(np.float64)
    if not np.isfinite(v).all():
        raise ConfigError(f"{what}: contains NaN or infinite values")
    if kind == "auto":
        if v.size and v.min() >= 0 and v.max() <= 1:
            raise ConfigError(f"{what}: one value per input, all in [0, 1]: pass "
                              "kind='probabilities' if they are P(class 1), or kind='logits' if "
                              "they are the logit of class 1")
        kind = "logits"
    if kind == "logits":
        return np.stack([np.zeros_like(v), v], 1).astype(np.float32)
    if v.min() < 0 or v.max() > 1:
        raise ConfigError(f"{what}: probabilities of class 1 must lie in [0, 1]; pass "
                          "kind='logits' if these are logits")
    floor = 1e-30
    return np.log(np.maximum(np.stack([1 - v, v], 1), floor)).astype(np.float32)
