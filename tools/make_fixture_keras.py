#!/usr/bin/env python3
"""Train a small Keras 3 CNN on MNIST and export it with tf2onnx (issue 3 fixture).

    pip install tensorflow-cpu tf2onnx
    python tools/make_fixture_keras.py [--data ../shared/data/mnist.npz] [--out tests/fixtures]

Writes keras_cnn.onnx: NHWC input (N, 28, 28, 1) in [0, 1]; Conv2D-BN-ReLU, MaxPool,
DepthwiseConv2D-ReLU (SAME padding), Conv2D 1x1-ReLU, GlobalAveragePooling2D, Dropout, Dense with
softmax — as tf2onnx writes them (Transposes around NCHW ops, MatMul+Add dense layers).
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

    keras.utils.set_random_seed(0)
    d = np.load(a.data)
    x = (d["x_train"].astype(np.float32) / 255)[..., None]
    model = keras.Sequential([
        keras.Input((28, 28, 1)),
        layers.Conv2D(16, 3, use_bias=False), layers.BatchNormalization(), layers.ReLU(),
        layers.MaxPooling2D(2),
        layers.DepthwiseConv2D(3, padding="same", activation="relu"),
        layers.Conv2D(32, 1, activation="relu"),
        layers.GlobalAveragePooling2D(),
        layers.Dropout(0.1),
        layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(2e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, d["y_train"], batch_size=128, epochs=a.epochs, verbose=2)
    xt = (d["x_test"][:2000].astype(np.float32) / 255)[..., None]
    print("test accuracy (first 2000):", float((model.predict(xt, verbose=0).argmax(1) == d["y_test"][:2000]).mean()))

    spec = (tf.TensorSpec((None, 28, 28, 1), tf.float32, name="input"),)
    fn = tf.function(lambda inp: model(inp, training=False))
    onnx_model, _ = tf2onnx.convert.from_function(fn, input_signature=spec, opset=17)
    os.makedirs(a.out, exist_ok=True)
    import onnx
    onnx.save(onnx_model, os.path.join(a.out, "keras_cnn.onnx"))
    print("wrote", os.path.join(a.out, "keras_cnn.onnx"))


if __name__ == "__main__":
    main()
