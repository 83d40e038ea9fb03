"""Disagreement per class and the off-diagonal prediction matrix, on hand-made predictions."""

import numpy as np

from kdfair.analysis.disagreement import disagreement_by_class, offdiag_matrix, partner


def test_disagreement_by_hand():
    labels = np.array([0, 0, 0, 1, 1, 2])
    a = np.array([0, 0, 1, 1, 1, 2])
    b = np.array([0, 2, 1, 0, 1, 2])
    share = disagreement_by_class(a, b, labels, 4)
    np.testing.assert_allclose(share[:3], [1 / 3, 1 / 2, 0])
    assert np.isnan(share[3])
    m = offdiag_matrix(a, b, 3)
    expected = np.zeros((3, 3), int)
    expected[0, 2] = 1  # a says 0, b says 2
    expected[1, 0] = 1
    np.testing.assert_array_equal(m, expected)
    assert m.sum() == (a != b).sum()


def test_partner_prefers_the_named_teacher_then_the_same_seed():
    cands = {"teacher-s0-aa": 0, "teacher-s1-bb": 1}
    assert partner(1, "teacher-s0-aa", cands) == ["teacher-s0-aa"]
    assert partner(1, None, cands) == ["teacher-s1-bb"]
    assert partner(7, "gone", cands) == ["teacher-s0-aa", "teacher-s1-bb"]
