"""The one array fingerprint and the one atomic write (kdfair.integrity)."""

import numpy as np
import pytest

from kdfair.integrity import atomic_write, digest


def test_digest_tells_apart_arrays_with_the_same_bytes():
    a = np.arange(6, dtype=np.int32)
    assert digest(a) == digest(a.copy())
    assert len({digest(a), digest(a.reshape(2, 3)), digest(a.view(np.float32)),
                digest(a[:3], a[3:]), digest(a, "x")}) == 5
    # the values count, not their memory layout
    assert digest(np.asfortranarray(a.reshape(2, 3))) == digest(a.reshape(2, 3))


def test_a_failed_atomic_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "f.npz"
    atomic_write(path, lambda p: p.write_bytes(b"old"))

    def fail(p):
        p.write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, fail)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.npz"]
