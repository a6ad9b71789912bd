"""The shipped example (a small MNIST CNN, calibration images, labelled test images), wherever
onnx2snn is installed: the repository's top-level ``models/`` in a checkout, ``onnx2snn/models``
inside an installed wheel.

    onnx2snn $(python -m onnx2snn.examples)     # runs the example from any folder
"""
from __future__ import annotations

import os
from typing import Tuple

FILES = ("mnist_cnn.onnx", "mnist_calib.npy", "mnist_test.npz")


def folder() -> str:
    here = os.path.dirname(os.path.abspath(__file__))
    for candidate in (os.path.join(os.path.dirname(here), "models"), os.path.join(here, "models")):
        if all(os.path.isfile(os.path.join(candidate, f)) for f in FILES):
            return candidate
    raise FileNotFoundError("the onnx2snn example models are not installed (expected models/ beside the package)")


def paths() -> Tuple[str, str, str]:
    """(model, calibration array, labelled test set) of the example."""
    return tuple(os.path.join(folder(), f) for f in FILES)


if __name__ == "__main__":
    model, calib, test = paths()
    print(f"{model} {calib} --eval {test}")
