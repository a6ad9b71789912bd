"""One tiny graph per pattern real exporters write (issue 3), each with the input shape it takes.

Every builder returns (model, per-sample input shape). Weights are random with non-zero biases;
BN statistics are non-trivial.
"""
import numpy as np
from onnx import helper, numpy_helper

from graphs import bn_params, init, model, rng


def i64(name, values):
    return numpy_helper.from_array(np.asarray(values, np.int64), name)


def f32(name, values):
    return numpy_helper.from_array(np.asarray(values, np.float32), name)


def node(op, inputs, outputs, name, **attrs):
    return helper.make_node(op, inputs, outputs, name=name, **attrs)


def head(r, src, features, inits, nodes, classes=4):
    """... -> Flatten -> Gemm(classes) -> y"""
    nodes += [node("Flatten", [src], ["flat"], "flatten"), node("Gemm", ["flat", "wh", "bh"], ["y"], "head", transB=1)]
    inits += [init("wh", r.normal(0, 0.5, (classes, features))), init("bh", r.normal(0, 0.2, classes))]


def depthwise_dilated_strided():
    """x(4,9,9) -> Conv(group=4, dilation 2, stride 2, pads [0,1,1,0]) -> Relu -> Conv1x1(6) -> Relu -> GAP -> head"""
    r = rng(10)
    nodes = [node("Conv", ["x", "w1", "b1"], ["c1"], "dw", group=4, dilations=[2, 2], strides=[2, 2],
                  kernel_shape=[3, 3], pads=[0, 1, 1, 0]),
             node("Relu", ["c1"], ["r1"], "relu1"),
             node("Conv", ["r1", "w2", "b2"], ["c2"], "pw", kernel_shape=[1, 1]),
             node("Relu", ["c2"], ["r2"], "relu2"),
             node("GlobalAveragePool", ["r2"], ["g"], "gap")]
    inits = [init("w1", r.normal(0, 0.6, (4, 1, 3, 3))), init("b1", r.normal(0, 0.2, 4)),
             init("w2", r.normal(0, 0.6, (6, 4, 1, 1))), init("b2", r.normal(0, 0.2, 6))]
    head(r, "g", 6, inits, nodes)
    return model(nodes, inits, (4, 9, 9)), (4, 9, 9)


def conv1d_bn_maxpool():
    """x(3,16) -> Conv1d k3 -> BN -> Relu -> MaxPool1d 2 -> head"""
    r = rng(11)
    nodes = [node("Conv", ["x", "w1", "b1"], ["c1"], "conv", kernel_shape=[3]),
             node("BatchNormalization", ["c1", "bn.gamma", "bn.beta", "bn.mean", "bn.var"], ["n1"], "bn"),
             node("Relu", ["n1"], ["r1"], "relu"),
             node("MaxPool", ["r1"], ["p1"], "pool", kernel_shape=[2], strides=[2])]
    inits = [init("w1", r.normal(0, 0.5, (5, 3, 3))), init("b1", r.normal(0, 0.2, 5)), *bn_params("bn", 5, r)]
    head(r, "p1", 5 * 7, inits, nodes)
    return model(nodes, inits, (3, 16)), (3, 16)


def matmul_add_dense():
    """x(6) -> MatMul + Add -> Relu -> MatMul + Add -> y   (tf2onnx's dense layers)"""
    r = rng(12)
    nodes = [node("MatMul", ["x", "w1"], ["m1"], "dense1/MatMul"), node("Add", ["m1", "b1"], ["a1"], "dense1/BiasAdd"),
             node("Relu", ["a1"], ["r1"], "dense1/Relu"),
             node("MatMul", ["r1", "w2"], ["m2"], "dense2/MatMul"), node("Add", ["m2", "b2"], ["y"], "dense2/BiasAdd")]
    inits = [init("w1", r.normal(0, 0.5, (6, 8))), init("b1", r.normal(0, 0.2, 8)),
             init("w2", r.normal(0, 0.5, (8, 3))), init("b2", r.normal(0, 0.2, 3))]
    return model(nodes, inits, (6,)), (6,)


def concat_bn_densenet():
    """Two branches at different scales -> Concat -> BN -> Relu -> Conv -> Relu -> GAP -> head (pre-activation DenseNet)
         x ─ Conv(3) ─ Relu ──┐
         x ─ Conv(2)·4 ─ Relu ┴ Concat ─ BN ─ Relu ─ Conv ─ Relu ─ GAP ─ head"""
    r = rng(13)
    nodes = [node("Conv", ["x", "wa", "ba"], ["ca"], "conv_a", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             node("Relu", ["ca"], ["ra"], "relu_a"),
             node("Conv", ["x", "wb", "bb"], ["cb"], "conv_b", kernel_shape=[1, 1]),
             node("Relu", ["cb"], ["rb"], "relu_b"),
             node("Concat", ["ra", "rb"], ["cat"], "concat", axis=1),
             node("BatchNormalization", ["cat", "bn.gamma", "bn.beta", "bn.mean", "bn.var"], ["n"], "bn"),
             node("Relu", ["n"], ["rn"], "relu_n"),
             node("Conv", ["rn", "wc", "bc"], ["cc"], "conv_c", kernel_shape=[3, 3]),
             node("Relu", ["cc"], ["rc"], "relu_c"),
             node("GlobalAveragePool", ["rc"], ["g"], "gap")]
    inits = [init("wa", r.normal(0, 0.5, (3, 2, 3, 3))), init("ba", r.normal(0, 0.2, 3)),
             init("wb", 4 * r.normal(0, 0.5, (2, 2, 1, 1))), init("bb", r.normal(0, 0.2, 2)), *bn_params("bn", 5, r),
             init("wc", r.normal(0, 0.5, (4, 5, 3, 3))), init("bc", r.normal(0, 0.2, 4))]
    head(r, "g", 4, inits, nodes)
    return model(nodes, inits, (2, 6, 6)), (2, 6, 6)


def input_normalisation_bn_first():
    """x -> Sub(mean) -> Div(std) -> BN -> Relu -> Conv(pads 1) -> ReLU6 (Clip 0..6) -> AvgPool(pads) -> head"""
    r = rng(14)
    nodes = [node("Sub", ["x", "mean"], ["xs"], "sub_mean"), node("Div", ["xs", "std"], ["xn"], "div_std"),
             node("BatchNormalization", ["xn", "bn.gamma", "bn.beta", "bn.mean", "bn.var"], ["n"], "bn_in"),
             node("Relu", ["n"], ["r0"], "relu0"),
             node("Conv", ["r0", "w1", "b1"], ["c1"], "conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             node("Clip", ["c1", "zero", "six"], ["r1"], "relu6"),
             node("AveragePool", ["r1"], ["p1"], "pool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])]
    inits = [f32("mean", np.array([0.4, 0.5, 0.3]).reshape(3, 1, 1)), f32("std", np.array([0.2, 0.25, 0.3]).reshape(3, 1, 1)),
             *bn_params("bn", 3, r), init("w1", r.normal(0, 1.0, (4, 3, 3, 3))), init("b1", r.normal(0, 0.5, 4)),
             f32("zero", 0.0), f32("six", 6.0)]
    head(r, "p1", 4 * 4 * 4, inits, nodes)
    return model(nodes, inits, (3, 8, 8)), (3, 8, 8)


def residual_blocks():
    """Identity and projection shortcuts:
       x ─ Conv ─ Relu(h) ─ Conv ─┬ Add ─ Relu(o1) ─ Conv(stride 2) ─ Relu ─ Conv ─┬ Add ─ Relu ─ GAP ─ head
                 └─────── h ──────┘   └──────── Conv1x1 stride 2 (projection) ─────┘"""
    r = rng(15)
    nodes = [node("Conv", ["x", "w0", "b0"], ["c0"], "stem", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             node("Relu", ["c0"], ["h"], "stem_relu"),
             node("Conv", ["h", "w1", "b1"], ["c1"], "block1_conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             node("Add", ["c1", "h"], ["s1"], "block1_add"),
             node("Relu", ["s1"], ["o1"], "block1_relu"),
             node("Conv", ["o1", "w2", "b2"], ["c2"], "block2_conv1", kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2]),
             node("Relu", ["c2"], ["r2"], "block2_relu1"),
             node("Conv", ["r2", "w3", "b3"], ["c3"], "block2_conv2", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             node("Conv", ["o1", "wp", "bp"], ["cp"], "block2_proj", kernel_shape=[1, 1], strides=[2, 2]),
             node("Add", ["c3", "cp"], ["s2"], "block2_add"),
             node("Relu", ["s2"], ["o2"], "block2_relu2"),
             node("GlobalAveragePool", ["o2"], ["g"], "gap")]
    inits = [init("w0", r.normal(0, 0.5, (3, 2, 3, 3))), init("b0", r.normal(0, 0.2, 3)),
             init("w1", r.normal(0, 0.3, (3, 3, 3, 3))), init("b1", r.normal(0, 0.2, 3)),
             init("w2", r.normal(0, 0.3, (4, 3, 3, 3))), init("b2", r.normal(0, 0.2, 4)),
             init("w3", r.normal(0, 0.3, (4, 4, 3, 3))), init("b3", r.normal(0, 0.2, 4)),
             init("wp", r.normal(0, 0.5, (4, 3, 1, 1))), init("bp", r.normal(0, 0.2, 4))]
    head(r, "g", 4, inits, nodes)
    return model(nodes, inits, (2, 8, 8)), (2, 8, 8)


def nhwc_transpose():
    """x(8,8,2) NHWC -> Transpose -> Conv -> Relu -> MaxPool(SAME) -> Transpose back -> Reshape(-1, F) -> MatMul+Add -> Softmax"""
    r = rng(16)
    nodes = [node("Transpose", ["x"], ["xt"], "to_nchw", perm=[0, 3, 1, 2]),
             node("Conv", ["xt", "w1", "b1"], ["c1"], "conv", kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER"),
             node("Relu", ["c1"], ["r1"], "relu"),
             node("MaxPool", ["r1"], ["p1"], "pool", kernel_shape=[2, 2], strides=[1, 1], auto_pad="SAME_UPPER"),
             node("Transpose", ["p1"], ["pt"], "to_nhwc", perm=[0, 2, 3, 1]),
             node("Reshape", ["pt", "shape"], ["f"], "reshape"),
             node("MatMul", ["f", "w2"], ["m"], "dense/MatMul"), node("Add", ["m", "b2"], ["logits"], "dense/BiasAdd"),
             node("Softmax", ["logits"], ["y"], "softmax", axis=-1)]
    inits = [init("w1", r.normal(0, 0.5, (3, 2, 3, 3))), init("b1", r.normal(0, 0.2, 3)), i64("shape", [-1, 48]),
             init("w2", r.normal(0, 0.5, (48, 4))), init("b2", r.normal(0, 0.2, 4))]
    return model(nodes, inits, (8, 8, 2)), (8, 8, 2)


def squeeze_pad_reducemean():
    """x -> Pad(0,1) -> Conv -> Relu -> ReduceMean(2,3, keepdims 1) -> Squeeze(2,3) -> Unsqueeze(2) -> Flatten -> Gemm"""
    r = rng(17)
    nodes = [node("Pad", ["x", "pads"], ["xp"], "pad", mode="constant"),
             node("Conv", ["xp", "w1", "b1"], ["c1"], "conv", kernel_shape=[3, 3]),
             node("Relu", ["c1"], ["r1"], "relu"),
             node("ReduceMean", ["r1", "axes"], ["m"], "mean", keepdims=1),
             node("Squeeze", ["m", "sq_axes"], ["s"], "squeeze"),
             node("Unsqueeze", ["s", "unsq_axes"], ["u"], "unsqueeze")]
    inits = [i64("pads", [0, 0, 0, 1, 0, 0, 1, 0]), init("w1", r.normal(0, 0.5, (5, 2, 3, 3))), init("b1", r.normal(0, 0.2, 5)),
             i64("axes", [2, 3]), i64("sq_axes", [2, 3]), i64("unsq_axes", [2])]
    head(r, "u", 5, inits, nodes)
    return model(nodes, inits, (2, 6, 6), opset=18), (2, 6, 6)  # opset 18: ReduceMean axes as an input


def shape_chain_reshape():
    """x.view(x.size(0), -1): Reshape(r, Concat(Unsqueeze(Gather(Shape(r), 0)), [-1])) -> Gemm"""
    r = rng(18)
    nodes = [node("Conv", ["x", "w1", "b1"], ["c1"], "conv", kernel_shape=[3, 3]),
             node("Relu", ["c1"], ["r1"], "relu"),
             node("Shape", ["r1"], ["shp"], "shape"), node("Gather", ["shp", "zero"], ["n"], "gather", axis=0),
             node("Unsqueeze", ["n", "ax0"], ["n1"], "unsq"), node("Concat", ["n1", "minus1"], ["tgt"], "cat", axis=0),
             node("Reshape", ["r1", "tgt"], ["f"], "view"),
             node("Gemm", ["f", "w2", "b2"], ["y"], "fc", transB=1)]
    inits = [init("w1", r.normal(0, 0.5, (3, 1, 3, 3))), init("b1", r.normal(0, 0.2, 3)),
             i64("zero", 0), i64("ax0", [0]), i64("minus1", [-1]),
             init("w2", r.normal(0, 0.5, (4, 48))), init("b2", r.normal(0, 0.2, 4))]
    return model(nodes, inits, (1, 6, 6)), (1, 6, 6)


def reduce_sum_div():
    """jax2onnx's mean: x -> Conv -> Relu -> Transpose(NHWC) -> ReduceSum(1,2, keepdims 0) -> Div(HW) -> Gemm"""
    r = rng(19)
    nodes = [node("Conv", ["x", "w1", "b1"], ["c1"], "conv", kernel_shape=[3, 3]),
             node("Relu", ["c1"], ["r1"], "relu"),
             node("Transpose", ["r1"], ["t"], "to_nhwc", perm=[0, 2, 3, 1]),
             node("ReduceSum", ["t", "axes"], ["s"], "sum", keepdims=0),
             node("Div", ["s", "hw"], ["m"], "div"),
             node("Gemm", ["m", "w2", "b2"], ["y"], "fc", transB=1)]
    inits = [init("w1", r.normal(0, 0.5, (3, 2, 3, 3))), init("b1", r.normal(0, 0.2, 3)), i64("axes", [1, 2]),
             f32("hw", 16.0), init("w2", r.normal(0, 0.5, (4, 3))), init("b2", r.normal(0, 0.2, 4))]
    return model(nodes, inits, (2, 6, 6)), (2, 6, 6)


def keras_flatten_shape_subgraph():
    """tf2onnx's Keras Flatten: Reshape(t, Cast(Concat(Slice(Shape(t), 0, 1), [-1]))), here after an
    NHWC Transpose and with a second shape computation (Shape -> Gather of dims 1..3 -> ReduceProd)
    the way tf2onnx writes some Flattens; then MatMul+Add (Dense)."""
    r = rng(20)
    nodes = [node("Conv", ["x", "w1", "b1"], ["c1"], "conv", kernel_shape=[3, 3]),
             node("Relu", ["c1"], ["r1"], "relu"),
             node("Transpose", ["r1"], ["t"], "to_nhwc", perm=[0, 2, 3, 1]),
             node("Shape", ["t"], ["shp"], "flatten/Shape"),
             node("Slice", ["shp", "s0", "s1"], ["batch"], "flatten/Slice"),
             node("Gather", ["shp", "rest_idx"], ["rest"], "flatten/Gather", axis=0),
             node("ReduceProd", ["rest"], ["features"], "flatten/ReduceProd", keepdims=1),
             node("Concat", ["batch", "features"], ["tgt64"], "flatten/Concat", axis=0),
             node("Cast", ["tgt64"], ["tgt"], "flatten/Cast", to=7),
             node("Reshape", ["t", "tgt"], ["f"], "flatten/Reshape"),
             node("MatMul", ["f", "w2"], ["m"], "dense/MatMul"), node("Add", ["m", "b2"], ["y"], "dense/BiasAdd")]
    inits = [init("w1", r.normal(0, 0.5, (3, 1, 3, 3))), init("b1", r.normal(0, 0.2, 3)),
             i64("s0", [0]), i64("s1", [1]), i64("rest_idx", [1, 2, 3]),
             init("w2", r.normal(0, 0.5, (48, 4))), init("b2", r.normal(0, 0.2, 4))]
    return model(nodes, inits, (1, 6, 6)), (1, 6, 6)



def mobilenet_v2_block():
    """torchvision MobileNetV2's inverted residual with a linear bottleneck: the block's input and
    output are currents (no activation after the projection), added without a ReLU after the Add.
       x ─ Conv ─ ReLU6 ─ Conv1x1 (linear: b0) ─┬─ Conv1x1 (expand) ─ ReLU6 ─ DWConv3x3 ─ ReLU6 ─ Conv1x1 (project) ─ Add ─ Conv1x1 ─ ReLU6 ─ GAP ─ head
                                                └────────────────────────────────────────────────────────────┘"""
    r = rng(17)
    nodes = [node("Conv", ["x", "w0", "b0"], ["c0"], "stem", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             node("Clip", ["c0", "zero", "six"], ["r0"], "stem_relu6"),
             node("Conv", ["r0", "wl", "bl"], ["lin"], "linear_bottleneck", kernel_shape=[1, 1]),
             node("Conv", ["lin", "we", "be"], ["ce"], "expand", kernel_shape=[1, 1]),
             node("Clip", ["ce", "zero", "six"], ["re"], "expand_relu6"),
             node("Conv", ["re", "wd", "bd"], ["cd"], "depthwise", kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=8),
             node("Clip", ["cd", "zero", "six"], ["rd"], "depthwise_relu6"),
             node("Conv", ["rd", "wp", "bp"], ["cp"], "project", kernel_shape=[1, 1]),
             node("Add", ["lin", "cp"], ["s"], "residual_add"),
             node("Conv", ["s", "wlast", "blast"], ["ch"], "last_conv", kernel_shape=[1, 1]),
             node("Clip", ["ch", "zero", "six"], ["rh"], "last_relu6"),
             node("GlobalAveragePool", ["rh"], ["g"], "gap")]
    inits = [init("w0", r.normal(0, 0.5, (4, 3, 3, 3))), init("b0", r.normal(0, 0.2, 4)),
             init("wl", r.normal(0, 0.5, (4, 4, 1, 1))), init("bl", r.normal(0, 0.2, 4)),
             init("we", r.normal(0, 0.5, (8, 4, 1, 1))), init("be", r.normal(0, 0.2, 8)),
             init("wd", r.normal(0, 0.5, (8, 1, 3, 3))), init("bd", r.normal(0, 0.2, 8)),
             init("wp", r.normal(0, 0.5, (4, 8, 1, 1))), init("bp", r.normal(0, 0.2, 4)),
             init("wlast", r.normal(0, 0.5, (6, 4, 1, 1))), init("blast", r.normal(0, 0.2, 6)),
             f32("zero", 0.0), f32("six", 6.0)]
    head(r, "g", 6, inits, nodes)
    return model(nodes, inits, (3, 8, 8)), (3, 8, 8)


def channel_split_shuffle():
    """ShuffleNetV2's unit: x(3,8,8) -> Conv(8) -> Relu -> Split(4, 4) along channels; the second half
    -> Conv1x1 -> Relu -> DWConv -> Conv1x1 -> Relu; Concat(first half, branch) -> channel shuffle
    (Reshape (2,4,H,W) -> Transpose -> Reshape) -> Slice of the spatial window 1..7 step 2 -> GAP -> head"""
    r = rng(18)
    nodes = [node("Conv", ["x", "w0", "b0"], ["c0"], "stem", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             node("Relu", ["c0"], ["r0"], "stem_relu"),
             node("Split", ["r0", "split"], ["half_a", "half_b"], "split", axis=1),
             node("Conv", ["half_b", "w1", "b1"], ["c1"], "branch_pw1", kernel_shape=[1, 1]),
             node("Relu", ["c1"], ["r1"], "branch_relu1"),
             node("Conv", ["r1", "wd", "bd"], ["cd"], "branch_dw", kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=4),
             node("Conv", ["cd", "w2", "b2"], ["c2"], "branch_pw2", kernel_shape=[1, 1]),
             node("Relu", ["c2"], ["r2"], "branch_relu2"),
             node("Concat", ["half_a", "r2"], ["cat"], "concat", axis=1),
             node("Reshape", ["cat", "groups"], ["g5"], "shuffle_reshape"),
             node("Transpose", ["g5"], ["t5"], "shuffle_transpose", perm=[0, 2, 1, 3, 4]),
             node("Reshape", ["t5", "flat4"], ["shuffled"], "shuffle_flatten"),
             node("Slice", ["shuffled", "st", "en", "ax", "sp"], ["window"], "window"),
             node("GlobalAveragePool", ["window"], ["g"], "gap")]
    inits = [init("w0", r.normal(0, 0.5, (8, 3, 3, 3))), init("b0", r.normal(0, 0.2, 8)), i64("split", [4, 4]),
             init("w1", r.normal(0, 0.5, (4, 4, 1, 1))), init("b1", r.normal(0, 0.2, 4)),
             init("wd", r.normal(0, 0.5, (4, 1, 3, 3))), init("bd", r.normal(0, 0.2, 4)),
             init("w2", r.normal(0, 0.5, (4, 4, 1, 1))), init("b2", r.normal(0, 0.2, 4)),
             i64("groups", [-1, 2, 4, 8, 8]), i64("flat4", [-1, 8, 8, 8]),
             i64("st", [1, 1]), i64("en", [7, 2 ** 62]), i64("ax", [2, 3]), i64("sp", [2, 2])]
    head(r, "g", 8, inits, nodes)
    return model(nodes, inits, (3, 8, 8)), (3, 8, 8)


def gather_channels_and_token():
    """x(4,6) tokens -> Conv1d 1x1 (6 channels) -> Relu -> Gather of channels [5, 0, 3, 3] (a
    reordering with a repeat) -> Relu -> Gather of position -1 (rank drops: (4,)) -> Gemm -> y"""
    r = rng(19)
    nodes = [node("Conv", ["x", "w0", "b0"], ["c0"], "pointwise", kernel_shape=[1]),
             node("Relu", ["c0"], ["r0"], "relu0"),
             node("Gather", ["r0", "channels"], ["picked"], "pick_channels", axis=1),
             node("Gather", ["picked", "last"], ["token"], "last_position", axis=2),
             node("Gemm", ["token", "wh", "bh"], ["y"], "head", transB=1)]
    inits = [init("w0", r.normal(0, 0.5, (6, 4, 1))), init("b0", r.normal(0, 0.2, 6)),
             i64("channels", [5, 0, 3, 3]), i64("last", -1),
             init("wh", r.normal(0, 0.5, (3, 4))), init("bh", r.normal(0, 0.2, 3))]
    return model(nodes, inits, (4, 6)), (4, 6)


def nearest_upsample_skip():
    """A U-Net decoder step: x(2,6,6) -> Conv(4) -> Relu -> AveragePool 2 -> Conv(4) -> Relu -> Resize x2
    nearest (torch's export: asymmetric, floor) -> Concat with the skip -> Conv(4) -> Relu -> Resize
    by 1.5 to 9x9 (half_pixel, round_prefer_floor: ONNX's defaults) -> Conv(3) -> y per pixel, flattened"""
    r = rng(20)
    nodes = [node("Conv", ["x", "w0", "b0"], ["c0"], "enc", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             node("Relu", ["c0"], ["skip"], "enc_relu"),
             node("AveragePool", ["skip"], ["down"], "down", kernel_shape=[2, 2], strides=[2, 2]),
             node("Conv", ["down", "w1", "b1"], ["c1"], "mid", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             node("Relu", ["c1"], ["r1"], "mid_relu"),
             node("Resize", ["r1", "", "twice"], ["up"], "up", mode="nearest",
                  coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
             node("Concat", ["skip", "up"], ["cat"], "concat", axis=1),
             node("Conv", ["cat", "w2", "b2"], ["c2"], "dec", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             node("Relu", ["c2"], ["r2"], "dec_relu"),
             node("Resize", ["r2", "", "by1_5"], ["up9"], "up9", mode="nearest"),
             node("Conv", ["up9", "w3", "b3"], ["c3"], "classify", kernel_shape=[1, 1]),
             node("Flatten", ["c3"], ["y"], "flatten")]
    inits = [init("w0", r.normal(0, 0.5, (4, 2, 3, 3))), init("b0", r.normal(0, 0.2, 4)),
             init("w1", r.normal(0, 0.5, (4, 4, 3, 3))), init("b1", r.normal(0, 0.2, 4)),
             init("w2", r.normal(0, 0.4, (4, 8, 3, 3))), init("b2", r.normal(0, 0.2, 4)),
             init("w3", r.normal(0, 0.5, (3, 4, 1, 1))), init("b3", r.normal(0, 0.2, 3)),
             f32("twice", [1, 1, 2, 2]), f32("by1_5", [1, 1, 1.5, 1.5])]
    return model(nodes, inits, (2, 6, 6)), (2, 6, 6)



def upsample_opset9():
    """An opset-9 export: x(2,4,4) -> Conv(3) -> Relu -> Upsample x2 nearest (scales an input) ->
    Conv(3) -> Relu -> GlobalAveragePool -> head"""
    r = rng(21)
    nodes = [node("Conv", ["x", "w0", "b0"], ["c0"], "conv0", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             node("Relu", ["c0"], ["r0"], "relu0"),
             node("Upsample", ["r0", "scales"], ["up"], "upsample", mode="nearest"),
             node("Conv", ["up", "w1", "b1"], ["c1"], "conv1", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             node("Relu", ["c1"], ["r1"], "relu1"),
             node("GlobalAveragePool", ["r1"], ["g"], "gap")]
    inits = [init("w0", r.normal(0, 0.5, (3, 2, 3, 3))), init("b0", r.normal(0, 0.2, 3)),
             init("w1", r.normal(0, 0.5, (3, 3, 3, 3))), init("b1", r.normal(0, 0.2, 3)),
             f32("scales", [1, 1, 2, 2])]
    head(r, "g", 3, inits, nodes)
    return model(nodes, inits, (2, 4, 4), opset=9), (2, 4, 4)



def conv_transpose_decoder():
    """A decoder: x(3,4,4) -> Conv(4) -> Relu -> ConvTranspose(4->6, k2 s2) -> BN -> Relu ->
    ConvTranspose(6->4, k3 s2, asymmetric pads, output_padding 1, group 2) -> Relu -> GAP -> head"""
    r = rng(22)
    nodes = [node("Conv", ["x", "w0", "b0"], ["c0"], "enc", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             node("Relu", ["c0"], ["r0"], "enc_relu"),
             node("ConvTranspose", ["r0", "w1", "b1"], ["u1"], "up1", kernel_shape=[2, 2], strides=[2, 2]),
             node("BatchNormalization", ["u1", "bn.gamma", "bn.beta", "bn.mean", "bn.var"], ["n1"], "up1_bn"),
             node("Relu", ["n1"], ["r1"], "up1_relu"),
             node("ConvTranspose", ["r1", "w2"], ["u2"], "up2", kernel_shape=[3, 3], strides=[2, 2],
                  pads=[1, 0, 0, 1], output_padding=[1, 1], group=2),
             node("Relu", ["u2"], ["r2"], "up2_relu"),
             node("GlobalAveragePool", ["r2"], ["g"], "gap")]
    inits = [init("w0", r.normal(0, 0.5, (4, 3, 3, 3))), init("b0", r.normal(0, 0.2, 4)),
             init("w1", r.normal(0, 0.5, (4, 6, 2, 2))), init("b1", r.normal(0, 0.2, 6)), *bn_params("bn", 6, r),
             init("w2", r.normal(0, 0.5, (6, 2, 3, 3)))]
    head(r, "g", 4, inits, nodes)
    return model(nodes, inits, (3, 4, 4)), (3, 4, 4)



def token_mixer():
    """MLP-Mixer's block without LayerNorm: x(6, 8) tokens × features -> MatMul(8->12) + Add (channel
    MLP) -> Relu -> Transpose -> MatMul(6->6) + Add (token MLP, constant first) -> Relu -> Transpose
    -> Add (residual) -> a 4-D token grid (2, 3, 12) -> MatMul(12->5) -> Relu -> ReduceMean over the
    grid -> Flatten -> head"""
    r = rng(23)
    nodes = [node("MatMul", ["x", "w1"], ["m1"], "channel_mlp/MatMul"), node("Add", ["m1", "b1"], ["a1"], "channel_mlp/Add"),
             node("Relu", ["a1"], ["r1"], "channel_relu"),
             node("Transpose", ["r1"], ["t1"], "to_tokens", perm=[0, 2, 1]),
             node("MatMul", ["t1", "w2"], ["m2"], "token_mlp/MatMul"), node("Add", ["b2", "m2"], ["a2"], "token_mlp/Add"),
             node("Relu", ["a2"], ["r2"], "token_relu"),
             node("Transpose", ["r2"], ["t2"], "back", perm=[0, 2, 1]),
             node("Add", ["t2", "r1"], ["s"], "residual"),
             node("Reshape", ["s", "grid"], ["g4"], "grid"),
             node("MatMul", ["g4", "w3"], ["m3"], "grid_mlp/MatMul"),
             node("Relu", ["m3"], ["r3"], "grid_relu"),
             node("ReduceMean", ["r3"], ["pooled"], "pool_tokens", axes=[1, 2], keepdims=0)]
    inits = [init("w1", r.normal(0, 0.5, (8, 12))), init("b1", r.normal(0, 0.2, 12)),
             init("w2", r.normal(0, 0.5, (6, 6))), init("b2", r.normal(0, 0.2, (1, 6))),
             i64("grid", [-1, 2, 3, 12]), init("w3", r.normal(0, 0.5, (12, 5)))]
    head(r, "pooled", 5, inits, nodes)
    return model(nodes, inits, (6, 8)), (6, 8)


def position_embedding():
    """A ViT's stem without attention: x(1,8,8) -> patch Conv(6, 4x4, stride 4) -> Reshape (N, 6, 4) ->
    Transpose -> (N, 4 tokens, 6) + a position embedding (1, 4, 6) -> token-wise MatMul(6->8) + Add
    -> Relu -> + a second embedding (4, 8), after the neurons -> MatMul(8->5) -> Relu -> ReduceMean
    over tokens -> head"""
    r = rng(26)
    nodes = [node("Conv", ["x", "wp", "bp"], ["p"], "patch", kernel_shape=[4, 4], strides=[4, 4]),
             node("Reshape", ["p", "tokens_shape"], ["pt"], "tokens"),
             node("Transpose", ["pt"], ["t"], "to_tokens", perm=[0, 2, 1]),
             node("Add", ["t", "pos"], ["e"], "add_position"),
             node("MatMul", ["e", "w1"], ["m1"], "fc1/MatMul"), node("Add", ["m1", "b1"], ["a1"], "fc1/Add"),
             node("Relu", ["a1"], ["r1"], "relu1"),
             node("Add", ["pos2", "r1"], ["e2"], "add_position2"),
             node("MatMul", ["e2", "w2"], ["m2"], "fc2/MatMul"),
             node("Relu", ["m2"], ["r2"], "relu2"),
             node("ReduceMean", ["r2"], ["pooled"], "pool_tokens", axes=[1], keepdims=0)]
    inits = [init("wp", r.normal(0, 0.5, (6, 1, 4, 4))), init("bp", r.normal(0, 0.2, 6)),
             i64("tokens_shape", [0, 6, 4]), init("pos", r.normal(0, 0.5, (1, 4, 6))),
             init("w1", r.normal(0, 0.5, (6, 8))), init("b1", r.normal(0, 0.2, 8)),
             init("pos2", r.normal(0, 0.5, (4, 8))), init("w2", r.normal(0, 0.5, (8, 5)))]
    head(r, "pooled", 5, inits, nodes)
    return model(nodes, inits, (1, 8, 8)), (1, 8, 8)


def leaky_relu_cnn():
    """A YOLO-style backbone (with --signed-spikes): x(2,6,6) -> Conv(4) -> BN -> LeakyRelu(0.1) ->
    AveragePool 2 -> Conv(4) -> LeakyRelu(0.2) -> GAP -> head"""
    r = rng(24)
    nodes = [node("Conv", ["x", "w0", "b0"], ["c0"], "conv0", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             node("BatchNormalization", ["c0", "bn.gamma", "bn.beta", "bn.mean", "bn.var"], ["n0"], "bn0"),
             node("LeakyRelu", ["n0"], ["l0"], "leaky0", alpha=0.1),
             node("AveragePool", ["l0"], ["p0"], "pool0", kernel_shape=[2, 2], strides=[2, 2]),
             node("Conv", ["p0", "w1", "b1"], ["c1"], "conv1", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             node("LeakyRelu", ["c1"], ["l1"], "leaky1", alpha=0.2),
             node("GlobalAveragePool", ["l1"], ["g"], "gap")]
    inits = [init("w0", r.normal(0, 0.5, (4, 2, 3, 3))), init("b0", r.normal(0, 0.2, 4)), *bn_params("bn", 4, r),
             init("w1", r.normal(0, 0.5, (4, 4, 3, 3))), init("b1", r.normal(0, 0.2, 4))]
    head(r, "g", 4, inits, nodes)
    return model(nodes, inits, (2, 6, 6)), (2, 6, 6)


def prelu_cnn():
    """PReLU with a slope per channel (with --signed-spikes): x(2,6,6) -> Conv(4) -> BN -> PRelu
    (slope (4,1,1)) -> AveragePool 2 -> Conv(3) -> PRelu (slope (1,3,1,1), a batch axis) -> GAP -> head"""
    r = rng(25)
    nodes = [node("Conv", ["x", "w0", "b0"], ["c0"], "conv0", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             node("BatchNormalization", ["c0", "bn.gamma", "bn.beta", "bn.mean", "bn.var"], ["n0"], "bn0"),
             node("PRelu", ["n0", "slope0"], ["l0"], "prelu0"),
             node("AveragePool", ["l0"], ["p0"], "pool0", kernel_shape=[2, 2], strides=[2, 2]),
             node("Conv", ["p0", "w1", "b1"], ["c1"], "conv1", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             node("PRelu", ["c1", "slope1"], ["l1"], "prelu1"),
             node("GlobalAveragePool", ["l1"], ["g"], "gap")]
    inits = [init("w0", r.normal(0, 0.5, (4, 2, 3, 3))), init("b0", r.normal(0, 0.2, 4)), *bn_params("bn", 4, r),
             init("slope0", np.array([0.05, 0.1, 0.25, 0.5]).reshape(4, 1, 1)),
             init("w1", r.normal(0, 0.5, (3, 4, 3, 3))), init("b1", r.normal(0, 0.2, 3)),
             init("slope1", np.array([0.3, 0.1, 0.2]).reshape(1, 3, 1, 1))]
    head(r, "g", 3, inits, nodes)
    return model(nodes, inits, (2, 6, 6)), (2, 6, 6)


def attention_block():
    """A pre-norm transformer block as the TorchScript exporter writes timm's (opset 17): x(4 tokens, 8)
    -> LayerNormalization -> MatMul+Add (QKV, 24) -> Reshape (4, 3, 2 heads, 4) -> Transpose
    (2, 0, 3, 1, 4) -> Gather q, k, v -> q·kᵀ -> Mul(1/2) -> Softmax -> ·v -> Transpose -> Reshape ->
    MatMul+Add (proj) -> + x -> LayerNormalization -> MatMul+Add (16) -> GELU (Erf form) -> MatMul+Add
    (8) -> + -> ReduceMean over tokens -> head"""
    r = rng(27)
    mm = lambda name, src, w, b, out: [node("MatMul", [src, w], [name + "_m"], name + "/MatMul"),
                                       node("Add", [name + "_m", b], [out], name + "/Add")]
    nodes = [node("LayerNormalization", ["x", "g1", "be1"], ["n1"], "norm1", axis=-1, epsilon=1e-5),
             *mm("qkv", "n1", "wqkv", "bqkv", "qkv"),
             node("Reshape", ["qkv", "heads"], ["q5"], "split_heads"),
             node("Transpose", ["q5"], ["q5t"], "permute", perm=[2, 0, 3, 1, 4]),
             node("Gather", ["q5t", "i0"], ["q"], "q", axis=0), node("Gather", ["q5t", "i1"], ["k"], "k", axis=0),
             node("Gather", ["q5t", "i2"], ["v"], "v", axis=0),
             node("Transpose", ["k"], ["kt"], "k_t", perm=[0, 1, 3, 2]),
             node("MatMul", ["q", "kt"], ["logits"], "q_k"), node("Mul", ["logits", "scale"], ["scaled"], "scale"),
             node("Softmax", ["scaled"], ["attn"], "softmax", axis=-1),
             node("MatMul", ["attn", "v"], ["av"], "a_v"),
             node("Transpose", ["av"], ["avt"], "merge_heads", perm=[0, 2, 1, 3]),
             node("Reshape", ["avt", "tokens"], ["o"], "merge"),
             *mm("proj", "o", "wp", "bp", "po"),
             node("Add", ["x", "po"], ["res1"], "residual1"),
             node("LayerNormalization", ["res1", "g2", "be2"], ["n2"], "norm2", axis=-1, epsilon=1e-5),
             *mm("fc1", "n2", "w1", "b1", "h"),
             node("Div", ["h", "sqrt2"], ["hd"], "gelu/Div"), node("Erf", ["hd"], ["he"], "gelu/Erf"),
             node("Add", ["he", "one"], ["hp"], "gelu/Add"), node("Mul", ["h", "hp"], ["hm"], "gelu/Mul"),
             node("Mul", ["hm", "half"], ["gelu"], "gelu/Mul_1"),
             *mm("fc2", "gelu", "w2", "b2", "f2"),
             node("Add", ["res1", "f2"], ["res2"], "residual2"),
             node("ReduceMean", ["res2"], ["pooled"], "pool_tokens", axes=[1], keepdims=0)]
    inits = [init("g1", r.uniform(0.5, 1.5, 8)), init("be1", r.normal(0, 0.2, 8)),
             init("wqkv", r.normal(0, 0.5, (8, 24))), init("bqkv", r.normal(0, 0.2, 24)),
             i64("heads", [0, 4, 3, 2, 4]), i64("i0", 0), i64("i1", 1), i64("i2", 2), f32("scale", 0.5),
             i64("tokens", [0, 4, 8]), init("wp", r.normal(0, 0.5, (8, 8))), init("bp", r.normal(0, 0.2, 8)),
             init("g2", r.uniform(0.5, 1.5, 8)), init("be2", r.normal(0, 0.2, 8)),
             init("w1", r.normal(0, 0.5, (8, 16))), init("b1", r.normal(0, 0.2, 16)),
             f32("sqrt2", 2 ** 0.5), f32("one", 1.0), f32("half", 0.5),
             init("w2", r.normal(0, 0.5, (16, 8))), init("b2", r.normal(0, 0.2, 8))]
    head(r, "pooled", 8, inits, nodes)
    return model(nodes, inits, (4, 8), opset=17), (4, 8)


PATTERNS = {f.__name__: f for f in (attention_block, depthwise_dilated_strided, conv1d_bn_maxpool, matmul_add_dense, concat_bn_densenet,
                                    input_normalisation_bn_first, residual_blocks, nhwc_transpose,
                                    squeeze_pad_reducemean, shape_chain_reshape, reduce_sum_div,
                                    keras_flatten_shape_subgraph, mobilenet_v2_block, channel_split_shuffle,
                                    gather_channels_and_token, nearest_upsample_skip, upsample_opset9,
                                    conv_transpose_decoder, token_mixer, leaky_relu_cnn, prelu_cnn,
                                    position_embedding)}
