"""Fixtures for the HTTP server tests: real libllama, real default model, real hypercorn.

The main server is loaded once per session and served by hypercorn on a free port in a
thread of its own (so that synchronous clients such as ``openai.OpenAI`` can call it from the
test thread).  Tests that need other settings start their own small server, once per module.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from server_helpers import MODEL_ALIAS, PARALLEL, Running, running_server



@pytest.fixture(scope="session")
def slot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("slots")


@pytest.fixture(scope="session")
def main(slot_dir: Path) -> Iterator[Running]:
    """The session's server: 4 slots, embeddings, metrics, POST /props, slot files."""
    with running_server(parallel=PARALLEL, ctx_size=4096, n_predict=64, embedding=True,
                        endpoint_metrics=True, endpoint_props=True, slot_save_path=slot_dir,
                        alias=MODEL_ALIAS) as running:
        yield running


@pytest.fixture(scope="session")
def base_url(main: Running) -> str:
    return main.url


@pytest.fixture(scope="session")
def client(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=120) as c:
        yield c


