"""Online control: a rolling-horizon controller (:class:`Controller`, a facade of events over explicit state) and a
closed-loop simulator (:func:`simulate`, :func:`compare`)."""

from .controller import Controller
from .simulate import Noise, SimulationResult, compare, simulate
from .state import Cap, Car, ControllerOptions, ControllerState, Day, Expected, LogEntry, Publication, Timings
from .window import Window

__all__ = ["Cap", "Car", "Controller", "ControllerOptions", "ControllerState", "Day", "Expected", "LogEntry", "Noise",
           "Publication", "SimulationResult", "Timings", "Window", "compare", "simulate"]
