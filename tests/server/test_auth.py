"""API keys guard everything but the health check, slot contents included (as llama-server)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from server_helpers import Running, client_fixture, error_of, running_server, streaming_in_background

KEY = "sk-auth-test-42"
SECRET_PROMPT = "My secret plan is to"


@pytest.fixture(scope="module")
def keyed() -> Iterator[Running]:
    with running_server(parallel=2, ctx_size=512, api_key=[KEY], endpoint_slots=True) as r:
        yield r


anon = client_fixture("keyed")


def _authed(headers: dict[str, str] | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEY}", **(headers or {})}


def test_only_health_is_public(anon: httpx.Client) -> None:
    assert anon.get("/health").status_code == 200
    assert anon.get("/v1/health").status_code == 200
    for path in ("/v1/models", "/models", "/slots", "/props"):
        error_of(anon.get(path), 401, "authentication_error")
        assert anon.get(path, headers=_authed()).status_code == 200, path


def test_unknown_routes_need_the_key(anon: httpx.Client) -> None:
    error_of(anon.get("/no/such/route"), 401, "authentication_error")
    error_of(anon.post("/v1/secret-admin", json={}), 401, "authentication_error")
    error_of(anon.get("/no/such/route", headers=_authed()), 404, "not_found_error")


@pytest.mark.parametrize("headers", [
    {"Authorization": f"bearer {KEY}"}, {"Authorization": f"Bearer  {KEY}"},
    {"Authorization": f"BEARER {KEY}"}, {"Authorization": f"Token {KEY}"},
    {"Authorization": f"Bearer{KEY}"}, {"X-Api-Key": KEY[:-1]}, {"Authorization": KEY},
])
def test_key_spellings_that_are_not_the_key(anon: httpx.Client, headers: dict[str, str]) -> None:
    error_of(anon.get("/props", headers=headers), 401, "authentication_error")


def test_include_slots_needs_the_key_while_a_prompt_runs(keyed: Running,
                                                         anon: httpx.Client) -> None:
    body = {"prompt": SECRET_PROMPT, "n_predict": 400, "ignore_eos": True}
    with streaming_in_background(keyed.url, body, _authed()):
        for query in ("include_slots", "include_slots=1", "include_slots&fail_on_no_slot=1"):
            r = anon.get(f"/health?{query}")
            error_of(r, 401, "authentication_error")
            assert SECRET_PROMPT not in r.text
        plain = anon.get("/health")
        assert plain.status_code == 200 and "slots" not in plain.json()
        assert SECRET_PROMPT not in plain.text
        shown = anon.get("/health?include_slots", headers=_authed())
        assert shown.status_code == 200
        assert any(s["prompt"] == SECRET_PROMPT for s in shown.json()["slots"])


def test_the_api_description_needs_the_key_and_says_so(anon: httpx.Client) -> None:
    for path in ("/openapi.json", "/docs"):
        error_of(anon.get(path), 401, "authentication_error")
    doc = anon.get("/openapi.json", headers={"X-Api-Key": KEY}).json()
    schemes = doc["components"]["securitySchemes"]
    assert schemes["bearer"] == {"type": "http", "scheme": "bearer",
                                 "description": schemes["bearer"]["description"]}
    assert schemes["apiKey"]["in"] == "header" and schemes["apiKey"]["name"] == "X-Api-Key"
    assert doc["security"] == [{"bearer": []}, {"apiKey": []}]
    assert {} in doc["paths"]["/health"]["get"]["security"]  # public, key optional
    assert "401" in doc["paths"]["/completion"]["post"]["responses"]
    page = anon.get("/docs", headers=_authed())
    assert page.status_code == 200 and "X-Api-Key" in page.text
