"""Turning a user's picture into a 28x28 MNIST-style input.

MNIST digits are white ink on black, the ink scaled to fit a 20x20 box (aspect kept) and placed
in 28x28 so that its centre of mass is at the centre. Every way a picture reaches a model (the
CLI, the server, the Python API) goes through :func:`to_mnist`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from digitlab.errors import ImageError

MAX_PIXELS = 40_000_000  # refuse larger pictures before decoding their pixels
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


def open_image(source: str | os.PathLike | bytes, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Open a picture (path or bytes), refusing non-images and anything over ``max_pixels``."""
    raise NotImplementedError


def to_mnist(image: Image.Image | np.ndarray) -> np.ndarray:
    """Any picture of one digit -> (28, 28) uint8, white ink on black, MNIST-centred."""
    raise NotImplementedError


def load_digit(source: str | os.PathLike | bytes, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """``to_mnist(open_image(source))``."""
    return to_mnist(open_image(source, max_pixels))


def find_images(paths: list[str | os.PathLike]) -> list[Path]:
    """Expand files and folders into a sorted list of image files."""
    raise NotImplementedError
