"""Preprocessing in one place: pixels to float32 [0, 1], and the validation split."""

from __future__ import annotations

import numpy as np


def to_float(images: np.ndarray) -> np.ndarray:
    """uint8 images -> float32 in [0, 1]. The only place pixels become floats."""
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return images.astype(np.float32) / np.float32(255.0)
    return images.astype(np.float32, copy=False)


def check_images(images: np.ndarray) -> np.ndarray:
    """One image (28, 28) or a batch (N, 28, 28), as a batch; ValueError for any other shape."""
    images = np.asarray(images)
    if images.ndim == 2:
        images = images[None]
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(f"expected images of shape (N, 28, 28), got {images.shape}")
    return images


def image_batch(images: np.ndarray) -> np.ndarray:
    """One image (28, 28) or a batch (N, 28, 28), uint8 or floats in [0, 1] -> contiguous float32 (N, 28, 28)."""
    return np.ascontiguousarray(to_float(check_images(images)), dtype=np.float32)


def split_indices(n: int, val_fraction: float = 0.2, seed: int = 42) -> tuple[np.ndarray, np.ndarray]:
    """Train/validation indices, identical to sklearn's ``train_test_split(test_size=f, random_state=seed)``.

    sklearn draws ``RandomState(seed).permutation(n)``; the first ceil(f*n) indices are the test
    (here: validation) part and the next n - ceil(f*n) the train part.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"validation fraction must be between 0 and 1, got {val_fraction}")
    n_val = int(np.ceil(val_fraction * n))
    perm = np.random.RandomState(seed).permutation(n)
    return perm[n_val:], perm[:n_val]


def train_val_split(x: np.ndarray, y: np.ndarray, val_fraction: float = 0.2, seed: int = 42):
    """``(x_train, y_train), (x_val, y_val)`` with :func:`split_indices`."""
    tr, va = split_indices(len(x), val_fraction, seed)
    return (x[tr], y[tr]), (x[va], y[va])
