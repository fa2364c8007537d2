"""LoRA adapters through HTTP: --lora/--lora-scaled, GET/POST /lora-adapters, a request's `lora`."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import pytest

from llamaserver import LlamaServer, ServerSettings

from server_helpers import error_of, serve_in_thread

PROMPT = "The three primary colors are"


@pytest.fixture(scope="module")
def lora_url(tmp_path_factory: pytest.TempPathFactory, model: Any, model_path: Path,
             write_lora: Callable) -> Iterator[str]:
    directory = tmp_path_factory.mktemp("lora-server")
    strong = write_lora(directory / "strong.gguf", model, zero=False, seed=1)
    noop = write_lora(directory / "noop.gguf", model, zero=True)
    server = LlamaServer(ServerSettings(
        model=model_path, ctx_size=1024, parallel=2, threads=1, lora=[strong],
        lora_scaled=[(noop, 0.5)], lora_init_without_apply=True))
    running = serve_in_thread(server.app)
    try:
        yield running.url
    finally:
        running.stop()


def complete(url: str, **extra: Any) -> str:
    body = {"prompt": PROMPT, "n_predict": 8, "temperature": 0, **extra}
    response = httpx.post(url + "/completion", json=body, timeout=120)
    assert response.status_code == 200, response.text
    return response.json()["content"]


def test_adapters_scales_and_requests(lora_url: str) -> None:
    listed = httpx.get(lora_url + "/lora-adapters").json()
    assert [(a["id"], Path(a["path"]).name, a["scale"]) for a in listed] == [
        (0, "strong.gguf", 0.0), (1, "noop.gguf", 0.0)]  # --lora-init-without-apply
    base = complete(lora_url, id_slot=0)
    adapted = complete(lora_url, id_slot=0, lora=[{"id": 0, "scale": 1.0}])
    assert adapted != base
    # nor may another slot take the adapted cells through the shared prompt cache
    assert complete(lora_url, id_slot=1) == base
    # the slot's cache was computed with the adapter: it must not serve the plain request
    assert complete(lora_url, id_slot=0) == base
    assert complete(lora_url, lora=[{"id": 1, "scale": 1.0}]) == base  # B = 0 changes nothing

    set_ = httpx.post(lora_url + "/lora-adapters", json=[{"id": 0, "scale": 1.0}])
    assert set_.status_code == 200 and set_.json() == {"success": True}
    assert [a["scale"] for a in httpx.get(lora_url + "/lora-adapters").json()] == [1.0, 0.0]
    assert complete(lora_url) == adapted  # requests without `lora` take the server's scales
    assert complete(lora_url, lora=[]) == base  # adapters left out of `lora` get 0
    final = httpx.post(lora_url + "/completion", json={"prompt": PROMPT, "n_predict": 2})
    assert final.json()["generation_settings"]["lora"] == [{"id": 0, "scale": 1.0}]
    httpx.post(lora_url + "/lora-adapters", json=[])
    assert complete(lora_url) == base


def test_requests_with_other_scales_run_side_by_side(lora_url: str) -> None:
    alone = {0.0: complete(lora_url, lora=[]), 1.0: complete(lora_url, lora=[{"id": 0, "scale": 1}])}
    scales = [0.0, 1.0, 1.0, 0.0]
    with ThreadPoolExecutor(len(scales)) as pool:
        results = list(pool.map(lambda s: complete(lora_url, n_predict=8, lora=[{"id": 0, "scale": s}]),
                                scales))
    assert results == [alone[s] for s in scales]


@pytest.mark.parametrize("lora", [
    [{"id": 2, "scale": 1.0}], [{"id": -1, "scale": 1.0}], [{"id": 0, "scale": "high"}],
    [{"id": 0}], {"id": 0, "scale": 1.0},
])
def test_bad_lora_field_is_400(lora_url: str, lora: Any) -> None:
    response = httpx.post(lora_url + "/completion", json={"prompt": PROMPT, "n_predict": 1,
                                                          "lora": lora})
    error_of(response, 400, "invalid_request_error")


@pytest.mark.parametrize("body", [{"id": 0, "scale": 1.0}, [{"id": 9, "scale": 1.0}],
                                  [{"id": 0, "scale": None}], "junk"])
def test_bad_lora_adapters_post_is_400(lora_url: str, body: Any) -> None:
    response = httpx.post(lora_url + "/lora-adapters", json=body)
    error_of(response, 400, "invalid_request_error")
    assert [a["scale"] for a in httpx.get(lora_url + "/lora-adapters").json()] == [0.0, 0.0]


async def test_missing_adapter_file_fails_startup_clearly(model_path: Path, tmp_path: Path) -> None:
    from llama_ffi import ModelLoadError

    server = LlamaServer(ServerSettings(model=model_path, parallel=1, ctx_size=256,
                                        lora=[tmp_path / "missing.gguf"]))
    with pytest.raises(ModelLoadError, match="missing.gguf does not exist"):
        await server.startup()
    assert server.state == "error"
    await server.shutdown()
