"""A registered loader's data checked before anything runs (data/checks.py): each way a user's
loader could make the numbers wrong is refused in one message naming the part, the codes and
the fix, through the public `kdfair run`, before the results directory is written."""

import numpy as np
import pytest
import torch

import kdfair
from kdfair.data.base import Part, SplitData
from kdfair.data.checks import check_split
from kdfair.data.registry import register_dataset
from kdfair.errors import DatasetError


def split(k: int = 3, labels=None, **change) -> SplitData:
    """A valid tiny image set: 3 classes, attribute 'colour' with groups r/g."""
    def part(n: int, seed: int) -> Part:
        g = torch.Generator().manual_seed(seed)
        y = torch.arange(n) % k if labels is None else torch.as_tensor(labels[seed])
        return Part(y=y, x=torch.randint(0, 255, (len(y), 3, 8, 8), dtype=torch.uint8,
                                         generator=g),
                    attributes={"colour": np.arange(len(y), dtype=np.int64) % 2})
    fields = dict(name="mine", train=part(12, 0), val=part(6, 1), test=part(9, 2), num_classes=k,
                  class_names=[f"c{i}" for i in range(k)], fingerprint="mine",
                  attribute_groups={"colour": ["r", "g"]})
    return SplitData(**{**fields, **change})


def test_a_valid_split_passes():
    check_split(split(), "dataset 'mine'")


def refused(data: SplitData) -> str:
    with pytest.raises(DatasetError) as err:
        check_split(data, "dataset 'mine'")
    return str(err.value)


def test_labels_coded_from_one_are_refused_with_the_fix():
    coded = [np.arange(n) % 3 + 1 for n in (12, 6, 9)]  # 1..3 with num_classes 3
    msg = refused(split(labels=coded))
    assert msg == ("dataset 'mine': the train part's labels are 1..3, but num_classes is 3, so "
                   "class indices run 0..2: labels coded 1..3: subtract 1")
    # a class the loader names but no input has is accepted, as kdfair.study accepts it when
    # given class names (the report notes the class without test inputs)
    check_split(split(k=4, labels=coded, class_names=["c0", "c1", "c2", "c3"]), "dataset 'mine'")


def test_integer_labels_of_another_width_become_int64_exactly():
    """int32 labels passed to cross-entropy fail every run ('expected Long'): made int64."""
    data = split()
    data.train.y = (torch.arange(12) % 3).to(torch.int32)
    data.test.y = (torch.arange(9) % 3).to(torch.uint8)
    check_split(data, "dataset 'mine'")
    assert data.train.y.dtype == data.test.y.dtype == torch.int64
    assert data.train.y.tolist() == [i % 3 for i in range(12)]
    data.num_classes = np.int64(3)  # numpy's integer, as a loader computing it would give
    check_split(data, "dataset 'mine'")
    assert type(data.num_classes) is int and data.num_classes == 3
    assert "num_classes is 3.0 (float): give the number of classes as an integer" in refused(
        split(num_classes=3.0))


def test_a_streamed_part_needs_one_label_per_input():
    dataset = torch.utils.data.TensorDataset(torch.zeros(7, 3, 8, 8), torch.zeros(7))
    data = split(val=Part(y=torch.zeros(6, dtype=torch.int64), dataset=dataset))
    assert "the val part has 7 inputs and 6 labels: give one label per input" in refused(data)


@pytest.mark.parametrize("change, message", [
    (dict(class_names=["a", "b"]),
     "2 class names for num_classes = 3: give one name per class index 0..2, in order"),
    (dict(class_names=["a", "b", "a"]), "class names ['a'] appear more than once"),
    (dict(num_classes=1, class_names=["a"]), "num_classes is 1; a classification study needs"),
    (dict(attribute_groups={"colour": ["r"]}),
     "the train part's codes of 'colour' include 1, but 'colour' has 1 group names, so codes "
     "run 0..0 (-1: unknown): name every group"),
    (dict(attribute_groups={"colour": ["r", "g"], "size": ["s", "l"]}),
     "attribute_groups names ['size'] but the test part has no codes for them"),
    (dict(attribute_groups={}),
     "the train part has codes for attribute 'colour', which attribute_groups does not name"),
    (dict(test=Part(y=torch.zeros(0, dtype=torch.int64), x=torch.zeros(0, 3, 8, 8,
                                                                      dtype=torch.uint8))),
     "the test part is empty"),
    (dict(val=Part(y=torch.zeros(4), x=torch.zeros(4, 3, 8, 8, dtype=torch.uint8))),
     "the val part's labels are torch.float32: give class indices as integers"),
    (dict(val=Part(y=torch.zeros(3, dtype=torch.int64),
                   x=torch.zeros(4, 3, 8, 8, dtype=torch.uint8))),
     "the val part has 4 inputs and 3 labels"),
])
def test_what_would_make_the_numbers_wrong_is_one_message(change, message):
    assert message in refused(split(**change))


def test_a_group_code_count_or_type_that_does_not_fit_is_refused():
    data = split()
    data.test.attributes["colour"] = np.zeros(5, dtype=np.int64)
    assert "the test part has 5 codes of 'colour' for 9 inputs" in refused(data)
    data.test.attributes["colour"] = np.zeros(9)
    assert "the codes of 'colour' (test) are float64: give integer group codes" in refused(data)


def test_kdfair_run_refuses_a_registered_loader_s_bad_labels_before_writing(tmp_path):
    coded = [np.arange(n) % 3 + 1 for n in (12, 6, 9)]
    register_dataset("checks-coded-from-one", lambda cfg, cache: split(labels=coded))
    exp = {"name": "coded", "dataset": {"name": "checks-coded-from-one"},
           "teacher": {"model": {"arch": "lenet5"}, "train": {"epochs": 1, "batch_size": 4}},
           "student": {"model": {"arch": "lenet5"}, "train": {"epochs": 1, "batch_size": 4}},
           "distill": {"temperatures": [2]}, "seeds": [0, 1], "device": "cpu"}
    with pytest.raises(DatasetError, match="dataset 'checks-coded-from-one': the train part's "
                                           "labels are 1..3, but num_classes is 3"):
        kdfair.run(exp, out=tmp_path, progress=False)
    assert not (tmp_path / "coded").exists()  # nothing written, nothing trained


def test_a_long_name_is_cut_in_the_message_and_many_names_are_checked_fast():
    """A loader's names are echoed cut to 40 characters (inputs.shown), never at length; a
    duplicate among 200 000 class names is found without comparing every pair."""
    msg = refused(split(class_names=["A" * 10_000, "A" * 10_000, "b"]))
    assert msg == ("dataset 'mine': class names ['" + "A" * 40 + "…'] appear more than once: "
                   "each code needs a name of its own (tables and the report are keyed by them)")
    from kdfair.data.checks import _names

    with pytest.raises(DatasetError, match=r"class names \['7'\] appear more than once"):
        _names("class names", [str(i) for i in range(200_000)] + ["7"], "dataset 'mine'")
