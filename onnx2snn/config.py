"""All conversion and simulation options in one object, with the seed tutorial's defaults.

The key names follow SpikingJelly's 2020 ann2snn config (``parser.robust_norm``,
``simulation.encoder.poisson``, ``simulation.avg_pool.has_neuron``,
``simulation.max_pool.if_spatial_avg|if_wta|momentum``), plus onnx2snn's own keys. A config file
(JSON or TOML) holds any subset of the nested keys; unknown keys and bad values are rejected.
The seed's ``simulation.reset_to_zero`` (None/false: subtract; true: reset to 0; a number: reset to
it) is still read, as ``simulation.reset``, whose values say what they do.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from typing import Optional, Union

from .errors import Onnx2SnnError
from .options import CalibrationOptions, SimulationOptions, SpikingOptions

# Beyond this many time steps rate coding has long converged (the benchmarks stop at 1024) and a run
# takes days: a larger T is a typo.
MAX_T = 100_000


# what an evaluation's labels are (tasks.py measures each); here so that the CLI's --help stays light
TASKS = ("classification", "multilabel", "segmentation", "regression")

@dataclass
class ParserConfig:
    # "search": λ minimises the T-step quantisation error (thresholds.py); "statistic": the seed's
    # rule, λ = the percentile (robust_norm) or the max of each activation
    threshold: str = "search"
    robust_norm: bool = True        # λ = percentile of the activations (True) or their max (False)
    percentile: float = 99.9        # p for robust normalisation, in (0, 100]
    # with threshold "search": one λ per channel of each ReLU (folded into the weights: spikes stay
    # binary); the output layer keeps one λ (argmax). The default since 0.3: at T=32 it brings the
    # PyTorch exporter fixtures from −1.30 to −0.35 points of their ANN, VGG-16 +0.4, MNIST +0.1,
    # ResNet-20 +2.5 at T=8 (docs/BENCHMARKS.md, "Low latency: notes (issue 7)"); false: one λ per layer
    per_channel: bool = True


@dataclass
class CalibrationConfig:
    """Calibration of the SNN for a target T on the calibration images (Li et al., ICML 2021)."""
    T: Optional[int] = None         # target time steps; None: simulation.T
    bias: bool = True               # shift each layer's bias by the mean rate error, per channel
    iterations: int = 2             # bias corrections per layer (each re-runs only that layer's neurons)
    v_init: bool = False            # then also the initial potential of every neuron (Li et al.'s "advanced")
    samples: int = 256              # most fit images the bias calibration simulates (cost and memory)
    # share of the calibration images held back to choose the readout (with the fit images the bias
    # calibration does not simulate)
    holdout: float = 0.2


@dataclass
class EncoderConfig:
    poisson: bool = False           # Poisson spike trains instead of a constant input current


@dataclass
class AvgPoolConfig:
    # IF neurons after average pooling of spikes. Off by default: pooling is linear, so the next layer
    # takes the pooled spikes through its synapses (pool ∘ conv is one conv) and spikes stay binary
    # at every neuron; the extra neurons only add quantisation error (benchmark: +1.5 points at T=16)
    has_neuron: bool = False


@dataclass
class MaxPoolConfig:
    if_spatial_avg: bool = False    # replace max pooling by average pooling
    if_wta: bool = False            # plain max pooling of the spikes (winner takes all)
    momentum: Optional[float] = None  # gate by a momentum-averaged spike count instead of the total
    # "max": output count = the running max of the window's input counts (exact); "gate": pass the
    # spikes of the input with the highest count (the seed's rule; the one momentum applies to)
    rule: str = "max"
    # a max pooling right after the first neurons pools their input current instead, before the
    # neurons (graph/passes.py, pool_before_neurons; not with Poisson input or the seed's
    # if_wta/if_spatial_avg): their threshold and bias are then fitted to the pooled values. Off by
    # default: on the MNIST ResNet fixture it gains 0.4 points at T=32 but loses 1.6 / 1.15 at T=8 / 16
    before_neuron: bool = False


@dataclass
class SimulationConfig:
    T: int = 100                    # time steps
    # after a spike: "subtract" the threshold, or set the potential to this value (a number below 1)
    reset: Union[str, float] = "subtract"
    v_init: float = 0.5             # initial membrane potential / threshold (seed: 0; 0.5 halves the worst-case error)
    # class from the output neurons' spike counts ("spikes"), their membrane potential
    # ("membrane"), or whichever agrees best with the ANN on held-back calibration images ("auto")
    output: str = "auto"
    readout_delay: Optional[int] = None  # output steps skipped before counting; None: chosen with "auto", else 0
    # LeakyReLU as signed IF neurons (+1/-1 spikes, negative threshold θ/alpha: Spiking-YOLO); off: refused
    signed_spikes: bool = False
    dtype: str = "float32"          # weights and currents: float32, or bfloat16/float16 (spikes exact)
    chunk: Optional[int] = None     # time steps per layer call; None: as many as fit in memory
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    avg_pool: AvgPoolConfig = field(default_factory=AvgPoolConfig)
    max_pool: MaxPoolConfig = field(default_factory=MaxPoolConfig)


@dataclass
class Config:
    parser: ParserConfig = field(default_factory=ParserConfig)
    simulation: SimulationConfig = field(default_factory=SimulationConfig)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    seed: int = 0                   # seeds Poisson encoding
    batch_size: int = 100
    device: Optional[str] = None    # None: CUDA when available, else CPU
    # what the output means: "classification", "multilabel" or "segmentation"; None: from the label
    # and output shapes and the output head (tasks.py). Sets the readout choice's and --eval's metric.
    task: Optional[str] = None

    def simulation_options(self) -> SimulationOptions:
        s = self.simulation
        return SimulationOptions(s.T, self.batch_size, self.device, s.encoder.poisson, self.seed, s.chunk, s.dtype)

    def spiking_options(self) -> SpikingOptions:
        """The spiking graph's options (``graph/spiking.py``): neurons, pooling, readout, encoding. An
        "auto" readout is the membrane one until the calibration chooses."""
        s = self.simulation
        return SpikingOptions(s.reset, float(s.v_init), self.max_pool_mode, s.max_pool.momentum, s.avg_pool.has_neuron,
                              "spikes" if s.output == "spikes" else "membrane", int(s.readout_delay or 0),
                              "poisson" if s.encoder.poisson else "current")

    def calibration_options(self) -> CalibrationOptions:
        c = self.calibration
        return CalibrationOptions(self.target_T, c.bias, c.iterations, c.v_init, c.samples, c.holdout, self.holds_out,
                                  self.batch_size, self.device, self.simulation_options(), self.spiking_options())

    # --- validation ------------------------------------------------------------------------
    def validate(self) -> "Config":
        p, s, c = self.parser, self.simulation, self.calibration
        _check(p.threshold in ("search", "statistic"), "parser.threshold", p.threshold, '"search" or "statistic"')
        _check(isinstance(p.robust_norm, bool), "parser.robust_norm", p.robust_norm, "true or false")
        _check(isinstance(p.per_channel, bool), "parser.per_channel", p.per_channel, "true or false")
        _check(_is_finite(p.percentile) and 0 < p.percentile <= 100, "parser.percentile",
               p.percentile, "a number in (0, 100]")
        _check(_is_int(s.T) and 1 <= s.T <= MAX_T, "simulation.T", s.T, f"an integer in [1, {MAX_T}]")
        _check(s.reset == "subtract" or (_is_finite(s.reset) and s.reset < 1), "simulation.reset", s.reset,
               '"subtract" or a finite reset value below the threshold 1 (a neuron reset at or above it fires forever)')
        _check(_is_finite(s.v_init), "simulation.v_init", s.v_init, "a finite number (a fraction of the threshold)")
        _check(s.output in ("auto", "spikes", "membrane"), "simulation.output", s.output,
               '"auto", "spikes" or "membrane"')
        _check(s.readout_delay is None or (_is_int(s.readout_delay) and s.readout_delay >= 0),
               "simulation.readout_delay", s.readout_delay, "null or an integer >= 0")
        _check(c.T is None or (_is_int(c.T) and 1 <= c.T <= MAX_T), "calibration.T", c.T,
               f"null or an integer in [1, {MAX_T}]")
        _check(isinstance(c.bias, bool), "calibration.bias", c.bias, "true or false")
        _check(isinstance(c.v_init, bool), "calibration.v_init", c.v_init, "true or false")
        _check(_is_int(c.iterations) and c.iterations >= 1, "calibration.iterations", c.iterations, "an integer >= 1")
        _check(_is_int(c.samples) and c.samples >= 1, "calibration.samples", c.samples, "an integer >= 1")
        _check(_is_finite(c.holdout) and 0 < c.holdout < 1, "calibration.holdout", c.holdout, "a number in (0, 1)")
        _check(s.dtype in ("float32", "bfloat16", "float16"), "simulation.dtype", s.dtype,
               '"float32", "bfloat16" or "float16"')
        _check(s.chunk is None or (_is_int(s.chunk) and s.chunk >= 1), "simulation.chunk", s.chunk,
               "null or an integer >= 1")
        _check(isinstance(s.signed_spikes, bool), "simulation.signed_spikes", s.signed_spikes, "true or false")
        _check(isinstance(s.encoder.poisson, bool), "simulation.encoder.poisson", s.encoder.poisson, "true or false")
        _check(isinstance(s.avg_pool.has_neuron, bool), "simulation.avg_pool.has_neuron",
               s.avg_pool.has_neuron, "true or false")
        mp = s.max_pool
        _check(isinstance(mp.if_spatial_avg, bool), "simulation.max_pool.if_spatial_avg", mp.if_spatial_avg, "true or false")
        _check(isinstance(mp.if_wta, bool), "simulation.max_pool.if_wta", mp.if_wta, "true or false")
        _check(not (mp.if_wta and mp.if_spatial_avg), "simulation.max_pool", "if_wta and if_spatial_avg",
               "at most one of if_wta, if_spatial_avg")
        _check(isinstance(mp.before_neuron, bool), "simulation.max_pool.before_neuron", mp.before_neuron,
               "true or false")
        _check(mp.rule in ("max", "gate"), "simulation.max_pool.rule", mp.rule, '"max" or "gate"')
        _check(mp.momentum is None or (_is_number(mp.momentum) and 0 <= mp.momentum <= 1),
               "simulation.max_pool.momentum", mp.momentum, "null or a number in [0, 1]")
        _check(_is_int(self.seed) and 0 <= self.seed < 2 ** 63, "seed", self.seed, "an integer in [0, 2**63)")
        _check(_is_int(self.batch_size) and self.batch_size >= 1, "batch_size", self.batch_size, "an integer >= 1")
        _check(self.device is None or isinstance(self.device, str), "device", self.device, 'null or a device such as "cpu"')
        _check(self.task is None or self.task in TASKS, "task", self.task,
               "null or one of " + ", ".join(f'"{t}"' for t in TASKS))
        return self

    @property
    def max_pool_mode(self) -> str:
        mp = self.simulation.max_pool
        if mp.if_spatial_avg or mp.if_wta:  # the seed's switches win
            return "avg" if mp.if_spatial_avg else "wta"
        return "gate" if mp.momentum is not None else mp.rule  # momentum only means something to the gate

    @property
    def pools_currents(self) -> bool:
        """Is a max pooling of the first neurons moved before them, onto their constant input current?"""
        mp = self.simulation.max_pool
        return mp.before_neuron and not self.simulation.encoder.poisson and not (mp.if_wta or mp.if_spatial_avg)

    @property
    def target_T(self) -> int:
        """The T the thresholds and the calibration are chosen for."""
        return self.calibration.T or self.simulation.T

    @property
    def snn_calibration(self) -> bool:
        """Does the conversion simulate the SNN on calibration images (bias calibration, readout choice)?"""
        return self.calibration.bias or self.simulation.output == "auto"

    @property
    def holds_out(self) -> bool:
        """Is part of the calibration array held back? Whenever anything is fitted for the target T
        — so that re-converting with a run's resolved config (output chosen) fits on the same images."""
        return self.snn_calibration or self.parser.threshold == "search"

    # --- (de)serialisation -----------------------------------------------------------------
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    @classmethod
    def from_dict(cls, data: dict) -> "Config":
        cfg = cls()
        _merge(cfg, data, "")
        return cfg.validate()

    @classmethod
    def load(cls, path: str) -> "Config":
        """Read a JSON (``.json``) or TOML (``.toml``) config file."""
        if not os.path.isfile(path):
            raise Onnx2SnnError(f"config file {path!r} does not exist")
        try:
            if path.endswith(".toml"):
                import tomllib
                with open(path, "rb") as f:
                    data = tomllib.load(f)
            else:
                with open(path) as f:
                    data = json.load(f)
        except Exception as e:  # the parsers' messages name line and column
            raise Onnx2SnnError(f"config file {path!r} is not valid {'TOML' if path.endswith('.toml') else 'JSON'}: {e}") from None
        if not isinstance(data, dict):
            raise Onnx2SnnError(f"config file {path!r}: expected a table of options, got {type(data).__name__}")
        try:
            return cls.from_dict(data)
        except Onnx2SnnError as e:
            raise Onnx2SnnError(f"config file {path!r}: {e}") from None

    def save(self, path: str) -> None:
        with open(path, "w") as f:
            f.write(self.to_json() + "\n")

    def set(self, key: str, value) -> None:
        """Set one dotted key, e.g. ``cfg.set("simulation.max_pool.momentum", 0.9)``."""
        *parents, leaf = key.split(".")
        data = value
        for k in reversed([*parents, leaf]):
            data = {k: data}
        _merge(self, data, "")


def _reset_from_seed_key(value):
    """The seed's ``reset_to_zero`` as ``reset``: None/false subtract, true 0, a number itself."""
    if value is None or value is False:
        return "subtract"
    return 0.0 if value is True else value


# Keys of earlier versions and of the seed, read as today's: (section, old key) -> (new key, translation)
LEGACY_KEYS = {("simulation.", "reset_to_zero"): ("reset", _reset_from_seed_key)}


def _merge(obj, data: dict, prefix: str) -> None:
    names = {f.name for f in dataclasses.fields(obj)}
    for key, value in data.items():
        if (prefix, key) in LEGACY_KEYS:
            key, translate = LEGACY_KEYS[(prefix, key)]
            value = translate(value)
        path = prefix + key
        if key not in names:
            raise Onnx2SnnError(f"unknown config key {path!r}; known keys at this level: {', '.join(sorted(names))}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise Onnx2SnnError(f"config key {path!r} is a section; expected a table, got {value!r}")
            _merge(current, value, path + ".")
        else:
            setattr(obj, key, value)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_finite(v) -> bool:
    return _is_number(v) and math.isfinite(v)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


class InvalidConfigValue(Onnx2SnnError):
    """A config value outside what its key takes; ``key``, ``value`` and ``expected`` let the CLI
    name the flag the user typed instead of the key."""

    def __init__(self, key: str, value, expected: str):
        super().__init__(f"invalid config value {key} = {value!r}: expected {expected}")
        self.key, self.value, self.expected = key, value, expected


def _check(ok: bool, key: str, value, expected: str) -> None:
    if not ok:
        raise InvalidConfigValue(key, value, expected)
