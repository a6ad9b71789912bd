"""The time-stepped spiking network and its runner.

A ``SpikingNetwork`` is a list of ``Step``s (``network.steps``) in topological order, each a torch
module with named input and output tensors. A number of time steps is always ``T`` (the whole
simulation) or ``n_steps`` (one chunk). Time is processed in chunks of ``chunk`` steps:

* stateless modules (conv, linear, pooling, reshape) run once per chunk on the chunk's steps folded
  into the batch dimension, ``[n_steps·B, ...]``;
* stateful modules (IF neurons, gated max pooling; ``module.stateful``) see ``[n_steps, B, ...]`` and
  carry their state from chunk to chunk.

A tensor that is the same at every step (the constant input current, and everything computed from
it before the first neurons) is kept as one ``[B, ...]`` tensor and computed once per sample
batch, not once per step. ``chunk=1`` is the plain step loop; ``chunk=T`` is fully layer-by-layer;
results are identical whatever the chunk.
"""
from __future__ import annotations

import contextlib
import copy
import math
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from ..options import SimulationOptions
from ..errors import Onnx2SnnError
from ..graph.spiking import InputEncoding
from ..tasks import Task, metrics_from_counts
from . import cpu_memory
from .synops import EventCounter, synaptic_operations, weighted_layer


# Memory per chunk of time steps (auto_chunk): each step's tensors are counted TEMPORARIES times
# (outputs and the temporaries that make them); a chunk may take 1/GPU_CHUNK_SHARE of the free GPU
# memory, or CPU_CHUNK_BUDGET on CPU, where small chunks stay in cache (measured: no gain from larger).
TEMPORARIES = 2
GPU_CHUNK_SHARE = 4
CPU_CHUNK_BUDGET = 256 << 20
CHECK_BLOCK = 4096  # samples read at a time when checking a (memory-mapped) input's range
CLASSIFICATION = Task("classification", ())


HEADS = {"Sigmoid": torch.sigmoid, "Tanh": torch.tanh}    # a dropped head, applied to a regression's estimate


def step_counts(cum: torch.Tensor, labels: torch.Tensor, task: Task, counted: Optional[torch.Tensor] = None,
                scale: float = 1.0, head: Optional[str] = None) -> torch.Tensor:
    """``tasks.counts`` of every step's accumulated readout ``cum`` (steps, batch, features) at
    once: (steps,) correct decisions, (steps, C, C) confusion matrices, or (steps, 2) sums of
    squared error and squared target of a regression, whose estimate is the readout per step
    ``counted`` (steps, the readout's steps so far) times the output ``scale``, ``head`` applied."""
    if task.kind == "regression":
        estimate = cum.double() * (scale / counted.clamp(min=1).double()).view(-1, 1, 1)
        if head is not None:
            estimate = _head(estimate, head, task.output_shape)
        y = labels.reshape(1, labels.shape[0], -1).double()
        error = ((estimate - y) ** 2).sum((1, 2))
        return torch.stack([error, (y ** 2).sum().expand_as(error)], 1)
    if task.kind == "classification":
        return (cum.argmax(-1) == labels).sum(1)
    if task.kind == "multilabel":
        return ((cum > 0).long() == labels.unsqueeze(0)).sum((1, 2))
    steps, c = cum.shape[0], task.classes
    predicted = cum.reshape(steps, cum.shape[1], c, -1).argmax(2)                 # (steps, batch, pixels)
    index = labels.reshape(1, labels.shape[0], -1).long() * c + predicted
    index = index + (torch.arange(steps, device=cum.device) * c * c).view(-1, 1, 1)
    return torch.bincount(index.reshape(-1), minlength=steps * c * c).reshape(steps, c, c)


def _head(estimate: torch.Tensor, head: str, shape) -> torch.Tensor:
    if head in HEADS:
        return HEADS[head](estimate)
    steps, b = estimate.shape[:2]            # Softmax / LogSoftmax over the output's axis 1
    per_class = estimate.reshape(steps, b, shape[0] if shape else 1, -1)
    f = torch.log_softmax if head == "LogSoftmax" else torch.softmax
    return f(per_class, 2).reshape(estimate.shape)


def batch_score(last: np.ndarray, task: Task, b: int) -> float:
    """A batch's headline count in samples (for the progress bar): correct samples, or the metric × b."""
    if task.kind == "classification":
        return int(last)
    return float(metrics_from_counts(last, b, task)[task.metric if task.kind != "segmentation" else "pixel_accuracy"]) * b


@dataclass
class Step:
    name: str               # the ONNX node it comes from (plus a suffix for inserted neurons)
    op: str                 # the ONNX op type, for reports
    inputs: List[str]
    output: str
    shape: Optional[tuple] = None   # the output's per-sample shape, where known (for listings)


@dataclass
class SimulationResult:
    T: int
    n_samples: int
    # with labels: what the task counts after each step, (T,) correct decisions (classification,
    # multilabel) or (T, C, C) confusion matrices (segmentation); ``task`` says which (tasks.py)
    correct_per_step: Optional[np.ndarray]
    outputs: np.ndarray                       # (N, classes) accumulated readout after T steps
    firing_rates: Dict[str, float]            # mean spikes per neuron per step, per neuron layer
    step_outputs: Optional[np.ndarray] = None  # (T, N, classes) readout increment of every step, if recorded
    # per weighted layer, with record_rates: SNN operations per inference (ACs, or MACs of the constant
    # input) and the ANN's MACs (snn/synops.py)
    synaptic_ops: Dict[str, dict] = field(default_factory=dict)
    task: Optional[Task] = None                # what the labels are (None: class labels)

    @property
    def metrics_per_step(self) -> Optional[Dict[str, np.ndarray]]:
        """Every metric of the task after each step (segmentation: mean IoU and pixel accuracy)."""
        if self.correct_per_step is None:
            return None
        return metrics_from_counts(self.correct_per_step, self.n_samples, self.task or CLASSIFICATION)

    @property
    def accuracy_per_step(self) -> Optional[np.ndarray]:
        """The task's headline metric after each step: accuracy, mean label accuracy or mean IoU."""
        metrics = self.metrics_per_step
        return None if metrics is None else metrics[(self.task or CLASSIFICATION).metric]

    @property
    def accuracy(self) -> Optional[float]:
        per_step = self.accuracy_per_step
        return None if per_step is None else float(per_step[-1])


class SpikingNetwork(nn.Module):
    """A spiking network lowered from an ONNX graph; see the module docstring for the runner."""

    def __init__(self, steps: Sequence[Step], modules: Sequence[nn.Module], input_name: str,
                 output_name: str, elements_per_sample: int, readout_delay: int = 0,
                 encoding: Optional[InputEncoding] = None):
        super().__init__()
        self.steps = list(steps)
        self.layers = nn.ModuleList(modules)
        self.input_name, self.output_name = input_name, output_name
        self.elements_per_sample = max(1, int(elements_per_sample))  # all tensors of one step, one sample
        # Output steps the readout skips: the Readout node's ``delay``, so any simulate() call reads
        # the network out as it was calibrated.
        self.readout_delay = int(readout_delay)
        # What the readout stands for (a regression's estimate): the original output is the readout
        # per step times ``output_scale``, then ``output_head`` (Sigmoid, Tanh, …; the Readout's ``head``).
        self.output_scale, self.output_head = 1.0, None
        # The input it takes (graph/spiking.py's record): simulate() refuses Poisson input where it
        # would run another network than the one converted.
        self.encoding = encoding or InputEncoding()
        self.defaults = SimulationOptions()   # what api.simulate runs with when given no config
        self.requires_grad_(False)  # an inference runtime: no autograd bookkeeping
        self._weighted = {i for i, m in enumerate(self.layers) if weighted_layer(m) is not None}
        from .neurons import SignedIFNeuron
        first_signed = next((i for i, m in enumerate(self.layers) if isinstance(m, SignedIFNeuron)), len(self.layers))
        self._after_signed = {i for i in self._weighted if i > first_signed}   # may see −1 spikes
        self.fuse_pooling = True   # False: neurons and the pooling after them run apart (tests compare)
        self._counter: Optional[EventCounter] = None   # set while a simulation counts synaptic operations
        self._input_shapes: Dict[int, tuple] = {}
        # Free each tensor after its last use, so a chunk holds only the live activations.
        last_use = {}
        for i, step in enumerate(self.steps):
            for name in step.inputs:
                last_use[name] = i
        self._free_after = [[n for n in dict.fromkeys(step.inputs) if last_use[n] == i and n != output_name]
                            for i, step in enumerate(self.steps)]
        # Steps whose output only the next step reads: where they are IF neurons and the next a
        # pooling with non-overlapping windows (average, or the running max of counts), the runner
        # asks the neurons for the pooled spikes in one pass (IFNeuron.forward_pooled: Numba on CPU,
        # Triton on CUDA).
        self._read_only_by_next = {i for i, (step, nxt) in enumerate(zip(self.steps, self.steps[1:]))
                                   if nxt.inputs == [step.output] and last_use[step.output] == i + 1
                                   and step.output != output_name}

    # --- listing ---------------------------------------------------------------------------
    def __repr__(self) -> str:
        """One line per step: op, output shape, its module (neuron parameters), λ where a weighted
        layer was rescaled, and for IF neurons the code path their last chunk took (Numba or Triton
        kernel, fused with the pooling after it or not, or the torch loop: ``kernels.py`` chooses
        per chunk) — the seed printed the SNN's structure; ``print(network)`` shows this."""
        from ..graph.annotate import format_scale
        lambdas = {l.node: format_scale(l.lambda_out) for l in getattr(self, "layer_scales", None) or []}
        rows = [("step", "op", "output shape", "module", "λ", "code path (last run)")]
        for step, module in zip(self.steps, self.layers):
            extra = module.extra_repr().replace("\n", " ")
            text = f"{type(module).__name__}({extra})" if extra else type(module).__name__
            rows.append((step.name, step.op, "×".join(map(str, step.shape)) if step.shape else "?",
                         text if len(text) <= 72 else text[:69] + "...",
                         lambdas.get(step.name, ""), getattr(module, "path", "")))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = [f"SpikingNetwork: {self.input_name!r} -> {self.output_name!r}, {len(self.steps)} steps, "
                 f"{len(self.neuron_layers())} layers of IF neurons, readout delay {self.readout_delay}"]
        lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
        return "\n".join(lines)

    # --- state ---------------------------------------------------------------------------
    def reset(self) -> None:
        """Before a new batch of samples: forget the neuron state."""
        for m in self.layers:
            if getattr(m, "stateful", False):
                m.reset()

    def neuron_layers(self) -> Dict[str, nn.Module]:
        from .neurons import IFNeuron
        return {s.name: m for s, m in zip(self.steps, self.layers) if isinstance(m, IFNeuron)}

    # --- one chunk ---------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, n_steps: int, static: bool) -> torch.Tensor:
        """Run ``n_steps`` time steps. ``x``: the input ``[n_steps, B, ...]``, or ``[B, ...]`` when
        ``static`` (the same at every step). Returns the readout increments ``[n_steps, B, classes]``."""
        batch = x.shape[0] if static else x.shape[1]
        env = {self.input_name: (x if static else x.flatten(0, 1), static)}
        # Tensors that are the same at every step are computed once per input, not once per chunk:
        # cached while the same static input tensor comes back for the next chunk.
        if not (static and getattr(self, "_cache_input", None) is x):
            self._cache_input, self._static_cache = (x if static else None), {}
        cache = self._static_cache
        fused = None   # the pooling step whose output a fused neuron step already wrote
        for i, (step, module, dead) in enumerate(zip(self.steps, self.layers, self._free_after)):
            if i == fused:
                continue
            args = [env[name] for name in step.inputs]
            for name in dead:
                del env[name]
            if getattr(module, "expectation", False):     # an analog op on running means (expectation.py)
                if self._counter is not None:
                    self._counter.add_analog(i, n_steps * batch, all(s for _, s in args))
                    self._input_shapes[i] = tuple(step.shape or ())
                if all(s for _, s in args):               # constant inputs: f of them, every step
                    if i not in cache:
                        cache[i] = module.constant(*[v for v, _ in args])
                    env[step.output] = (cache[i], True)
                    continue
                values = [v.unsqueeze(0).expand(n_steps, *v.shape) if s else v.view(n_steps, batch, *v.shape[1:])
                          for v, s in args]
                env[step.output] = (module(*values, n_steps=n_steps).flatten(0, 1), False)
                continue
            if getattr(module, "stateful", False):
                (value, is_static), = args
                if not is_static:
                    value = value.view(n_steps, batch, *value.shape[1:])
                pooled = self._pooled_spikes(i, module, value, n_steps, is_static)
                if pooled is not None:
                    fused = i + 1
                    env[self.steps[fused].output] = (pooled.flatten(0, 1), False)
                    continue
                env[step.output] = (module(value, n_steps, static=is_static).flatten(0, 1), False)
            else:
                if self._counter is not None and i in self._weighted:
                    self._counter.add(i, *args[0])
                    self._input_shapes[i] = tuple(args[0][0].shape[1:])
                if all(s for _, s in args):  # the same at every step: computed once per batch
                    if i not in cache:
                        cache[i] = module(*[v for v, _ in args])
                    env[step.output] = (cache[i], True)
                else:  # mixed: a static operand is repeated over the chunk's steps
                    values = [v if not s else v.unsqueeze(0).expand(n_steps, *v.shape).flatten(0, 1)
                              for v, s in args]
                    env[step.output] = (module(*values), False)
        out, is_static = env[self.output_name]
        if is_static:
            return out.unsqueeze(0).expand(n_steps, *out.shape)
        return out.view(n_steps, batch, *out.shape[1:])

    def _pooled_spikes(self, i, module, value, n_steps, is_static) -> Optional[torch.Tensor]:
        """The output of the pooling after neurons ``i``, fused with them, or None."""
        # (getattr: a network pickled by an older version has neither attribute)
        pool = self.layers[i + 1] if i in getattr(self, "_read_only_by_next", ()) else None
        if (not getattr(self, "fuse_pooling", True) or not hasattr(module, "forward_pooled")   # neurons, or the
                or getattr(pool, "fusable_window", None) is None):        # bias calibration's stand-in for them
            return None
        return module.forward_pooled(value, n_steps, is_static, pool)

    # --- the whole simulation ---------------------------------------------------------------
    def auto_chunk(self, T: int, batch: int, device: torch.device, budget: Optional[int] = None,
                   element_size: int = 4) -> int:
        """Steps per chunk: as many as fit a memory budget (``budget`` bytes; default a quarter of
        the GPU memory that is free or cached by torch, ``CPU_CHUNK_BUDGET`` on CPU), counting every
        tensor of a step twice for temporaries; then evened out so that all chunks but the last
        have one size (new shapes cost cuDNN a new algorithm search)."""
        if budget is None and device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
            budget = (free + cached) // GPU_CHUNK_SHARE
        elif budget is None:
            budget = CPU_CHUNK_BUDGET
        per_step = TEMPORARIES * element_size * self.elements_per_sample * batch
        most = int(max(1, min(T, budget // per_step)))
        return -(-T // -(-T // most))  # ceil(T / number of chunks)

    @torch.no_grad()
    def simulate(self, x: np.ndarray, T: int, labels: Optional[np.ndarray] = None, *, batch_size: int = 100,
                 device=None, poisson: bool = False, seed: int = 0, chunk: Optional[int] = None,
                 dtype: str = "float32", record_rates: bool = False, channels_last: Optional[bool] = None,
                 progress: Optional[Callable[[int, Optional[int]], None]] = None, readout_delay: Optional[int] = None,
                 record_steps: bool = False, shard: Optional[Tuple[int, int]] = None,
                 task: Optional[Task] = None) -> SimulationResult:
        """Simulate every sample of ``x`` for ``T`` steps; accuracy after each step if ``labels``.

        The options are keyword-only. Their dataclass is ``Config.simulation`` (with ``batch_size``,
        ``device`` and ``seed`` beside it): ``onnx2snn.simulate(network, x, labels, config=...)``
        maps a config onto them; this runtime method takes them directly, so that a network loaded
        without a config runs too.

        ``dtype``: "float32", or "bfloat16"/"float16" for weights and currents (spikes are exactly
        0/1 in any format; membrane potentials stay float32; a reduced-precision copy of the
        network runs, this one keeps its float32 weights). ``record_rates``: count spikes per
        layer of neurons (``firing_rates``) and input events per weighted layer (``synaptic_ops``).
        ``channels_last``: NHWC memory layout for 2-D
        convolutions (default: on CUDA, where tensor-core kernels want it, and on CPU, where oneDNN
        runs convolutions and pooling several times faster in it). The chunk size is
        chosen once, for the first batch, so that every batch runs the same shapes. ``progress(n,
        correct)`` is called after each batch with its number of samples and, with labels, how many
        of them were classified right after T steps (else None). ``readout_delay``: for this call
        only, the readout ignores these first steps instead of the network's own (the Readout
        node's; the calibration's readout choice records with 0). ``record_steps``: also return
        every step's readout increment (memory T·N·classes). ``shard=(rank, world)``: under
        torch.distributed, simulate only batches rank, rank+world, … and sum the counts over the
        ranks, so that every rank returns what one process would (``distributed.py``). ``task``: what
        ``labels`` are (``tasks.py``: class labels by default, multi-label 0/1 targets, or class maps
        for a (C, H, W) output); the result's ``accuracy_per_step`` is its headline metric."""
        if shard is not None and record_steps:
            raise ValueError("record_steps is not available with shard")
        if poisson and self.encoding.poisson_refused:
            raise Onnx2SnnError(self.encoding.poisson_refused)
        if poisson:
            _check_unit_interval(x)
        device = resolve_device(device)
        dt = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
        if channels_last is None:
            channels_last = device.type in ("cuda", "cpu")
        task = task or CLASSIFICATION
        run = _Run(T, task, labels is not None, self.readout_delay if readout_delay is None else readout_delay,
                   record_steps, self.output_scale, self.output_head)
        n = len(x)
        with self._prepared(device, dt, channels_last, record_rates) as net:
            tc = chunk or net.auto_chunk(T, min(batch_size, n), device, element_size=torch.finfo(dt).bits // 8)
            gen = torch.Generator(device=device)
            rank, world = shard or (0, 1)
            for index, start in enumerate(range(0, n, batch_size)):
                if index % world != rank:
                    continue
                if poisson:   # seeded per batch: the spikes do not depend on which process runs the batch
                    gen.manual_seed(batch_seed(seed, index))
                batch = np.asarray(x[start:start + batch_size])
                if not batch.flags.writeable:  # a memory-mapped array: torch wants memory it may write
                    batch = batch.copy()
                xb = torch.as_tensor(batch, device=device).to(dt)
                if channels_last and xb.dim() == 4:
                    xb = xb.contiguous(memory_format=torch.channels_last)
                yb = torch.as_tensor(labels[start:start + len(xb)], device=device) if labels is not None else None
                batch_correct = run.batch(net, index, xb, yb, tc, gen if poisson else None)
                if progress is not None:   # with shards: this rank's batch and the others' beside it
                    progress(min(n, start + world * batch_size) - start if world > 1 else len(xb), batch_correct)
            return run.result(net, n, record_rates, world)

    @contextlib.contextmanager
    def _prepared(self, device: torch.device, dt: torch.dtype, channels_last: bool, record_rates: bool):
        """The network to simulate with: this one on ``device`` for float32 (no copy of the weights),
        else a reduced-precision copy; convolutions in the chosen memory layout, counters zeroed.
        Afterwards the caller's network is as it was (its device, its layout), holding no batch."""
        home = next(iter(self.state_dict().values()), torch.empty(0)).device
        net = self.to(device) if dt == torch.float32 else copy.deepcopy(self).to(device=device, dtype=dt)
        memory = contextlib.ExitStack()
        if device.type == "cpu":   # reuse freed chunk buffers instead of page-faulting fresh ones
            memory.enter_context(cpu_memory.keep_freed_memory())
        try:
            net.eval()
            layout = torch.channels_last if channels_last else torch.contiguous_format
            for m in net.modules():
                if isinstance(m, nn.Conv2d):
                    m.to(memory_format=layout)
            for m in net.neuron_layers().values():
                m.reset_stats()
                m.count_spikes = record_rates
            net._counter = EventCounter(net._after_signed) if record_rates else None
            yield net
        finally:
            net._counter = None
            net._cache_input, net._static_cache = None, {}  # hold no batch after returning
            memory.close()
            if net is self:
                self.to(home)
                for m in self.modules():
                    if isinstance(m, nn.Conv2d):
                        m.to(memory_format=torch.contiguous_format)


class _Run:
    """One simulate() call's batch loop state: the task's counts per step, the outputs, the recorded
    steps — added up batch by batch, then turned into the ``SimulationResult``."""

    def __init__(self, T: int, task: Task, labelled: bool, readout_delay: int, record_steps: bool,
                 output_scale: float, output_head: Optional[str]):
        self.T, self.task, self.delay, self.record_steps = T, task, readout_delay, record_steps
        self.scale, self.head = output_scale, output_head
        per_step_shape = {"segmentation": (T, task.classes, task.classes), "regression": (T, 2)}.get(task.kind, (T,))
        self.count_type = np.float64 if task.kind == "regression" else np.int64
        self.correct = np.zeros(per_step_shape, self.count_type) if labelled else None
        self.outputs: List[Tuple[int, np.ndarray]] = []
        self.step_outputs: List[np.ndarray] = []

    def batch(self, net: "SpikingNetwork", index: int, xb: torch.Tensor, yb: Optional[torch.Tensor], tc: int,
              gen: Optional[torch.Generator]) -> Optional[float]:
        """Simulate one batch for T steps in chunks of ``tc`` (Poisson input where ``gen``); returns
        its headline count for the progress bar (None without labels)."""
        T, b, device = self.T, xb.shape[0], xb.device
        net.reset()
        total, hits, steps = None, [] if yb is not None else None, []
        for t0 in range(0, T, tc):
            n_steps = min(tc, T - t0)
            if gen is not None:
                inp = (torch.rand((n_steps, *xb.shape), generator=gen, device=device) < xb).to(xb.dtype)
                out = net(inp, n_steps, static=False)
            else:
                out = net(xb, n_steps, static=True)
            out = out.reshape(n_steps, b, -1).float()
            if t0 < self.delay:  # not in place: ``out`` may be a view of a cached tensor
                out = out * (torch.arange(t0, t0 + n_steps, device=device) >= self.delay).view(-1, 1, 1)
            if self.record_steps:
                steps.append(out.cpu().numpy())
            cum = torch.cumsum(out, 0) if total is None else total + torch.cumsum(out, 0)
            total = cum[-1]
            if hits is not None:
                counted = (torch.arange(t0 + 1, t0 + n_steps + 1, device=device) - self.delay).clamp(min=0)
                hits.append(step_counts(cum, yb, self.task, counted, self.scale, self.head))
        self.outputs.append((index, total.cpu().numpy()))
        if self.record_steps:
            self.step_outputs.append(np.concatenate(steps, 0))   # [T, b, K]
        if hits is None:
            return None
        per_step = torch.cat(hits).cpu().numpy().astype(self.count_type)
        self.correct += per_step
        return batch_score(per_step[-1], self.task, b)

    def result(self, net: "SpikingNetwork", n: int, record_rates: bool, world: int) -> SimulationResult:
        correct, outputs = self.correct, self.outputs
        if world > 1:
            correct, outputs = _reduce_shards(net, correct, outputs, record_rates)
        rates = ({name: float(m.spike_count) / max(1, m.neuron_steps) for name, m in net.neuron_layers().items()}
                 if record_rates else {})
        synops = synaptic_operations(net, net._counter, n, net._input_shapes) if record_rates else {}
        steps_array = np.concatenate(self.step_outputs, 1) if self.record_steps else None   # (T, N, K)
        outputs = np.concatenate([o for _, o in sorted(outputs, key=lambda io: io[0])])
        return SimulationResult(self.T, n, correct, outputs, rates, steps_array, synops,
                                None if self.task is CLASSIFICATION else self.task)


def batch_seed(seed: int, index: int) -> int:
    """The Poisson generator's seed for batch ``index`` (independent streams per batch)."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1, np.uint64)[0] >> 1)


def _reduce_shards(net, correct, outputs, record_rates):
    """Sum what the ranks counted (correct per step, spikes, synaptic events); gather the outputs."""
    from .. import distributed
    if correct is not None:
        correct = distributed.all_reduce_sum(correct)     # (int64 counts, or float64 sums)
    if record_rates:
        for m in net.neuron_layers().values():
            totals = distributed.all_reduce_sum(np.array([float(m.spike_count), float(m.neuron_steps)]))
            m.spike_count, m.neuron_steps = totals[0], int(totals[1])
        counter = net._counter
        for i in sorted(counter.static):
            if not counter.static[i]:
                counter.events[i] = torch.as_tensor(
                    distributed.all_reduce_sum(counter.events[i].double().cpu().numpy()))
    outputs = [item for part in distributed.all_gather(outputs) for item in part]
    return correct, outputs


def resolve_device(device: Optional[str]) -> torch.device:
    """The torch device to simulate on (default: CUDA when available), or a one-line error for one
    this machine cannot run: a typo, ``meta`` (no data), MPS or a CUDA index that is not there."""
    try:
        dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    except (RuntimeError, TypeError) as e:
        raise Onnx2SnnError(f"invalid device {device!r}: {str(e).splitlines()[0]}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise Onnx2SnnError(f"device {str(dev)!r} asked for, but this torch sees no CUDA device (use --device cpu)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise Onnx2SnnError(f"device {str(dev)!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise Onnx2SnnError(f"device {str(dev)!r}: MPS is not available on this machine (use --device cpu)")
    elif dev.type != "cpu":
        raise Onnx2SnnError(f"device {str(dev)!r}: onnx2snn simulates on cpu, cuda or mps")
    return dev


def _check_unit_interval(x: np.ndarray) -> None:
    lo, hi = math.inf, -math.inf
    for start in range(0, len(x), CHECK_BLOCK):
        block = np.asarray(x[start:start + CHECK_BLOCK])
        lo, hi = min(lo, float(block.min())), max(hi, float(block.max()))
    if lo < 0 or hi > 1:
        raise Onnx2SnnError(f"Poisson encoding needs inputs in [0, 1]; the data spans [{lo:.4g}, {hi:.4g}] "
                            "(use constant-current input, or rescale the data and the first layer)")
