"""HTTP load from wrk (a C load generator): a Python client would be the bottleneck.

Each request carries a fresh messageId, so every accepted event is a new one.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..settings import Settings
from ..stack.debian import install

_SCRIPT = """
local counter, thread_id = 0, 0
local threads = {}
function setup(thread)
  thread:set("thread_id", #threads)
  table.insert(threads, thread)
end
local function event(n)
  return string.format(
    '{"type":"track","userId":"bench-%d","event":"Page Viewed","messageId":"%s-%d-%d",'
    .. '"properties":{"url":"https://shop.example/pricing?plan=pro","title":"Pricing"},'
    .. '"context":{"campaign":{"source":"google","medium":"cpc","name":"spring-sale"},'
    .. '"userAgent":"Mozilla/5.0 (X11; Linux x86_64) Chrome/130","ip":"203.0.113.7"}}',
    n % 5000, RUN, thread_id, n)
end
request = function()
  local body
  if BATCH == 1 then
    counter = counter + 1
    body = event(counter)
  else
    local calls = {}
    for i = 1, BATCH do
      counter = counter + 1
      calls[i] = event(counter)
    end
    body = '{"batch":[' .. table.concat(calls, ",") .. ']}'
  end
  return wrk.format("POST", PATH, HEADERS, body)
end
"""


@dataclass(frozen=True, slots=True)
class WrkResult:
    requests: int
    failed: int
    seconds: float


def wrk_binary(settings: Settings) -> str:
    found = shutil.which("wrk")
    if found is None:
        install("wrk", settings.stack_dir / "apt.log", "The HTTP load generator wrk")
        found = shutil.which("wrk")
    assert found is not None
    return found


async def run_wrk(
    binary: str,
    url: str,
    authorization: str,
    *,
    batch: int,
    connections: int,
    seconds: float,
    run: str,
    workdir: Path,
) -> WrkResult:
    path = "/v1/track" if batch == 1 else "/v1/batch"
    headers = {"Content-Type": "application/json", "Authorization": authorization}
    script = workdir / f"wrk-{run}.lua"
    prelude = (
        f"RUN = {json.dumps(run)}\nBATCH = {batch}\nPATH = {json.dumps(path)}\n"
        "HEADERS = {" + ", ".join(f'["{k}"] = {json.dumps(v)}' for k, v in headers.items()) + "}\n"
    )
    script.write_text(prelude + _SCRIPT)
    process = await asyncio.create_subprocess_exec(
        binary,
        "-t1",
        f"-c{connections}",
        f"-d{seconds:.0f}s",
        "--timeout=30s",
        "-s",
        str(script),
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await process.communicate()
    text = out.decode()
    if process.returncode != 0:
        raise RuntimeError(f"wrk failed:\n{text}")
    match = re.search(r"(\d+) requests in ([\d.]+)(m?s)", text)
    if match is None:
        raise RuntimeError(f"unexpected wrk output:\n{text}")
    elapsed = float(match.group(2)) * (0.001 if match.group(3) == "ms" else 1.0)
    failed = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    failures = int(failed.group(1)) if failed else 0
    if errors:
        failures += sum(int(g) for g in errors.groups())
    return WrkResult(int(match.group(1)), failures, elapsed)
