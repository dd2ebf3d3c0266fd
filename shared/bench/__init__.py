"""``trayecto bench``: throughput figures measured next to their physical limits."""

from .report import Figure, Report

__all__ = ["Figure", "Report"]
