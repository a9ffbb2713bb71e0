"""CPU time and memory to decide large request bodies of many shapes, and how long other
requests wait meanwhile; before and after a change (#11).

Run from the project root::

    .venv/bin/python benchmarks/decide.py                 # 100 MiB bodies; before at 10 MiB
    .venv/bin/python benchmarks/decide.py --size-mib 20 --before-size-mib 20
    .venv/bin/python benchmarks/decide.py --shapes deep,numbers --before main

It calls ``decide_json_steps`` (``ollama_default.core.request_body``; ``decide_json`` in code
that has no steps) for ``/api/chat`` with the alias ``llmodel`` routed to
``aya-expanse:8b-q8_0`` on bodies of these shapes. Nested values:

- ``base64``: one chat message holding one image, a single huge base64 string;
- ``messages``: many small message objects (a long chat);
- ``empty-arrays``: ``[[],[],...]``, the 26x memory blow-up of #11;
- ``deep``: values nested 9,998 levels deep (10,000 with the object: Go's limit), repeated;
- ``tiny-strings``: millions of one-letter strings (``/api/embed`` inputs);
- ``two-models``: a long chat with ``model`` at the start and again at the end, the body
  that took the pure-Python re-encoder past gunicorn's 30 s timeout;
- ``model-at-end``: a long chat whose only ``model`` comes last;
- ``numbers``: a ``context`` of millions of integers.

Millions of top-level members, the last one ``"model":"llmodel"`` (each shape a way to make
reading members one at a time cost a step of Python each, or many steps of a pattern):

- ``top-level-members``: ``"model":"llama3.2"``, all of them fields;
- ``model-nulls``: ``"model":null``, fields whose values do not count;
- ``number-members``: ``"a":1``, the smallest members but one;
- ``empty-keys``: ``"":0``, the smallest;
- ``nested-members``: ``"a":[[[[]]]]``, values too deep for the member pattern;
- ``object-members``: ``"a":{"b":{"c":{}}}``, the same with objects;
- ``deep-members``: values 40 levels deep;
- ``mixed-members``: ``"a":[[[[]]]]`` and ``"model":"llama3.2"`` by turns, deep values
  among fields;
- ``nested-fields``: ``"a":[[[{"model":"x"}]]]``, a field's key nested in each value;
- ``long-keys``: keys of 5,000 letters;
- ``escaped-keys``: keys of 200 escapes;
- ``escaped-values``: string values of 200 escapes;
- ``spaced-members``: 100 spaces after each member.

Each body is decided in a child process of its own (so that one's memory does not count for
another), twice: once for CPU time (``time.process_time``, building the body not counted)
and the longest step (the CPU time between two of the steps' yields, during which a worker
serves nothing else, and the bytes it covered), once for the peak of memory allocated while
deciding (``tracemalloc``, which slows down code that allocates much, hence the separate
run). The lines give these for the code before (``--before``: a git revision, exported with
``git archive``; default ``aa3d186``, the code before #11, or ``none``) and after (this
checkout), and the ratio of their CPU time per MiB. The code before is measured on smaller
bodies (``--before-size-mib``), as it takes tens of seconds and gigabytes on some 100 MiB
shapes; a run over ``--timeout-s`` is shown as such.

Target (#11): each 100 MiB shape decided in under a second of CPU on the project's 2-vCPU
machine, memory a small multiple of the body (the body is copied at most a few times: the
spliced body itself, and a blanked copy when it holds escaped quotes or backslashes), and
no step longer than some tens of milliseconds. Reading members costs some 100 ns each in
CPython's ``re`` (the fastest loop over a member, ``"":0``, without a look at fields or
white space, costs 37 ns), and counting brackets some 10 ns each: the shapes made of little
else than members or brackets take about a second. Deep values among fields
(``mixed-members``, ``nested-fields``) are read member by member by a pattern that follows
values 128 levels deep, at some 20 ns a bracket: two to three and a half seconds. The
default run takes several minutes, and some more with ``--before-size-mib 100``.
"""

from __future__ import annotations

import argparse
import base64
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_CPU_S = 1.0
MESSAGE = b'{"role":"user","content":"Hello there, how are you today?\\nI am fine, thanks."},'
# Top-level members, repeated before a last "model":"llmodel".
MEMBERS = {
    "top-level-members": b'"model":"llama3.2",',
    "model-nulls": b'"model":null,',
    "number-members": b'"a":1,',
    "empty-keys": b'"":0,',
    "nested-members": b'"a":[[[[]]]],',
    "object-members": b'"a":{"b":{"c":{}}},',
    "deep-members": b'"a":' + b"[" * 40 + b"]" * 40 + b",",
    "mixed-members": b'"a":[[[[]]]],"model":"llama3.2",',
    "nested-fields": b'"a":[[[{"model":"x"}]]],',
    "long-keys": b'"' + b"k" * 5_000 + b'":1,',
    "escaped-keys": b'"' + b"\\n" * 200 + b'":1,',
    "escaped-values": b'"a":"' + b"\\n" * 200 + b'",',
    "spaced-members": b'"a":1' + b" " * 100 + b",",
}


def make_body(shape: str, size: int) -> bytes:
    """A body of about ``size`` bytes in the named shape."""
    head, tail = b'{"model":"llmodel","stream":false,', b"}"

    def repeat(unit: bytes) -> bytes:
        return unit * max(1, size // len(unit))

    if shape in MEMBERS:
        return b"{" + repeat(MEMBERS[shape]) + b'"model":"llmodel"}'
    if shape == "base64":
        image = base64.b64encode(b"\x89PNG\r\n" * (size // 8))[:size]
        return (
            head
            + b'"messages":[{"role":"user","content":"what is this?","images":["'
            + (image + b'"]}]' + tail)
        )
    if shape == "messages":
        return head + b'"messages":[' + repeat(MESSAGE)[:-1] + b"]" + tail
    if shape == "empty-arrays":
        return head + b'"x":[' + repeat(b"[],")[:-1] + b"]" + tail
    if shape == "deep":
        nest = b"[" * 9_998 + b'"deep"' + b"]" * 9_998 + b","
        return head + b'"x":[' + repeat(nest)[:-1] + b"]" + tail
    if shape == "tiny-strings":
        return head + b'"input":[' + repeat(b'"a",')[:-1] + b"]" + tail
    if shape == "two-models":
        return head + b'"messages":[' + repeat(MESSAGE)[:-1] + b'],"model":"llmodel"}'
    if shape == "model-at-end":
        return b'{"messages":[' + repeat(MESSAGE)[:-1] + b'],"model":"llmodel"}'
    if shape == "numbers":
        return head + b'"context":[' + repeat(b"123456,")[:-1] + b"]" + tail
    raise ValueError(shape)


SHAPES = (
    "base64", "messages", "empty-arrays", "deep", "tiny-strings", "two-models",
    "model-at-end", "numbers", *MEMBERS,
)  # fmt: skip

CHILD = """
import json, sys, time, tracemalloc
sys.path.insert(0, {code!r})
sys.path.insert(0, {benchmarks!r})
from decide import make_body
from ollama_default.core.aliases import AliasTable
from ollama_default.core.endpoints import find_endpoint
from ollama_default.core.errors import RequestError
from ollama_default.core import request_body

aliases = AliasTable({{"llmodel": "aya-expanse:8b-q8_0"}}, default="llmodel")
endpoint = find_endpoint("/api/chat")
body = make_body({shape!r}, {size})
request_body.decide_json(b'{{"model":"llmodel"}}', endpoint, aliases)  # compiles the patterns
steps = getattr(request_body, "decide_json_steps", None)
if steps is None:  # code without steps: one step
    def steps(body, endpoint, aliases):
        return request_body.decide_json(body, endpoint, aliases)
        yield
if {memory}:
    tracemalloc.start()
started = time.process_time()
longest_s, longest_bytes, at_s, at_byte = 0.0, 0, started, 0
try:
    running = steps(body, endpoint, aliases)
    while True:
        try:
            byte = next(running)
        except StopIteration as done:
            outcome = done.value.model
            break
        now = time.process_time()
        if now - at_s > longest_s:
            longest_s, longest_bytes = now - at_s, byte - at_byte
        at_s, at_byte = now, byte
except RequestError as error:
    outcome = "400 " + error.message[:60]
except RecursionError:
    outcome = "RecursionError"
ended = time.process_time()
if ended - at_s > longest_s:  # the last step: its bytes are not told
    longest_s, longest_bytes = ended - at_s, -1
peak = tracemalloc.get_traced_memory()[1] if {memory} else 0
print(json.dumps({{
    "cpu_s": ended - started, "peak": peak, "size": len(body), "outcome": outcome,
    "step_s": longest_s, "step_bytes": longest_bytes,
}}))
"""


def measure(code: Path, shape: str, size: int, memory: bool, timeout_s: float) -> dict | None:
    script = CHILD.format(
        code=str(code), benchmarks=str(ROOT / "benchmarks"), shape=shape, size=size, memory=memory
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout_s
        )
    except subprocess.TimeoutExpired:
        return None
    if done.returncode:
        return {
            "cpu_s": float("nan"), "peak": 0, "size": size, "outcome": done.stderr[-80:],
            "step_s": float("nan"), "step_bytes": 0,
        }  # fmt: skip
    result: dict = json.loads(done.stdout)
    return result


def export(revision: str, into: Path) -> Path:
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", revision, "ollama_default"],
        capture_output=True,
        check=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def line(label: str, result: dict | None, timeout_s: float) -> str:
    if result is None:
        return f"{label:7s} over {timeout_s:.0f} s"
    mib = result["size"] / 2**20
    peak = result["peak"] / 2**20
    rate = result["cpu_s"] / mib * 1000
    scanned = result["step_bytes"]
    step_mib = f"{scanned / 2**20:5.2f} MiB" if scanned >= 0 else "the end"
    step = f"longest step {result['step_s'] * 1000:5.1f} ms ({step_mib})"
    return (
        f"{label:7s} {mib:6.1f} MiB  cpu {result['cpu_s']:7.3f} s ({rate:6.2f} ms/MiB)"
        f"  peak {peak:7.1f} MiB ({peak / mib:4.1f}x)  {step}  -> {result['outcome']}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=float, default=100)
    parser.add_argument("--before-size-mib", type=float, default=10)
    parser.add_argument("--before", default="aa3d186", help="a git revision, or none")
    parser.add_argument("--shapes", default=",".join(SHAPES))
    parser.add_argument("--timeout-s", type=float, default=30)
    args = parser.parse_args()
    size, before_size = int(args.size_mib * 2**20), int(args.before_size_mib * 2**20)
    missed = []
    with tempfile.TemporaryDirectory() as scratch:
        before = export(args.before, Path(scratch)) if args.before != "none" else None
        for shape in args.shapes.split(","):
            print(f"{shape}:", flush=True)
            after_cpu = measure(ROOT, shape, size, False, args.timeout_s)
            after_memory = measure(ROOT, shape, size, True, args.timeout_s)
            if after_cpu and after_memory:
                after_cpu["peak"] = after_memory["peak"]
            print("  " + line("after", after_cpu, args.timeout_s), flush=True)
            if after_cpu is None or after_cpu["cpu_s"] > TARGET_CPU_S * size / 2**20 / 100:
                missed.append(shape)
            if before is None:
                continue
            before_cpu = measure(before, shape, before_size, False, args.timeout_s)
            if before_cpu is not None:
                before_memory = measure(before, shape, before_size, True, args.timeout_s)
                before_cpu["peak"] = before_memory["peak"] if before_memory else float("nan")
            print("  " + line("before", before_cpu, args.timeout_s), flush=True)
            if before_cpu and after_cpu:
                rate_before = before_cpu["cpu_s"] / before_cpu["size"]
                rate_after = after_cpu["cpu_s"] / after_cpu["size"]
                print(f"  CPU per MiB, before / after: {rate_before / rate_after:,.1f}x")
    bar = f"{TARGET_CPU_S:.0f} s per 100 MiB"
    print(f"\nOver the target of {bar}: {', '.join(missed) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
