"""A ``llamaserver`` command in a child process: what a user runs, signals and all."""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

from server_helpers import healthy, wait_until

REPO = Path(__file__).resolve().parents[2]


class ServerProcess:
    def __init__(self, proc: subprocess.Popen[str], url: str) -> None:
        self.proc = proc
        self.url = url
        self.port = int(url.rsplit(":", 1)[1])
        self._stderr: list[str] = []
        assert proc.stderr is not None
        stream = proc.stderr
        # read as it comes: a full pipe would block the server's logging
        self._reader = threading.Thread(target=lambda: self._stderr.extend(stream), daemon=True)
        self._reader.start()

    def healthy(self) -> bool:
        return healthy(self.url)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> tuple[int, float]:
        """Send ``sig``; the exit status and the seconds it took."""
        t0 = time.monotonic()
        self.proc.send_signal(sig)
        return self.proc.wait(timeout), time.monotonic() - t0

    @property
    def stderr(self) -> str:
        self._reader.join(10)
        return "".join(self._stderr)


@contextlib.contextmanager
def llamaserver_process(*args: str) -> Iterator[ServerProcess]:
    """``python -m llamaserver --port 0 ARGS`` (the default model), once it is healthy."""
    proc = subprocess.Popen([sys.executable, "-m", "llamaserver", "--port", "0", *args],
                            cwd=REPO, env={**os.environ}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("llamaserver listening on http://127.0.0.1:"), line
        server = ServerProcess(proc, line.split()[-1])
        assert wait_until(server.healthy, 120), "the server never became healthy"
        yield server
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)


class HealthProbe:
    """``/health`` asked again and again from a thread of its own; latencies in seconds."""

    def __init__(self, url: str, pause: float = 0.005) -> None:
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self._url, self._pause = url, pause
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self._url, timeout=30) as client:
            while not self._stop.is_set():
                t0 = time.perf_counter()
                response = client.get("/health")
                self.latencies.append(time.perf_counter() - t0)
                if response.status_code != 200:
                    self.failures.append(response.text)
                time.sleep(self._pause)

    def __enter__(self) -> HealthProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def p99(self) -> float:
        return statistics.quantiles(self.latencies, n=100, method="inclusive")[98]


def run_clients(n: int, seconds: float, work: Callable[[httpx.Client], None], url: str) -> None:
    """``n`` threads, each calling ``work(client)`` again and again for ``seconds``."""
    end = time.monotonic() + seconds
    errors: list[BaseException] = []

    def loop() -> None:
        try:
            with httpx.Client(base_url=url, timeout=120) as client:
                while time.monotonic() < end:
                    work(client)
        except BaseException as exc:  # re-raised in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=loop) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    if errors:
        raise errors[0]
