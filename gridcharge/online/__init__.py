"""Online control: a rolling-horizon controller (:class:`Controller`) and a closed-loop simulator
(:func:`simulate`, :func:`compare`). See :mod:`gridcharge.online.controller` and :mod:`gridcharge.online.simulate`."""

from .controller import Cap, Car, Controller, ControllerState, Publication
from .simulate import Noise, SimulationResult, compare, simulate

__all__ = ["Cap", "Car", "Controller", "ControllerState", "Noise", "Publication", "SimulationResult", "compare",
           "simulate"]
