"""What reading a picture gives: one vocabulary for the CLI, the API, the page and the Python API.

A :class:`DigitReading` is the model's answer for one digit (or for what should have been one);
a :class:`NumberReading` is what is written in a picture: its digits, left to right.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class DigitReading:
    """One digit: the class read, how sure, and whether it is a digit at all."""

    index: int | None            # class id (None when the picture holds no digit and rejection is on)
    label: str | None            # its class name ("7"), None with index
    confidence: float            # probability of the most likely class
    probabilities: np.ndarray    # (K,) float32 softmax output, summing to 1
    top: list[tuple[int, str, float]] = field(default_factory=list)  # best classes: (id, name, probability)
    is_digit: bool = True        # the not-a-digit verdict
    digit_score: float = 1.0     # the score behind it, in [0, 1]: higher is more digit-like
    box: tuple[int, int, int, int] | None = None  # (x0, y0, x1, y1) in the source picture's pixels
    image: np.ndarray | None = None  # the (28, 28) uint8 input the model saw

    def to_dict(self, with_image: bool = False) -> dict:
        out = {
            "index": self.index,
            "label": self.label,
            "confidence": float(self.confidence),
            "probabilities": [float(p) for p in np.asarray(self.probabilities).tolist()],
            "top": [{"index": i, "label": n, "probability": float(p)} for i, n, p in self.top],
            "is_digit": bool(self.is_digit),
            "digit_score": float(self.digit_score),
            "box": None if self.box is None else [int(v) for v in self.box],
        }
        if with_image and self.image is not None:
            out["input"] = np.asarray(self.image, dtype=np.uint8).tolist()
        return out


@dataclass
class NumberReading:
    """What is written in a picture: its digits left to right, and the string they make."""

    text: str | None             # "2026" (leading zeros kept); None when no digit was read
    confidence: float            # how sure of the whole string (split and digits together), in [0, 1]
    digits: list[DigitReading] = field(default_factory=list)

    @property
    def is_digit(self) -> bool:
        return bool(self.digits) and all(d.is_digit for d in self.digits)

    def to_dict(self, with_images: bool = False) -> dict:
        return {
            "number": self.text,
            "confidence": float(self.confidence),
            "is_digit": self.is_digit,
            "digits": [d.to_dict(with_image=with_images) for d in self.digits],
        }


def top_classes(probabilities: np.ndarray, labels: list[str], k: int = 3) -> list[tuple[int, str, float]]:
    """The ``k`` most likely classes, most likely first (ties: the lower class id first)."""
    p = np.asarray(probabilities)
    return [(int(c), labels[int(c)], float(p[c])) for c in np.argsort(-p, kind="stable")[:k]]
