"""--host with several addresses and unix sockets; CORS as llama-server does it."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from llamaserver import LlamaServer
from llamaserver._cors import CorsPolicy
from llamaserver._listen import open_listeners
from llamaserver.settings import ServerSettings
from server_helpers import wait_until

ALLOWED = "https://app.example"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Serving:
    """``LlamaServer.serve_async`` in a thread, stopped on exit."""

    def __init__(self, server: LlamaServer) -> None:
        self.server = server
        self.urls: list[str] = []
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
            await self.server.serve_async(shutdown_trigger=self._stop.wait,
                                          on_listening=self.urls.append)
        try:
            asyncio.run(main())
        except BaseException as exc:
            self.error = exc

    def __enter__(self) -> "Serving":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)


@pytest.fixture(scope="module")
def multi(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Serving, Path, int]]:
    sock_path = tmp_path_factory.mktemp("uds") / "llama.sock"
    port = _free_port()
    server = LlamaServer(host=f"127.0.0.1,127.0.0.2,{sock_path}", port=port, ctx_size=512,
                         api_key=["secret"])
    with Serving(server) as serving:
        assert wait_until(lambda: len(serving.urls) == 3 or serving.error is not None, 60)
        yield serving, sock_path, port
    assert not sock_path.exists()  # the socket file goes with the server


def test_every_host_is_served(multi: tuple[Serving, Path, int]) -> None:
    serving, sock_path, port = multi
    assert serving.urls == [f"http://127.0.0.1:{port}", f"http://127.0.0.2:{port}",
                            f"http+unix://{sock_path}"]

    def healthy(client: httpx.Client) -> bool:
        return client.get("/health").status_code == 200

    # the first decode may take seconds on a busy machine: wait as the other server tests do
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as one, \
            httpx.Client(base_url=f"http://127.0.0.2:{port}", timeout=120) as two, \
            httpx.Client(base_url="http://llama", timeout=120, transport=httpx.HTTPTransport(
                uds=str(sock_path))) as uds:
        assert wait_until(lambda: healthy(uds), 120)
        assert healthy(one) and healthy(two)
        reply = uds.post("/completion", json={"prompt": "Hi", "n_predict": 2},
                         headers={"Authorization": "Bearer secret"})
        assert reply.status_code == 200 and reply.json()["tokens_predicted"] == 2


def test_a_file_in_the_way_is_not_replaced(tmp_path: Path) -> None:
    path = tmp_path / "busy.sock"
    path.write_text("not a socket")
    with pytest.raises(OSError, match="exists and is not a socket"):
        open_listeners(ServerSettings(host=f"127.0.0.1,{path}", port=0))
    assert path.read_text() == "not a socket"


def test_a_taken_port_names_the_address() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1 port {port}"):
            open_listeners(ServerSettings(port=port))


def test_a_stale_socket_file_is_replaced_and_removed(tmp_path: Path) -> None:
    path = tmp_path / "stale.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # the file stays, as after a crash
    (listener,) = open_listeners(ServerSettings(host=str(path)))
    assert listener.url == f"http+unix://{path}"
    listener.close()
    assert not path.exists()


# ---- CORS ---------------------------------------------------------------------------------

def _policy(**settings: object) -> CorsPolicy:
    s = ServerSettings(**settings)  # type: ignore[arg-type]
    return CorsPolicy(s.cors_origins, s.cors_methods, s.cors_headers, s.cors_credentials)


def test_default_echoes_the_origin_with_credentials() -> None:
    policy = _policy()
    assert policy.headers_for("https://any.example") == {
        "Access-Control-Allow-Origin": "https://any.example", "Vary": "Origin",
        "Access-Control-Allow-Credentials": "true"}
    assert policy.headers_for(None) == {"Access-Control-Allow-Origin": "*", "Vary": "Origin"}
    assert _policy(cors_credentials=False).headers_for("https://any.example") == {
        "Access-Control-Allow-Origin": "*"}


def test_listed_origins_only() -> None:
    policy = _policy(cors_origins=f"{ALLOWED}, http://localhost:5173")
    assert policy.headers_for(ALLOWED)["Access-Control-Allow-Origin"] == ALLOWED
    assert policy.headers_for(ALLOWED)["Access-Control-Allow-Credentials"] == "true"
    assert policy.headers_for("https://evil.example") == {"Vary": "Origin"}
    assert "Access-Control-Allow-Credentials" not in _policy(
        cors_origins=ALLOWED, cors_credentials=False).headers_for(ALLOWED)
    local = _policy(cors_origins="localhost")
    assert local.headers_for("http://127.0.0.1:3000")["Access-Control-Allow-Origin"] == (
        "http://127.0.0.1:3000")
    assert "Access-Control-Allow-Origin" not in local.headers_for("http://10.0.0.1")


def test_preflight_names_methods_and_headers() -> None:
    headers = _policy(cors_methods="GET, POST").headers_for(
        ALLOWED, preflight=True, requested_headers="authorization, content-type")
    assert headers["Access-Control-Allow-Methods"] == "GET, POST"
    assert headers["Access-Control-Allow-Headers"] == "authorization, content-type"
    fixed = _policy(cors_headers="Content-Type").headers_for(
        ALLOWED, preflight=True, requested_headers="x-other")
    assert fixed["Access-Control-Allow-Headers"] == "Content-Type"


async def test_the_app_answers_preflights_before_api_keys() -> None:
    app = LlamaServer(cors_origins=ALLOWED, api_key=["secret"]).app
    client = app.test_client()
    preflight = await client.options("/v1/chat/completions", headers={
        "Origin": ALLOWED, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization"})
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert preflight.headers["Access-Control-Allow-Methods"] == "GET, POST, DELETE, OPTIONS"
    assert preflight.headers["Access-Control-Allow-Headers"] == "authorization"
    unknown = await client.options("/no/such/route", headers={"Origin": ALLOWED})
    assert unknown.status_code == 200
    refused = await client.options("/v1/models", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in refused.headers
    answer = await client.get("/props", headers={"Origin": ALLOWED})
    assert answer.status_code == 401  # the key is still required for the request itself
    assert answer.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert answer.headers["Access-Control-Allow-Credentials"] == "true"
    assert "Origin" in answer.headers["Vary"]
    other = await client.get("/props", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers
