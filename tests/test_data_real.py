"""Loaders of the real data sets, on small files written in the real on-disk formats."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets
import torchvision.datasets.utils
from fake_datasets import (
    CELEBA_ATTRS,
    patch_integrity,
    write_celeba,
    write_cifar10,
    write_cifar100,
    write_imagenet,
    write_svhn,
    write_tinyimagenet,
)
from PIL import Image

from kdfair.config import DatasetConfig
from kdfair.data import catalog
from kdfair.data.catalog import carve_val
from kdfair.data.registry import dataset_catalog, dataset_names, load_dataset
from kdfair.errors import ConfigError, DatasetError
from kdfair.store.arrays import load_predictions


@pytest.fixture
def integrity(monkeypatch):
    """torchvision's MD5 check becomes "the file exists"; parsing stays real."""
    patch_integrity(monkeypatch)


def load(name: str, root: Path, **options):
    return load_dataset(DatasetConfig(name=name, root=root, **options), root / "cache")


def _rows(x: torch.Tensor | np.ndarray) -> list[bytes]:
    return [bytes(np.asarray(r).tobytes()) for r in x]


def _check_split_of(split, x_written: np.ndarray, y_written: np.ndarray) -> None:
    """train + val are exactly the written training images, disjoint, labels kept."""
    lookup = {r: int(y) for r, y in zip(_rows(x_written), y_written, strict=True)}
    got = _rows(split.train.x) + _rows(split.val.x)
    ys = split.train.y.tolist() + split.val.y.tolist()
    assert sorted(got) == sorted(lookup)
    assert all(lookup[r] == y for r, y in zip(got, ys, strict=True))


# --- splitting --------------------------------------------------------------------------------


def test_carve_val_is_stratified_seeded_and_disjoint():
    y = np.repeat(np.arange(5), [100, 50, 30, 15, 5])
    tr, va = carve_val(y, 0.2, seed=3)
    assert len(va) == 40 and len(tr) + len(va) == len(y)
    assert not set(tr) & set(va)
    assert np.bincount(y[va], minlength=5).tolist() == [20, 10, 6, 3, 1]
    tr2, va2 = carve_val(y, 0.2, seed=3)
    assert np.array_equal(va, va2)
    assert not np.array_equal(va, carve_val(y, 0.2, seed=4)[1])


def test_carve_val_many_small_classes_still_gives_the_asked_share():
    y = np.repeat(np.arange(100), 2)  # CIFAR-100-like with 2 images per class
    _, va = carve_val(y, 0.1, seed=0)
    assert len(va) == 20 and len(set(y[va])) == 20


# --- CIFAR ------------------------------------------------------------------------------------


def test_cifar10_in_memory_uint8_with_val_carved_from_train(tmp_path, integrity):
    w = write_cifar10(tmp_path, per_batch=20, n_test=30)
    s = load("cifar10", tmp_path)
    assert s.in_memory and s.num_classes == 10 and s.class_names == w["names"]
    assert s.train.x.dtype == torch.uint8 and tuple(s.train.x.shape[1:]) == (3, 32, 32)
    assert (len(s.train), len(s.val), len(s.test)) == (90, 10, 30)
    assert torch.equal(s.test.x, torch.from_numpy(w["x_test"]))
    assert s.test.y.tolist() == w["y_test"].tolist() and s.test.y.dtype == torch.int64
    _check_split_of(s, w["x_train"], w["y_train"])
    assert s.input_shape == (3, 32, 32)
    assert s.mean != (0.5, 0.5, 0.5)


def test_cifar_split_options_and_fingerprint(tmp_path, integrity):
    write_cifar10(tmp_path)
    a, b = load("cifar10", tmp_path), load("cifar10", tmp_path)
    assert torch.equal(a.val.x, b.val.x) and a.fingerprint == b.fingerprint
    c = load("cifar10", tmp_path, split_seed=1)
    assert not torch.equal(a.val.y, c.val.y) or not torch.equal(a.val.x, c.val.x)
    assert c.fingerprint != a.fingerprint
    d = load("cifar10", tmp_path, val_fraction=0.25)
    assert len(d.val) == 25 and len(d.train) == 75


def test_cifar100_fine_labels(tmp_path, integrity):
    w = write_cifar100(tmp_path, n_train=200, n_test=50)
    s = load("cifar100", tmp_path)
    assert s.num_classes == 100 and s.class_names[7] == "class07"
    assert (len(s.train), len(s.val), len(s.test)) == (180, 20, 50)
    assert s.test.y.tolist() == w["y_test"].tolist()
    _check_split_of(s, w["x_train"], w["y_train"])


def test_cifar_missing_files_message(tmp_path):
    with pytest.raises(DatasetError) as e:
        load("cifar10", tmp_path)
    msg = str(e.value)
    assert "'cifar10'" in msg and str(tmp_path / "cifar-10-batches-py") in msg
    for f in ("data_batch_1", "data_batch_5", "test_batch", "batches.meta"):
        assert f in msg
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" in msg
    assert "download: true" in msg


def test_cifar_one_missing_file_is_flagged(tmp_path, integrity):
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DatasetError, match=r"data_batch_3  <- missing"):
        load("cifar10", tmp_path)


def test_cifar_corrupt_files_fail_torchvision_md5(tmp_path):
    write_cifar10(tmp_path)  # fake files: torchvision's real MD5 check fails
    with pytest.raises(DatasetError, match="corrupt"):
        load("cifar10", tmp_path)


def test_cifar_download_uses_torchvision_and_failure_is_a_dataset_error(tmp_path, monkeypatch,
                                                                        integrity):
    def fail(self):
        raise OSError("no network")

    monkeypatch.setattr(torchvision.datasets.CIFAR10, "download", fail)
    with pytest.raises(DatasetError, match="download failed: no network"):
        load("cifar10", tmp_path, download=True)

    monkeypatch.setattr(torchvision.datasets.CIFAR10, "download",
                        lambda self: write_cifar10(Path(self.root)))
    s = load("cifar10", tmp_path, download=True)
    assert len(s.test) == 30


def test_cifar_bad_and_unknown_options_name_the_field(tmp_path, integrity):
    write_cifar10(tmp_path)
    with pytest.raises(ConfigError, match=r"dataset\.val_fraction"):
        load("cifar10", tmp_path, val_fraction=1.5)
    with pytest.raises(ConfigError, match=r"dataset\.image_size: unknown option"):
        load("cifar10", tmp_path, image_size=32)


def test_default_data_root_is_kdfair_data_env(tmp_path, monkeypatch, integrity):
    write_cifar10(tmp_path / "d")
    monkeypatch.setenv("KDFAIR_DATA", str(tmp_path / "d"))
    s = load_dataset(DatasetConfig(name="cifar10"), tmp_path / "cache")
    assert len(s.test) == 30
    monkeypatch.delenv("KDFAIR_DATA")
    assert catalog.default_data_root() == Path("data")


# --- SVHN -------------------------------------------------------------------------------------


def test_svhn_digit_labels_and_shapes(tmp_path, integrity):
    w = write_svhn(tmp_path, n_train=60, n_test=20)
    s = load("svhn", tmp_path)
    assert s.num_classes == 10 and s.class_names[0] == "0"
    assert (len(s.train), len(s.val), len(s.test)) == (54, 6, 20)
    assert s.test.x.dtype == torch.uint8 and tuple(s.test.x.shape) == (20, 3, 32, 32)
    assert torch.equal(s.test.x, torch.from_numpy(w["x_test"]))
    assert s.test.y.tolist() == w["y_test"].tolist()  # label 10 read as digit 0
    assert 0 in w["y_test"].tolist() + w["y_train"].tolist()
    _check_split_of(s, w["x_train"], w["y_train"])


def test_svhn_extra_and_loose_files(tmp_path, integrity):
    write_svhn(tmp_path, n_train=40, n_test=10, n_extra=20)
    s = load("svhn", tmp_path, extra=True)
    assert len(s.train) + len(s.val) == 60
    # files loose in the data root are found too
    loose = tmp_path / "loose"
    (tmp_path / "svhn").rename(loose)
    assert len(load("svhn", loose).test) == 10


def test_svhn_missing_extra_is_named(tmp_path, integrity):
    write_svhn(tmp_path, n_train=40, n_test=10)
    with pytest.raises(DatasetError, match=r"extra_32x32\.mat  <- missing") as e:
        load("svhn", tmp_path, extra=True)
    assert "http://ufldl.stanford.edu/housenumbers/" in str(e.value)


# --- Tiny ImageNet ----------------------------------------------------------------------------


def test_tinyimagenet_layout_greyscale_and_official_val_as_test(tmp_path):
    w = write_tinyimagenet(tmp_path, n_classes=4, per_class=5, n_val=8, grey_every=3)
    s = load("tinyimagenet", tmp_path)
    assert not s.in_memory and s.num_classes == 4 and s.class_names == w["names"]
    assert (len(s.train), len(s.val), len(s.test)) == (18, 2, 8)
    assert s.test.y.tolist() == w["val_labels"].tolist()
    for part in (s.train, s.val, s.test):
        assert part.y.dtype == torch.int64 and len(part.dataset) == len(part)
    # float images, standardised with the set's mean / std: undoing that gives the file's pixels;
    # greyscale files (every 3rd) come out with three equal channels
    mean, std = (torch.tensor(v).view(3, 1, 1) for v in (s.mean, s.std))
    for i in range(len(s.test)):
        x, y = s.test.dataset[i]
        assert x.dtype == torch.float32 and tuple(x.shape) == (3, 64, 64) and y == int(s.test.y[i])
        with Image.open(s.test.dataset.paths[i]) as im:
            pixels = torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1) / 255
        assert torch.allclose(x * std + mean, pixels, atol=1e-5)
        assert torch.allclose(pixels[0], pixels[1]) == (i % 3 == 0)
    # train and val come from train/, disjoint, labels match the folder
    paths = s.train.dataset.paths + s.val.dataset.paths
    assert len(set(paths)) == 20 and all("/train/" in p for p in paths)
    for p, y in zip(paths, s.train.y.tolist() + s.val.y.tolist(), strict=True):
        assert Path(p).parent.parent.name == w["wnids"][y]
    assert s.input_shape == (3, 64, 64)


def test_tinyimagenet_train_augmentation_and_image_size(tmp_path):
    write_tinyimagenet(tmp_path, n_classes=2, per_class=4, n_val=2)
    s = load("tinyimagenet", tmp_path, image_size=32)
    assert tuple(s.test.dataset[0][0].shape) == (3, 32, 32)
    assert tuple(s.train.dataset[0][0].shape) == (3, 32, 32)
    torch.manual_seed(0)
    draws = [s.train.dataset[0][0] for _ in range(6)]
    assert any(not torch.equal(draws[0], d) for d in draws[1:])  # random crop / flip
    assert torch.equal(s.val.dataset[0][0], s.val.dataset[0][0])  # eval is deterministic


def test_tinyimagenet_missing_and_broken_annotations(tmp_path, monkeypatch):
    with pytest.raises(DatasetError) as e:
        load("tinyimagenet", tmp_path)
    msg = str(e.value)
    assert "val/val_annotations.txt" in msg and "wnids.txt" in msg
    assert "http://cs231n.stanford.edu/tiny-imagenet-200.zip" in msg
    write_tinyimagenet(tmp_path, n_classes=2, per_class=2, n_val=2)
    ann = tmp_path / "tiny-imagenet-200" / "val" / "val_annotations.txt"
    ann.write_text(ann.read_text() + "val_9.JPEG\tn99999999\t0\t0\t1\t1\n")
    with pytest.raises(DatasetError, match="line 3"):
        load("tinyimagenet", tmp_path)


def test_tinyimagenet_download_goes_through_torchvision(tmp_path, monkeypatch):
    calls = []

    def fake(url, download_root, md5=None, **kw):
        calls.append((url, md5))
        write_tinyimagenet(Path(download_root), n_classes=2, per_class=2, n_val=2)

    monkeypatch.setattr(torchvision.datasets.utils, "download_and_extract_archive", fake)
    s = load("tinyimagenet", tmp_path, download=True)
    assert len(s.test) == 2 and calls[0][0].endswith("tiny-imagenet-200.zip") and calls[0][1]


# --- ImageNet ---------------------------------------------------------------------------------


def test_imagenet_folders_sorted_classes_and_transforms(tmp_path):
    w = write_imagenet(tmp_path, n_classes=3, per_class=6, val_per_class=2)
    s = load("imagenet", tmp_path, image_size=32, val_fraction=0.2)
    assert s.num_classes == 3 and s.class_names == w["wnids"]
    assert len(s.train) + len(s.val) == 19 and len(s.val) == 4 and len(s.test) == 6
    assert s.test.y.tolist() == [0, 0, 1, 1, 2, 2]
    for part in (s.train, s.test):
        for i in range(len(part)):
            x, y = part.dataset[i]
            assert tuple(x.shape) == (3, 32, 32) and y == int(part.y[i])
    cmyk = [i for i, p in enumerate(s.train.dataset.paths + s.val.dataset.paths) if "cmyk" in p]
    assert len(cmyk) == 1


def test_imagenet_class_names_from_synset_mapping(tmp_path):
    w = write_imagenet(tmp_path, n_classes=2, per_class=2, val_per_class=1)
    (tmp_path / "imagenet" / "LOC_synset_mapping.txt").write_text(
        "".join(f"{wn} name{i}, alias\n" for i, wn in enumerate(w["wnids"])))
    assert load("imagenet", tmp_path, image_size=16).class_names == ["name0", "name1"]
    # ImageNet names two classes 'crane' (a bird, a machine): each keeps its wnid, and the data
    # pass the loader check that refuses repeated names
    (tmp_path / "imagenet" / "LOC_synset_mapping.txt").write_text(
        "".join(f"{wn} crane, alias\n" for wn in w["wnids"]))
    from kdfair.data.checks import check_split

    data = load("imagenet", tmp_path, image_size=16)
    assert data.class_names == [f"crane ({wn})" for wn in w["wnids"]]
    check_split(data, "dataset 'imagenet'")


def test_imagenet_unsorted_val_and_missing(tmp_path):
    with pytest.raises(DatasetError) as e:
        load("imagenet", tmp_path, download=True)  # no download exists for ImageNet
    assert "image-net.org" in str(e.value) and "train/" in str(e.value)
    assert "download: true" not in str(e.value)
    w = write_imagenet(tmp_path, n_classes=2, per_class=2, val_per_class=1)
    val = tmp_path / "imagenet" / "val"
    for wn in w["wnids"]:
        for f in (val / wn).iterdir():
            f.rename(val / f.name)
        (val / wn).rmdir()
    with pytest.raises(DatasetError, match="val/<wnid>"):
        load("imagenet", tmp_path)


# --- CelebA -----------------------------------------------------------------------------------


def _celeba(tmp_path: Path, n: int = 60):
    rng = np.random.default_rng(1)
    split = np.repeat([0, 1, 2], [40, 10, 10])
    smiling = np.r_[np.ones(28, int), np.zeros(12, int), rng.integers(0, 2, 20)]  # 70 % in train
    young = rng.integers(0, 2, n)
    male = rng.integers(0, 2, n)
    return write_celeba(tmp_path, n, {"Smiling": smiling, "Young": young, "Male": male}, split)


def test_celeba_labels_attributes_and_official_partition(tmp_path, integrity):
    w = _celeba(tmp_path)
    s = load("celeba", tmp_path, image_size=32)
    col = {a: CELEBA_ATTRS.index(a) for a in ("Smiling", "Young", "Male")}
    assert s.num_classes == 2 and s.class_names == ["not Smiling", "Smiling"]
    assert s.attribute_groups == {"Young": ["not young", "young"], "Male": ["female", "male"]}
    # val and test: the official partition, unchanged
    for part, k in ((s.val, 1), (s.test, 2)):
        idx = np.flatnonzero(w["split"] == k)
        assert part.y.tolist() == w["attr"][idx, col["Smiling"]].tolist()
        assert part.attributes["Young"].tolist() == w["attr"][idx, col["Young"]].tolist()
        assert part.attributes["Male"].tolist() == w["attr"][idx, col["Male"]].tolist()
        assert [Path(p).name for p in part.dataset.paths] == [w["files"][i] for i in idx]
    x, y = s.test.dataset[0]
    assert tuple(x.shape) == (3, 32, 32) and x.dtype == torch.float32 and y == int(s.test.y[0])


def test_celeba_train_balanced_by_seeded_undersampling_with_shares_in_notes(tmp_path, integrity):
    w = _celeba(tmp_path)
    s = load("celeba", tmp_path, image_size=32)
    assert len(s.train) == 24 and s.train.y.sum() == 12  # 12 not smiling + 12 of 28 smiling
    files = w["files"]
    by_name = {f: i for i, f in enumerate(files)}
    idx = [by_name[Path(p).name] for p in s.train.dataset.paths]
    assert all(w["split"][i] == 0 for i in idx) and len(set(idx)) == 24
    young = s.train.attributes["Young"]
    assert young.tolist() == [int(w["attr"][i, CELEBA_ATTRS.index("Young")]) for i in idx]
    share = f"not young {100 * np.mean(young == 0):.1f} %"
    note = " ".join(s.notes)
    assert share in note and "undersampling" in note and "40" in note
    again = load("celeba", tmp_path, image_size=32)
    assert again.train.dataset.paths == s.train.dataset.paths
    other = load("celeba", tmp_path, image_size=32, balance_seed=5)
    assert other.train.dataset.paths != s.train.dataset.paths
    assert other.fingerprint != s.fingerprint
    assert len(load("celeba", tmp_path, image_size=32, balance=False).train) == 40


def test_celeba_other_label_and_attribute_validation(tmp_path, integrity):
    _celeba(tmp_path)
    s = load("celeba", tmp_path, image_size=32, label="Eyeglasses", sensitive=["Male"])
    assert s.class_names == ["not Eyeglasses", "Eyeglasses"]
    assert list(s.train.attributes) == ["Male"]
    assert np.bincount(s.train.y.numpy()).tolist()[0] == np.bincount(s.train.y.numpy())[1]
    with pytest.raises(ConfigError, match=r"dataset\.label.*'Glasses'"):
        load("celeba", tmp_path, label="Glasses")
    with pytest.raises(ConfigError, match=r"dataset\.sensitive"):
        load("celeba", tmp_path, sensitive=["Smiling"])
    with pytest.raises(ConfigError, match=r"dataset\.val_fraction: unknown option"):
        load("celeba", tmp_path, val_fraction=0.1)


def test_celeba_missing_annotation_and_corrupt(tmp_path):
    with pytest.raises(DatasetError) as e:
        load("celeba", tmp_path)
    assert "img_align_celeba/" in str(e.value) and "list_attr_celeba.txt" in str(e.value)
    assert "mmlab.ie.cuhk.edu.hk" in str(e.value)
    write_celeba(tmp_path, 10, images=False)
    (tmp_path / "celeba" / "list_bbox_celeba.txt").unlink()
    with pytest.raises(DatasetError, match=r"list_bbox_celeba\.txt  <- missing"):
        load("celeba", tmp_path)
    write_celeba(tmp_path, 10, images=False)
    with pytest.raises(DatasetError, match="corrupt"):  # real MD5 check on fake files
        load("celeba", tmp_path)


# --- catalog ----------------------------------------------------------------------------------


def test_catalog_lists_every_dataset_and_what_is_found(tmp_path, monkeypatch):
    from kdfair.data import registry

    monkeypatch.setitem(registry._CUSTOM, "mine", lambda cfg, cache: None)
    write_cifar10(tmp_path)
    write_svhn(tmp_path / "elsewhere")
    rows = {r["name"]: r for r in dataset_catalog(tmp_path)}
    assert set(rows) == set(dataset_names())
    assert rows["cifar10"]["found"] and rows["cifar10"]["missing"] == []
    assert rows["cifar10"]["directory"] == str(tmp_path / "cifar-10-batches-py")
    assert rows["svhn"]["found"] is False
    assert rows["svhn"]["missing"] == ["train_32x32.mat", "test_32x32.mat"]
    assert rows["trifeature"]["kind"] == "generated" and rows["trifeature"]["found"]
    assert rows["digits"]["kind"] == "bundled"
    assert rows["hatexplain"]["files"] == ["dataset.json", "post_id_divisions.json"]
    assert rows["hatexplain"]["directory"] == str(tmp_path / "hatexplain")
    assert "github.com/hate-alert/HateXplain" in rows["hatexplain"]["url"]
    assert rows["imagenet"]["download"] is False and rows["celeba"]["download"] is True
    assert rows["mine"]["kind"] == "custom" and rows["mine"]["found"] is None
    for r in rows.values():
        assert set(r) == {"name", "kind", "directory", "files", "missing", "found", "download",
                          "url", "how"}


def test_catalog_default_root_from_env(tmp_path, monkeypatch):
    write_cifar100(tmp_path, n_train=10, n_test=5)
    monkeypatch.setenv("KDFAIR_DATA", str(tmp_path))
    rows = {r["name"]: r for r in dataset_catalog()}
    assert rows["cifar100"]["found"] and not rows["cifar10"]["found"]
    assert os.path.commonpath([rows["cifar10"]["directory"], str(tmp_path)]) == str(tmp_path)


# --- end to end through the CLI (slow) ----------------------------------------------------------

E2E_TRAIN = {"optimizer": "sgd", "lr": 0.01, "epochs": 1, "batch_size": 8, "augment": "none"}


def _study(tmp_path: Path, monkeypatch, dataset: dict, teacher: dict, student: dict,
           writer, report: bool = False) -> tuple[Path, dict]:
    """Write a fake data set with ``writer``, run a 1-epoch study through ``kdfair run`` (on the
    CPU, 2 seeds, one temperature) and return the results directory and data.json."""
    import json

    import yaml
    from typer.testing import CliRunner

    from kdfair.cli import app

    root = tmp_path / "data"
    writer(root)
    monkeypatch.setenv("KDFAIR_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("KDFAIR_WORKERS", "0")
    exp = {
        "name": f"e2e-{dataset['name']}", "dataset": dataset, "device": "cpu", "seeds": [0, 1],
        "teacher": {"model": teacher, "train": E2E_TRAIN},
        "student": {"model": student, "train": E2E_TRAIN},
        "distill": {"temperatures": [4]},
    }
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(exp))
    res = CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path / "out"),
                                   "--data-root", str(root)] + ([] if report else ["--no-report"]))
    assert res.exit_code == 0, res.output
    where = tmp_path / "out" / exp["name"]
    runs = sorted(p for p in (where / "runs").iterdir() if (p / "logits.npy").exists())
    assert len(runs) == 6, res.output  # 2 teachers, 2 NDS, 2 DS
    info = json.loads((where / "data.json").read_text())
    if report and "report skipped" not in res.output:  # once the analysis is installed
        assert list(where.rglob("report.md")), res.output
    for r in runs:
        assert load_predictions(r)["logits"].shape == (info["n_test"], info["num_classes"])
    return where, info


@pytest.mark.slow
def test_e2e_cifar10_in_memory(tmp_path, monkeypatch, integrity, one_thread):
    _, info = _study(tmp_path, monkeypatch, {"name": "cifar10"}, {"arch": "resnet8"},
                     {"arch": "lenet5"}, lambda r: write_cifar10(r, per_batch=16, n_test=20))
    assert info["n_test"] == 20 and info["num_classes"] == 10


@pytest.mark.slow
def test_e2e_svhn_in_memory(tmp_path, monkeypatch, integrity, one_thread):
    _, info = _study(tmp_path, monkeypatch, {"name": "svhn"}, {"arch": "resnet8"},
                     {"arch": "lenet5"}, lambda r: write_svhn(r, n_train=60, n_test=20))
    assert info["n_test"] == 20


@pytest.mark.slow
def test_e2e_tinyimagenet_streaming(tmp_path, monkeypatch, one_thread):
    _, info = _study(tmp_path, monkeypatch, {"name": "tinyimagenet", "image_size": 16},
                     {"arch": "resnet18", "small_input": True}, {"arch": "lenet5"},
                     lambda r: write_tinyimagenet(r, n_classes=3, per_class=6, n_val=6))
    assert info["n_test"] == 6 and info["num_classes"] == 3


@pytest.mark.slow
def test_e2e_imagenet_streaming(tmp_path, monkeypatch, one_thread):
    _, info = _study(tmp_path, monkeypatch, {"name": "imagenet", "image_size": 16},
                     {"arch": "resnet18", "small_input": True}, {"arch": "lenet5"},
                     lambda r: write_imagenet(r, n_classes=3, per_class=6, val_per_class=2))
    assert info["n_test"] == 6


@pytest.mark.slow
def test_e2e_celeba_streaming_with_attributes(tmp_path, monkeypatch, integrity,
                                              one_thread):
    where, info = _study(tmp_path, monkeypatch, {"name": "celeba", "image_size": 16},
                         {"arch": "resnet18", "small_input": True}, {"arch": "lenet5"},
                         lambda r: write_celeba(r, n=40), report=True)
    assert info["num_classes"] == 2 and set(info["attributes"]) == {"Young", "Male"}
    assert any("undersampling" in n for n in info["notes"])
    with np.load(where / "attributes.npz") as z:
        assert set(z.files) >= {"Young", "Male"} and len(z["Young"]) == info["n_test"]
