"""The ``llamaserver`` command: prints its URL, serves, stops cleanly on SIGINT."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from server_helpers import healthy, wait_until

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
        assert wait_until(lambda: healthy(url), 120)
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


def _run_command(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "llamaserver", "--port", "0", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_missing_model_file_is_one_line_error(tmp_path: Path) -> None:
    done = _run_command("-m", str(tmp_path / "nonexistent.gguf"))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"llamaserver: error: model file not found: {tmp_path / 'nonexistent.gguf'}"]
    assert "listening" not in done.stdout


def test_model_that_fails_to_load_ends_the_command(tmp_path: Path) -> None:
    # upstream's server exits when the model cannot be loaded instead of serving 503 for ever
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf file")
    done = _run_command("-m", str(junk), "--log-disable")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(
        "llamaserver: error: could not load the model: failed to load model from")


def test_a_llama_server_command_line_starts(tmp_path: Path) -> None:
    """A command line from today's llama-server docs (the model swapped for the default)."""
    import llama_ffi

    argv = ["-m", str(llama_ffi.default_model_path()), "-c", "8192", "-np", "4", "--temp", "0.8",
            "--offline", "--tags", "chat,fim,small", "--no-jinja", "--jinja", "--cache-ram", "0",
            "-fa", "on", "--reasoning-format", "deepseek",
            # flags whose capability comes later, and one that means nothing here
            "--spec-type", "ngram-mod", "--models-max", "4", "--prio-draft", "2", "--cpu-mask", "ff",
            "--host", f"127.0.0.1,{tmp_path / 'llama.sock'}", "--port", "0"]
    proc = subprocess.Popen([sys.executable, "-m", "llamaserver", *argv], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        url = proc.stdout.readline().split()[-1]
        assert proc.stdout.readline().strip().endswith(f"unix://{tmp_path / 'llama.sock'}")
        assert wait_until(lambda: healthy(url), 120)
        props = httpx.get(url + "/props", timeout=30).json()
        assert props["total_slots"] == 4
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
        err = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    warnings = [line for line in err.splitlines() if line.startswith("llamaserver: warning:")]
    assert warnings == [
        "llamaserver: warning: --models-max is accepted but not applied yet (router mode)",
        "llamaserver: warning: --prio-draft is accepted but not applied yet (speculative decoding)"]
    assert "Traceback" not in err and "cpu-mask" not in err  # notes go to the debug log


def test_a_refused_flag_is_one_line_and_status_1() -> None:
    done = _run_command("--control-vector", "cv.gguf")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "llamaserver: error: --control-vector is not supported: control vectors are not "
        "supported"]


STARTUP_ERRORS = {
    "api key file": (["--api-key-file", "{missing}"], "--api-key-file: file not found: {missing}"),
    "ssl key file": (["--ssl-key-file", "{missing}", "--ssl-cert-file", "{junk}"],
                     "--ssl-key-file: file not found: {missing}"),
    "ssl pair": (["--ssl-key-file", "{junk}", "--ssl-cert-file", "{junk}"],
                 "--ssl-cert-file {junk} / --ssl-key-file {junk}: not a usable certificate and "
                 "private key"),
    "path": (["--path", "{missing}"], "--path: not a directory: {missing}"),
    "mmproj file": (["--mmproj", "{missing}"], "-mm/--mmproj: file not found: {missing}"),
    "mmproj content": (["--mmproj", "{junk}"], "--mmproj: projector {junk} failed to load"),
    "system prompt file": (["-spf", "{bad_json}"],
                           "--system-prompt-file {bad_json}: not valid JSON"),
    "chat template file": (["--chat-template-file", "{missing}"],
                           "--chat-template-file {missing}: No such file or directory"),
}


@pytest.mark.parametrize("case", list(STARTUP_ERRORS))
def test_startup_errors_are_one_line_before_listening(tmp_path: Path, case: str) -> None:
    junk, bad_json = tmp_path / "junk.bin", tmp_path / "system.json"
    junk.write_bytes(b"not what it should be")
    bad_json.write_text('{"prompt": "x", bad')
    paths = {"missing": str(tmp_path / "missing"), "junk": str(junk), "bad_json": str(bad_json)}
    args, expected = STARTUP_ERRORS[case]
    done = _run_command(*[arg.format(**paths) for arg in args])
    assert done.returncode == 1
    assert done.stdout == ""  # nothing listened
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "llamaserver: error: " + expected.format(**paths)), done.stderr
