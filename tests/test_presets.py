"""Every shipped preset validates, and the paper presets state the study the paper ran."""

from __future__ import annotations

import pytest
import yaml

from kdfair.config import load_experiment
from kdfair.data import celeba, cifar, imagenet, svhn, tinyimagenet
from kdfair.data.catalog import loader_options
from kdfair.models import torchvision_models as tvmods
from kdfair.options import validate_options
from kdfair.presets import preset_names, preset_path

PAPER = {
    # preset: (dataset, teacher, student)
    "svhn-r56-r20": ("svhn", "resnet56", "resnet20"),
    "cifar10-r56-r20": ("cifar10", "resnet56", "resnet20"),
    "cifar100-r56-r20": ("cifar100", "resnet56", "resnet20"),
    "cifar100-d169-d121": ("cifar100", "densenet169", "densenet121"),
    "tinyimagenet-r50-r18": ("tinyimagenet", "resnet50", "resnet18"),
    "imagenet-r50-r18": ("imagenet", "resnet50", "resnet18"),
    "imagenet-vitb-tinyvit": ("imagenet", "vit_b_16", "tinyvit"),
    "celeba-smiling-r50-r18": ("celeba", "resnet50", "resnet18"),
    "celeba-eyeglasses-r50-r18": ("celeba", "resnet50", "resnet18"),
    "trifeature-r20-lenet5": ("trifeature", "resnet20", "lenet5"),
}

_OPTIONS = {
    "cifar10": cifar.CifarOptions, "cifar100": cifar.CifarOptions, "svhn": svhn.SvhnOptions,
    "tinyimagenet": tinyimagenet.TinyImageNetOptions, "imagenet": imagenet.ImageNetOptions,
    "celeba": celeba.CelebAOptions,
}
_MODEL_OPTIONS = {"resnet18": tvmods.CnnOptions, "resnet50": tvmods.CnnOptions,
                  "densenet121": tvmods.CnnOptions, "densenet169": tvmods.CnnOptions,
                  "vit_b_16": tvmods.VitOptions, "tinyvit": tvmods.TinyVitOptions}


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_validates(name):
    exp = load_experiment(name)
    assert exp.name == name  # looked up by file stem: the names must agree
    assert load_experiment(str(preset_path(name))) == exp


def test_all_paper_experiments_have_a_preset():
    assert set(PAPER) <= set(preset_names())


@pytest.mark.parametrize("name", sorted(PAPER))
def test_paper_preset_protocol(name):
    exp = load_experiment(name)
    data, teacher, student = PAPER[name]
    assert (exp.dataset.name, exp.teacher.model.arch, exp.student.model.arch) == (
        data, teacher, student)
    assert exp.distill.temperatures == tuple(float(t) for t in [*range(1, 11), 20, 30, 40])
    assert exp.seeds == (0, 1, 2, 3, 4)
    assert exp.distill.alpha == 0.8
    text = preset_path(name).read_text()
    assert "does not give its recipe" in text and "recipe" in text.lower()
    assert yaml.safe_load(text)["teacher"]["train"]  # the recipe is written out in the file


@pytest.mark.parametrize("name", sorted(PAPER))
def test_paper_preset_options_are_accepted_by_loader_and_models(name):
    """Option typos would otherwise only surface when the study starts."""
    exp = load_experiment(name)
    if exp.dataset.name in _OPTIONS:
        loader_options(_OPTIONS[exp.dataset.name], exp.dataset)
    else:
        from kdfair.data import trifeature

        trifeature.trifeature_options(exp.dataset.options)
    for role in (exp.teacher, exp.student):
        model_opts = _MODEL_OPTIONS.get(role.model.arch)
        if model_opts is not None:
            validate_options(model_opts, {
                "weights": role.model.weights, "download": role.model.download,
                **role.model.options}, "model", f"model {role.model.arch!r}")


def test_imagenet_presets_use_pretrained_torchvision_teachers():
    for name in ("imagenet-r50-r18", "imagenet-vitb-tinyvit"):
        exp = load_experiment(name)
        assert exp.teacher.model.weights == "IMAGENET1K_V1"
        assert exp.teacher.model.download is False  # no network unless the user asks
        assert exp.distill.teacher_policy == "single"


def test_small_image_presets_use_the_small_stem():
    for name in ("cifar100-d169-d121", "tinyimagenet-r50-r18"):
        exp = load_experiment(name)
        assert exp.teacher.model.options["small_input"] is True
        assert exp.student.model.options["small_input"] is True


def test_celeba_presets_label_and_sensitive_attributes():
    labels = {}
    for name in ("celeba-smiling-r50-r18", "celeba-eyeglasses-r50-r18"):
        opts = loader_options(celeba.CelebAOptions, load_experiment(name).dataset)
        assert opts.sensitive == ("Young", "Male") and opts.balance
        labels[name] = opts.label
    assert labels == {"celeba-smiling-r50-r18": "Smiling",
                      "celeba-eyeglasses-r50-r18": "Eyeglasses"}


def test_cpu_replication_preset_keeps_the_papers_roles_temperatures_and_seeds():
    exp = load_experiment("trifeature-cpu")
    assert (exp.dataset.name, exp.student.model.arch) == ("trifeature", "lenet5")
    assert exp.distill.temperatures == (1, 2, 4, 7, 10, 20, 40)
    assert exp.seeds == (0, 1, 2, 3, 4) and exp.distill.teacher_policy == "paired"
    from kdfair.analysis.paper import paper_table  # its report carries the paper's numbers

    assert "docs/replication.md" in preset_path("trifeature-cpu").read_text()
    paper = paper_table("trifeature-cpu", {})  # the paper's Trifeature numbers, by the alias
    assert paper is not None and {100.0, 90.33, 0.016} <= set(paper["paper"])


def test_paper_regime_preset_is_the_calibrated_data_scarce_study():
    """trifeature-paper: the paper's roles, temperatures, seeds and alpha, in the data-scarce
    regime docs/replication.md calibrated (one training image per combination, the test set
    set apart), compared with the paper's Trifeature numbers by the alias."""
    from kdfair.analysis.paper import paper_gap, paper_table
    from kdfair.data import trifeature

    exp = load_experiment("trifeature-paper")
    assert (exp.dataset.name, exp.teacher.model.arch, exp.student.model.arch) == (
        "trifeature", "resnet20", "lenet5")
    assert exp.distill.temperatures == tuple(float(t) for t in [*range(1, 11), 20, 30, 40])
    assert exp.seeds == (0, 1, 2, 3, 4) and exp.distill.alpha == 0.8
    assert exp.distill.teacher_policy == "paired" and exp.engine.threads == 1
    opts = trifeature.trifeature_options(exp.dataset.options)
    assert (opts.images_per_combination, opts.n_test_images, opts.split) == (1, 20, "combinations")
    assert "docs/replication.md" in preset_path("trifeature-paper").read_text()
    paper = paper_table("trifeature-paper", {})
    assert paper is not None and {100.0, 90.33} <= set(paper["paper"])
    gap, name = paper_gap("trifeature-paper")
    assert gap == pytest.approx(100.0 - 90.33) and name == "trifeature"
