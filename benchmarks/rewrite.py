"""Throughput of the response rewriter on realistic Ollama streams, on one core.

Run from the project root::

    .venv/bin/python benchmarks/rewrite.py            # every scenario, best of 5
    .venv/bin/python benchmarks/rewrite.py --paths slow --repeat 3
    .venv/bin/python benchmarks/rewrite.py --paths listing   # the /api/tags rewrite alone

It feeds ``StreamRestorer`` (``ollama_default.core.response_body``) the response streams of
``/api/chat`` (NDJSON) and ``/v1/chat/completions`` (SSE) for a request whose alias
``llmodel`` was routed to ``aya-expanse:8b-q8_0``, byte for byte as Ollama writes them
(Go ``encoding/json``: compact, struct field order, ``<``, ``>`` and ``&`` escaped as
``\\u003c``, ``\\u003e`` and ``\\u0026``, other non-ASCII as raw UTF-8; see
``ollama-api.md`` §2.2, §2.9 and §3). Each response gets its own ``StreamRestorer``, as
in the middleware; the ``NameRestorer`` is built once, its cost is reported apart.

Scenarios: one record per network chunk (what Ollama's per-record flush produces), and
the same bytes re-split into fixed-size chunks (7 and 1500 bytes), so that records
straddle chunks. Each line gives chunks per second for the rewriter, for the naive
baseline (per record ``json.loads``, set ``model``, ``json.dumps``; for SSE strip
``data: `` and pass ``[DONE]``), and their ratio. ``--paths slow`` measures the full
parse alone (``NameRestorer._restore_parsed`` per record, no framing), to show what the
fast path buys. Timings are the best of ``--repeat`` runs with the garbage collector off
(as ``timeit`` does), single thread, ``time.perf_counter``.

The rewriter's output is checked against the expected bytes (every top-level
``"model":"aya-expanse:8b-q8_0"`` shown as ``"model":"llmodel"``, generated text, which
also mentions the target name, untouched) and, parsed, against the baseline's records;
the script exits 1 if either differs.

``--paths listing`` (also in ``all``) times the listing rewrite
(``ollama_default.core.listings.ListingRewriter.rewrite_list``) of a ``/api/tags`` and a
``/v1/models`` reply with 20 and 200 installed models and 3 aliases, in microseconds per
reply, against ``json.loads`` plus ``json.dumps`` of the same reply; and with
``hide_real_models``. Its output is checked too (the aliases first, the upstream's entries
after them as they were).

Target: at least 500,000 chunks/s for the one-record-per-chunk streams, against a naive
baseline of about 70,000 (measured on a 2-vCPU AMD EPYC VM, CPython 3.11: 120,000 to
160,000). Rates in chunks/s only compare within one chunk size; the MB/s column compares
across them. The whole run takes about 40 s.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import random
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from typing import TypeVar

from ollama_default.core.aliases import AliasTable, Route
from ollama_default.core.endpoints import find_endpoint
from ollama_default.core.listings import Listing, ListingRewriter
from ollama_default.core.request_body import Rename
from ollama_default.core.response_body import NameRestorer, StreamRestorer

ALIAS = "llmodel"
TARGET = "aya-expanse:8b-q8_0"
NDJSON = "application/x-ndjson"
SSE = "text/event-stream"
PATHS = {NDJSON: "/api/chat", SSE: "/v1/chat/completions"}
SPLIT_SIZES = (7, 1500)
TARGET_RATE = 500_000

T = TypeVar("T")
Stream = list[bytes]  # one response, as the network chunks that carry it


# --- Generated text ---------------------------------------------------------------------

_WORDS = (
    "the", "of", "and", "to", "a", "in", "is", "that", "for", "it", "as", "with", "be",
    "on", "not", "this", "by", "are", "or", "can", "from", "at", "which", "light", "sky",
    "blue", "red", "sun", "air", "when", "more", "than", "into", "its", "these", "their",
    "other", "such", "scattering", "wavelengths", "Rayleigh", "atmosphere", "molecules",
    "nitrogen", "oxygen", "shorter", "longer", "colour", "color", "visible", "spectrum",
    "because", "however", "therefore", "example", "sunset", "horizon", "particles",
    "direction", "photons", "energy", "strongly", "appears", "during", "daytime",
    "phenomenon", "function", "return", "value", "list", "string", "import", "def", "class",
    "print", "error", "model", "answer", "question", "language", "translate", "English",
    "French", "Spanish", "German", "Arabic", "multilingual",
)  # fmt: skip
_SUFFIXES = ("s", "ed", "ing", "ly", "tion", "er", "est", "ness", "al", "ic")
_PUNCTUATION = (
    ".", ",", ":", ";", "!", "?", "\n", "\n\n", "**", "*", " -", " (", ")", "'s", "`",
    "```", "\n```\n", " 1", ".", " 2", " 10", "%", " 3", "0", " #", "##",
)  # fmt: skip
_UNICODE = (
    " café", "é", " naïve", " —", "\u2013", " “", "”", " \u2019", " 日本語", "の", "は", " 👋",
    "🙂", " Привет", " мир", " ß", "…", " µs", " °C", " مرحبا", " €", "\u00a0", " 你好",
)  # fmt: skip
# Go escapes these: quotes and backslashes always, < > & as \u003c \u003e \u0026.
_ESCAPED = (
    '"', ' "', '."', "\\", "\\n", "\t", " <", ">", "</", "think", "<think>", " &", " &&",
    " <br>", " x < y", " a -> b", ' "hello"', " C:\\Users", "\r\n", "\u2028",
)  # fmt: skip
_MENTIONS = (
    f" {TARGET}",
    f" I am {TARGET},",
    f' {{"model":"{TARGET}"}}',
    f' "model": "{TARGET}",',
    f"`{TARGET}`",
    f" ollama run {TARGET}",
    " model",
    ' "model"',
    " Aya Expanse",
)


def _token(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.84:
        word = rng.choice(_WORDS)
        if rng.random() < 0.1:
            word = word.capitalize()
        if rng.random() < 0.08:
            return rng.choice(_SUFFIXES)  # a word piece without its leading space
        return " " + word
    if roll < 0.92:
        return rng.choice(_PUNCTUATION)
    if roll < 0.955:
        return rng.choice(_UNICODE)
    if roll < 0.99:
        return rng.choice(_ESCAPED)
    return rng.choice(_MENTIONS)


def _content(rng: random.Random) -> str:
    """One streamed piece: mostly one token, sometimes a few held back and sent at once."""
    if rng.random() < 0.05:
        return "".join(_token(rng) for _ in range(rng.randint(2, 6)))
    return _token(rng)


# --- Ollama's bytes ---------------------------------------------------------------------

_GO_ESCAPES = (
    ("<", "\\u003c"),
    (">", "\\u003e"),
    ("&", "\\u0026"),
    ("\u2028", "\\u2028"),
    ("\u2029", "\\u2029"),
)


def go_string(text: str) -> str:
    """A JSON string as Go's ``json.Marshal`` writes it (HTML-safe, UTF-8 kept)."""
    encoded = json.dumps(text, ensure_ascii=False)
    for char, escape in _GO_ESCAPES:
        encoded = encoded.replace(char, escape)
    return encoded


def go_time(ns: int) -> str:
    """``time.Time`` in UTC as Go marshals it: RFC 3339 with trailing zeros trimmed."""
    seconds, fraction = divmod(ns, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    digits = f"{fraction:09d}".rstrip("0")
    return f"{stamp}.{digits}Z" if digits else f"{stamp}Z"


@dataclass(frozen=True)
class Response:
    """What one streamed chat response says, whatever the model name in it."""

    contents: tuple[str, ...]
    times: tuple[int, ...]  # created_at of each line, and the final one, in ns
    prompt_tokens: int
    load_ns: int
    prompt_ns: int
    completion_id: int

    def ndjson(self, model: str) -> Stream:
        """``/api/chat`` lines (``ChatResponse``), one per flush."""
        name = go_string(model)
        lines = [
            f'{{"model":{name},"created_at":"{go_time(at)}","message":{{"role":"assistant",'
            f'"content":{go_string(content)}}},"done":false}}\n'
            for content, at in zip(self.contents, self.times, strict=False)
        ]
        eval_ns = self.times[-1] - self.times[0]
        lines.append(
            f'{{"model":{name},"created_at":"{go_time(self.times[-1])}",'
            '"message":{"role":"assistant","content":""},"done":true,"done_reason":"stop",'
            f'"total_duration":{self.load_ns + self.prompt_ns + eval_ns},'
            f'"load_duration":{self.load_ns},"prompt_eval_count":{self.prompt_tokens},'
            f'"prompt_eval_duration":{self.prompt_ns},"eval_count":{len(self.contents)},'
            f'"eval_duration":{eval_ns}}}\n'
        )
        return [line.encode() for line in lines]

    def sse(self, model: str) -> Stream:
        """``/v1/chat/completions`` frames with ``include_usage`` (``ChatWriter``)."""
        head = (
            f'data: {{"id":"chatcmpl-{self.completion_id}","object":"chat.completion.chunk",'
            f'"created":{self.times[0] // 1_000_000_000},"model":{go_string(model)},'
            '"system_fingerprint":"fp_ollama","choices":['
        )
        frames = []
        for index, content in enumerate(self.contents):
            role = '"role":"assistant",' if index == 0 else ""
            frames.append(
                f'{head}{{"index":0,"delta":{{{role}"content":{go_string(content)}}},'
                '"finish_reason":null}]}\n\n'
            )
        frames.append(f'{head}{{"index":0,"delta":{{}},"finish_reason":"stop"}}]}}\n\n')
        completion = len(self.contents)
        frames.append(
            f'{head}],"usage":{{"prompt_tokens":{self.prompt_tokens},'
            f'"completion_tokens":{completion},'
            f'"total_tokens":{self.prompt_tokens + completion}}}}}\n\n'
        )
        frames.append("data: [DONE]\n\n")
        return [frame.encode() for frame in frames]


def make_responses(records: int, seed: int) -> list[Response]:
    """Chat responses of 20 to 600 tokens, about ``records`` stream lines in all."""
    rng = random.Random(seed)
    clock = 1_755_777_600_000_000_000 + rng.randrange(10**9)
    responses = []
    total = 0
    while total < records:
        count = min(rng.randint(20, 600), max(records - total - 1, 1))
        clock += rng.randrange(1, 5 * 10**9)
        times = []
        for _ in range(count + 1):
            clock += rng.randrange(15_000_000, 45_000_000)
            # Go trims trailing zeros from the fraction; let some stamps have them.
            times.append(clock if rng.random() < 0.9 else clock - clock % 1_000_000)
        responses.append(
            Response(
                contents=tuple(_content(rng) for _ in range(count)),
                times=tuple(times),
                prompt_tokens=rng.randint(10, 2000),
                load_ns=rng.randrange(1_000_000, 8 * 10**9),
                prompt_ns=rng.randrange(10**7, 10**9),
                completion_id=rng.randrange(999),
            )
        )
        total += count + 1
    return responses


def resplit(stream: Stream, size: int) -> Stream:
    """The same bytes, cut every ``size`` bytes regardless of records."""
    data = b"".join(stream)
    return [data[i : i + size] for i in range(0, len(data), size)]


def take_chunks(streams: Iterable[Stream], limit: int) -> list[Stream]:
    """Whole streams from the front, until about ``limit`` chunks (at least one stream)."""
    taken: list[Stream] = []
    count = 0
    for stream in streams:
        if taken and count + len(stream) > limit:
            break
        taken.append(stream)
        count += len(stream)
    return taken


# --- What is measured -------------------------------------------------------------------


def run_rewriter(restorer: NameRestorer, media_type: str, streams: list[Stream]) -> list[Stream]:
    outputs = []
    for chunks in streams:
        stream = StreamRestorer(restorer, media_type)
        feed = stream.feed
        out = [feed(chunk) for chunk in chunks]
        out.append(stream.finish())
        outputs.append(out)
    return outputs


def run_slow(restorer: NameRestorer, media_type: str, streams: list[Stream]) -> list[Stream]:
    """The full parse alone, on records (one per chunk): no framing, no fast path."""
    restore = restorer._restore_parsed
    if media_type == NDJSON:
        return [[restore(record) for record in records] for records in streams]
    return [[b"data: " + restore(frame[6:-2]) + b"\n\n" for frame in frames] for frames in streams]


def _naive_ndjson(streams: list[Stream]) -> list[Stream]:
    loads, dumps = json.loads, json.dumps
    outputs = []
    for chunks in streams:
        out = []
        held = b""
        for chunk in chunks:
            lines = (held + chunk).split(b"\n")
            held = lines.pop()
            for line in lines:
                record = loads(line)
                if "model" in record:
                    record["model"] = ALIAS
                out.append(dumps(record, ensure_ascii=False, separators=(",", ":")).encode())
                out.append(b"\n")
        out.append(held)
        outputs.append(out)
    return outputs


def _naive_sse(streams: list[Stream]) -> list[Stream]:
    loads, dumps = json.loads, json.dumps
    outputs = []
    for chunks in streams:
        out = []
        held = b""
        for chunk in chunks:
            events = (held + chunk).split(b"\n\n")
            held = events.pop()
            for event in events:
                payload = event[6:]
                if payload == b"[DONE]":
                    out.append(b"data: [DONE]\n\n")
                    continue
                record = loads(payload)
                if "model" in record:
                    record["model"] = ALIAS
                text = dumps(record, ensure_ascii=False, separators=(",", ":"))
                out.append(b"data: " + text.encode() + b"\n\n")
        out.append(held)
        outputs.append(out)
    return outputs


def run_baseline(media_type: str, streams: list[Stream]) -> list[Stream]:
    return _naive_ndjson(streams) if media_type == NDJSON else _naive_sse(streams)


def best_of(repeat: int, run: Callable[[], T]) -> tuple[float, T]:
    """The shortest of ``repeat`` runs, in seconds, and the last run's result."""
    best = float("inf")
    result: T | None = None
    for _ in range(repeat):
        gc.collect()
        gc.disable()
        try:
            start = time.perf_counter()
            result = run()
            elapsed = time.perf_counter() - start
        finally:
            gc.enable()
        best = min(best, elapsed)
    assert result is not None
    return best, result


# --- Checks -----------------------------------------------------------------------------


def parsed(media_type: str, data: bytes) -> list[object]:
    """The records of a stream, decoded (``[DONE]`` kept as the string)."""
    if media_type == NDJSON:
        return [json.loads(line) for line in data.split(b"\n") if line]
    records: list[object] = []
    for event in data.split(b"\n\n"):
        if event:
            assert event.startswith(b"data: "), event
            payload = event[6:]
            records.append("[DONE]" if payload == b"[DONE]" else json.loads(payload))
    return records


def mismatches(
    media_type: str,
    outputs: list[Stream],
    expected: list[bytes],
    baseline: list[Stream] | None,
) -> list[str]:
    problems = []
    for index, (out, want) in enumerate(zip(outputs, expected, strict=True)):
        got = b"".join(out)
        if got != want:
            at = next(
                (i for i, (a, b) in enumerate(zip(got, want, strict=False)) if a != b), len(want)
            )
            problems.append(
                f"stream {index}: byte {at}: got {got[max(at - 40, 0) : at + 40]!r}, "
                f"want {want[max(at - 40, 0) : at + 40]!r}"
            )
            break
    for index, out in enumerate(baseline or []):
        if parsed(media_type, b"".join(out)) != parsed(media_type, b"".join(outputs[index])):
            problems.append(f"stream {index}: the baseline's records differ from the rewriter's")
            break
    return problems


# --- Scenarios --------------------------------------------------------------------------


@dataclass
class Scenario:
    name: str
    media_type: str
    streams: list[Stream]  # as the rewriter gets them
    expected: list[bytes]  # what it should give back, per stream
    slow: bool = False  # measure the full parse instead of StreamRestorer


def scenarios(records: int, chunks: int, seed: int, paths: str) -> list[Scenario]:
    result: list[Scenario] = []
    for media_type, label in ((NDJSON, "ndjson /api/chat"), (SSE, "sse /v1/chat/completions")):
        responses = make_responses(records, seed)
        if media_type == NDJSON:
            sent = [r.ndjson(TARGET) for r in responses]
            shown = [b"".join(r.ndjson(ALIAS)) for r in responses]
        else:
            sent = [r.sse(TARGET) for r in responses]
            shown = [b"".join(r.sse(ALIAS)) for r in responses]
        if paths in ("stream", "all"):
            result.append(Scenario(f"{label}, 1 record/chunk", media_type, sent, shown))
        if paths in ("slow", "all"):
            result.append(
                Scenario(f"{label}, 1 record/chunk, full parse", media_type, sent, shown, True)
            )
        if paths in ("stream", "all"):
            for size in SPLIT_SIZES:
                split = take_chunks((resplit(s, size) for s in sent), chunks)
                result.append(
                    Scenario(f"{label}, {size}-byte chunks", media_type, split, shown[: len(split)])
                )
    return result


# --- Listings ---------------------------------------------------------------------------

LISTING_SIZES = (20, 200)
LISTING_ALIASES = {
    ALIAS: TARGET,
    "embed": "nomic-embed-text:latest",
    "coder": "qwen2.5-coder:7b-instruct-q4_K_M",
}
_FAMILIES = ("llama", "qwen2", "gemma3", "mistral", "phi3", "command-r")


def tags_document(installed: int, seed: int) -> tuple[bytes, bytes]:
    """A ``/api/tags`` and the ``/v1/models`` reply for ``installed`` models, as Go writes
    them (``model_list_cache.go``, ``ToListCompletion``), the aliases' targets among them."""
    rng = random.Random(seed)
    names = list(LISTING_ALIASES.values())
    while len(names) < installed:
        family = rng.choice(_FAMILIES)
        names.append(f"{family}{rng.randint(1, 4)}:{rng.randint(1, 70)}b-q{rng.randint(2, 8)}_K_M")
    rng.shuffle(names)
    tags, models = [], []
    for index, name in enumerate(names[:installed]):
        family = rng.choice(_FAMILIES)
        modified_s = 1746405464 - index * 3600
        tags.append(
            {
                "name": name,
                "model": name,
                "modified_at": go_time(modified_s * 1_000_000_000 + 706015396),
                "size": rng.randint(200_000_000, 40_000_000_000),
                "digest": f"{rng.getrandbits(256):064x}",
                "details": {
                    "parent_model": "",
                    "format": "gguf",
                    "family": family,
                    "families": [family],
                    "parameter_size": f"{rng.randint(1, 70)}.{rng.randint(0, 9)}B",
                    "quantization_level": "Q4_K_M",
                    "context_length": 131072,
                },
                "capabilities": ["completion", "tools"],
            }
        )
        models.append({"id": name, "object": "model", "created": modified_s, "owned_by": "library"})
    compact = {"ensure_ascii": False, "separators": (",", ":")}
    return (
        json.dumps({"models": tags}, **compact).encode(),  # type: ignore[arg-type]
        json.dumps({"object": "list", "data": models}, **compact).encode() + b"\n",  # type: ignore[arg-type]
    )


def listing_problems(
    listing: Listing, document: bytes, rewritten: bytes, hidden: bool
) -> list[str]:
    key, field = ("data", "id") if listing is Listing.OPENAI_MODELS else ("models", "name")
    real = json.loads(document)[key]
    shown = json.loads(rewritten)[key]
    want = [f"{alias}:latest" for alias in LISTING_ALIASES] + (
        [] if hidden else [entry[field] for entry in real]
    )
    if [entry[field] for entry in shown] != want:
        listed = [entry[field] for entry in shown]
        return [f"{listing.value}: listed {listed[:5]}..., want {want[:5]}..."]
    if not hidden and shown[len(LISTING_ALIASES) :] != real:
        return [f"{listing.value}: the upstream's entries changed"]
    return []


def _rewrite_loop(
    rewriter: ListingRewriter, listing: Listing, document: bytes, loops: int
) -> bytes:
    for _ in range(loops - 1):
        rewriter.rewrite_list(listing, document)
    return rewriter.rewrite_list(listing, document)


def _parse_loop(document: bytes, loops: int) -> str:
    for _ in range(loops - 1):
        json.dumps(json.loads(document))
    return json.dumps(json.loads(document))


def run_listings(repeat: int, seed: int) -> list[str]:
    """Print the listing rewrite's cost; return what was wrong in its output."""
    problems: list[str] = []
    print()
    print(f"listing rewrite, {len(LISTING_ALIASES)} aliases (us per reply, best of {repeat})")
    print(f"{'reply':<40} {'bytes':>8} {'rewrite us':>11} {'loads+dumps us':>15}")
    table = AliasTable(LISTING_ALIASES, default=ALIAS)
    for installed in LISTING_SIZES:
        tags, models = tags_document(installed, seed)
        for hidden in (False, True):
            rewriter = ListingRewriter(table, hide_real_models=hidden)
            for listing, document in ((Listing.TAGS, tags), (Listing.OPENAI_MODELS, models)):
                loops = max(20, 20_000 // installed)
                seconds, rewritten = best_of(
                    repeat, partial(_rewrite_loop, rewriter, listing, document, loops)
                )
                base, _ = best_of(repeat, partial(_parse_loop, document, loops))
                path = "/api/tags" if listing is Listing.TAGS else "/v1/models"
                label = f"{path}, {installed} installed"
                label += ", hidden" if hidden else ""
                print(
                    f"{label:<40} {len(document):>8,} {seconds / loops * 1e6:>11.1f} "
                    f"{base / loops * 1e6:>15.1f}"
                )
                problems += listing_problems(listing, document, rewritten, hidden)
    return problems


def setup_cost(media_type: str, restorer: NameRestorer) -> tuple[float, float]:
    """Microseconds to build a NameRestorer and a StreamRestorer (once per response)."""
    rename = [Rename(ALIAS, Route.build(ALIAS, TARGET))]
    fields = find_endpoint(PATHS[media_type]).response_fields  # type: ignore[union-attr]
    loops = 2000
    name_s, _ = best_of(3, lambda: [NameRestorer(rename, fields) for _ in range(loops)])
    stream_s, _ = best_of(3, lambda: [StreamRestorer(restorer, media_type) for _ in range(loops)])
    return name_s / loops * 1e6, stream_s / loops * 1e6


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeat", type=int, default=5, help="best of N runs (default 5)")
    parser.add_argument(
        "--chunks",
        type=int,
        default=200_000,
        help="chunks per scenario for the rewriter (default 200,000)",
    )
    parser.add_argument(
        "--slow-share",
        type=float,
        default=0.2,
        help="share of each scenario's chunks that the naive baseline and the full parse, "
        "which are slow, run over (default 0.2)",
    )
    parser.add_argument(
        "--paths",
        choices=("stream", "slow", "listing", "all"),
        default="all",
        help="stream: StreamRestorer (fast path where it applies); slow: the full parse "
        "alone; listing: the /api/tags and /v1/models rewrite; all: each (default)",
    )
    parser.add_argument("--seed", type=int, default=2024)
    args = parser.parse_args(argv)
    if args.paths == "listing":
        problems = run_listings(args.repeat, args.seed)
        print("output: WRONG\n  " + "\n  ".join(problems) if problems else "output: as expected")
        return 1 if problems else 0

    restorers = {
        media_type: NameRestorer(
            [Rename(ALIAS, Route.build(ALIAS, TARGET))],
            find_endpoint(path).response_fields,  # type: ignore[union-attr]
        )
        for media_type, path in PATHS.items()
    }
    print(
        f"{platform.python_implementation()} {platform.python_version()}, one thread, "
        f"best of {args.repeat}; {TARGET} shown as {ALIAS}"
    )
    for media_type in PATHS:
        name_us, stream_us = setup_cost(media_type, restorers[media_type])
        print(
            f"per response ({PATHS[media_type]}): NameRestorer {name_us:.1f} us, "
            f"StreamRestorer {stream_us:.2f} us (not in the rates below)"
        )
    print(
        f"{'scenario':<52} {'chunks':>8} {'rewriter/s':>11} {'baseline/s':>11} {'ratio':>6} "
        f"{'rewriter MB/s':>13}"
    )
    problems: list[str] = []
    slowest_single = float("inf")
    for scenario in scenarios(args.chunks, args.chunks, args.seed, args.paths):
        restorer = restorers[scenario.media_type]
        media_type = scenario.media_type
        total = sum(len(s) for s in scenario.streams)
        sample = take_chunks(scenario.streams, int(total * args.slow_share))
        if scenario.slow:
            streams = sample
            seconds, outputs = best_of(
                args.repeat, partial(run_slow, restorer, media_type, streams)
            )
        else:
            streams = scenario.streams
            seconds, outputs = best_of(
                args.repeat, partial(run_rewriter, restorer, media_type, streams)
            )
        base_seconds, base_outputs = best_of(args.repeat, partial(run_baseline, media_type, sample))
        count = sum(len(s) for s in streams)
        size = sum(len(chunk) for s in streams for chunk in s)
        rate, base_rate = count / seconds, sum(len(s) for s in sample) / base_seconds
        if scenario.name.endswith("1 record/chunk"):
            slowest_single = min(slowest_single, rate)
        print(
            f"{scenario.name:<52} {count:>8,} {rate:>11,.0f} {base_rate:>11,.0f} "
            f"{rate / base_rate:>5.1f}x {size / seconds / 1e6:>13.1f}"
        )
        expected = scenario.expected[: len(outputs)]
        problems += [
            f"{scenario.name}: {p}" for p in mismatches(media_type, outputs, expected, base_outputs)
        ]
        if not any(TARGET.encode() in want for want in expected):
            problems.append(f"{scenario.name}: no generated text names {TARGET}; weak check")
    if args.paths == "all":
        problems += run_listings(args.repeat, args.seed)
    if problems:
        print("output: WRONG")
        for problem in problems:
            print("  " + problem)
        return 1
    print(
        f'output: as expected (every "model":"{TARGET}" field shown as "model":"{ALIAS}", '
        "generated text byte for byte; baseline records equal when parsed)"
    )
    if slowest_single < float("inf"):
        verdict = "meets" if slowest_single >= TARGET_RATE else "is below"
        print(
            f"target {TARGET_RATE:,} chunks/s for 1 record/chunk: {verdict} "
            f"(slowest {slowest_single:,.0f})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
