"""``--timeout`` bounds how long a client may take to send its headers and its body: bytes
trickling in never hold a slot or a worker past it.  A client quietly waiting for a long
generation is not cut."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from process_helpers import ServerProcess, llamaserver_process
from server_helpers import read_until, wait_until

TIMEOUT_S = 2
SLACK_S = 6  # a loaded machine


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with llamaserver_process("-np", "2", "-c", "2048", "--timeout", str(TIMEOUT_S)) as running:
        yield running


def trickle(server: ServerProcess, head: bytes, data: bytes, pause: float
            ) -> tuple[bytes, float]:
    """Send ``head`` at once, then ``data`` a byte at a time; what the server answered, and
    when it closed the connection."""
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.settimeout(30)
    received = bytearray()
    closed = threading.Event()

    def read() -> None:
        try:
            while chunk := sock.recv(65536):
                received.extend(chunk)
        except OSError:
            pass
        closed.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    t0 = time.monotonic()
    try:
        sock.sendall(head)
        for byte in data:
            if closed.is_set():
                break
            sock.sendall(bytes([byte]))
            time.sleep(pause)
    except OSError:
        pass  # the server closed the connection under us
    closed.wait(30)
    took = time.monotonic() - t0
    sock.close()
    return bytes(received), took


def idle(server: ServerProcess) -> bool:
    slots = httpx.get(server.url + "/slots", timeout=10).json()
    return not any(slot["is_processing"] for slot in slots)


def test_headers_trickling_in_are_cut(server: ServerProcess) -> None:
    headers = b"POST /completion HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" * 3
    received, took = trickle(server, b"", headers, 0.25)
    assert received == b"" or received.startswith(b"HTTP/1.1 4")
    assert took < TIMEOUT_S + SLACK_S, took
    assert idle(server)


def test_a_body_trickling_in_is_408(server: ServerProcess) -> None:
    body = json.dumps({"prompt": "hello " * 20, "n_predict": 4}).encode()
    request = (b"POST /completion HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Content-Length: %d\r\n\r\n" % len(body))
    received, took = trickle(server, request, body, 0.1)
    head, _, payload = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), received
    assert b"connection: close" in head.lower()
    error = json.loads(payload)["error"]
    assert error["code"] == 408 and "--timeout" in error["message"]
    assert took < TIMEOUT_S + SLACK_S, took
    assert idle(server)


def test_a_client_waiting_quietly_for_a_long_generation_is_not_cut(
        server: ServerProcess) -> None:
    """It waits in the queue behind two long generations for longer than the timeout, sending
    nothing, then gets its whole answer."""
    stop = threading.Event()

    def occupy() -> None:
        with httpx.stream("POST", server.url + "/completion", timeout=120, json={
                "prompt": "Once upon a time", "n_predict": 100_000, "ignore_eos": True,
                "stream": True}) as response:
            for _ in response.iter_lines():
                if stop.is_set():
                    return  # leaving frees the slot

    busy = [threading.Thread(target=occupy) for _ in range(2)]
    for thread in busy:
        thread.start()
    try:
        assert wait_until(lambda: not idle(server) and all(
            s["is_processing"] for s in httpx.get(server.url + "/slots").json()), 60)
        threading.Timer(TIMEOUT_S + 1.5, stop.set).start()
        t0 = time.monotonic()
        response = httpx.post(server.url + "/completion", timeout=120, json={
            "prompt": "Hello", "n_predict": 8, "ignore_eos": True})
        took = time.monotonic() - t0
    finally:
        stop.set()
        for thread in busy:
            thread.join(60)
    assert response.status_code == 200 and response.json()["tokens_predicted"] == 8
    assert took > TIMEOUT_S + 1


def test_a_client_leaving_frees_its_slot(server: ServerProcess) -> None:
    """This server has no -n cap, so the generation would run for thousands of tokens."""
    body = {"prompt": "Write a very long story about llamas.", "n_predict": 100_000,
            "ignore_eos": True, "stream": True, "id_slot": 1}

    def slot1_busy() -> bool:
        return bool(httpx.get(server.url + "/slots").json()[1]["is_processing"])

    with httpx.stream("POST", server.url + "/completion", json=body, timeout=60) as response:
        assert response.status_code == 200
        lines = read_until(response, lambda line: line.startswith("data: "))
        assert slot1_busy()  # one token arrived
        lines.close()
    # the connection is closed: the slot must become idle long before the generation's end
    assert wait_until(lambda: not slot1_busy(), 10)
