"""The default model split over two rpc-servers on loopback (ggml's RPC backend).

Upstream's rpc-server (``build_native.py --rpc`` stages it as ``bin/ggml-rpc-server``) serves
its CPU as a remote device; ``--rpc`` adds both servers' devices and ``-ngl``/``-ts`` put
the layers on them.  The greedy answer must be the one the local run gives, token for
token; an rpc-server killed mid-generation must end that request with an error and turn
``/health`` into a 500 naming the cause, never hang the server.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from server_helpers import running_server, sse_events

llama_ffi = pytest.importorskip("llama_ffi")
if not llama_ffi.rpc_supported():
    pytest.skip("this libllama was built without ggml's RPC backend: build it with "
                "`LLAMA_FFI_RPC=1 python build_native.py --with-server` (CI does)",
                allow_module_level=True)

PROMPTS = ["The capital of France is", "def fibonacci(n):"]
GREEDY = {"n_predict": 24, "temperature": 0, "cache_prompt": False, "ignore_eos": True}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RpcServer:
    """One upstream rpc-server on 127.0.0.1 serving its CPU (one thread)."""

    def __init__(self, log: Path) -> None:
        self.port = _free_port()
        self.endpoint = f"127.0.0.1:{self.port}"
        self._log = open(log, "w")
        self.proc = subprocess.Popen(
            [str(llama_ffi.rpc_server_path()), "-H", "127.0.0.1", "-p", str(self.port), "-t", "1"],
            stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            assert self.proc.poll() is None, f"rpc-server exited {self.proc.returncode}: {log}"
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "rpc-server is not listening"
                time.sleep(0.1)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._log.close()


@pytest.fixture(scope="module")
def rpc_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[RpcServer]]:
    logs = tmp_path_factory.mktemp("rpc")
    servers = [RpcServer(logs / f"rpc-{i}.log") for i in range(2)]
    yield servers
    for server in servers:
        server.kill()


@pytest.fixture(scope="module")
def split(rpc_pair: list[RpcServer]) -> Iterator[httpx.Client]:
    """A server whose every layer lives on the two remote devices, half on each."""
    with running_server(rpc=[s.endpoint for s in rpc_pair], n_gpu_layers=-1,
                        tensor_split=[1, 1], ctx_size=1024, parallel=1) as running:
        with httpx.Client(base_url=running.url, timeout=120) as client:
            yield client


def test_remote_devices_are_listed_and_hold_the_layers(rpc_pair: list[RpcServer],
                                                      split: httpx.Client) -> None:
    remote = [d for d in llama_ffi.devices() if d.is_rpc]
    endpoints = {s.endpoint for s in rpc_pair}
    assert endpoints <= {d.description for d in remote}
    assert all(d.type == "gpu" and d.memory_total > 0 for d in remote)
    assert split.get("/health").json()["status"] == "ok"


@pytest.mark.parametrize("prompt", PROMPTS)
def test_split_model_answers_token_for_token_as_the_local_run(client: httpx.Client,
                                                              split: httpx.Client,
                                                              prompt: str) -> None:
    body = {"prompt": prompt, **GREEDY, "return_tokens": True}
    local = client.post("/completion", json=body).json()
    remote = split.post("/completion", json=body).json()
    assert remote["tokens"] == local["tokens"] and len(remote["tokens"]) == GREEDY["n_predict"]
    assert remote["content"] == local["content"]


def test_library_llama_with_rpc_matches_local(rpc_pair: list[RpcServer], model_path: Path) -> None:
    with llama_ffi.Llama(model_path, n_ctx=512, rpc=[rpc_pair[0].endpoint],
                         n_gpu_layers=-1) as remote, llama_ffi.Llama(model_path, n_ctx=512) as local:
        prompt = PROMPTS[0]
        assert remote.generate(prompt, max_tokens=12, temperature=0) == \
            local.generate(prompt, max_tokens=12, temperature=0)


def test_unreachable_rpc_server_is_a_start_up_error() -> None:
    with pytest.raises(llama_ffi.RpcServerError, match="cannot reach the RPC server"):
        llama_ffi.add_rpc_servers([f"127.0.0.1:{_free_port()}"])
    assert llama_ffi.is_loopback_endpoint("127.0.0.1:50052")
    assert not llama_ffi.is_loopback_endpoint("10.1.2.3:50052")


def test_killed_rpc_server_fails_the_request_and_health(tmp_path: Path) -> None:
    """Its own two rpc-servers and server: after this that engine never serves again, and a
    server in the same process that uses only local devices keeps serving."""
    victims = [RpcServer(tmp_path / f"victim-{i}.log") for i in range(2)]
    try:
        # a server on local devices only, in the same process, running through the kill
        with running_server(ctx_size=512, parallel=1) as bystander, \
                running_server(rpc=[v.endpoint for v in victims], n_gpu_layers=-1,
                               tensor_split=[1, 1], ctx_size=1024, parallel=2) as running:
            streamed: list[str] = []
            first_token = threading.Event()

            def generate() -> None:
                body = {"prompt": "Count to one thousand: 1, 2, 3,", "n_predict": 400,
                        "ignore_eos": True, "temperature": 0, "stream": True}
                with httpx.Client(base_url=running.url, timeout=60) as c:
                    with c.stream("POST", "/completion", json=body) as response:
                        for line in response.iter_lines():
                            streamed.append(line)
                            first_token.set()

            worker = threading.Thread(target=generate)
            worker.start()
            assert first_token.wait(60), "no token streamed"
            victims[1].kill()
            worker.join(60)
            assert not worker.is_alive(), "the stream hung after its rpc-server died"
            events = sse_events("\n\n".join(line for line in streamed if line))
            error = events[-1]["error"]
            assert error["code"] == 500 and "RPC server" in error["message"]

            health = httpx.get(running.url + "/health", timeout=10)
            assert health.status_code == 500
            assert "RPC server" in health.json()["error"]["message"]
            started = time.monotonic()
            again = httpx.post(running.url + "/completion", json={"prompt": "Hi", "n_predict": 4},
                               timeout=10)
            assert again.status_code == 500 and time.monotonic() - started < 5
            assert httpx.get(bystander.url + "/health", timeout=10).status_code == 200
            answer = httpx.post(bystander.url + "/completion",
                                json={"prompt": "Hi", "n_predict": 2}, timeout=60)
            assert answer.status_code == 200 and answer.json()["tokens_predicted"] == 2
        # The dead server's devices stay in ggml's registry of this process: listing them
        # must not call it, and a server without --rpc loads and answers beside them.
        assert {d.backend for d in llama_ffi.devices()} >= {"CPU", "RPC"}
        with running_server(ctx_size=512, parallel=1) as local:
            answer = httpx.post(local.url + "/completion", json={"prompt": "Hi", "n_predict": 2},
                                timeout=60)
            assert answer.status_code == 200 and answer.json()["tokens_predicted"] == 2
    finally:
        for victim in victims:
            victim.kill()
