"""Writers of small fake data sets in the real on-disk formats (see FORMATS.md), for tests.

Each ``write_*`` function takes the data root and writes a data set where kdfair's loader (and
torchvision's reader) expect it, returning what it wrote (arrays, names) so tests can compare.
torchvision checks MD5 sums of the official files; ``patch_integrity`` replaces that check with
"the file exists" (as torchvision's own tests do) and leaves all parsing real.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

CELEBA_ATTRS = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose "
    "Black_Hair Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee "
    "Gray_Hair Heavy_Makeup High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes "
    "No_Beard Oval_Face Pale_Skin Pointy_Nose Receding_Hairline Rosy_Cheeks Sideburns Smiling "
    "Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat Wearing_Lipstick Wearing_Necklace "
    "Wearing_Necktie Young"
).split()


def patch_integrity(monkeypatch: Any) -> None:
    """Make torchvision's MD5 checks (CIFAR, SVHN, CelebA, ImageNet) mean "the file exists"."""
    import torchvision.datasets.celeba
    import torchvision.datasets.cifar
    import torchvision.datasets.imagenet
    import torchvision.datasets.svhn

    def exists(fpath: Any, md5: str | None = None) -> bool:
        return os.path.isfile(fpath)

    for mod in (torchvision.datasets.cifar, torchvision.datasets.svhn,
                torchvision.datasets.celeba, torchvision.datasets.imagenet):
        monkeypatch.setattr(mod, "check_integrity", exists)


def _images(rng: np.random.Generator, n: int, h: int = 32, w: int = 32) -> np.ndarray:
    return rng.integers(0, 256, size=(n, h, w, 3), dtype=np.uint8)


def _pickle(path: Path, obj: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def _cifar_rows(x_hwc: np.ndarray) -> np.ndarray:
    """[N, 32, 32, 3] -> [N, 3072] channel-planar rows, as in the official batches."""
    return x_hwc.transpose(0, 3, 1, 2).reshape(len(x_hwc), -1)


def write_cifar10(root: Path, per_batch: int = 20, n_test: int = 30, seed: int = 0) -> dict:
    """``root/cifar-10-batches-py``: five training batches, a test batch, ``batches.meta``.

    Returns ``x_train`` / ``x_test`` (uint8 [N, 3, 32, 32]), ``y_train`` / ``y_test``, ``names``.
    """
    rng = np.random.default_rng(seed)
    d = Path(root) / "cifar-10-batches-py"
    d.mkdir(parents=True, exist_ok=True)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
             "truck"]
    xs, ys = [], []
    for b in range(1, 6):
        x = _images(rng, per_batch)
        y = [int(v) for v in rng.integers(0, 10, per_batch)]
        _pickle(d / f"data_batch_{b}", {"batch_label": f"training batch {b} of 5",
                                         "labels": y, "data": _cifar_rows(x),
                                         "filenames": [f"img{i}.png" for i in range(per_batch)]})
        xs.append(x)
        ys += y
    xt = _images(rng, n_test)
    yt = [int(v) for v in rng.integers(0, 10, n_test)]
    _pickle(d / "test_batch", {"batch_label": "testing batch 1 of 1", "labels": yt,
                               "data": _cifar_rows(xt), "filenames": ["t.png"] * n_test})
    _pickle(d / "batches.meta", {"label_names": names, "num_cases_per_batch": per_batch,
                                 "num_vis": 3072})
    return {
        "x_train": np.concatenate(xs).transpose(0, 3, 1, 2), "y_train": np.asarray(ys),
        "x_test": xt.transpose(0, 3, 1, 2), "y_test": np.asarray(yt), "names": names,
    }


def write_cifar100(root: Path, n_train: int = 200, n_test: int = 50, seed: int = 0) -> dict:
    """``root/cifar-100-python``: ``train``, ``test``, ``meta`` (fine and coarse labels)."""
    rng = np.random.default_rng(seed)
    d = Path(root) / "cifar-100-python"
    d.mkdir(parents=True, exist_ok=True)
    fine = [f"class{i:02d}" for i in range(100)]
    coarse = [f"super{i:02d}" for i in range(20)]
    out: dict[str, Any] = {"names": fine}
    for split, n in (("train", n_train), ("test", n_test)):
        x = _images(rng, n)
        y = [int(v) for v in rng.integers(0, 100, n)]
        _pickle(d / split, {"filenames": ["x.png"] * n, "batch_label": split,
                            "fine_labels": y, "coarse_labels": [v // 5 for v in y],
                            "data": _cifar_rows(x)})
        out[f"x_{split}"] = x.transpose(0, 3, 1, 2)
        out[f"y_{split}"] = np.asarray(y)
    _pickle(d / "meta", {"fine_label_names": fine, "coarse_label_names": coarse})
    return out


def write_svhn(root: Path, n_train: int = 60, n_test: int = 20, n_extra: int = 0,
               seed: int = 0) -> dict:
    """``root/svhn/{train,test[,extra]}_32x32.mat`` (MATLAB v5: X [32, 32, 3, N], y [N, 1] in
    1..10, 10 meaning digit 0). Returns images [N, 3, 32, 32] and digit labels 0..9."""
    from scipy.io import savemat

    rng = np.random.default_rng(seed)
    d = Path(root) / "svhn"
    d.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n in (("train", n_train), ("test", n_test), ("extra", n_extra)):
        if n == 0:
            continue
        x = _images(rng, n)
        digit = rng.integers(0, 10, n)
        y = np.where(digit == 0, 10, digit).astype(np.uint8)[:, None]
        savemat(d / f"{split}_32x32.mat", {"X": x.transpose(1, 2, 3, 0), "y": y})
        out[f"x_{split}"] = x.transpose(0, 3, 1, 2)
        out[f"y_{split}"] = digit
    return out


def _save_jpeg(path: Path, rng: np.random.Generator, w: int, h: int, grey: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if grey:
        Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8), mode="L").save(path)
    else:
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)


def write_tinyimagenet(root: Path, n_classes: int = 4, per_class: int = 5, n_val: int = 8,
                       grey_every: int = 3, size: int = 64, seed: int = 0) -> dict:
    """``root/tiny-imagenet-200`` in the official layout; every ``grey_every``-th image is
    greyscale (mode L), as some real ones are. Returns ``wnids``, ``names``, ``val_labels``
    (class index per val image, in annotation order)."""
    rng = np.random.default_rng(seed)
    d = Path(root) / "tiny-imagenet-200"
    wnids = [f"n{1440764 + 7 * i:08d}" for i in range(n_classes)]
    names = [f"thing {i}" for i in range(n_classes)]
    d.mkdir(parents=True, exist_ok=True)
    (d / "wnids.txt").write_text("".join(f"{w}\n" for w in wnids))
    words = "".join(f"{w}\t{n}, other name\n" for w, n in zip(wnids, names, strict=True))
    (d / "words.txt").write_text("n00001740\tentity\n" + words)
    k = 0
    for w in wnids:
        boxes = []
        for j in range(per_class):
            _save_jpeg(d / "train" / w / "images" / f"{w}_{j}.JPEG", rng, size, size,
                       grey=k % grey_every == 0)
            boxes.append(f"{w}_{j}.JPEG\t0\t0\t{size - 1}\t{size - 1}\n")
            k += 1
        (d / "train" / w / f"{w}_boxes.txt").write_text("".join(boxes))
    val_labels = rng.integers(0, n_classes, n_val)
    lines = []
    for j, c in enumerate(val_labels):
        _save_jpeg(d / "val" / "images" / f"val_{j}.JPEG", rng, size, size,
                   grey=j % grey_every == 0)
        lines.append(f"val_{j}.JPEG\t{wnids[c]}\t1\t2\t40\t50\n")
    (d / "val" / "val_annotations.txt").write_text("".join(lines))
    (d / "test" / "images").mkdir(parents=True, exist_ok=True)
    return {"wnids": wnids, "names": names, "val_labels": val_labels}


def write_imagenet(root: Path, n_classes: int = 3, per_class: int = 6, val_per_class: int = 2,
                   size: int = 40, seed: int = 0) -> dict:
    """``root/imagenet/{train,val}/<wnid>/*.JPEG`` (torchvision's ImageFolder layout), images of
    varying shape, one CMYK. Returns the sorted ``wnids``."""
    rng = np.random.default_rng(seed)
    d = Path(root) / "imagenet"
    wnids = sorted(f"n{2000000 + 13 * i:08d}" for i in range(n_classes))
    for ci, w in enumerate(wnids):
        for j in range(per_class):
            _save_jpeg(d / "train" / w / f"{w}_{j}.JPEG", rng, size + 8 * j, size + 3 * ci)
        for j in range(val_per_class):
            _save_jpeg(d / "val" / w / f"ILSVRC2012_val_{ci * 100 + j:08d}.JPEG", rng, size,
                       size + 5)
    cmyk = Image.new("CMYK", (size, size), (10, 20, 30, 0))
    cmyk.save(d / "train" / wnids[0] / f"{wnids[0]}_cmyk.JPEG")
    return {"wnids": wnids}


def write_celeba(root: Path, n: int = 30, attrs: dict[str, np.ndarray] | None = None,
                 split: np.ndarray | None = None, seed: int = 0, images: bool = True) -> dict:
    """``root/celeba``: ``img_align_celeba/NNNNNN.jpg`` (178 x 218) and the five annotation
    files in the official formats (±1 attribute values in runs of spaces, header lines).

    ``attrs`` fixes chosen attributes ({0, 1} per image; others are random); ``split`` the
    partition (0 train, 1 valid, 2 test; default 60/20/20 %). Returns ``attr`` ({0, 1}
    [n, 40]), ``split`` and ``files``.
    """
    rng = np.random.default_rng(seed)
    d = Path(root) / "celeba"
    (d / "img_align_celeba").mkdir(parents=True, exist_ok=True)
    files = [f"{i + 1:06d}.jpg" for i in range(n)]
    attr = rng.integers(0, 2, size=(n, len(CELEBA_ATTRS)))
    for name, v in (attrs or {}).items():
        attr[:, CELEBA_ATTRS.index(name)] = v
    if split is None:
        split = np.repeat([0, 1, 2], [n - 2 * (n // 5), n // 5, n // 5])
    if images:
        for f in files:
            _save_jpeg(d / "img_align_celeba" / f, rng, 178, 218)
    (d / "list_eval_partition.txt").write_text(
        "".join(f"{f} {s}\n" for f, s in zip(files, split, strict=True)))
    rows = "".join(f + " " + " ".join(f"{2 * v - 1:2d}" for v in a) + "\n"
                   for f, a in zip(files, attr, strict=True))
    (d / "list_attr_celeba.txt").write_text(f"{n}\n" + " ".join(CELEBA_ATTRS) + " \n" + rows)
    (d / "identity_CelebA.txt").write_text(
        "".join(f"{f} {int(rng.integers(1, 10))}\n" for f in files))
    (d / "list_bbox_celeba.txt").write_text(
        f"{n}\nimage_id x_1 y_1 width height\n"
        + "".join(f"{f}    95  71 226 313\n" for f in files))
    lm = "lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x leftmouth_y " \
         "rightmouth_x rightmouth_y"
    (d / "list_landmarks_align_celeba.txt").write_text(
        f"{n}\n{lm}\n" + "".join(f"{f}  69  109  106  113   77  142   73  152  108  154\n"
                                 for f in files))
    return {"attr": attr, "split": np.asarray(split), "files": files}
