"""The small option objects the pipeline's parts take, built once from a ``Config`` at the top
(``api``, ``cli``): the spiking graph's (``SpikingOptions``), the runtime's (``SimulationOptions``)
and the SNN calibration's (``CalibrationOptions``). Plain frozen dataclasses, importing nothing
heavy, so that any layer may take them."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Union


@dataclass(frozen=True)
class SpikingOptions:
    """What turns a normalised graph into a spiking one; ``Config.spiking_options()`` builds it
    (the defaults are ``Config()``'s)."""
    reset: Union[str, float] = "subtract"   # "subtract" the threshold after a spike, or reset to this value
    v_init: float = 0.5                     # initial potential, a fraction of the threshold
    max_pool_rule: str = "max"              # SpikeMaxPool rule: max, gate, wta or avg
    momentum: Optional[float] = None        # the gate's momentum
    avg_pool_neurons: bool = False          # IF neurons after average pooling of spikes
    readout: str = "membrane"               # "membrane" or "spikes"
    readout_delay: int = 0                  # first steps the readout skips
    encoding: str = "current"               # the input it is converted for: "current" or "poisson"
    head: Optional[str] = None              # the output op the conversion dropped (graph/ops.py HEADS)


@dataclass(frozen=True)
class SimulationOptions:
    """The runtime's options (``Config.simulation_options``, the one mapping from a config): a
    network keeps them as its defaults (``network.defaults``), and
    ``network.simulate(x, T, labels, **options.kwargs())`` runs with them."""
    T: int = 100
    batch_size: int = 100
    device: Optional[str] = None
    poisson: bool = False
    seed: int = 0
    chunk: Optional[int] = None
    dtype: str = "float32"

    def kwargs(self, **overrides) -> dict:
        """``SpikingNetwork.simulate``'s keyword arguments (all but T), with ``overrides``."""
        out = {k: getattr(self, k) for k in ("batch_size", "device", "poisson", "seed", "chunk", "dtype")}
        out.update(overrides)
        return out


@dataclass(frozen=True)
class CalibrationOptions:
    """What the SNN calibration (``snn_calibration.py``) needs, built once by
    ``Config.calibration_options``: the target T, the calibration's own options, and the simulation
    and neuron options of the network it simulates."""
    T: int = 100
    bias: bool = True
    iterations: int = 2
    v_init_maps: bool = False           # potential calibration (a per-neuron v_init) as well
    samples: int = 256
    holdout: float = 0.2
    holds_out: bool = True              # is part of the calibration array held back (Config.holds_out)
    batch_size: int = 100
    device: Optional[str] = None
    simulation: SimulationOptions = field(default_factory=SimulationOptions)
    neurons: SpikingOptions = field(default_factory=SpikingOptions)
