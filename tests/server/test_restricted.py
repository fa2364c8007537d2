"""A server with API keys, no optional endpoints, one slot and no waiting room."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from server_helpers import Running, client_fixture, error_of, running_server, streaming_in_background

KEY = "sk-test-0123456789"


@pytest.fixture(scope="module")
def restricted() -> Iterator[Running]:
    with running_server(parallel=1, ctx_size=512, queue_size=0, api_key=[KEY],
                        endpoint_slots=False, endpoint_metrics=False) as r:
        yield r


anon = client_fixture("restricted")
authed = client_fixture("restricted", {"Authorization": f"Bearer {KEY}"})


def test_health_is_public_models_are_not(anon: httpx.Client, authed: httpx.Client) -> None:
    assert anon.get("/health").status_code == 200
    error_of(anon.get("/v1/models"), 401, "authentication_error")
    assert authed.get("/v1/models").status_code == 200


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"},
                                     {"Authorization": f"Basic {KEY}"},
                                     {"X-Api-Key": KEY + "x"}, {"Authorization": "Bearer"},
                                     {"Authorization": f"bearer {KEY}"},
                                     {"Authorization": f"Bearer  {KEY}"}])
def test_missing_or_wrong_key_is_401(anon: httpx.Client, headers: dict[str, str]) -> None:
    r = anon.post("/completion", json={"prompt": "x", "n_predict": 1}, headers=headers)
    error = error_of(r, 401, "authentication_error")
    assert error["message"] == "Invalid API Key"
    error_of(anon.get("/props", headers=headers), 401, "authentication_error")


def test_rejected_body_closes_the_connection_openly(anon: httpx.Client) -> None:
    # the 401 comes before the body is read, so the connection cannot be reused: the server
    # must say so rather than close it under the client's next request
    r = anon.post("/completion", json={"prompt": "x", "n_predict": 1})
    assert r.status_code == 401 and r.headers["connection"] == "close"
    assert anon.get("/props").status_code == 401     # a new connection, no protocol error
    assert anon.get("/props").headers.get("connection") != "close"


def test_valid_key_in_either_header(anon: httpx.Client) -> None:
    for headers in ({"Authorization": f"Bearer {KEY}"}, {"X-Api-Key": KEY},
                    {"authorization": f"Bearer {KEY}"}, {"x-api-key": KEY}):
        r = anon.post("/completion", json={"prompt": "x", "n_predict": 1}, headers=headers)
        assert r.status_code == 200, r.text


def test_cors_preflight_needs_no_key(anon: httpx.Client) -> None:
    r = anon.options("/completion", headers={"Origin": "http://example.com",
                                             "Access-Control-Request-Method": "POST"})
    assert r.status_code == 200


def test_openai_client_with_key(restricted: Running) -> None:
    import openai

    with openai.OpenAI(base_url=restricted.url + "/v1", api_key=KEY, max_retries=0) as c:
        assert c.completions.create(model="x", prompt="Hi", max_tokens=1).choices
    with openai.OpenAI(base_url=restricted.url + "/v1", api_key="nope", max_retries=0) as c:
        with pytest.raises(openai.AuthenticationError):
            c.completions.create(model="x", prompt="Hi", max_tokens=1)


def test_disabled_endpoints_are_501(authed: httpx.Client) -> None:
    error_of(authed.get("/metrics"), 501, "not_supported_error")
    error_of(authed.get("/slots"), 501, "not_supported_error")
    error_of(authed.post("/props", json={}), 501, "not_supported_error")
    error_of(authed.post("/slots/0?action=save", json={"filename": "a.bin"}), 501,
             "not_supported_error")
    error_of(authed.post("/embedding", json={"content": "x"}), 501, "not_supported_error")
    error_of(authed.post("/v1/embeddings", json={"input": "x"}), 501, "not_supported_error")


def test_health_hides_slots_when_disabled(anon: httpx.Client) -> None:
    assert "slots" not in anon.get("/health?include_slots").json()


def test_full_queue_is_503_with_retry_after(restricted: Running, authed: httpx.Client) -> None:
    busy_body = {"prompt": "Tell me a long story.", "n_predict": 2000, "ignore_eos": True}
    with streaming_in_background(restricted.url, busy_body, {"Authorization": f"Bearer {KEY}"}):
        health = authed.get("/health?fail_on_no_slot=1")
        assert health.status_code == 503
        assert health.json()["status"] == "no slot available"
        assert authed.get("/health").status_code == 200
        r = authed.post("/completion", json={"prompt": "x", "n_predict": 1})
        error_of(r, 503, "unavailable_error")
        assert int(r.headers["Retry-After"]) >= 1
