"""The registry of MNIST-format datasets: class names, the SHA-256 of each file, download mirrors."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from digitlab.errors import DataError

FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
         "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")

# What loading a dataset gives: (x_train, y_train), (x_test, y_test).
Arrays = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class Dataset:
    """One MNIST-format dataset: its class names, the SHA-256 of its four IDX .gz files, the base
    URLs it can be downloaded from, and optionally a Keras-style npz (URL + SHA-256)."""

    name: str
    classes: tuple[str, ...]
    sha256: dict[str, str]
    mirrors: tuple[str, ...]
    npz_url: str | None = None
    npz_sha256: str | None = None

    @property
    def npz_name(self) -> str:
        """The npz file name digitlab looks for (``mnist.npz``, ``fashion-mnist.npz``)."""
        return f"{self.name}.npz"


DATASETS: dict[str, Dataset] = {
    "mnist": Dataset(
        name="mnist",
        classes=tuple(str(i) for i in range(10)),
        sha256={
            "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        },
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
            "http://yann.lecun.com/exdb/mnist/",
        ),
        npz_url="https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz",
        npz_sha256="731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1",
    ),
    "fashion-mnist": Dataset(
        name="fashion-mnist",
        classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                 "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        sha256={
            "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
            "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
            "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
            "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
        },
        mirrors=(
            "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        ),
    ),
}

# The Keras cache holds MNIST as this file (checked against Dataset.npz_sha256).
KERAS_FILES = {"mnist": "mnist.npz"}


def get_dataset(name: str) -> Dataset:
    try:
        return DATASETS[name]
    except KeyError:
        raise DataError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}") from None

