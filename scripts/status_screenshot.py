"""Regenerate docs/_static/status.png: the status page of a proxy after a switch.

Runs the proxy's app in process in front of the test-suite's fake Ollama, with a config
file like the one in docs/operations.rst, a model loaded and a switch recorded as the
reload engine records it, and photographs the page with headless Chromium at a desktop
width::

    PYTHONPATH=. python scripts/status_screenshot.py [OUT.png]
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from fake_ollama import FakeOllama, serve  # noqa: E402

from ollama_default.ops.status import ReloadRecord, StatusRecorder  # noqa: E402
from ollama_default.proxy.compose import build_app, reload_record  # noqa: E402
from ollama_default.proxy.config import load_settings_with_sources  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
SHOWN_PATH = "/etc/ollama-default.toml"
WIDTH, HEIGHT = 1000, 1000
MAX_BYTES = 150 * 1024
CONFIG = """\
default = "llmodel"
default_names = ["default"]

[aliases]
llmodel = { target = "qwen3:8b", overrides = { keep_alive = -1 } }
embed = "nomic-embed-text"
"""
MODELS = ("qwen3:8b", "aya-expanse:8b-q8_0", "nomic-embed-text:latest")


def main(out: Path) -> None:
    with tempfile.TemporaryDirectory() as work:
        config = Path(work) / "ollama-default.toml"
        config.write_text(CONFIG)
        fake = FakeOllama(MODELS)
        with serve(fake) as upstream:
            loaded = load_settings_with_sources(
                {"OLLAMA_DEFAULT_UPSTREAM": upstream}, config_file=str(config)
            )
            sources = {
                key: source.replace(str(config), SHOWN_PATH)
                for key, source in loaded.sources.items()
            }
            now = time.time()
            record = reload_record(str(config), loaded_at=now - 95)
            recorder = StatusRecorder(
                ReloadRecord(record.loaded_at, SHOWN_PATH, record.version, now - 96)
            )
            recorder.started_at = now - 3 * 3600 - 12 * 60
            warm = now - 104
            steps = [("warm", warm, warm + 8.4, "ok"), ("flip", warm + 8.4, warm + 8.9, "ok"),
                     ("drain", warm + 8.9, warm + 31.2, "ok: 2 streams ended"),
                     ("unload", warm + 31.2, warm + 31.6, "ok")]  # fmt: skip
            for name, started, ended, outcome in steps:
                recorder.record_switch_step(
                    "llmodel", "aya-expanse:8b-q8_0", "qwen3:8b", name,
                    started_at=started, ended_at=ended, outcome=outcome,
                )  # fmt: skip
            for reason in ("limit", "limit", "auth"):
                recorder.count_refusal(reason)
            requests.post(
                f"{upstream}/api/generate",
                json={"model": "qwen3:8b", "prompt": "", "keep_alive": -1},
                timeout=10,
            ).raise_for_status()
            app = build_app(loaded.settings, sources=sources, recorder=recorder)
            with serve(app) as proxy:
                page = requests.get(
                    f"{proxy}/-/status", headers={"Accept": "text/html"}, timeout=10
                ).text
        html = Path(work) / "status.html"
        html.write_text(page.replace(upstream, "http://127.0.0.1:11434"))
        subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--hide-scrollbars", "--force-device-scale-factor=1",
             f"--user-data-dir={Path(work) / 'profile'}", f"--window-size={WIDTH},{HEIGHT}",
             f"--screenshot={out}", html.as_uri()],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
    size = out.stat().st_size
    if size > MAX_BYTES:
        raise SystemExit(f"{out} is {size} bytes, over {MAX_BYTES}: shrink the window")
    print(f"{out}: {WIDTH}x{HEIGHT}, {size} bytes")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "_static" / "status.png")
