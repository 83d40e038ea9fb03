"""Digits loader: bundled scikit-learn data, seeded stratified split, options."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from kdfair.config import DatasetConfig
from kdfair.data import digits
from kdfair.data.registry import load_dataset
from kdfair.errors import ConfigError


def _load(tmp_path, **options):
    return load_dataset(DatasetConfig(name="digits", **options), tmp_path)


def test_sizes_dtypes_and_scaling(tmp_path) -> None:
    data = _load(tmp_path)
    n = [len(data.train), len(data.val), len(data.test)]
    assert sum(n) == 1797
    assert n[2] == 540  # ceil(0.3 * 1797)
    assert n[1] == 126  # ceil(0.1 * 1257)
    for part in (data.train, data.val, data.test):
        assert part.x.dtype == torch.uint8 and tuple(part.x.shape[1:]) == (1, 8, 8)
        assert part.y.dtype == torch.int64 and part.attributes == {}
    assert data.num_classes == 10 and data.class_names == [str(d) for d in range(10)]
    assert data.attribute_groups == {} and data.input_shape == (1, 8, 8)
    allx = torch.cat([data.train.x, data.val.x, data.test.x])
    assert int(allx.max()) == 255 and int(allx.min()) == 0
    # the original 0-16 values come back exactly
    ref = load_digits().images
    x, _ = digits.digits_arrays()
    np.testing.assert_array_equal(np.rint(x[:, 0].astype(float) * 16 / 255), ref)
    train = data.train.x.double() / 255
    assert np.isclose(data.mean[0], float(train.mean())) and len(data.std) == 1


def test_split_is_disjoint_and_stratified(tmp_path) -> None:
    _, y = digits.digits_arrays()
    tr, va, te = digits.split_indices(y, 0.3, 0.1, seed=0)
    assert len(np.intersect1d(tr, va)) == 0 and len(np.intersect1d(tr, te)) == 0
    assert len(np.intersect1d(va, te)) == 0
    assert len(tr) + len(va) + len(te) == len(y)
    overall = np.bincount(y, minlength=10) / len(y)
    for idx in (tr, va, te):
        share = np.bincount(y[idx], minlength=10) / len(idx)
        # stratified: each class within one image of its overall share
        assert np.all(np.abs(share - overall) * len(idx) <= 1.0 + 1e-9)


def test_seeded(tmp_path) -> None:
    a, b = _load(tmp_path, seed=3), _load(tmp_path, seed=3)
    assert torch.equal(a.test.x, b.test.x) and a.fingerprint == b.fingerprint
    c = _load(tmp_path, seed=4)
    assert not torch.equal(a.test.y, c.test.y) or not torch.equal(a.test.x, c.test.x)
    assert a.fingerprint != c.fingerprint


def test_upsampling(tmp_path) -> None:
    base = _load(tmp_path)
    up = _load(tmp_path, size=16)
    assert up.input_shape == (1, 16, 16)
    np.testing.assert_array_equal(
        up.train.x.numpy(), base.train.x.numpy().repeat(2, axis=2).repeat(2, axis=3)
    )
    bil = _load(tmp_path, size=20, interpolation="bilinear")
    assert bil.input_shape == (1, 20, 20) and bil.train.x.dtype == torch.uint8
    assert torch.equal(bil.train.y, base.train.y)


def test_other_fractions(tmp_path) -> None:
    data = _load(tmp_path, test_fraction=0.5, val_fraction=0.2)
    assert len(data.test) == 899 and len(data.val) == 180 and len(data.train) == 718


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"size": 4}, "dataset.size: must be an integer between 8 and 64, got 4"),
        ({"test_fraction": 0.9}, "dataset.test_fraction: must be a number between 0.05 and 0.5"),
        ({"val_fraction": 0.0}, "dataset.val_fraction: must be a number between 0.02 and 0.5"),
        ({"interpolation": "cubic"}, "dataset.interpolation: must be one of nearest, bilinear"),
        ({"colour": 1}, "dataset.colour: unknown option; allowed: size, interpolation"),
    ],
)
def test_options_validation(tmp_path, options: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, **options)
    assert str(err.value).startswith("invalid options for dataset 'digits':\n")
    assert message in str(err.value)
