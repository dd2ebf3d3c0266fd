"""Journey definitions: the YAML format, its checks, and compiled conditions."""

from .conditions import Facts, Predicate, compile_condition
from .loader import JourneyError, Problem, load_journey, load_journey_file
from .model import Journey

__all__ = [
    "Facts",
    "Journey",
    "JourneyError",
    "Predicate",
    "Problem",
    "compile_condition",
    "load_journey",
    "load_journey_file",
]
