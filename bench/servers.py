"""Start, watch and stop the servers under comparison, each as a child process."""

from __future__ import annotations

import dataclasses
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import httpx

REPO = pathlib.Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclasses.dataclass
class ServerSpec:
    name: str
    argv: list[str]              # without host/port, which are added per run
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    protocol: str = "llama"      # how load.py talks to it: "llama" (/completion) or "openai"
    cwd: str | None = None       # where it starts (a Python server imports from there first)


def common_flags(model: str, ctx: int, parallel: int, threads: int) -> list[str]:
    return ["-m", model, "-c", str(ctx), "-np", str(parallel), "-t", str(threads), "-tb", str(threads)]


def ours(model: str, ctx: int, parallel: int, threads: int) -> ServerSpec:
    return ServerSpec("llamaserver", [sys.executable, "-m", "llamaserver",
                                      *common_flags(model, ctx, parallel, threads), "--metrics"])


def upstream(model: str, ctx: int, parallel: int, threads: int) -> ServerSpec:
    binary = REPO / "llama_ffi" / "_native" / "bin" / "llama-server"
    if not binary.exists():
        raise FileNotFoundError(f"{binary} is missing: run `python build_native.py --with-server`")
    # Same kernels as ours: the same build; no web UI, no warmup differences beyond the defaults.
    return ServerSpec("llama-server", [str(binary), *common_flags(model, ctx, parallel, threads),
                                       "--no-webui"])


def llama_cpp_python(model: str, ctx: int, parallel: int, threads: int) -> ServerSpec:
    python = REPO / "bench" / ".venv-lcp" / "bin" / "python"
    if not python.exists():
        raise FileNotFoundError(f"{python} is missing: run `python bench/lcp_install.py`")
    lib = REPO / "llama_ffi" / "_native" / "lib"
    # It serves one request at a time (no slots), so `parallel` has nothing to set. By default a
    # request that arrives while another streams cuts that stream short; under a closed-loop load
    # that would count truncated requests as served, so it is turned off.
    return ServerSpec("llama-cpp-python",
                      [str(python), "-m", "llama_cpp.server", "--model", model, "--n_ctx", str(ctx),
                       "--n_threads", str(threads), "--n_threads_batch", str(threads),
                       "--interrupt_requests", "false"],
                      # Our libllama (and libmtmd), not a copy of its own: same kernels as the others.
                      env={"LLAMA_CPP_LIB_PATH": str(lib), "MTMD_CPP_LIB": str(lib)},
                      protocol="openai")


def rss_bytes(pid: int) -> int:
    """Resident memory of a process and its children."""
    total = 0
    pids = [pid]
    try:
        children = pathlib.Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    except OSError:
        pass
    for p in pids:
        try:
            for line in pathlib.Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def thread_cpu_seconds(pid: int) -> dict[str, float]:
    """CPU time (user + system) of each thread of `pid`, summed by thread name."""
    ticks = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for task in pathlib.Path(f"/proc/{pid}/task").glob("*"):
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / ticks
    return out


class Running:
    """A started server: base URL, process, and how long it took to become healthy."""

    def __init__(self, spec: ServerSpec, *, timeout: float = 120.0):
        self.spec = spec
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = [*spec.argv, "--host", "127.0.0.1", "--port", str(self.port)]
        if spec.name == "llama-cpp-python":
            argv = [*spec.argv, "--host", "127.0.0.1", "--port", str(self.port)]
        self.log = open(REPO / "bench" / f".{spec.name}.log", "w")
        started = time.perf_counter()
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT,
                                     env={**os.environ, **spec.env}, cwd=spec.cwd,
                                     start_new_session=True)
        self.startup_s = self._wait_healthy(started, timeout)

    def _wait_healthy(self, started: float, timeout: float) -> float:
        health = "/v1/models" if self.spec.name == "llama-cpp-python" else "/health"
        with httpx.Client(timeout=2.0) as client:
            while time.perf_counter() - started < timeout:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.spec.name} exited with {self.proc.returncode}; "
                                       f"see bench/.{self.spec.name}.log")
                try:
                    if client.get(self.url + health).status_code == 200:
                        return time.perf_counter() - started
                except httpx.HTTPError:
                    pass
                time.sleep(0.02)
        raise TimeoutError(f"{self.spec.name} not healthy after {timeout} s")

    def rss(self) -> int:
        return rss_bytes(self.proc.pid)

    def thread_cpu(self) -> dict[str, float]:
        return thread_cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
