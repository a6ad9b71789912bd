"""The spiking side: neurons, spiking pooling, input encoders and the time-stepped runner."""
from .neurons import IFNeuron, if_step
from .pooling import GatedMaxPool, RunningMaxPool
from .network import SpikingNetwork, SimulationResult

__all__ = ["IFNeuron", "if_step", "GatedMaxPool", "RunningMaxPool", "SpikingNetwork", "SimulationResult"]
