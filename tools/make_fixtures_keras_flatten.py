#!/usr/bin/env python3
"""Train two small Keras 3 CNNs on MNIST with Flatten layers and export them with tf2onnx.

    python3 -m venv /work/tf-venv && /work/tf-venv/bin/pip install tensorflow-cpu tf2onnx onnx
    /work/tf-venv/bin/python tools/make_fixtures_keras_flatten.py [--data ../shared/data/mnist.npz] [--out tests/fixtures]

(Made with tensorflow-cpu 2.21.0, keras 3.15.1, tf2onnx 1.17.0, onnx 1.23.2.)

Writes, both with NHWC input (N, 28, 28, 1) in [0, 1] and softmax output (N, 10):

- keras_flatten.onnx: Conv2D(16, 3)-ReLU, AveragePooling2D(2), Conv2D(32, 3)-ReLU,
  AveragePooling2D(2), Flatten, Dense(64)-ReLU, Dense(10) softmax. tf2onnx writes Keras 3's
  Flatten as a shape-computing subgraph (Shape -> Slice/Gather -> Concat(..., -1) -> Cast ->
  Reshape) rather than a constant target shape; that subgraph is what this fixture is for.
- keras_maxpool.onnx: Conv2D(16, 3)-ReLU, MaxPooling2D(2), Conv2D(32, 3)-ReLU, MaxPooling2D(2),
  Flatten, Dense(10) softmax.

Flatten runs on NHWC data, so the Dense weights expect (H, W, C) order: tf2onnx keeps the
Transpose back to NHWC before the Reshape.
"""
import argparse
import os

import numpy as np


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.path.join(here, "..", "..", "shared", "data", "mnist.npz"))
    ap.add_argument("--out", default=os.path.join(here, "..", "tests", "fixtures"))
    ap.add_argument("--epochs", type=int, default=2)
    a = ap.parse_args()

    import tensorflow as tf
    import keras
    from keras import layers
    import tf2onnx
    import onnx

    d = np.load(a.data)
    x = (d["x_train"].astype(np.float32) / 255)[..., None]
    xt = (d["x_test"][:2000].astype(np.float32) / 255)[..., None]
    os.makedirs(a.out, exist_ok=True)

    def flatten_model():
        return keras.Sequential([
            keras.Input((28, 28, 1)),
            layers.Conv2D(16, 3, activation="relu"),
            layers.AveragePooling2D(2),
            layers.Conv2D(32, 3, activation="relu"),
            layers.AveragePooling2D(2),
            layers.Flatten(),
            layers.Dense(64, activation="relu"),
            layers.Dense(10, activation="softmax"),
        ])

    def maxpool_model():
        return keras.Sequential([
            keras.Input((28, 28, 1)),
            layers.Conv2D(16, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(32, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(10, activation="softmax"),
        ])

    for name, build in (("keras_flatten", flatten_model), ("keras_maxpool", maxpool_model)):
        keras.backend.clear_session()  # fresh layer names (conv2d, dense, ...) for each model
        keras.utils.set_random_seed(0)
        model = build()
        model.compile(optimizer=keras.optimizers.Adam(2e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        model.fit(x, d["y_train"], batch_size=128, epochs=a.epochs, verbose=2)
        acc = float((model.predict(xt, verbose=0).argmax(1) == d["y_test"][:2000]).mean())
        print(f"{name}: test accuracy (first 2000): {acc:.4f}")

        spec = (tf.TensorSpec((None, 28, 28, 1), tf.float32, name="input"),)
        fn = tf.function(lambda inp, model=model: model(inp, training=False))
        onnx_model, _ = tf2onnx.convert.from_function(fn, input_signature=spec, opset=17)
        path = os.path.join(a.out, name + ".onnx")
        onnx.save(onnx_model, path)
        print("wrote", path, f"({os.path.getsize(path)} bytes)")


if __name__ == "__main__":
    main()
