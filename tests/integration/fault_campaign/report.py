"""The measured table of ``docs/reliability.md`` from the campaign's recorded runs.

``python -m tests.integration.fault_campaign.report FILE`` reads the JSON lines that
``TRAYECTO_FAULT_REPORT=FILE pytest tests/integration/test_fault_campaign.py`` appended
(one per seed) and prints the Markdown table, one row per run and a total.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

SERVICES = ("ingest", "orchestrator", "delivery", "metrics")
COLUMNS = (
    "seed",
    "kill -9 (ingest / orchestrator / delivery / metrics)",
    "events sent",
    "accepted (2xx)",
    "accounted for",
    "transitions",
    "delivery commands",
    "emails sent / in doubt / received by SMTP",
    "duplicates (transitions / history / commands / sends / SMTP / metrics)",
    "lost",
    "copies dropped by id",
)


def runs(lines: Iterable[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines if line.strip()]


def _row(run: dict[str, Any]) -> list[str]:
    duplicates = run["duplicates"]
    effects = run["effects"]
    return [
        str(run["seed"]),
        " / ".join(str(run["faults"].get(s, 0)) for s in SERVICES),
        str(run["events_sent"]),
        str(run["accepted"]),
        str(run["accounted"]),
        str(effects["transitions"]),
        str(effects["commands"]),
        f"{effects['sent']} / {effects['in_doubt']} / {effects['smtp']}",
        " / ".join(
            str(duplicates[k])
            for k in ("transitions", "history", "commands", "sends", "smtp", "metrics")
        ),
        str(sum(run["lost"].values())),
        str(sum(run["copies"].values())),
    ]


def _total(all_runs: list[dict[str, Any]]) -> list[str]:
    def total(*path: str) -> int:
        out = 0
        for run in all_runs:
            value: Any = run
            for key in path:
                value = value[key]
            out += int(value)
        return out

    kills = [sum(r["faults"].get(s, 0) for r in all_runs) for s in SERVICES]
    duplicates = ("transitions", "history", "commands", "sends", "smtp", "metrics")
    return [
        f"**all {len(all_runs)}**",
        " / ".join(map(str, kills)),
        str(total("events_sent")),
        str(total("accepted")),
        str(total("accounted")),
        str(total("effects", "transitions")),
        str(total("effects", "commands")),
        " / ".join(str(total("effects", k)) for k in ("sent", "in_doubt", "smtp")),
        " / ".join(str(total("duplicates", k)) for k in duplicates),
        str(sum(sum(r["lost"].values()) for r in all_runs)),
        str(sum(sum(r["copies"].values()) for r in all_runs)),
    ]


def table(all_runs: list[dict[str, Any]]) -> str:
    rows = [list(COLUMNS), ["---"] * len(COLUMNS)]
    rows += [_row(r) for r in sorted(all_runs, key=lambda r: int(r["seed"]))]
    if len(all_runs) > 1:
        rows.append(_total(all_runs))
    return "\n".join("| " + " | ".join(cells) + " |" for cells in rows)


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: python -m tests.integration.fault_campaign.report FILE")
    print(table(runs(Path(sys.argv[1]).read_text().splitlines())))


if __name__ == "__main__":
    main()
