"""The built docs, laid out by a real browser at a desktop width and a phone's width.

Headless Chromium (Debian's ``chromium`` package) loads each page of a fresh Sphinx build
from disk, and a script added to the page reports what spills over: the page wider than the
window, a code block or a table wider than its box. At 1280 pixels nothing may spill; at 420
the page itself may not, and the generated tables stack their cells, while long code lines
and the benchmark table scroll inside their own boxes, as Furo lays them out. Skipped where
Chromium is not installed.
"""

from __future__ import annotations

import html
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
DOCS = Path(__file__).resolve().parents[1] / "docs"
PAGES = tuple(sorted(path.stem for path in DOCS.glob("*.rst")))
TIMEOUT_S = 60

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Chromium at /usr/bin/chromium (apt-get install chromium)"
)

#: Added before </body>: once the page has loaded, what is wider than its box goes into an
#: attribute of <body>, which --dump-dom prints.
PROBE = """<script>
window.addEventListener("load", () => {
  const spills = (box) => box.scrollWidth > box.clientWidth + 1;
  const first = (box) => box.textContent.trim().split("\\n")[0].slice(0, 60);
  document.body.dataset.layout = JSON.stringify({
    page: document.documentElement.scrollWidth - document.documentElement.clientWidth,
    code: [...document.querySelectorAll("div.highlight pre")].filter(spills).map(first),
    tables: [...document.querySelectorAll("div.table-wrapper")].filter(spills).map(first),
    generated: [...document.querySelectorAll("div.table-wrapper")]
      .filter((box) => box.querySelector("table.generated") && spills(box)).map(first),
  });
});
</script>"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The docs built afresh, each page carrying the probe."""
    out = tmp_path_factory.mktemp("docs")
    html_dir = out / "html"
    subprocess.run(
        [sys.executable, "-m", "sphinx", "-q", "-b", "html", "-d", str(out / "doctrees"),
         str(DOCS), str(html_dir)],
        check=True,
        timeout=TIMEOUT_S * 3,
    )  # fmt: skip
    for page in PAGES:
        path = html_dir / f"{page}.html"
        path.write_text(path.read_text().replace("</body>", PROBE + "</body>"))
    yield html_dir


def layout(site: Path, page: str, width: int) -> dict[str, Any]:
    """What spills over on ``page`` in a window ``width`` pixels wide."""
    profile = site.parent / f"profile-{page}-{width}"
    command = [
        str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", f"--window-size={width},900",
        "--virtual-time-budget=3000", "--dump-dom", (site / f"{page}.html").as_uri(),
    ]  # fmt: skip
    dom = subprocess.run(
        command, capture_output=True, text=True, timeout=TIMEOUT_S, check=True
    ).stdout
    found = re.search(r'data-layout="([^"]*)"', dom)
    assert found, f"the probe did not report on {page} ({dom[-300:]!r})"
    report: dict[str, Any] = json.loads(html.unescape(found[1]))
    return report


@pytest.mark.parametrize("page", PAGES)
def test_at_a_desktop_width_nothing_spills_over(site: Path, page: str) -> None:
    report = layout(site, page, 1280)
    assert report["page"] <= 0
    assert report["tables"] == []
    assert report["code"] == []


@pytest.mark.parametrize("page", PAGES)
def test_at_a_phones_width_the_page_does_not_scroll_sideways(site: Path, page: str) -> None:
    report = layout(site, page, 420)
    assert report["page"] <= 0
    assert report["generated"] == []  # the generated tables stack their cells instead
