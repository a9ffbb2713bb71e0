"""``benchmarks/soak.py`` runs, briefly, as anyone runs it, and its report has every part.

One short run (a few seconds of traffic from a few clients, the proxy's read timeout 1 s so
that stalls end quickly, and gevent's idle DNS threads let go after 0.5 s so that the idle
samples need not wait 6 s) of the whole script in a subprocess: it starts the misbehaving
upstream and ``ollama-default serve``, sends every kind of request, and must exit 0: no
mismatch, nothing grew, no traceback. The findings about today's proxy are printed but do
not fail it (that is ``--strict``).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOAK = ROOT / "benchmarks" / "soak.py"
TIMEOUT_S = 90.0
#: Every kind of request and every fault often enough that a short run sends each of them.
MIX = "normal=8,slow=1,stall-head=1,stall-body=1,oversized=1,leave-stream=1,leave-doc=1,malformed=1"
FAULTS = "ok=1,reset=1,stall=1,error500=1,garbage=1,close=1"
BRIEF_RUN = [
    "--duration", "3",
    "--warmup", "1",
    "--clients", "12",
    "--mix", MIX,
    "--faults", FAULTS,
    "--read-timeout-s", "1",
    "--settle-s", "3",
    # A short run compares a young process with itself a few seconds older: some growth of
    # its memory is warming up, not a leak. The default (10 %) is for minutes of traffic.
    "--rss-tolerance", "50",
    "--proxy-env", "GEVENT_THREADPOOL_IDLE_TASK_TIMEOUT=0.5",
]  # fmt: skip
SECTIONS = (
    "Soak of ollama-default serve",
    "Requests in the 3 s run",
    "errors by kind:",
    "What the upstream saw of the clients that left",
    "The proxy's processes, idle, after the warm-up (start) and after the run (end)",
    "Verdict (start -> end)",
    "The proxy's log: 0 tracebacks",
    "Findings about the proxy",
    "Result: PASS: 0 mismatches, nothing grew, 0 tracebacks",
)
ROWS = (
    "stream, upstream ok",
    "document, upstream reset",
    "stall mid-body",
    "oversized, chunked",
    "leave before 1st byte",
    "bad Content-Length",
)
VERDICTS = ("processes", "fds", "idle upstream", "threads", "RSS")


def test_a_brief_soak_passes_and_reports_every_part() -> None:
    finished = subprocess.run(
        [sys.executable, str(SOAK), *BRIEF_RUN],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    output = finished.stdout

    assert finished.returncode == 0, output + finished.stderr
    for section in SECTIONS:
        assert section in output, f"{section!r} is missing:\n{output}"
    for row in ROWS:
        assert f"\n  {row} " in output, f"the row {row!r} is missing:\n{output}"
    for verdict in VERDICTS:
        assert f"\n  ok      {verdict} " in output, output
    assert "MISMATCH" not in output
