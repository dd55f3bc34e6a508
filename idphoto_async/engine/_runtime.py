"""Run the engine's TensorFlow Lite models (shipped in ``models/``) on the LiteRT runtime."""

from __future__ import annotations

import importlib.resources
import threading
from typing import Any

import numpy as np
import numpy.typing as npt

Tensor = npt.NDArray[np.float32]

MODELS = {
    "face_detection_short": "face_detection_short_range.tflite",
    "face_detection_full": "face_detection_full_range_sparse.tflite",
    "face_landmark": "face_landmark.tflite",
    "selfie_segmentation": "selfie_segmentation.tflite",
}
"""Model name -> file in ``idphoto_async/engine/models`` (see its NOTICE for the origin)."""


def model_bytes(name: str) -> bytes:
    """The bytes of the shipped model ``name`` (a key of `MODELS`)."""
    return (importlib.resources.files(__package__) / "models" / MODELS[name]).read_bytes()


class _Model:
    """One interpreter: its input shape and output indices (in the model's output order)."""

    def __init__(self, name: str) -> None:
        from ai_edge_litert.interpreter import Interpreter

        # One thread per interpreter: the engine is parallel across photos, not within one.
        self._interpreter: Any = Interpreter(model_content=model_bytes(name), num_threads=1)
        self._interpreter.allocate_tensors()
        (inp,) = self._interpreter.get_input_details()
        self._input = int(inp["index"])
        self.input_size = (int(inp["shape"][2]), int(inp["shape"][1]))
        self._outputs = [int(d["index"]) for d in self._interpreter.get_output_details()]

    def run(self, tensor: Tensor) -> list[Tensor]:
        self._interpreter.set_tensor(self._input, tensor[None].astype(np.float32, copy=False))
        self._interpreter.invoke()
        return [np.asarray(self._interpreter.get_tensor(i))[0] for i in self._outputs]


_local = threading.local()


def model(name: str) -> _Model:
    """This thread's interpreter for ``name`` (LiteRT interpreters are not thread-safe)."""
    models: dict[str, _Model] | None = getattr(_local, "models", None)
    if models is None:
        models = _local.models = {}
    if name not in models:
        models[name] = _Model(name)
    return models[name]
