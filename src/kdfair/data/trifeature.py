"""Trifeature (Hermann & Lampinen, NeurIPS 2020): shape × texture × colour images, generated here.

Every image shows one of 10 shapes filled with one of 10 textures in one of 10 colours on a grey
(0.5) background. The label is the shape; colour and texture are the sensitive attributes. The
drawing rules follow ``FORMATS.md`` ("Trifeature — exact drawing rules") literally:

* shape templates are binary masks on a 128-pixel grid (:func:`shape_template`);
* textures are period-10 binary maps on a 448 × 448 grid with a random integer phase
  (:func:`texture_map`);
* :func:`render_mask` rotates the template by a random integer angle in [-45, 45) (PIL, bilinear,
  canvas grows) and pastes it at a uniform random offset in the 224 × 224 canvas, rotates the
  texture by another such angle (PIL, nearest, same size) and crops its centre 224 × 224;
  mask = shape × texture; :func:`render_image` gives rgb = mask·colour + (1 − mask)·0.5.

The template rotated by at most 45° is at most 182 pixels wide, so it always fits the 224 canvas
and is never scaled; the code still clips it (centre crop) if a caller's template were too large.
The rotated 448 texture covers the whole centre crop for any angle up to 45°, so no fill shows.

Output images of side ``size`` are the 224 render downsampled by exact area averaging (PIL ``BOX``
on the float mask). Because rgb is affine in the mask, averaging the mask and then colouring is
the same as averaging the rgb image; the generator therefore only renders the one-channel mask.

Splits (``split``):

* ``combinations`` (default, as in the original): ``test_fraction`` of the 1000 combinations is
  held out for test by a seeded, balanced design (:func:`held_out_combinations`: each shape loses
  the same number of combinations, and every shape, texture and colour stays in both splits).
  Training combinations get ``images_per_combination`` images, held-out ones
  ``test_images_per_combination`` (default: the same), so a data-scarce study can still have a
  test set large enough for per-group measures. The design gives every colour (and texture) the
  same class base rates in test, so a perfect classifier has DPD exactly 0.
* ``images``: ``test_fraction`` of all images drawn at random (seeded); test shares
  combinations with train, and the colours' class base rates differ by chance, so a perfect
  classifier has DPD > 0 (about 5.8 % at 10 images per combination; docs/replication.md).

``val_fraction`` of the remaining (train) images, per shape, becomes validation, so val shares
combinations with train.

Every image draws from its own generator ``default_rng([seed, combination, k])`` (combination =
100·shape + 10·texture + colour, k = image number within the combination), so an image never
depends on how many others are drawn. Generated sets are cached as
``cache_dir/trifeature-<options hash>.npz`` (``np.savez``, read with ``allow_pickle=False``).
"""

from __future__ import annotations

import csv
import hashlib
import json
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, model_validator

from kdfair.config import DatasetConfig
from kdfair.data.base import Part, SplitData
from kdfair.data.catalog import Requirement
from kdfair.integrity import atomic_write
from kdfair.options import validate_options

# what this module's data sets need on disk (``kdfair datasets``, missing-data errors)
DATASETS: dict[str, Requirement] = {
    "trifeature": Requirement(
        "trifeature", "generated", how="rendered by kdfair (cached under $KDFAIR_CACHE)"
    ),
}

SHAPES: tuple[str, ...] = (
    "triangle", "square", "plus", "circle", "tee",
    "rhombus", "pentagon", "star", "fivesquare", "trapezoid",
)  # fmt: skip
TEXTURES: tuple[str, ...] = (
    "solid", "stripes", "grid", "hexgrid", "dots",
    "noise", "triangles", "zigzags", "rain", "pluses",
)  # fmt: skip
COLOURS: tuple[str, ...] = (
    "red", "green", "blue", "yellow", "pink",
    "cyan", "purple", "ocean", "orange", "white",
)  # fmt: skip
COLOUR_RGB: dict[str, tuple[float, float, float]] = {
    "red": (1.0, 0.0, 0.0),
    "green": (0.0, 1.0, 0.0),
    "blue": (0.0, 0.0, 1.0),
    "yellow": (1.0, 1.0, 0.0),
    "pink": (1.0, 0.4, 1.0),
    "cyan": (0.0, 1.0, 1.0),
    "purple": (0.3, 0.0, 0.5),
    "ocean": (0.1, 0.4, 0.5),
    "orange": (1.0, 0.6, 0.0),
    "white": (1.0, 1.0, 1.0),
}

TEMPLATE_SIZE = 128
CANVAS = 224
TEXTURE_SIZE = 2 * CANVAS
PERIOD = 10
BACKGROUND = 0.5
SPLITS: tuple[str, ...] = ("train", "val", "test")
# Bump when the drawing or splitting changes: it is part of the cache key and the fingerprint.
GENERATOR_VERSION = 1

class TrifeatureOptions(BaseModel):
    """Loader options (``dataset:`` keys besides ``name``); defaults give the fast demo set."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    size: int = Field(32, ge=8, le=224)
    images_per_combination: int = Field(3, ge=1, le=100)
    # images of each held-out (test) combination; None: images_per_combination
    test_images_per_combination: int | None = Field(None, ge=1, le=100)
    split: Literal["combinations", "images"] = "combinations"
    test_fraction: float = Field(0.2, ge=0.02, le=0.9)
    val_fraction: float = Field(0.1, ge=0.01, le=0.5)
    seed: int = Field(0, ge=0, le=2**32 - 1)

    @model_validator(mode="after")
    def _test_count_needs_held_out_combinations(self) -> TrifeatureOptions:
        if self.split == "images" and self.test_images_per_combination is not None:
            raise ValueError(
                "test_images_per_combination applies to split: combinations (held-out "
                "combinations); with split: images the test set is test_fraction of all images "
                "— remove one of the two")
        return self

    @property
    def n_test_images(self) -> int:
        """Images of each held-out combination (split: combinations)."""
        return self.test_images_per_combination or self.images_per_combination


def trifeature_options(options: Mapping[str, Any] | TrifeatureOptions | None) -> TrifeatureOptions:
    """Validate loader options, raising ConfigError that names the field and its allowed range."""
    return validate_options(TrifeatureOptions, options, "dataset", "dataset 'trifeature'")


# --------------------------------------------------------------------------------------------
# Shapes
# --------------------------------------------------------------------------------------------


def shape_template(name: str, s: int = TEMPLATE_SIZE) -> np.ndarray:
    """Binary mask [s, s] (bool, True inside) of one shape, by the exact rules of FORMATS.md."""
    if name not in SHAPES:
        raise ValueError(f"unknown shape {name!r}; allowed: {', '.join(SHAPES)}")
    i, j = np.meshgrid(np.arange(s), np.arange(s), indexing="ij")
    h = s // 2
    if name == "square":
        return np.ones((s, s), dtype=bool)
    if name == "circle":
        return (i + 0.5 - h) ** 2 + (j + 0.5 - h) ** 2 < h**2
    if name == "triangle":
        return np.abs(j - h) - np.abs(i // 2) < 1
    if name in ("plus", "tee"):
        lo, hi = h - s // 6, h + s // 6 + 1
        col_band = (j >= lo) & (j < hi)
        if name == "plus":
            return col_band | ((i >= lo) & (i < hi))
        return col_band | (i < s // 3)
    if name == "rhombus":
        d = j - h + i // 2
        return (d > 0) & (d < h)
    if name == "pentagon":
        m = int(0.4 * s)
        top = np.abs(j - h) - np.abs(1.25 * i) < 1
        o = (i - m) // 3.1
        bottom = (o < j) & (j < s - o)
        return np.where(i < m, top, bottom)
    if name == "star":
        l1 = int(0.4 * s)
        l2 = l1 + int(0.2 * s)
        l3 = l1 + int(0.15 * s)
        top = (i < l1) & (np.abs(j - h) - np.abs(i // 4) < 1)
        o = (i - l1) * 2.4
        middle = (i >= l1) & (i < l2) & (o < j) & (j < s - o)
        a = 0.33 * s - 0.43 * (i - l3)
        b = 0.62 * s - 1.05 * (i - l3)
        legs = (i >= l3) & (((a < j) & (j < b)) | ((a < s - j) & (s - j < b)))
        return top | middle | legs
    if name == "fivesquare":
        lo, hi = s // 3, s - s // 3
        row_band = (i >= lo) & (i < hi)
        col_band = (j >= lo) & (j < hi)
        return ~(row_band ^ col_band)  # all, minus both bands, plus their crossing (centre)
    # trapezoid
    o = i // 3.1
    return (o < j) & (j < s - o)


@cache
def _template_image(name: str) -> Image.Image:
    return Image.fromarray(shape_template(name).astype(np.float32))


# --------------------------------------------------------------------------------------------
# Textures
# --------------------------------------------------------------------------------------------


def _periodic_texture(name: str, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """A deterministic texture evaluated at (phase-shifted) coordinates y (rows), x (columns)."""
    xm, ym = x % PERIOD, y % PERIOD
    if name == "solid":
        return np.ones(np.broadcast_shapes(y.shape, x.shape), dtype=bool)
    if name == "stripes":
        return np.broadcast_to(ym < 3, np.broadcast_shapes(y.shape, x.shape))
    if name == "grid":
        return (ym < 3) | (xm < 3)
    if name == "hexgrid":
        k = (1.73 * y).astype(np.int64)
        return ((x + k) % PERIOD < 2) | ((x - k) % PERIOD < 2) | (ym < 2)
    if name == "dots":
        return (xm - 5) ** 2 + (ym - 5) ** 2 < 16
    if name == "triangles":
        return ym // 2 - np.abs(xm - 5) > 0
    if name == "zigzags":
        xx = np.where((y // PERIOD) % 2 == 1, 9 - xm, xm)
        o = ym // 2
        return (o < xx) & (xx < 5 + o)
    if name == "pluses":
        even = (np.abs(xm - 5) < 1.5) | (np.abs(ym - 5) < 1.5)
        odd = (xm < 1.5) | (PERIOD - xm < 1.5) | ((np.abs(ym - 5) < 1.5) & (np.abs(xm - 5) > 1.5))
        return np.where((y // PERIOD) % 2 == 0, even, odd)
    raise ValueError(name)  # pragma: no cover


@cache
def _periodic_base(name: str, size: int) -> np.ndarray:
    """The texture on a (size + 10)² grid at phase 0; a phase (ox, oy) is then a slice of it."""
    n = size + PERIOD
    y = np.arange(n)[:, None]
    x = np.arange(n)[None, :]
    base = np.ascontiguousarray(_periodic_texture(name, y, x))
    base.setflags(write=False)
    return base


def texture_map(
    name: str,
    phase: tuple[int, int] = (0, 0),
    rng: np.random.Generator | None = None,
    size: int = TEXTURE_SIZE,
) -> np.ndarray:
    """Binary texture [size, size] (bool) with phase (ox, oy): pixel (i, j) uses y=i+oy, x=j+ox.

    ``noise`` and ``rain`` are random and draw from ``rng`` (required for them; phase unused).
    Rain segments start at their pixel and run 7 pixels down, clipped at the bottom edge.
    """
    if name not in TEXTURES:
        raise ValueError(f"unknown texture {name!r}; allowed: {', '.join(TEXTURES)}")
    if name in ("noise", "rain"):
        if rng is None:
            raise ValueError(f"texture {name!r} is random: pass rng")
        if name == "noise":
            return rng.random((size, size)) < 0.5
        starts = rng.random((size, size)) < 0.05
        out = starts.copy()
        for k in range(1, 7):
            out[k:] |= starts[:-k]
        return out
    ox, oy = int(phase[0]), int(phase[1])
    if not (0 <= ox < PERIOD and 0 <= oy < PERIOD):
        raise ValueError(f"phase must lie in [0, {PERIOD}), got {phase}")
    return _periodic_base(name, size)[oy : oy + size, ox : ox + size].copy()


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


def render_mask(shape: str, texture: str, rng: np.random.Generator) -> np.ndarray:
    """The float mask [224, 224] in [0, 1] (shape × texture) of one image.

    Draw order from ``rng``: shape angle, row and column offset, texture angle, texture phase
    (ox, oy), then the texture's own random draws (noise, rain).
    """
    angle = int(rng.integers(-45, 45))
    rotated = np.asarray(
        _template_image(shape).rotate(angle, resample=Image.BILINEAR, expand=True),
        dtype=np.float32,
    )
    h, w = rotated.shape
    if h > CANVAS or w > CANVAS:  # cannot happen for 128 templates; clip rather than scale
        top, left = max(0, (h - CANVAS) // 2), max(0, (w - CANVAS) // 2)
        rotated = rotated[top : top + CANVAS, left : left + CANVAS]
        h, w = rotated.shape
    r0 = int(rng.integers(0, CANVAS - h + 1))
    c0 = int(rng.integers(0, CANVAS - w + 1))
    mask = np.zeros((CANVAS, CANVAS), dtype=np.float32)

    t_angle = int(rng.integers(-45, 45))
    ox, oy = (int(v) for v in rng.integers(0, PERIOD, size=2))
    tex = texture_map(texture, (ox, oy), rng=rng, size=TEXTURE_SIZE)
    if texture != "solid":
        tex_img = Image.fromarray(tex.astype(np.uint8)).rotate(t_angle, resample=Image.NEAREST)
        lo = (TEXTURE_SIZE - CANVAS) // 2
        crop = np.asarray(tex_img)[lo : lo + CANVAS, lo : lo + CANVAS]
        mask[r0 : r0 + h, c0 : c0 + w] = rotated * crop[r0 : r0 + h, c0 : c0 + w]
    else:
        mask[r0 : r0 + h, c0 : c0 + w] = rotated
    return mask


def colourise(mask: np.ndarray, colour: str) -> np.ndarray:
    """rgb [..., 3] = mask·colour + (1 − mask)·0.5 (float32)."""
    c = np.asarray(COLOUR_RGB[colour], dtype=np.float32)
    return BACKGROUND + mask[..., None].astype(np.float32) * (c - BACKGROUND)


def render_image(
    shape: str, texture: str, colour: str, rng: np.random.Generator, canvas: int = CANVAS
) -> np.ndarray:
    """One full-resolution image: float32 [224, 224, 3] in [0, 1]."""
    if canvas != CANVAS:
        raise ValueError(f"the drawing rules fix the canvas at {CANVAS}, got {canvas}")
    if colour not in COLOUR_RGB:
        raise ValueError(f"unknown colour {colour!r}; allowed: {', '.join(COLOURS)}")
    return colourise(render_mask(shape, texture, rng), colour)


def downsample_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """Exact area averaging (PIL BOX) of a float mask to [size, size]."""
    if size == mask.shape[0]:
        return mask.astype(np.float32)
    return np.asarray(Image.fromarray(mask.astype(np.float32)).resize((size, size), Image.BOX))


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    """Float [0, 1] -> uint8 with rounding."""
    return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)


def image_rng(seed: int, combination: int, k: int) -> np.random.Generator:
    """The generator of image k of a combination (independent of all other images)."""
    return np.random.default_rng([seed, combination, k])


def render_small(shape: int, texture: int, colour: int, k: int, seed: int, size: int) -> np.ndarray:
    """uint8 [size, size, 3] of image k of a (shape, texture, colour) combination (codes)."""
    combination = 100 * shape + 10 * texture + colour
    mask = render_mask(SHAPES[shape], TEXTURES[texture], image_rng(seed, combination, k))
    return to_uint8(colourise(downsample_mask(mask, size), COLOURS[colour]))


# --------------------------------------------------------------------------------------------
# Splits and generation
# --------------------------------------------------------------------------------------------


def held_out_combinations(test_fraction: float, seed: int) -> np.ndarray:
    """Bool [10, 10, 10] (shape, texture, colour): which combinations are held out for test.

    Balanced Latin design: the three factors' codes are randomly permuted (S, T, C) and a
    combination lies on diagonal D = (S + T + C) mod 10. Test takes the first ``k`` diagonals
    whole and, from diagonal ``k``, the ``r`` combinations per shape with (T − S) mod 10 < r,
    where 10k + r = round(100 · test_fraction) (the fraction counts to 0.01). Every shape gets
    exactly 10k + r test combinations; with 0.02 ≤ test_fraction ≤ 0.9 every shape, texture and
    colour appears in both splits (whole diagonals are balanced in every pair of factors).
    """
    rng = np.random.default_rng([seed, 7_770_001])
    per_shape = int(round(test_fraction * 100))
    k, r = divmod(per_shape, 10)
    ps, pt, pc = (rng.permutation(10) for _ in range(3))
    s_, t_, c_ = np.meshgrid(ps, pt, pc, indexing="ij")
    diag = (s_ + t_ + c_) % 10
    return (diag < k) | ((diag == k) & ((t_ - s_) % 10 < r))


@dataclass
class TrifeatureArrays:
    """All generated images and their codes; ``split`` is 0 train, 1 val, 2 test."""

    images: np.ndarray  # uint8 [N, 3, size, size]
    shape: np.ndarray  # int64 [N]
    texture: np.ndarray
    colour: np.ndarray
    split: np.ndarray  # int8 [N]
    k: np.ndarray  # image number within its combination


def _layout(opts: TrifeatureOptions) -> dict[str, np.ndarray]:
    """Codes and split of every image, ordered by (shape, texture, colour, k)."""
    n_img = max(opts.images_per_combination, opts.n_test_images)
    s_, t_, c_, k_ = np.meshgrid(
        np.arange(10), np.arange(10), np.arange(10), np.arange(n_img), indexing="ij"
    )
    shape, texture, colour, k = (a.reshape(-1).astype(np.int64) for a in (s_, t_, c_, k_))
    if opts.split == "images":
        is_test = np.zeros(len(shape), dtype=bool)
        n_test = int(round(opts.test_fraction * len(shape)))
        is_test[np.random.default_rng([opts.seed, 7_770_005]).permutation(len(shape))[:n_test]] = 1
    else:
        is_test = held_out_combinations(opts.test_fraction, opts.seed)[shape, texture, colour]
        wanted = np.where(is_test, opts.n_test_images, opts.images_per_combination)
        keep = k < wanted
        shape, texture, colour, k, is_test = (a[keep] for a in (shape, texture, colour, k,
                                                                 is_test))
    split = np.where(is_test, 2, 0).astype(np.int8)
    # validation: a seeded, shape-stratified share of the train images
    rng = np.random.default_rng([opts.seed, 7_770_002])
    for sh in range(10):
        idx = np.flatnonzero((split == 0) & (shape == sh))
        n_val = max(1, int(round(opts.val_fraction * len(idx))))
        split[rng.permutation(idx)[:n_val]] = 1
    return {"shape": shape, "texture": texture, "colour": colour, "k": k, "split": split}


def generate(options: dict[str, Any] | TrifeatureOptions | None = None) -> TrifeatureArrays:
    """Render the whole set (10 × 10 × 10 combinations × images_per_combination)."""
    opts = trifeature_options(options)
    lay = _layout(opts)
    n = len(lay["shape"])
    images = np.empty((n, 3, opts.size, opts.size), dtype=np.uint8)
    for idx in range(n):
        images[idx] = render_small(
            int(lay["shape"][idx]), int(lay["texture"][idx]), int(lay["colour"][idx]),
            int(lay["k"][idx]), opts.seed, opts.size,
        ).transpose(2, 0, 1)  # fmt: skip
    return TrifeatureArrays(
        images=images,
        shape=lay["shape"],
        texture=lay["texture"],
        colour=lay["colour"],
        split=lay["split"],
        k=lay["k"],
    )


# --------------------------------------------------------------------------------------------
# Hashing, caching, loading
# --------------------------------------------------------------------------------------------


def options_hash(opts: TrifeatureOptions) -> str:
    """Short hash of the options and the generator version (the cache key)."""
    fields = opts.model_dump()
    for name, default in (("test_images_per_combination", None), ("split", "combinations")):
        if fields[name] == default:  # options added later: sets made before keep their key
            del fields[name]
    payload = json.dumps({"generator": GENERATOR_VERSION, **fields}, sort_keys=True).encode()
    return hashlib.sha256(payload).hexdigest()[:12]


def content_hash(arrays: TrifeatureArrays) -> str:
    """Short hash of every image, code and split assignment.

    Not :func:`kdfair.integrity.digest`: this hash is part of the fingerprint, hence of the id of
    every stored Trifeature run; hashing other bytes would orphan every store made so far.
    """
    h = hashlib.sha256()
    for a in (arrays.images, arrays.shape, arrays.texture, arrays.colour, arrays.split, arrays.k):
        h.update(str(a.shape).encode())
        h.update(np.ascontiguousarray(a).data)
    return h.hexdigest()[:12]


_FIELDS = ("images", "shape", "texture", "colour", "split", "k")


def _save(path: Path, arrays: TrifeatureArrays) -> None:
    """Write the cache atomically (temporary file in the same directory, then rename)."""
    _atomic_npz(path, {k: getattr(arrays, k) for k in _FIELDS})


def _atomic_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez`` through :func:`kdfair.integrity.atomic_write`: readers of a shared cache see
    the old file or the new one, never half of one."""
    def save(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: np.savez would add .npz to a name
            np.savez(f, **arrays)

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, save)


def _read(path: Path) -> TrifeatureArrays | None:
    """The cached arrays, or None when the file is missing or unreadable (then regenerate)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            return TrifeatureArrays(**{k: z[k] for k in _FIELDS})
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):  # e.g. truncated
        return None


def cache_path(cache_dir: Path, options: dict[str, Any] | TrifeatureOptions | None) -> Path:
    """Where the set with these options is cached."""
    return Path(cache_dir) / f"trifeature-{options_hash(trifeature_options(options))}.npz"


def load_arrays(
    options: dict[str, Any] | TrifeatureOptions | None, cache_dir: Path | None
) -> TrifeatureArrays:
    """Read the cached set, or generate it (and cache it when ``cache_dir`` is given)."""
    opts = trifeature_options(options)
    if cache_dir is None:
        return generate(opts)
    path = cache_path(cache_dir, opts)
    arrays = _read(path)
    if arrays is not None and arrays.images.shape[1:] == (3, opts.size, opts.size):
        return arrays
    arrays = generate(opts)
    _save(path, arrays)
    return arrays


def channel_stats(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std of uint8 [N, C, H, W] images scaled to [0, 1].

    Exact, from value histograms over chunks, so large sets need no float copy in memory.
    """
    counts = np.zeros((images.shape[1], 256), dtype=np.int64)
    for lo in range(0, len(images), 512):
        chunk = images[lo : lo + 512]
        for c in range(images.shape[1]):
            counts[c] += np.bincount(chunk[:, c].ravel(), minlength=256)
    v = np.arange(256) / 255.0
    n = counts.sum(axis=1)
    mean = (counts * v).sum(axis=1) / n
    var = (counts * (v[None, :] - mean[:, None]) ** 2).sum(axis=1) / n
    return tuple(float(m) for m in mean), tuple(float(s) for s in np.sqrt(var))


# --------------------------------------------------------------------------------------------
# Counterfactuals (individual fairness)
# --------------------------------------------------------------------------------------------

COUNTERFACTUAL_ATTRIBUTES: tuple[str, ...] = ("colour", "texture")
_CF_STREAM = {"colour": 7_770_003, "texture": 7_770_004}
COUNTERFACTUAL_HOW = {
    "colour": "the same shape, texture, position and rotations (the same mask) in another "
              "colour, drawn uniformly from the other 9 by the image's own seeded stream",
    "texture": "the same shape, colour, position, rotations and texture phase with another "
               "texture, drawn uniformly from the other 9 by the image's own seeded stream",
}


def counterfactual_value(attr: str, value: int, shape: int, texture: int, colour: int, k: int,
                         seed: int) -> int:
    """The other value of ``attr`` that image k of a combination's counterfactual takes:
    uniform over the 9 others, from a stream of its own (so it never depends on other images)."""
    combination = 100 * shape + 10 * texture + colour
    step = int(np.random.default_rng([seed, _CF_STREAM[attr], combination, k]).integers(1, 10))
    return (value + step) % 10


def render_counterfactual(shape: int, texture: int, colour: int, k: int, seed: int, size: int,
                          attr: str, other: int) -> np.ndarray:
    """uint8 [size, size, 3]: image k of a combination with ``attr`` set to ``other``.

    It replays the original image's generator, so every draw before the texture's own random
    pixels (shape angle, offset, texture angle and phase) is the original's: a colour
    counterfactual has the original's mask exactly, a texture one the original's geometry.
    """
    rng = image_rng(seed, 100 * shape + 10 * texture + colour, k)
    if attr == "colour":
        mask = render_mask(SHAPES[shape], TEXTURES[texture], rng)
        return to_uint8(colourise(downsample_mask(mask, size), COLOURS[other]))
    if attr == "texture":
        mask = render_mask(SHAPES[shape], TEXTURES[other], rng)
        return to_uint8(colourise(downsample_mask(mask, size), COLOURS[colour]))
    raise ValueError(f"no counterfactual for {attr!r}; allowed: "
                     f"{', '.join(COUNTERFACTUAL_ATTRIBUTES)}")


def generate_counterfactuals(arrays: TrifeatureArrays, opts: TrifeatureOptions
                             ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """attr -> (uint8 images [N_test, 3, size, size], the attribute value each was given), in
    the test split's order."""
    idx = np.flatnonzero(arrays.split == 2)
    out = {}
    for attr in COUNTERFACTUAL_ATTRIBUTES:
        images = np.empty((len(idx), 3, opts.size, opts.size), dtype=np.uint8)
        values = np.empty(len(idx), dtype=np.int64)
        for n, i in enumerate(idx):
            s, t, c, k = (int(getattr(arrays, f)[i]) for f in ("shape", "texture", "colour", "k"))
            values[n] = counterfactual_value(attr, t if attr == "texture" else c, s, t, c, k,
                                             opts.seed)
            images[n] = render_counterfactual(s, t, c, k, opts.seed, opts.size, attr,
                                              int(values[n])).transpose(2, 0, 1)
        out[attr] = (images, values)
    return out


def load_counterfactuals(arrays: TrifeatureArrays, opts: TrifeatureOptions,
                         cache_dir: Path | None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The counterfactuals of the test set, from ``cache_dir`` or generated (and cached)."""
    path = None if cache_dir is None else \
        Path(cache_dir) / f"trifeature-{options_hash(opts)}-counterfactuals.npz"
    n_test = int((arrays.split == 2).sum())
    if path is not None and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                cached = {a: (z[f"{a}_images"], z[f"{a}_values"])
                          for a in COUNTERFACTUAL_ATTRIBUTES}
            if all(im.shape == (n_test, 3, opts.size, opts.size) for im, _ in cached.values()):
                return cached
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            pass  # unreadable (e.g. truncated): generated again
    out = generate_counterfactuals(arrays, opts)
    if path is not None:
        _atomic_npz(path, {f"{a}_{k}": v for a, (im, val) in out.items()
                           for k, v in (("images", im), ("values", val))})
    return out


def _part(arrays: TrifeatureArrays, which: int) -> Part:
    sel = arrays.split == which
    return Part(
        y=torch.from_numpy(arrays.shape[sel].astype(np.int64)),
        x=torch.from_numpy(np.ascontiguousarray(arrays.images[sel])),
        attributes={
            "colour": arrays.colour[sel].astype(np.int64),
            "texture": arrays.texture[sel].astype(np.int64),
        },
    )


def to_split_data(arrays: TrifeatureArrays, opts: TrifeatureOptions,
                  counterfactuals: dict[str, tuple[np.ndarray, np.ndarray]] | None = None
                  ) -> SplitData:
    """Wrap generated arrays as SplitData (mean / std per channel from train, in [0, 1]), with
    the test set's counterfactuals when given."""
    mean, std = channel_stats(arrays.images[arrays.split == 0])
    test = arrays.split == 2
    n_test = len(np.unique(100 * arrays.shape[test] + 10 * arrays.texture[test]
                           + arrays.colour[test]))
    n_train = int((arrays.split < 2).sum())
    test_y = torch.from_numpy(arrays.shape[test].astype(np.int64))
    cf = {a: Part(y=test_y, x=torch.from_numpy(np.ascontiguousarray(im)),
                  attributes={a: val.astype(np.int64)})
          for a, (im, val) in (counterfactuals or {}).items()}
    return SplitData(
        name="trifeature",
        train=_part(arrays, 0),
        val=_part(arrays, 1),
        test=_part(arrays, 2),
        num_classes=len(SHAPES),
        class_names=list(SHAPES),
        fingerprint=f"trifeature-{options_hash(opts)}-{content_hash(arrays)}",
        attribute_groups={"colour": list(COLOURS), "texture": list(TEXTURES)},
        mean=mean,
        std=std,
        notes=[
            f"Trifeature generated: size {opts.size}, {n_train} train + val images "
            f"({opts.images_per_combination} per combination), {int(test.sum())} test images "
            + (f"of {n_test} held-out combinations ({opts.n_test_images} each)"
               if opts.split == "combinations" else "drawn at random from all combinations")
            + f", seed {opts.seed}"
        ],
        counterfactuals=cf,
        counterfactual_notes={a: COUNTERFACTUAL_HOW[a] for a in cf},
    )


def load(cfg: DatasetConfig, cache_dir: Path) -> SplitData:
    """Generate (or read from ``cache_dir``) the Trifeature set that ``cfg.options`` describe."""
    opts = trifeature_options(cfg.options)
    arrays = load_arrays(opts, cache_dir)
    return to_split_data(arrays, opts, load_counterfactuals(arrays, opts, cache_dir))


# --------------------------------------------------------------------------------------------
# PNG export
# --------------------------------------------------------------------------------------------


def write_png_dataset(out_dir: Path, options: dict[str, Any] | None = None) -> Path:
    """Write every image as ``<split>/<nnnnnn>.png`` plus ``index.csv``; return the CSV path.

    CSV columns: split, file (relative to ``out_dir``), shape, texture, colour (names), label
    (the shape's class index). Images are rendered and written one at a time, so even the full
    224-pixel set (10 000 images) never sits in memory; they equal :func:`generate`'s arrays.
    """
    opts = trifeature_options(options)
    lay = _layout(opts)
    out_dir = Path(out_dir)
    csv_path = out_dir / "index.csv"
    rows: list[list[Any]] = []
    for code, split in enumerate(SPLITS):
        (out_dir / split).mkdir(parents=True, exist_ok=True)
        for n, idx in enumerate(np.flatnonzero(lay["split"] == code)):
            s, t, c, k = (int(lay[f][idx]) for f in ("shape", "texture", "colour", "k"))
            rel = f"{split}/{n:06d}.png"
            Image.fromarray(render_small(s, t, c, k, opts.seed, opts.size)).save(out_dir / rel)
            rows.append([split, rel, SHAPES[s], TEXTURES[t], COLOURS[c], s])
    with csv_path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["split", "file", "shape", "texture", "colour", "label"])
        writer.writerows(rows)
    return csv_path
