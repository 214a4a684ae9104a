"""Typed request and response bodies of the REST API (they also make /openapi.json)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictFloat


class PixelsRequest(BaseModel):
    """A 28x28 image given as numbers: the model's input as-is (white ink on black).

    ``pixels`` is 28 rows of 28 numbers or one flat list of 784 numbers (row by row). With
    ``scale="byte"`` (the default) every value must lie in [0, 255] and is rounded to the nearest
    integer; with ``scale="unit"`` every value must lie in [0, 1] and is given to the model unchanged.
    ``preprocess=true`` runs the pixels through the same centring as an uploaded picture.
    """

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"pixels": [[0] * 28] * 12 + [[0] * 13 + [255] * 2 + [0] * 13] * 16,
                                         "scale": "byte", "preprocess": False}]},
    )

    pixels: list[list[StrictFloat]] | list[StrictFloat] = Field(
        description="28 rows of 28 values, or a flat list of 784 values (row-major).")
    scale: Literal["byte", "unit"] = Field(
        "byte", description="'byte': values in [0, 255] (rounded); 'unit': values in [0, 1].")
    preprocess: bool = Field(
        False, description="Centre and rescale the ink like a picture (MNIST-style) before predicting.")


class TopClass(BaseModel):
    label: int = Field(description="Class index 0-9.")
    name: str = Field(description="Class name (the digit itself for MNIST).")
    probability: float


class DigitBox(BaseModel):
    """One digit of the number read: where it is and what the model says."""

    index: int | None = Field(description="Class index 0-9 (null when rejected as not a digit).")
    label: str | None = Field(description="The digit read (null when rejected).")
    confidence: float = Field(description="Probability of the most likely class.")
    probabilities: list[float] = Field(description="10 probabilities, summing to 1: the model's reading of "
                                                   "this piece, weighed by the sequence reader's reading of "
                                                   "the same place in the line when a number of several "
                                                   "digits is split as that reader counts them.")
    top: list[dict[str, Any]] = Field(description="The best classes: index, label, probability.")
    is_digit: bool = Field(description="The not-a-digit verdict for this piece: the detector's, or, in a number "
                                       "of several digits, the sequence reader's when it surely reads that "
                                       "digit there.")
    digit_score: float = Field(description="The score behind it, in [0, 1].")
    box: list[int] | None = Field(description="[x0, y0, x1, y1] in the picture's pixels (x1, y1 exclusive).")
    input: list[list[int]] | None = Field(None, description="The 28x28 uint8 input the model saw for it.")


class Prediction(BaseModel):
    label: int | None = Field(description="The predicted class index (argmax of the probabilities); null when "
                                          "the picture holds no digit (is_digit false) and rejection is on.")
    name: str | None = Field(description="The predicted class name (null with label).")
    is_digit: bool = Field(description="Whether the picture holds a digit at all (the not-a-digit detector).")
    digit_score: float = Field(description="The detector's score in [0, 1]; higher is more digit-like.")
    confidence: float = Field(description="Probability of the predicted class.")
    probabilities: list[float] = Field(description="10 probabilities (softmax output), summing to 1.")
    top3: list[TopClass] = Field(description="The three most likely classes, most likely first.")
    input: list[list[int]] = Field(description="The 28x28 uint8 image the model saw, white ink on black.")
    model_ms: float = Field(description="Time spent in the model, in milliseconds.")
    activations: dict[str, Any] | None = Field(
        None, description="With ?activations=1: each hidden activation layer's output as nested lists "
                          "(MLP: [128] and [64]; CNN: [32][26][26], [64][11][11], [128]); with "
                          "&act_format=u8 each layer is {shape, scale, data: base64 uint8}; "
                          "&layers=a,b sends only those layers.")
    number: str | None = Field(None, description="What is written: one digit or a number of up to 12 digits "
                                                 "(\"2026\", leading zeros kept). The fields above are the "
                                                 "picture read as one digit; with ?single=1 this is that digit.")
    number_confidence: float | None = Field(None, description="How sure of the whole string (the split and "
                                                              "every digit together).")
    digits: list[DigitBox] | None = Field(None, description="The digits of the number, left to right.")


class ExplanationMaps(BaseModel):
    label: list[list[float]] = Field(description="28x28 map of the predicted class, in [-1, 1].")
    runner_up: list[list[float]] = Field(description="28x28 map of the runner-up class, in [-1, 1].")


class Explanation(BaseModel):
    label: int = Field(description="The predicted class index.")
    name: str
    confidence: float
    runner_up: int = Field(description="The second most likely class.")
    runner_up_name: str
    runner_up_confidence: float
    probabilities: list[float]
    method: Literal["occlusion", "gradient"]
    meaning: str = Field(description="What the signs of the maps mean.")
    maps: ExplanationMaps = Field(description="Positive: the pixel pushed the class's probability up; negative: "
                                              "down. Each map is divided by its largest magnitude.")
    scale: dict[str, float] = Field(description="Largest magnitude of each map before scaling (log-probability).")
    input: list[list[int]] = Field(description="The 28x28 uint8 image the model saw.")


class BatchItem(BaseModel):
    index: int = Field(description="Position of the file in the request.")
    filename: str | None = None
    ok: bool
    status: int = Field(description="200, or the status a single /api/predict would have answered.")
    error: str | None = Field(None, description="Why this file could not be used.")
    prediction: Prediction | None = None


class BatchResponse(BaseModel):
    count: int
    ok: int = Field(description="How many files were predicted.")
    results: list[BatchItem]


class Layer(BaseModel):
    name: str
    kind: str
    output_shape: list[int | None]
    params: int


class ActivationLayer(BaseModel):
    name: str = Field(description="Key in Prediction.activations.")
    shape: list[int] = Field(description="Shape of that layer's output for one image.")
    follows: str | None = Field(None, description="The layer whose output this activation transforms.")


class ModelInfo(BaseModel):
    name: str
    source: Literal["run", "onnx"]
    dataset: str | None
    labels: list[str]
    architecture: list[Layer] = Field(description="Keras-like summary rows (empty when unknown).")
    parameters: int | None = Field(description="Total parameter count (null when unknown).")
    test_accuracy: float | None = Field(description="Accuracy on the test set, from the run's metrics.")
    test_loss: float | None = None
    activation_layers: list[ActivationLayer]
    max_upload_bytes: int
    max_batch: int
    unsure_below: float = Field(description="Below this confidence the page says 'not sure' (per model: "
                                            "70 % of the confidence label smoothing allows).")


class Sample(BaseModel):
    pixels: list[list[int]] = Field(description="A 28x28 MNIST test image, white ink on black (0-255).")
    label: int = Field(description="Its true label.")
    index: int = Field(description="Its index in the MNIST test set.")


class Health(BaseModel):
    status: Literal["ok"]
    model: str


class ErrorBody(BaseModel):
    detail: str = Field(description="What went wrong and what to do, in one line.")
