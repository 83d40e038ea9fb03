"""Trifeature generator: drawing rules, determinism, splits, cache, options, PNG export."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from kdfair.config import DatasetConfig
from kdfair.data import trifeature as tf
from kdfair.data.registry import load_dataset
from kdfair.errors import ConfigError

SMALL = {"images_per_combination": 1, "size": 8}


@pytest.fixture(scope="module")
def small() -> tf.TrifeatureArrays:
    return tf.generate(SMALL)


# ---------------------------------------------------------------- shape templates


def _ref_pixel(name: str, s: int, i: int, j: int) -> bool:
    """Scalar transcription of FORMATS.md, one pixel at a time (the hand computation)."""
    h = s // 2
    if name == "square":
        return True
    if name == "circle":
        return (i + 0.5 - h) ** 2 + (j + 0.5 - h) ** 2 < h**2
    if name == "triangle":
        return abs(j - h) - abs(i // 2) < 1
    lo, hi = h - s // 6, h + s // 6 + 1
    if name == "plus":
        return lo <= j < hi or lo <= i < hi
    if name == "tee":
        return lo <= j < hi or i < s // 3
    if name == "rhombus":
        return 0 < j - h + i // 2 < h
    if name == "pentagon":
        m = int(0.4 * s)
        if i < m:
            return abs(j - h) - abs(1.25 * i) < 1
        o = (i - m) // 3.1
        return o < j < s - o
    if name == "star":
        l1, l2, l3 = int(0.4 * s), int(0.4 * s) + int(0.2 * s), int(0.4 * s) + int(0.15 * s)
        inside = False
        if i < l1:
            inside = abs(j - h) - abs(i // 4) < 1
        elif i < l2:
            o = (i - l1) * 2.4
            inside = o < j < s - o
        if i >= l3:
            a, b = 0.33 * s - 0.43 * (i - l3), 0.62 * s - 1.05 * (i - l3)
            inside = inside or a < j < b or a < s - j < b
        return inside
    if name == "fivesquare":
        in_row, in_col = s // 3 <= i < s - s // 3, s // 3 <= j < s - s // 3
        return (in_row and in_col) or (not in_row and not in_col)
    if name == "trapezoid":
        o = i // 3.1
        return o < j < s - o
    raise AssertionError(name)


@pytest.mark.parametrize("s", [24, 128])
@pytest.mark.parametrize("name", tf.SHAPES)
def test_template_matches_scalar_rules(name: str, s: int) -> None:
    ref = np.array([[_ref_pixel(name, s, i, j) for j in range(s)] for i in range(s)])
    got = tf.shape_template(name, s)
    assert got.dtype == bool and got.shape == (s, s)
    np.testing.assert_array_equal(got, ref)


def test_square_is_all_ones() -> None:
    assert tf.shape_template("square").all()


def test_circle_small_by_hand() -> None:
    # s = 8: pixel centres at ±0.5 … ±3.5 from the centre, radius² 16
    expected_rows = [(2, 6), (1, 7), (0, 8), (0, 8), (0, 8), (0, 8), (1, 7), (2, 6)]
    c = tf.shape_template("circle", 8)
    for i, (a, b) in enumerate(expected_rows):
        assert np.flatnonzero(c[i]).tolist() == list(range(a, b))
    assert c.sum() == 52
    big = tf.shape_template("circle", 128)
    assert abs(big.sum() - math.pi * 64**2) / (math.pi * 64**2) < 0.01


def test_triangle_rows() -> None:
    t = tf.shape_template("triangle", 128)
    for i in (0, 1, 2, 5, 64, 127):
        half = i // 2
        assert np.flatnonzero(t[i]).tolist() == list(range(64 - half, 64 + half + 1))


def test_plus_and_tee_bands() -> None:
    p = tf.shape_template("plus", 128)
    band = 43  # [64 - 21, 64 + 22)
    assert p.sum() == 2 * band * 128 - band * band
    assert p[:, 43:86].all() and p[43:86, :].all() and not p[0, 42] and not p[0, 86]
    t = tf.shape_template("tee", 128)
    assert t[:42].all() and not t[42, 0] and t[127, 43:86].all() and not t[127, 42]


def test_fivesquare_has_holes() -> None:
    f = tf.shape_template("fivesquare", 128)
    lo, hi = 128 // 3, 128 - 128 // 3
    assert f[10, 10] and f[64, 64] and f[10, 120] and f[120, 10]
    assert not f[64, 10] and not f[10, 64] and not f[64, 120] and not f[120, 64]
    _, n_parts = ndimage.label(f)  # 4-connectivity: the squares touch only at corners
    _, n_holes = ndimage.label(~f)
    assert n_parts == 5 and n_holes == 4
    assert f.sum() == 4 * lo * lo + (hi - lo) ** 2


def test_unknown_names_are_rejected() -> None:
    with pytest.raises(ValueError, match="allowed"):
        tf.shape_template("hexagon")
    with pytest.raises(ValueError, match="allowed"):
        tf.texture_map("plaid")


# ---------------------------------------------------------------- textures

PERIODIC = [t for t in tf.TEXTURES if t not in ("noise", "rain")]


@pytest.mark.parametrize("name", PERIODIC)
def test_texture_period_and_phase(name: str) -> None:
    base = tf.texture_map(name, (0, 0), size=100)
    assert base.shape == (100, 100) and base.dtype == bool
    np.testing.assert_array_equal(base[:, :-10], base[:, 10:])  # period 10 in x
    if name in ("solid", "stripes", "grid", "dots", "triangles"):
        np.testing.assert_array_equal(base[:-10], base[10:])  # and in y
    if name in ("zigzags", "pluses"):
        np.testing.assert_array_equal(base[:-20], base[20:])  # alternate rows of cells
    shifted = tf.texture_map(name, (3, 7), size=80)
    np.testing.assert_array_equal(shifted, base[7:87, 3:83])


def test_texture_formula_pixels() -> None:
    st = tf.texture_map("stripes")
    assert st[0, 5] and st[2, 5] and not st[3, 5] and st[12, 0]
    g = tf.texture_map("grid")
    assert g[5, 1] and g[1, 5] and not g[5, 5]
    d = tf.texture_map("dots")
    assert d[5, 5] and d[5, 2] and not d[5, 1] and not d[0, 0]
    tri = tf.texture_map("triangles")
    assert tri[9, 5] and not tri[1, 5] and tri[9, 2] and not tri[9, 1]
    z = tf.texture_map("zigzags")
    assert np.flatnonzero(z[0, :10]).tolist() == [1, 2, 3, 4]
    assert np.flatnonzero(z[10, :10]).tolist() == [5, 6, 7, 8]  # mirrored on odd cell rows
    assert np.flatnonzero(z[4, :10]).tolist() == [3, 4, 5, 6]
    p = tf.texture_map("pluses")
    assert p[5, :10].all() and np.flatnonzero(p[0, :10]).tolist() == [4, 5, 6]
    assert np.flatnonzero(p[15, :10]).tolist() == [0, 1, 2, 3, 7, 8, 9]
    assert np.flatnonzero(p[10, :10]).tolist() == [0, 1, 9]
    hx = tf.texture_map("hexgrid")
    for y, x in [(0, 0), (3, 7), (10, 4), (11, 9)]:
        k = int(1.73 * y)
        expected = (x + k) % 10 < 2 or (x - k) % 10 < 2 or y % 10 < 2
        assert bool(hx[y, x]) == expected
    ph = tf.texture_map("stripes", phase=(0, 8))  # y = i + 8: rows 2, 3, 4 are on (y = 10..12)
    assert np.flatnonzero(ph[:10, 0]).tolist() == [2, 3, 4]
    assert tf.texture_map("solid").all()


def test_random_textures() -> None:
    with pytest.raises(ValueError, match="rng"):
        tf.texture_map("noise")
    n = tf.texture_map("noise", rng=np.random.default_rng(0))
    assert abs(n.mean() - 0.5) < 0.01
    np.testing.assert_array_equal(n, tf.texture_map("noise", rng=np.random.default_rng(0)))
    rain = tf.texture_map("rain", rng=np.random.default_rng(1))
    assert abs(rain[6:].mean() - (1 - 0.95**7)) < 0.02
    # every column is made of vertical runs; a run away from the edges is a multiple-of-segments
    # union, so at least 7 tall
    col = rain[:, 100].astype(int)
    edges = np.flatnonzero(np.diff(col))
    starts, ends = edges[col[edges] == 0] + 1, edges[col[edges] == 1] + 1
    if col[0]:
        ends = ends[1:]
    runs = [e - s for s, e in zip(starts, ends, strict=False) if e > s]
    assert runs and min(runs) >= 7


# ---------------------------------------------------------------- rendering


def test_render_image_colour_and_determinism() -> None:
    img = tf.render_image("star", "grid", "pink", np.random.default_rng(3))
    assert img.shape == (224, 224, 3) and img.dtype == np.float32
    again = tf.render_image("star", "grid", "pink", np.random.default_rng(3))
    np.testing.assert_array_equal(img, again)
    # every pixel lies between the background 0.5 and pink (1, .4, 1)
    m = (img[..., 0] - 0.5) / 0.5
    np.testing.assert_allclose(img, tf.colourise(m, "pink"), atol=1e-6)
    assert (m >= -1e-6).all() and (m <= 1 + 1e-6).all()
    assert np.isclose(img, 0.5).all(axis=-1).mean() > 0.5  # mostly background
    assert (m > 0.99).any()  # some full-strength texture pixels
    other = tf.render_image("star", "grid", "pink", np.random.default_rng(4))
    assert not np.array_equal(img, other)


def test_render_solid_mask_is_rotated_template() -> None:
    mask = tf.render_mask("square", "solid", np.random.default_rng(0))
    area = tf.shape_template("square").sum()
    assert abs(mask.sum() - area) / area < 0.02  # rotation keeps the area
    rows, cols = np.nonzero(mask)
    assert rows.max() - rows.min() <= 182 and cols.max() - cols.min() <= 182


def test_generator_image_is_area_downsampled_render() -> None:
    # image k=1 of combination (shape 7, texture 2, colour 4)
    small = tf.render_small(7, 2, 4, 1, seed=5, size=32)
    full = tf.render_image("star", "grid", "pink", tf.image_rng(5, 724, 1))
    box = full.reshape(32, 7, 32, 7, 3).mean(axis=(1, 3))
    assert np.abs(small.astype(int) - tf.to_uint8(box).astype(int)).max() <= 1


# ---------------------------------------------------------------- generator and splits


def test_generate_is_deterministic(small: tf.TrifeatureArrays) -> None:
    again = tf.generate(SMALL)
    for f in ("images", "shape", "texture", "colour", "split", "k"):
        np.testing.assert_array_equal(getattr(small, f), getattr(again, f))
    other = tf.generate({**SMALL, "seed": 1})
    assert not np.array_equal(small.images, other.images)
    assert not np.array_equal(small.split, other.split)


def test_image_does_not_depend_on_set_size(small: tf.TrifeatureArrays) -> None:
    two = tf.generate({**SMALL, "images_per_combination": 2})
    np.testing.assert_array_equal(two.images[two.k == 0], small.images)
    assert not np.array_equal(two.images[two.k == 1], small.images)


def test_balance_and_held_out_combinations(small: tf.TrifeatureArrays) -> None:
    combo = small.shape * 100 + small.texture * 10 + small.colour
    test_combos = set(combo[small.split == 2].tolist())
    assert len(test_combos) == 200
    assert test_combos.isdisjoint(combo[small.split != 2].tolist())
    for split in (small.split == 2, small.split != 2):
        np.testing.assert_array_equal(
            np.bincount(small.shape[split], minlength=10), split.sum() // 10
        )
        # the 20 % test design takes two whole Latin diagonals: textures / colours also balanced
        assert set(small.texture[split].tolist()) == set(range(10))
        assert set(small.colour[split].tolist()) == set(range(10))
    np.testing.assert_array_equal(np.bincount(small.texture[small.split == 2]), 20)
    np.testing.assert_array_equal(np.bincount(small.colour[small.split == 2]), 20)
    val = small.split == 1
    assert val.sum() == 80  # 10 % of 800 train images, per shape 8
    np.testing.assert_array_equal(np.bincount(small.shape[val], minlength=10), 8)


@pytest.mark.parametrize("fraction", [0.02, 0.05, 0.13, 0.2, 0.5, 0.9])
@pytest.mark.parametrize("seed", [0, 11])
def test_held_out_design_covers_everything(fraction: float, seed: int) -> None:
    held = tf.held_out_combinations(fraction, seed)
    assert held.sum() == 10 * round(fraction * 100)
    np.testing.assert_array_equal(held.sum(axis=(1, 2)), round(fraction * 100))
    for axis in range(3):
        others = tuple(a for a in range(3) if a != axis)
        assert (held.any(axis=others)).all(), "every value of every factor in test"
        assert ((~held).any(axis=others)).all(), "and in train"


def test_test_images_per_combination_sets_the_test_size_apart(small: tf.TrifeatureArrays) -> None:
    big = tf.generate({**SMALL, "test_images_per_combination": 4})
    # the training side is today's set image for image; each held-out combination has 4 images
    np.testing.assert_array_equal(big.images[big.split < 2], small.images[small.split < 2])
    np.testing.assert_array_equal(big.split[big.split < 2], small.split[small.split < 2])
    test = big.split == 2
    assert test.sum() == 200 * 4 and (big.split < 2).sum() == 800
    combo = big.shape * 100 + big.texture * 10 + big.colour
    assert set(combo[test].tolist()) == set(
        (small.shape * 100 + small.texture * 10 + small.colour)[small.split == 2].tolist())
    np.testing.assert_array_equal(np.bincount(combo[test])[np.unique(combo[test])], 4)
    # image k of a combination is the same image in any set that has it
    np.testing.assert_array_equal(big.images[test & (big.k == 0)],
                                  small.images[small.split == 2])
    # balanced design: every colour has the same class base rates, so a perfect classifier's
    # DPD is exactly 0 (the paper's teacher has 3.64 %: another split)
    from kdfair.analysis.fairness import ovr_rates
    from kdfair.analysis.measures import group_values
    v = group_values(ovr_rates(big.shape[test], big.shape[test], big.colour[test], 10), False)
    assert (v["dpd"], v["eod"]) == (0.0, 0.0)


def test_random_image_split() -> None:
    arrays = tf.generate({**SMALL, "images_per_combination": 2, "split": "images"})
    assert len(arrays.split) == 2000 and (arrays.split == 2).sum() == 400
    combo = arrays.shape * 100 + arrays.texture * 10 + arrays.colour
    shared = set(combo[arrays.split == 2].tolist()) & set(combo[arrays.split < 2].tolist())
    assert shared, "an image split shares combinations between train and test"
    # the colours' class base rates differ by chance: a perfect classifier has DPD > 0,
    # computed here by hand from the counts
    test = arrays.split == 2
    counts = np.zeros((10, 10))
    np.add.at(counts, (arrays.colour[test], arrays.shape[test]), 1)
    rates = counts / counts.sum(1, keepdims=True)
    by_hand = float((rates.max(0) - rates.min(0)).mean())
    from kdfair.analysis.fairness import ovr_rates
    from kdfair.analysis.measures import group_values
    dpd = group_values(ovr_rates(arrays.shape[test], arrays.shape[test], arrays.colour[test],
                                 10), False)["dpd"]
    assert dpd == pytest.approx(by_hand) and dpd > 0.02
    again = tf.generate({**SMALL, "images_per_combination": 2, "split": "images"})
    np.testing.assert_array_equal(again.split, arrays.split)


def test_new_options_keep_old_cache_keys() -> None:
    """Sets made before the split options existed keep their cache key and fingerprint."""
    base = tf.trifeature_options(SMALL)
    same = tf.trifeature_options({**SMALL, "split": "combinations",
                                  "test_images_per_combination": None})
    assert tf.options_hash(base) == tf.options_hash(same)
    assert tf.options_hash(base) != tf.options_hash(
        tf.trifeature_options({**SMALL, "test_images_per_combination": 2}))
    assert tf.options_hash(base) != tf.options_hash(
        tf.trifeature_options({**SMALL, "split": "images"}))


# ---------------------------------------------------------------- loader, cache, options


def test_load_contract_and_cache(tmp_path, monkeypatch) -> None:
    cfg = DatasetConfig(name="trifeature", **SMALL)
    data = load_dataset(cfg, tmp_path)
    cached = sorted(tmp_path.glob("trifeature-*.npz"))
    assert len(cached) == 2  # the set, and its test set's counterfactuals
    assert tf.cache_path(tmp_path, SMALL) in cached
    assert tf.cache_path(tmp_path, SMALL).with_name(
        tf.cache_path(tmp_path, SMALL).stem + "-counterfactuals.npz") in cached
    assert (len(data.train), len(data.val), len(data.test)) == (720, 80, 200)
    for part in (data.train, data.val, data.test):
        assert part.x.dtype == torch.uint8 and tuple(part.x.shape[1:]) == (3, 8, 8)
        assert part.y.dtype == torch.int64 and len(part.x) == len(part.y)
        assert set(part.attributes) == {"colour", "texture"}
        for codes in part.attributes.values():
            assert codes.dtype == np.int64 and len(codes) == len(part)
    assert data.class_names == list(tf.SHAPES) and data.num_classes == 10
    assert data.attribute_groups == {"colour": list(tf.COLOURS), "texture": list(tf.TEXTURES)}
    assert data.input_shape == (3, 8, 8) and data.in_memory
    train = data.train.x.double() / 255
    np.testing.assert_allclose(data.mean, train.mean(dim=(0, 2, 3)).numpy(), rtol=1e-6)
    np.testing.assert_allclose(
        data.std, train.std(dim=(0, 2, 3), unbiased=False).numpy(), rtol=1e-5
    )
    assert data.fingerprint.startswith("trifeature-")

    def boom(*args, **kwargs):
        raise AssertionError("regenerated instead of reading the cache")

    monkeypatch.setattr(tf, "generate", boom)
    monkeypatch.setattr(tf, "generate_counterfactuals", boom)
    again = load_dataset(cfg, tmp_path)
    assert again.fingerprint == data.fingerprint
    for a, b in ((data.train, again.train), (data.val, again.val), (data.test, again.test)):
        assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
        np.testing.assert_array_equal(a.attributes["colour"], b.attributes["colour"])
    monkeypatch.undo()

    main_cache = tf.cache_path(tmp_path, SMALL)
    for path in cached:
        path.write_bytes(b"not an npz")  # a corrupt cache is regenerated
    fixed = load_dataset(cfg, tmp_path)
    assert fixed.fingerprint == data.fingerprint
    assert torch.equal(fixed.counterfactuals["colour"].x, data.counterfactuals["colour"].x)
    with np.load(main_cache, allow_pickle=False) as z:
        assert z["images"].shape == (1000, 3, 8, 8)

    other = load_dataset(DatasetConfig(name="trifeature", **{**SMALL, "seed": 3}), tmp_path)
    assert other.fingerprint != data.fingerprint
    assert len(list(tmp_path.glob("trifeature-*.npz"))) == 4  # two sets, two counterfactuals


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"size": 4}, "dataset.size: must be an integer between 8 and 224, got 4"),
        ({"size": 300}, "dataset.size: must be an integer between 8 and 224, got 300"),
        ({"images_per_combination": 0}, "dataset.images_per_combination: must be an integer"),
        ({"test_fraction": 0.95}, "dataset.test_fraction: must be a number between 0.02 and 0.9"),
        ({"val_fraction": -0.1}, "dataset.val_fraction: must be a number between 0.01 and 0.5"),
        ({"seed": "abc"}, "dataset.seed: must be an integer between 0 and"),
        ({"colours": 3}, "dataset.colours: unknown option; allowed: size, images_per_combination"),
        ({"test_images_per_combination": 0}, "dataset.test_images_per_combination: must be"),
        ({"split": "shapes"}, "dataset.split: must be one of"),
        ({"split": "images", "test_images_per_combination": 5},
         "test_images_per_combination applies to split: combinations"),
    ],
)
def test_options_validation(tmp_path, options: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_dataset(DatasetConfig(name="trifeature", **options), tmp_path)
    assert str(err.value).startswith("invalid options for dataset 'trifeature':\n")
    assert message in str(err.value)
    assert not list(tmp_path.iterdir())


def test_defaults() -> None:
    opts = tf.trifeature_options(None)
    assert (opts.size, opts.images_per_combination, opts.test_fraction) == (32, 3, 0.2)
    assert (opts.val_fraction, opts.seed) == (0.1, 0)


# ---------------------------------------------------------------- PNG export


def test_write_png_dataset(tmp_path, small: tf.TrifeatureArrays) -> None:
    csv_path = tf.write_png_dataset(tmp_path / "out", SMALL)
    assert csv_path == tmp_path / "out" / "index.csv"
    with csv_path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["split", "file", "shape", "texture", "colour", "label"]
    assert len(rows) == 1000
    assert sum(r["split"] == "test" for r in rows) == 200
    assert rows[0]["file"] == "train/000000.png"
    for split_code, split in enumerate(tf.SPLITS):
        idx = np.flatnonzero(small.split == split_code)
        split_rows = [r for r in rows if r["split"] == split]
        assert len(split_rows) == len(idx)
        for n in (0, len(idx) - 1):
            r, i = split_rows[n], idx[n]
            assert r["file"] == f"{split}/{n:06d}.png"
            assert r["shape"] == tf.SHAPES[small.shape[i]] and int(r["label"]) == small.shape[i]
            assert r["texture"] == tf.TEXTURES[small.texture[i]]
            assert r["colour"] == tf.COLOURS[small.colour[i]]
            back = np.asarray(Image.open(tmp_path / "out" / r["file"]).convert("RGB"))
            np.testing.assert_array_equal(back, small.images[i].transpose(1, 2, 0))
    assert all((tmp_path / "out" / r["file"]).is_file() for r in rows)
