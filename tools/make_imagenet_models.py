#!/usr/bin/env python3
"""ImageNet architectures for issue 10: torchvision ResNet-18, ResNet-50, VGG-16-BN and MobileNetV2
(224×224, 1000 classes), exported to ONNX by both PyTorch exporters.

    python3 -m venv /tmp/tv && . /tmp/tv/bin/activate
    pip install torch==2.14.1 torchvision==0.29.1 onnx onnxscript   # torchvision needs its own torch here
    python tools/make_imagenet_models.py --out imagenet_models/

No weights can be downloaded here, so the networks are untrained (torchvision's initialisation)
with random BatchNorm statistics and affine parameters, so that absorbing BN is not the identity.
What the converter sees is the same graph a trained network exports to: the architecture, the
exporter's idioms (flatten, adaptive pooling, ReLU6 as Clip, Dropout) and the parameter shapes.
Writes, per architecture, ``<name>.torchscript.onnx`` (TorchScript exporter, opset 17,
do_constant_folding=False: BatchNormalization nodes kept) and ``<name>.dynamo.onnx`` (dynamo
exporter, opset 18), input ``input`` (N, 3, 224, 224) with a dynamic batch, output ``logits``.
"""
import argparse
import os

import torch
import torchvision

ARCHITECTURES = ("resnet18", "resnet50", "vgg16_bn", "mobilenet_v2")


def randomise_batchnorm(net: torch.nn.Module, generator: torch.Generator) -> None:
    """Random running statistics and affine parameters in every BatchNorm (an untrained network has
    mean 0, variance 1, γ 1, β 0: folding it would change nothing)."""
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(0.1 * torch.randn(c, generator=generator))
            m.running_var.copy_(0.5 + torch.rand(c, generator=generator))
            m.weight.data.copy_(0.5 + torch.rand(c, generator=generator))
            m.bias.data.copy_(0.1 * torch.randn(c, generator=generator))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="imagenet_models")
    ap.add_argument("--models", default=",".join(ARCHITECTURES))
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    dummy = (torch.zeros(2, 3, 224, 224),)
    for name in a.models.split(","):
        torch.manual_seed(0)
        net = getattr(torchvision.models, name)(weights=None).eval()
        randomise_batchnorm(net, torch.Generator().manual_seed(1))
        path = os.path.join(a.out, f"{name}.torchscript.onnx")
        torch.onnx.export(net, dummy, path, opset_version=17, dynamo=False, do_constant_folding=False,
                          input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})
        print("wrote", path, flush=True)
        path = os.path.join(a.out, f"{name}.dynamo.onnx")
        prog = torch.onnx.export(net, dummy, dynamo=True, opset_version=18, input_names=["input"],
                                 output_names=["logits"], dynamic_shapes={"x": {0: torch.export.Dim("N", min=1)}},
                                 optimize=True)
        prog.save(path, external_data=False)
        print("wrote", path, flush=True)


if __name__ == "__main__":
    main()
