"""Slice, Split, Gather and nearest Resize/Upsample (issue 21): ops that only select values. Each
lowers to exactly what onnxruntime computes, keeps spikes binary, and is refused, named, where its
arguments are not constant or its mode is not a selection."""
import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

import graphs
from onnx2snn import Onnx2SnnError, convert
from onnx2snn.calibrate import run
from onnx2snn.graph import clean_graph
from onnx2snn.lower import lower_model
from patterns import PATTERNS, f32, i64


def one_op_model(op_nodes, inits, in_shape, opset=17, batch="N"):
    """x -> Relu -> <op_nodes reading "r", writing "y">: the ops alone, run by onnxruntime and torch."""
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu")] + op_nodes
    g = helper.make_graph(nodes, "ops", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, *in_shape])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    m = onnx.shape_inference.infer_shapes(m)       # the output's shape, as an exporter writes it
    onnx.checker.check_model(m)
    return m


def torch_equals_onnxruntime(m, shape):
    x = np.random.default_rng(0).uniform(-1, 1, size=(3, *shape)).astype(np.float32)
    cleaned, _ = clean_graph(m)
    (expected,) = run(m, "x", x, ["y"])
    ann = lower_model(cleaned, ann=True)
    got = ann(torch.from_numpy(x), 1, static=True)[0].numpy()
    assert got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("coordinates", ["half_pixel", "pytorch_half_pixel", "asymmetric", "align_corners",
                                         "tf_half_pixel_for_nn"])
@pytest.mark.parametrize("nearest", ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"])
@pytest.mark.parametrize("scales", [(2.0, 2.0), (1.5, 3.0), (0.5, 1.6)])
def test_nearest_resize_matches_onnxruntime(coordinates, nearest, scales):
    node = helper.make_node("Resize", ["r", "", "scales"], ["y"], name="resize", mode="nearest",
                            coordinate_transformation_mode=coordinates, nearest_mode=nearest)
    torch_equals_onnxruntime(one_op_model([node], [f32("scales", [1, 1, *scales])], (2, 6, 5)), (2, 6, 5))


def test_nearest_resize_to_sizes_and_of_1d_signals_matches_onnxruntime():
    sizes = helper.make_node("Resize", ["r", "", "", "sizes"], ["y"], name="resize", mode="nearest")
    m = one_op_model([sizes], [i64("sizes", [3, 2, 7])], (2, 4), batch=3)   # an export with a static batch
    torch_equals_onnxruntime(m, (2, 4))


@pytest.mark.parametrize("starts,ends,axes,steps", [
    ([1], [2 ** 63 - 1], [1], [1]),                 # channels 1.. (x[:, 1:])
    ([-1], [-2 ** 63], [2], [-1]),                  # reversed along H (x[:, :, ::-1])
    ([0, 4], [2, 0], [1, -1], [1, -2]),             # a negative axis, a negative step
    ([-3], [100], [3], [2]),                        # negative start, end past the axis
])
def test_slice_matches_onnxruntime(starts, ends, axes, steps):
    node = helper.make_node("Slice", ["r", "st", "en", "ax", "sp"], ["y"], name="slice")
    inits = [i64("st", starts), i64("en", ends), i64("ax", axes), i64("sp", steps)]
    torch_equals_onnxruntime(one_op_model([node], inits, (3, 5, 6)), (3, 5, 6))


def test_slice_with_attributes_before_opset_10_matches_onnxruntime():
    node = helper.make_node("Slice", ["r"], ["y"], name="slice", starts=[1, 0], ends=[3, -1], axes=[1, 3])
    torch_equals_onnxruntime(one_op_model([node], [], (3, 5, 6), opset=9), (3, 5, 6))


@pytest.mark.parametrize("opset,split", [(13, [1, 3]), (11, None), (18, "num_outputs")])   # (11: equal halves)
def test_split_becomes_slices_that_match_onnxruntime(opset, split):
    outs = ["a", "b"] if split != "num_outputs" else ["a", "b", "c"]
    inputs, attrs, inits = ["r"], {"axis": 1}, []
    if split == "num_outputs":
        attrs["num_outputs"] = 3             # 5 channels in 3 parts: ceil(5/3) = 2, 2, and the rest, 1
    elif split:
        inputs.append("split")
        inits.append(i64("split", split))
    nodes = [helper.make_node("Split", inputs, outs, name="split", **attrs),
             helper.make_node("Concat", outs[::-1], ["y"], name="cat", axis=1)]
    shape = (4, 3, 3) if split != "num_outputs" else (5, 3, 3)
    m = one_op_model(nodes, inits, shape, opset=opset)
    cleaned, _ = clean_graph(m)
    assert not any(n.op_type == "Split" for n in cleaned.graph.node)
    torch_equals_onnxruntime(m, shape)


def test_gather_with_negative_and_repeated_indices_matches_onnxruntime():
    nodes = [helper.make_node("Gather", ["r", "idx"], ["g"], name="gather", axis=-1),
             helper.make_node("Gather", ["g", "one"], ["y"], name="pick", axis=1)]
    m = one_op_model(nodes, [i64("idx", [[3, -1], [0, 0]]), i64("one", 1)], (3, 4, 5))
    torch_equals_onnxruntime(m, (3, 4, 5))


@pytest.mark.parametrize("name", ["channel_split_shuffle", "gather_channels_and_token", "nearest_upsample_skip"])
def test_selections_keep_spikes_binary(name):
    """Every selection of spikes is spikes: the Select modules' outputs are 0 or 1 at every step."""
    m, shape = PATTERNS[name]()
    x = np.random.default_rng(1).uniform(0, 1, size=(8, *shape)).astype(np.float32)
    conv = convert(m, x, graphs.seed_config())
    seen = []
    selects = [mod for mod in conv.network.modules() if type(mod).__name__ == "Select"]
    assert selects
    hooks = [mod.register_forward_hook(lambda mod, args, out: seen.append((args[0], out))) for mod in selects]
    conv.network.simulate(x, 8, device="cpu")
    for h in hooks:
        h.remove()
    spiking = [(i, o) for i, o in seen if torch.all((i == 0) | (i == 1))]
    assert spiking, "no selection of spikes was simulated"
    assert all(torch.all((o == 0) | (o == 1)) for _, o in spiking)


@pytest.mark.parametrize("make,fragment", [
    (lambda: [helper.make_node("Resize", ["r", "", "scales"], ["y"], name="up", mode="cubic")],
     "up (Resize): Resize mode=cubic"),
    (lambda: [helper.make_node("Resize", ["r", "", "scales"], ["y"], name="up", mode="nearest",
                               coordinate_transformation_mode="tf_crop_and_resize")],
     "coordinate_transformation_mode=tf_crop_and_resize"),
    (lambda: [helper.make_node("Shape", ["r"], ["s"], name="shape"),
              helper.make_node("Gather", ["s", "zero"], ["i"], name="dim"),
              helper.make_node("Gather", ["r", "i"], ["y"], name="pick", axis=1)],
     "pick (Gather): Gather with non-constant indices"),
    (lambda: [helper.make_node("Slice", ["r", "zero1", "two", "zero1"], ["y"], name="batch")],
     "batch (Slice): Slice of the batch axis"),
])
def test_selections_that_cannot_convert_are_named(make, fragment):
    inits = [f32("scales", [1, 1, 2, 2]), i64("zero", 0), i64("zero1", [0]), i64("two", [2])]
    m = one_op_model(make(), inits, (2, 4, 4))
    with pytest.raises(Onnx2SnnError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        convert(m, np.random.default_rng(0).uniform(0, 1, size=(20, 2, 4, 4)).astype(np.float32))


@pytest.mark.parametrize("coordinates", ["half_pixel", "pytorch_half_pixel", "asymmetric", "align_corners"])
@pytest.mark.parametrize("scales", [(2.0, 2.0), (1.5, 3.0), (0.5, 1.6)])
def test_linear_resize_matches_onnxruntime(coordinates, scales):
    """Bilinear resizing is a fixed positive linear map: one interpolation matrix per axis."""
    node = helper.make_node("Resize", ["r", "", "scales"], ["y"], name="resize", mode="linear",
                            coordinate_transformation_mode=coordinates)
    m = one_op_model([node], [f32("scales", [1, 1, *scales])], (2, 6, 5))
    x = np.random.default_rng(0).uniform(-1, 1, size=(3, 2, 6, 5)).astype(np.float32)
    (expected,) = run(m, "x", x, ["y"])
    got = lower_model(clean_graph(m)[0], ann=True)(torch.from_numpy(x), 1, static=True)[0].numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_bilinear_upsampling_converts_as_a_synapse():
    """F.interpolate(mode="bilinear") between layers: the spikes pass through a fixed linear map
    (analog, like average pooling); the conversion verifies and the SNN approaches the ANN."""
    m, shape = PATTERNS["nearest_upsample_skip"]()
    for n in m.graph.node:
        if n.name == "up":
            next(a for a in n.attribute if a.name == "mode").s = b"linear"
    x = np.random.default_rng(0).uniform(0, 1, size=(40, *shape)).astype(np.float32)
    cfg = graphs.seed_config()
    cfg.parser.robust_norm, cfg.simulation.output = False, "membrane"
    conv = convert(m, x, cfg)
    assert max(conv.verification.errors.values()) <= 1e-4
    (edited,) = run(conv.snn_model, "x", x, ["y"])
    snn = conv.network.simulate(x, 400, device="cpu").outputs / 400
    assert np.abs(snn - edited).max() <= 0.08 * max(1.0, np.abs(edited).max())
    # asked for (avg_pool.has_neuron), IF neurons after the resize turn its weighted averages back
    # into binary spikes, as after average pooling: the interpolation weights are >= 0 and sum to 1
    cfg.simulation.avg_pool.has_neuron = True
    conv = convert(m, x, cfg)
    after = [n for n in conv.snn_model.graph.node if n.name == "up/IF"]
    assert len(after) == 1 and after[0].input[0].endswith("_pooled")
    seen = []
    neuron = conv.network.layers[next(i for i, st in enumerate(conv.network.steps) if st.name == "up/IF")]
    hook = neuron.register_forward_hook(lambda mod, args, out: seen.append(out))
    snn = conv.network.simulate(x, 400, device="cpu").outputs / 400
    hook.remove()
    assert set(torch.cat([o.reshape(-1) for o in seen]).unique().tolist()) <= {0.0, 1.0}
    assert np.abs(snn - edited).max() <= 0.1 * max(1.0, np.abs(edited).max())


def test_torch_chunk_exports_fold_to_constant_slices():
    """x.chunk(2, dim=1) exports its split points from Shape arithmetic: folded to constants."""
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.fc = nn.Conv2d(2, 6, 3, padding=1), nn.Linear(3 * 16, 4)

        def forward(self, x):
            a, b = torch.relu(self.conv(x)).chunk(2, dim=1)
            return self.fc((a + b).flatten(1))

    import io
    buf = io.BytesIO()
    torch.onnx.export(Net().eval(), (torch.zeros(1, 2, 4, 4),), buf, input_names=["x"], output_names=["y"],
                      opset_version=17, dynamic_axes={"x": {0: "N"}, "y": {0: "N"}}, dynamo=False)
    m = onnx.load_from_string(buf.getvalue())
    x = np.random.default_rng(0).uniform(0, 1, size=(30, 2, 4, 4)).astype(np.float32)
    conv = convert(m, x, graphs.seed_config())
    ops = {n.op_type for n in conv.snn_model.graph.node}
    assert "Slice" in ops and "Shape" not in ops and conv.verification.agreement == 1.0


@pytest.mark.parametrize("name", ["channel_split_shuffle", "nearest_upsample_skip"])
def test_nir_export_refuses_selections_naming_the_node(name, tmp_path):
    """NIR has no node for Slice, Resize and friends: refused with the node named, nothing written."""
    pytest.importorskip("nir")
    from onnx2snn import export_nir
    m, shape = PATTERNS[name]()
    conv = convert(m, np.random.default_rng(0).uniform(0, 1, size=(20, *shape)).astype(np.float32),
                   graphs.seed_config())
    with pytest.raises(Onnx2SnnError, match=r"\((Slice|Resize|Reshape|Transpose|Concat)\).*NIR|NIR has no"):
        export_nir(conv.snn_model, str(tmp_path / "m.nir"))
    assert not (tmp_path / "m.nir").exists()
