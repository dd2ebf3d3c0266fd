"""The local stack: Apache Kafka, PostgreSQL and Prometheus as processes on this machine."""

from .component import Component, Health
from .errors import StackError
from .stack import components, down, env_lines, status, status_table, up

__all__ = [
    "Component",
    "Health",
    "StackError",
    "components",
    "down",
    "env_lines",
    "status",
    "status_table",
    "up",
]
