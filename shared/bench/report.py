"""Benchmark results: flat keys (documented in docs/benchmarks.md), values and units."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Figure:
    key: str
    value: float
    unit: str
    note: str = ""


@dataclass
class Report:
    figures: list[Figure] = field(default_factory=list)
    context: dict[str, str] = field(default_factory=dict)

    def add(self, key: str, value: float, unit: str, note: str = "") -> None:
        self.figures.append(Figure(key, value, unit, note))

    def as_json(self) -> dict[str, object]:
        return {
            "context": self.context,
            "figures": {f.key: {"value": round(f.value, 4), "unit": f.unit} for f in self.figures},
        }
