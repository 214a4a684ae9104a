"""The array helpers give exactly what the NumPy functions they stand in for give."""

from __future__ import annotations

import numpy as np
import pytest

from digitlab.data.arrays import of_labels, zero_pad


@pytest.mark.parametrize(("shape", "widths", "full"), [
    ((5, 7), (2, 2), ((2, 2), (2, 2))),
    ((5, 7), ((0, 0), (3, 1)), ((0, 0), (3, 1))),
    ((4, 6, 3), (1, 1), ((1, 1), (1, 1), (0, 0))),
    ((9, 2), (4,), ((4, 4), (0, 0))),
    ((0, 3), (1, 1), ((1, 1), (1, 1))),
])
@pytest.mark.parametrize("dtype", [np.float32, np.uint8, bool])
def test_zero_pad_is_numpys_zero_padding(shape, widths, full, dtype):
    a = (np.random.default_rng(0).random(shape) * 200).astype(dtype)
    got = zero_pad(a, widths)
    assert got.dtype == a.dtype
    np.testing.assert_array_equal(got, np.pad(a, full))


def test_of_labels_is_isin():
    labels = np.random.default_rng(1).integers(0, 9, (30, 40))
    for wanted in ([], [3], [0, 8], [2, 5, 7, 11], np.array([4, 1])):
        np.testing.assert_array_equal(of_labels(labels, wanted), np.isin(labels, wanted))
    assert of_labels(np.zeros((0, 4), np.int32), [1]).shape == (0, 4)
