#!/usr/bin/env python3
"""Train a small Flax (NNX) CNN on MNIST and export it with jax2onnx (issue 3 fixture).

    pip install jax jax2onnx        # flax and optax come with jax2onnx
    python tools/make_fixture_jax.py [--data ../shared/data/mnist.npz] [--out tests/fixtures]

Writes jax_cnn.onnx: NHWC input (B, 28, 28, 1) in [0, 1]; Conv-BN-ReLU, average pooling,
Conv-ReLU, max pooling, mean over H and W, Linear, as jax2onnx writes them.
"""
import argparse
import os

import numpy as np


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.path.join(here, "..", "..", "shared", "data", "mnist.npz"))
    ap.add_argument("--out", default=os.path.join(here, "..", "tests", "fixtures"))
    ap.add_argument("--epochs", type=int, default=3)
    a = ap.parse_args()

    import jax.numpy as jnp
    import optax
    from flax import nnx
    from jax2onnx import to_onnx

    class CNN(nnx.Module):
        def __init__(self, rngs):
            self.c1 = nnx.Conv(1, 16, (3, 3), rngs=rngs)
            self.bn = nnx.BatchNorm(16, rngs=rngs)
            self.c2 = nnx.Conv(16, 32, (3, 3), rngs=rngs)
            self.fc = nnx.Linear(32, 10, rngs=rngs)

        def __call__(self, x):
            x = nnx.relu(self.bn(self.c1(x)))
            x = nnx.avg_pool(x, window_shape=(2, 2), strides=(2, 2))
            x = nnx.relu(self.c2(x))
            x = nnx.max_pool(x, window_shape=(2, 2), strides=(2, 2))
            return self.fc(x.mean(axis=(1, 2)))

    d = np.load(a.data)
    x = (d["x_train"].astype(np.float32) / 255)[..., None]
    y = d["y_train"].astype(np.int32)
    model = CNN(nnx.Rngs(0))
    opt = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)

    @nnx.jit
    def step(model, opt, xb, yb):
        def loss_fn(m):
            return optax.softmax_cross_entropy_with_integer_labels(m(xb), yb).mean()
        loss, grads = nnx.value_and_grad(loss_fn)(model)
        opt.update(model, grads)
        return loss

    model.train()
    for epoch in range(a.epochs):
        perm = np.random.default_rng(epoch).permutation(len(x))
        for i in range(0, len(x) - 127, 128):
            idx = perm[i:i + 128]
            step(model, opt, jnp.asarray(x[idx]), jnp.asarray(y[idx]))
    model.eval()
    xt = (d["x_test"][:2000].astype(np.float32) / 255)[..., None]
    print("test accuracy (first 2000):", float((np.asarray(model(xt)).argmax(1) == d["y_test"][:2000]).mean()))
    os.makedirs(a.out, exist_ok=True)
    onnx_model = to_onnx(model, [("B", 28, 28, 1)])
    import onnx
    onnx.save(onnx_model, os.path.join(a.out, "jax_cnn.onnx"))
    print("wrote", os.path.join(a.out, "jax_cnn.onnx"))


if __name__ == "__main__":
    main()
