"""Browser tests of the web UI: Debian's headless Chromium driven by Playwright, against a
real LlamaServer (real libllama, the default model) served by hypercorn in a thread.

Playwright's own browser download is never used: the tests launch /usr/bin/chromium
(``apt-get install chromium``; ``.ci/run`` installs it).  Without it they are skipped.
Screenshots go to tests/browser/screenshots/ (git-ignored).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "server"))  # server_helpers

CHROMIUM = Path(os.environ.get("LLAMA_FFI_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"


# Module scope, not session: while Playwright's sync API is running it owns an event loop on
# this thread, and the async tests collected after these (tests/server) need the thread back.
@pytest.fixture(scope="module")
def browser() -> Iterator["playwright.sync_api.Browser"]:  # noqa: F821
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(exist_ok=True)
    return SCREENSHOTS
