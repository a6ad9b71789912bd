"""Synaptic operations (issue 8): the SNN's accumulates per inference against the ANN's MACs."""
import numpy as np
import pytest
import torch
from torch import nn

import graphs
from onnx2snn import convert, simulate
from onnx2snn.snn.synops import connections, energy


def test_connections_count_every_synapse_with_borders_and_strides():
    conv = nn.Conv2d(1, 2, 3, padding=1)
    # per output channel: 4 corners × 4 inputs + 24 edge positions × 6 + 36 inner × 9
    assert connections(conv, torch.ones(1, 8, 8)) == 2 * (4 * 4 + 24 * 6 + 36 * 9)
    strided = nn.Conv2d(1, 3, 2, stride=2)
    assert connections(strided, torch.ones(1, 4, 4)) == 3 * 4 * 4     # each input feeds one window per channel
    counts = torch.zeros(1, 4, 4)
    counts[0, 0, 0] = 5.0                                               # 5 spikes at one input
    assert connections(strided, counts) == 5 * 3
    assert connections(nn.Linear(7, 4), torch.full((7,), 2.0)) == 2 * 7 * 4


def _rate_of_first_neurons(result):
    return next(iter(result.firing_rates.values()))


def test_synaptic_operations_are_spikes_times_fan_out():
    x = np.random.default_rng(0).uniform(0, 1, size=(30, 6)).astype(np.float32)
    conv = convert(graphs.gemm_bn(), x, graphs.seed_config())
    T = 12
    r = simulate(conv.network, x, T=T, record_rates=True)
    fc1, fc2 = r.synaptic_ops.values()
    assert fc1["snn_op"] == "MAC" and fc1["snn_ops"] == fc1["ann_macs"] == 6 * 4   # the constant input, once
    spikes_per_inference = _rate_of_first_neurons(r) * 4 * T
    assert fc2["snn_op"] == "AC" and fc2["snn_ops"] == pytest.approx(spikes_per_inference * 3, rel=1e-5)
    assert fc2["ann_macs"] == 4 * 3


def test_average_pooling_before_a_layer_counts_every_spike():
    """pool 2×2 then Gemm(5): each spike of the 4×8×8 neurons reaches 5 synapses through the pooling."""
    x = np.random.default_rng(1).uniform(0, 1, size=(30, 1, 8, 8)).astype(np.float32)
    conv = convert(graphs.conv_bn_relu(pool="AveragePool"), x)
    T = 10
    r = simulate(conv.network, x, T=T, record_rates=True)
    conv1, fc = r.synaptic_ops.values()
    assert conv1["snn_ops"] == 4 * (4 * 4 + 24 * 6 + 36 * 9)
    assert fc["snn_ops"] == pytest.approx(_rate_of_first_neurons(r) * 4 * 8 * 8 * T * 5, rel=1e-5)
    totals = energy(r.synaptic_ops)
    assert totals["snn_energy_pj"] == pytest.approx(0.9 * fc["snn_ops"] + 4.6 * conv1["snn_ops"])
    assert totals["ann_energy_pj"] == pytest.approx(4.6 * (conv1["ann_macs"] + fc["ann_macs"]))


def test_no_counting_without_record_rates():
    x = np.random.default_rng(2).uniform(0, 1, size=(8, 6)).astype(np.float32)
    conv = convert(graphs.gemm_bn(), x, graphs.seed_config())
    assert simulate(conv.network, x, T=4).synaptic_ops == {}


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_sum_leading_matches_torch_sum_in_any_layout(layout):
    from onnx2snn.snn.synops import sum_leading
    x = (torch.rand(6, 5, 3, 4, 7) < 0.3).float()
    x = torch.stack([s.contiguous(memory_format=layout) for s in x.flatten(0, 1)]).view(6, 5, 3, 4, 7) \
        if layout == torch.contiguous_format else x.flatten(0, 1).contiguous(memory_format=layout)
    assert torch.equal(sum_leading(x), x.sum(0))
    assert torch.equal(sum_leading(x.double()), x.double().sum(0)) and sum_leading(x.double()).dtype == torch.float64
