"""What switching an alias costs the requests in flight: with ``switch --warm`` and without.

Run from the project root (about 30 seconds)::

    .venv/bin/python benchmarks/switch.py
    .venv/bin/python benchmarks/switch.py --load-delay 5 --clients 16 --workers 3

For each mode it starts, on 127.0.0.1, the test-suite's fake Ollama (``tests/fake_ollama.py``)
taking ``--load-delay`` seconds to load a cold model and recording each load and unload, and
``ollama-default serve`` with ``--workers`` workers in front of it, the alias ``llmodel``
pointing at the old model (``unload_previous = true``, and ``warm = true`` in the warm mode).
``--clients`` threads send streaming ``/api/generate`` requests to ``llmodel`` back to back
(each on a keep-alive connection of its own); the old model is loaded before the clock starts.
After ``--before`` seconds, ``ollama-default switch llmodel NEW`` runs (with ``--warm`` in
the warm mode) as an operator would run it, in a process of its own.

Each request's time to first byte (the first NDJSON line) is put in a phase by when it
started: *before* the switch command, *during* it (from its start to two seconds after it
returned: the proxy follows within two seconds), *after*. Printed per phase: count,
failures, TTFB p50/p90/max, and the share that went to the new model; then the loads and
unloads the upstream saw, in order, with their times from the switch command's start.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from fake_ollama import FakeOllama, serve  # noqa: E402
from gunicorn_process import start_server  # noqa: E402

OLD, NEW = "aya-expanse:8b-q8_0", "llama3.2:latest"
#: The proxy follows an edit within this.
FOLLOW_S = 2.0


@dataclass
class Sample:
    started: float
    ttfb_s: float
    target: str
    ok: bool


def client(port: int, stop: threading.Event, samples: list[Sample], lock: threading.Lock) -> None:
    body = json.dumps({"model": "llmodel", "prompt": "hi"}).encode()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    while not stop.is_set():
        started = time.monotonic()
        try:
            connection.request("POST", "/api/generate", body, {"Content-Type": "application/json"})
            response = connection.getresponse()
            first = response.readline()
            ttfb = time.monotonic() - started
            rest = response.read()
            ok = response.status == 200 and b'"done":true' in first + rest
            target = response.getheader("X-Ollama-Default-Target", "")
        except (OSError, http.client.HTTPException):
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            ttfb, ok, target = time.monotonic() - started, False, ""
        with lock:
            samples.append(Sample(started, ttfb, target, ok))
    connection.close()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def run(mode: str, options: argparse.Namespace) -> None:
    warm = mode == "warm"
    fake = FakeOllama(tokens=options.tokens, token_delay_s=options.token_delay,
                      load_delay_s=options.load_delay)  # fmt: skip
    with tempfile.TemporaryDirectory() as directory, serve(fake) as url:
        config = Path(directory) / "ollama-default.toml"
        config.write_text(
            "[aliases]\n"
            f'llmodel = {{ target = "{OLD}", warm = {str(warm).lower()}, '
            "unload_previous = true }\n"
        )
        command = [sys.executable, "-m", "ollama_default", "serve", "--no-access-log",
                   "--workers", str(options.workers), "--config", str(config)]  # fmt: skip
        server = start_server(command, {"OLLAMA_DEFAULT_UPSTREAM": url}, log_dir=Path(directory))
        try:
            server.wait_until_ready()
            fake._mark_loaded(fake._lookup(OLD), None)  # type: ignore[arg-type]  # warm before
            samples: list[Sample] = []
            lock = threading.Lock()
            stop = threading.Event()
            threads = [
                threading.Thread(target=client, args=(server.port, stop, samples, lock))
                for _ in range(options.clients)
            ]
            for thread in threads:
                thread.start()
            time.sleep(options.before)  # steady traffic before the switch
            switch_started = time.monotonic()
            switch = [sys.executable, "-m", "ollama_default", "switch", "llmodel", NEW,
                      "--config", str(config), *(["--warm"] if warm else [])]  # fmt: skip
            subprocess.run(switch, env={**server.settings, "PATH": "/usr/bin:/bin",
                                        "PYTHONPATH": str(ROOT)}, check=True,
                           stdout=subprocess.DEVNULL)  # fmt: skip
            switch_ended = time.monotonic()
            time.sleep(FOLLOW_S + options.after)
            stop.set()
            for thread in threads:
                thread.join(60)
        finally:
            server.stop()
    print(f"\n== switch {'--warm ' if warm else ''}(cold load {options.load_delay:g} s, "
          f"{options.workers} workers, {options.clients} clients, streams of "
          f"{options.tokens} tokens {options.token_delay * 1000:g} ms apart)")  # fmt: skip
    print(f"switch command took {switch_ended - switch_started:.2f} s")
    phases = {
        "before": [s for s in samples if s.started < switch_started],
        "during": [s for s in samples
                   if switch_started <= s.started < switch_ended + FOLLOW_S],
        "after": [s for s in samples if s.started >= switch_ended + FOLLOW_S],
    }  # fmt: skip
    print(f"{'phase':8} {'requests':>8} {'failed':>6} {'p50 ms':>8} {'p90 ms':>8} "
          f"{'max ms':>8} {'new model':>9}")  # fmt: skip
    for name, group in phases.items():
        if not group:
            print(f"{name:8} {0:8}")
            continue
        ttfbs = [s.ttfb_s * 1000 for s in group if s.ok]
        new = sum(1 for s in group if s.target == NEW) / len(group)
        print(f"{name:8} {len(group):8} {sum(not s.ok for s in group):6} "
              f"{statistics.median(ttfbs):8.1f} {percentile(ttfbs, 0.9):8.1f} "
              f"{max(ttfbs):8.1f} {new:9.0%}")  # fmt: skip
    print("upstream saw:", ", ".join(
        f"{kind} {model} at {at - switch_started:+.2f} s" for kind, model, at in fake.events
        if at >= switch_started - options.before
    ) or "nothing")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--load-delay", type=float, default=2.0, help="cold load, seconds")
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=10)
    parser.add_argument("--token-delay", type=float, default=0.01, help="seconds")
    parser.add_argument("--before", type=float, default=3.0, help="seconds of traffic")
    parser.add_argument("--after", type=float, default=3.0, help="seconds of traffic")
    parser.add_argument("--modes", default="cold,warm")
    options = parser.parse_args()
    for mode in options.modes.split(","):
        run(mode, options)


if __name__ == "__main__":
    main()
