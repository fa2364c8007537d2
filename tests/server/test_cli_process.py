"""The ``llamaserver`` command: prints its URL, serves, stops cleanly on SIGINT."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
from server_helpers import wait_until

REPO = Path(__file__).resolve().parents[2]


def test_command_serves_the_default_model_and_stops_on_sigint(tmp_path: Path) -> None:
    spf = tmp_path / "system.json"
    spf.write_text('{"prompt": "You are a test.", "anti_prompt": "User:", '
                   '"assistant_name": "Bot:"}')
    env = {**os.environ, "LLAMA_ARG_CTX_SIZE": "512"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "llamaserver", "--port", "0", "-np", "1", "-spf", str(spf),
         "--alias", "cli-test", "--log-format", "json"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("llamaserver listening on http://127.0.0.1:"), line
        url = line.split()[-1]

        def healthy() -> bool:
            try:
                return httpx.get(url + "/health", timeout=5).status_code == 200
            except httpx.HTTPError:
                return False

        assert wait_until(healthy, 120)
        props = httpx.get(url + "/props", timeout=30).json()
        assert props["user_name"] == "User:" and props["assistant_name"] == "Bot:"
        assert props["system_prompt"] == "You are a test."
        assert props["default_generation_settings"]["n_ctx"] == 512
        assert httpx.get(url + "/v1/models").json()["data"][0]["id"] == "cli-test"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
