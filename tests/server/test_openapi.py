"""GET /openapi.json and GET /docs: a valid OpenAPI 3.1 document, generated from the models the
server validates with, that covers every route and that the server's real answers keep to."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_check import Document, load
from openapi_spec_validator import validate
from quart import Quart, Response
from server_helpers import THINKING_TEMPLATE, Running, in_process, running_server

from llamaserver import LlamaServer
from llamaserver.http._chat import ChatRequest
from llamaserver.http._completion import CompletionRequest
from llamaserver.http._openapi import build_document, openapi_path, undocumented_rules
from llamaserver.http._openapi_table import OPERATIONS
from llamaserver.http._tokenize import TokenizeRequest

CHAT = [{"role": "user", "content": "Say hi"}]
TOOL = [{"type": "function", "function": {"name": "weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string", "enum": ["Paris", "Oslo"]}},
    "required": ["city"], "additionalProperties": False}}}]
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
WEATHER = {"name": "weather", "input_schema": TOOL[0]["function"]["parameters"]}
# A budget of 3 closes the thinking block the template opens: thinking, then the answer.
THINKS = {"type": "enabled", "budget_tokens": 3}


@pytest.fixture(scope="module")
def thinker() -> Iterator[tuple[httpx.Client, Document]]:
    """A server whose template opens a <think> block: answers with every kind of block."""
    with running_server(parallel=2, ctx_size=2048, chat_template=THINKING_TEMPLATE,
                        threads=1, threads_batch=1) as running:
        with httpx.Client(base_url=running.url, timeout=300) as c:
            yield c, load(c)


@pytest.fixture(scope="module")
def doc(client: httpx.Client) -> Document:
    return load(client)


def test_the_document_is_valid_openapi(doc: Document) -> None:
    validate(doc.doc)  # raises OpenAPIValidationError, naming the place
    assert doc.doc["openapi"].startswith("3.1")


def test_every_route_of_the_app_has_a_row_and_is_documented(main: Running,
                                                             doc: Document) -> None:
    rules = list(main.server.app.url_map.iter_rules())
    missing = undocumented_rules(rules)
    assert not missing, ("routes without a row in llamaserver/http/_openapi_table.py: "
                         + ", ".join(missing))
    for rule in rules:
        item = doc.doc["paths"].get(openapi_path(rule), {})
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert method.lower() in item, f"{method} {rule.rule} is not in /openapi.json"


def test_a_route_without_a_row_is_named() -> None:
    server = LlamaServer()  # not started: only its routes are needed
    bp = server.blueprint()

    async def new_thing() -> Response:
        return Response("")

    bp.add_url_rule("/v1/new-thing", "new_thing", new_thing, methods=["POST"])
    app = Quart(__name__, static_folder=None)
    app.register_blueprint(bp)
    assert undocumented_rules(app.url_map.iter_rules()) == [
        "POST /v1/new-thing (llamaserver.new_thing)"]
    built = build_document(app.url_map.iter_rules(), blueprint="llamaserver", auth=False,
                           title="t", version="0", description="")
    assert built["paths"]["/v1/new-thing"]["post"]["x-undocumented"] is True


@pytest.mark.parametrize("name,model", [("CompletionRequest", CompletionRequest),
                                        ("ChatRequest", ChatRequest),
                                        ("TokenizeRequest", TokenizeRequest)])
def test_schemas_are_generated_from_the_validating_models(doc: Document, name: str,
                                                          model: Any) -> None:
    component = doc.doc["components"]["schemas"][name]
    own = model.model_json_schema()
    fields = [field.alias or name for name, field in model.model_fields.items()]
    assert list(component["properties"]) == list(own["properties"]) == fields
    assert set(component.get("required", ())) == set(own.get("required", ()))


def test_each_operation_uses_its_rows_models(doc: Document) -> None:
    body = doc.operation("POST", "/completion")["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/CompletionRequest"}
    chat = doc.operation("POST", "/v1/chat/completions")
    assert chat["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ChatCompletion"}
    assert "text/event-stream" in chat["responses"]["200"]["content"]
    alias = doc.operation("POST", "/chat/completions")
    assert alias["x-alias-of"] == "v1_chat_completions"
    assert set(OPERATIONS["completion"].errors) <= {
        int(s) for s in doc.operation("POST", "/completion")["responses"]}


def test_query_and_path_parameters_are_described(doc: Document) -> None:
    health = {p["name"]: p for p in doc.operation("GET", "/health")["parameters"]}
    assert set(health) == {"include_slots", "fail_on_no_slot"}
    assert all(p["in"] == "query" and not p["required"] for p in health.values())
    action = {p["name"]: p for p in doc.operation("POST", "/slots/0")["parameters"]}
    assert action["id_slot"]["in"] == "path" and action["id_slot"]["schema"]["type"] == "integer"
    assert action["action"]["required"]
    assert action["action"]["schema"]["enum"] == ["save", "restore", "erase"]


def test_without_keys_there_is_no_security_scheme(doc: Document) -> None:
    assert "securitySchemes" not in doc.doc["components"] and "security" not in doc.doc


def test_component_names_are_the_models_own(doc: Document) -> None:
    # two models of one name in different modules would get long generated names
    assert not [name for name in doc.doc["components"]["schemas"] if "__" in name]
    for name in ("MessageAnswer", "MessageEvent", "ResponseObject", "ResponseEvent",
                 "InputTokens", "MessagesRequest", "ResponsesRequest"):
        assert name in doc.doc["components"]["schemas"], name


def test_named_streams_say_so(doc: Document) -> None:
    for path in ("/v1/messages", "/v1/responses"):
        stream = doc.operation("POST", path)["responses"]["200"]["content"]["text/event-stream"]
        assert stream["schema"]["required"] == ["data", "event"]
    chat = doc.operation("POST", "/v1/chat/completions")["responses"]["200"]["content"]
    assert chat["text/event-stream"]["schema"]["required"] == ["data"]


def _get(client: httpx.Client, doc: Document, path: str) -> Any:
    return doc.check("GET", path, client.get(path))


def _post(client: httpx.Client, doc: Document, path: str, body: Any) -> Any:
    return doc.check("POST", path, client.post(path, json=body))


def test_state_answers_match_the_document(client: httpx.Client, doc: Document,
                                          slot_dir: Any) -> None:
    for path in ("/health", "/health?include_slots", "/v1/health", "/props", "/slots",
                 "/v1/models", "/models", "/lora-adapters", "/openapi.json"):
        _get(client, doc, path)
    assert "llamacpp:" in _get(client, doc, "/metrics")
    assert "<html" in _get(client, doc, "/docs")
    assert _post(client, doc, "/props", {}) == {"success": True}
    assert _post(client, doc, "/lora-adapters", []) == {"success": True}
    client.post("/completion", json={"prompt": "Slot zero", "n_predict": 1, "id_slot": 0})
    saved = _post(client, doc, "/slots/0?action=save", {"filename": "openapi.bin"})
    assert saved["n_saved"] > 0 and (slot_dir / "openapi.bin").exists()
    _post(client, doc, "/slots/0?action=restore", {"filename": "openapi.bin"})
    _post(client, doc, "/slots/0?action=erase", {})


def test_text_answers_match_the_document(client: httpx.Client, doc: Document) -> None:
    assert isinstance(_post(client, doc, "/tokenize", {"content": "héllo"})["tokens"][0], int)
    pieces = _post(client, doc, "/tokenize", {"content": "hi 🦙", "with_pieces": True})
    assert "piece" in pieces["tokens"][0]
    _post(client, doc, "/detokenize", {"tokens": [1, 2, 3]})
    _post(client, doc, "/apply-template", {"messages": CHAT})
    _post(client, doc, "/embedding", {"content": "one"})
    _post(client, doc, "/embedding", {"content": ["one", "two"]})
    _post(client, doc, "/embeddings", {"input": "one"})
    _post(client, doc, "/v1/embeddings", {"input": ["one", "two"]})
    _post(client, doc, "/v1/embeddings", {"input": "one", "encoding_format": "base64",
                                          "dimensions": 8})


def test_completion_answers_match_the_document(client: httpx.Client, doc: Document) -> None:
    one = _post(client, doc, "/completion", {"prompt": "Hi", "n_predict": 2, "n_probs": 2,
                                             "return_tokens": True})
    assert one["stop"] is True and len(one["completion_probabilities"]) == one["tokens_predicted"]
    assert len(_post(client, doc, "/completions", {"prompt": ["a", "b"], "n_predict": 1})) == 2
    events = _post(client, doc, "/completion", {
        "prompt": "Hi", "n_predict": 2, "stream": True, "n_probs": 1,
        "timings_per_token": True, "return_progress": True})
    assert events[-1]["stop"] is True
    _post(client, doc, "/completion", {"prompt": ["a", [1, 2]], "n_predict": 1, "stream": True})
    error = _post(client, doc, "/completion", {"prompt": "x", "n_predict": "two"})
    assert "'n_predict'" in error["error"]["message"]
    _post(client, doc, "/infill", {"input_prefix": "def f(", "input_suffix": ")"})  # 501 here
    _post(client, doc, "/rerank", {"query": "a", "documents": ["b"]})  # 501 without --reranking


def test_openai_answers_match_the_document(client: httpx.Client, doc: Document) -> None:
    text = _post(client, doc, "/v1/completions", {"prompt": "Hi", "max_tokens": 2, "n": 2,
                                                  "logprobs": 2, "echo": True})
    assert len(text["choices"]) == 2
    _post(client, doc, "/v1/completions", {"prompt": "Hi", "max_tokens": 2, "stream": True,
                                           "stream_options": {"include_usage": True}})
    chat = _post(client, doc, "/v1/chat/completions", {"messages": CHAT, "max_tokens": 2,
                                                       "logprobs": True, "top_logprobs": 2})
    assert chat["choices"][0]["logprobs"]["content"]
    events = _post(client, doc, "/chat/completions", {
        "messages": CHAT, "max_tokens": 2, "stream": True, "timings_per_token": True,
        "stream_options": {"include_usage": True}})
    assert events[-1] == "[DONE]" and events[-2]["usage"]["completion_tokens"] >= 1
    call = _post(client, doc, "/v1/chat/completions", {
        "messages": ASK, "max_tokens": 64, "tools": TOOL, "tool_choice": "required",
        "temperature": 0})
    assert call["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "weather"
    streamed = _post(client, doc, "/v1/chat/completions", {
        "messages": ASK, "max_tokens": 64, "tools": TOOL, "tool_choice": "required",
        "temperature": 0, "stream": True})
    assert any(c != "[DONE]" and c["choices"] and "tool_calls" in c["choices"][0]["delta"]
               for c in streamed)
    _post(client, doc, "/v1/chat/completions", {"messages": CHAT, "max_tokens": 2,
                                                "response_format": {"type": "json_object"}})


def test_the_docs_page_lists_every_route_and_schema_offline(client: httpx.Client,
                                                            doc: Document) -> None:
    r = client.get("/docs")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    page = r.text
    for path, item in doc.doc["paths"].items():
        for method, op in item.items():
            assert f'id="op-{op["operationId"]}"' in page, f"{method} {path}"
            assert f"<code>{path}</code>" in page
    for name in doc.doc["components"]["schemas"]:
        assert f'id="schema-{name}"' in page
    assert 'href="#schema-CompletionRequest"' in page
    # nothing to fetch from elsewhere: no scripts, no remote styles or fonts
    assert "<script" not in page and "http://" not in page and "https://" not in page


def test_a_method_the_document_does_not_list_is_a_405_naming_the_ones_it_does(
        client: httpx.Client, doc: Document) -> None:
    for path, item in doc.doc["paths"].items():
        concrete = path.replace("{id_slot}", "0")
        r = client.request("DELETE", concrete)
        assert r.status_code == 405, (path, r.status_code)
        allowed = {m.strip() for m in r.headers["Allow"].split(",")} - {"HEAD", "OPTIONS"}
        assert allowed == {m.upper() for m in item}, path


def _types(items: list[dict[str, Any]]) -> list[str]:
    return [item["type"] for item in items]


def test_anthropic_answers_match_the_document(thinker: tuple[httpx.Client, Document]) -> None:
    c, doc = thinker
    greedy = {"messages": CHAT, "max_tokens": 12, "temperature": 0}
    plain = _post(c, doc, "/v1/messages", {**greedy, "thinking": THINKS})
    assert _types(plain["content"]) == ["thinking", "text"]
    assert plain["stop_reason"] == "max_tokens"
    events = _post(c, doc, "/v1/messages", {**greedy, "thinking": THINKS, "stream": True})
    assert events[0]["type"] == "message_start" and events[-1]["type"] == "message_stop"
    assert {e["delta"]["type"] for e in events if e["type"] == "content_block_delta"} == {
        "thinking_delta", "signature_delta", "text_delta"}
    stop = _post(c, doc, "/v1/messages", {**greedy, "stop_sequences": [" "],
                                          "thinking": {"type": "disabled"}})
    assert (stop["stop_reason"], stop["stop_sequence"]) == ("stop_sequence", " ")
    tools = {"messages": ASK, "max_tokens": 64, "temperature": 0, "tools": [WEATHER],
             "tool_choice": {"type": "any"}, "thinking": THINKS}
    call = _post(c, doc, "/v1/messages", tools)
    assert _types(call["content"]) == ["thinking", "tool_use"]
    assert call["stop_reason"] == "tool_use" and call["content"][1]["input"] == {"city": "Paris"}
    streamed = _post(c, doc, "/v1/messages", {**tools, "stream": True})
    assert [e["content_block"]["type"] for e in streamed if e["type"] == "content_block_start"
            ] == ["thinking", "tool_use"]
    assert any(e["delta"]["type"] == "input_json_delta" for e in streamed
               if e["type"] == "content_block_delta")
    assert _post(c, doc, "/v1/messages/count_tokens", tools)["input_tokens"] > 0
    for path in ("/v1/messages", "/v1/messages/count_tokens"):
        assert "'messages'" in _post(c, doc, path, {"messages": []})["error"]["message"]


def test_responses_answers_match_the_document(thinker: tuple[httpx.Client, Document]) -> None:
    c, doc = thinker
    greedy = {"input": "Say hi", "max_output_tokens": 12, "temperature": 0,
              "reasoning_budget": 3}
    plain = _post(c, doc, "/v1/responses", greedy)
    assert _types(plain["output"]) == ["reasoning", "message"]
    assert plain["status"] == "incomplete"
    events = _post(c, doc, "/responses", {**greedy, "stream": True})
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert {"response.reasoning_text.delta", "response.reasoning_text.done",
            "response.content_part.added", "response.output_text.delta",
            "response.output_text.done", "response.content_part.done",
            "response.output_item.done"} <= set(_types(events))
    assert events[-1]["type"] == "response.completed"
    tools = {"input": "What is the weather in Paris?", "max_output_tokens": 64,
             "temperature": 0, "reasoning_budget": 3, "tool_choice": "required",
             "tools": [{"type": "function", "name": "weather",
                        "parameters": WEATHER["input_schema"]}]}
    call = _post(c, doc, "/v1/responses", tools)
    assert _types(call["output"]) == ["reasoning", "function_call"]
    assert call["status"] == "completed"
    streamed = _post(c, doc, "/v1/responses", {**tools, "stream": True})
    assert {"response.function_call_arguments.delta",
            "response.function_call_arguments.done"} <= set(_types(streamed))
    for path in ("/v1/responses/input_tokens", "/responses/input_tokens"):
        assert _post(c, doc, path, tools)["input_tokens"] > 0
    for path in ("/v1/responses", "/v1/responses/input_tokens"):
        assert "'input'" in _post(c, doc, path, {"input": []})["error"]["message"]


def test_chat_input_tokens_match_the_document(client: httpx.Client, doc: Document) -> None:
    plain = _post(client, doc, "/v1/chat/completions/input_tokens", {"messages": CHAT})
    with_tools = _post(client, doc, "/chat/completions/input_tokens",
                       {"messages": CHAT, "tools": TOOL})
    assert 0 < plain["input_tokens"] < with_tools["input_tokens"]
    _post(client, doc, "/v1/chat/completions/input_tokens", {"messages": "hi"})  # a 400


def test_web_ui_answers_match_the_document(client: httpx.Client, doc: Document) -> None:
    served = [path for path, item in doc.doc["paths"].items()
              if item.get("get", {}).get("tags") == ["web UI"]]
    assert "/" in served and "/completion.js" in served
    for path in served:
        assert _get(client, doc, path)


async def test_the_web_ui_of_a_folder_under_a_prefix_is_documented(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("<html></html>")
    (tmp_path / "data.json").write_text("[1]")
    server = LlamaServer(api_prefix="/llama", path=str(tmp_path), api_key=["k"])
    assert not undocumented_rules(server.app.url_map.iter_rules())
    async with in_process(server.asgi) as c:
        key = {"X-Api-Key": "k"}
        doc = Document((await c.get("/llama/openapi.json", headers=key)).json())
        validate(doc.doc)
        assert doc.operation("GET", "/llama/")["security"] == []
        assert "401" in doc.operation("POST", "/llama/completion")["responses"]
        for path, status in (("/llama", 308), ("/llama/", 200), ("/llama/completion.js", 200),
                             ("/llama/data.json", 200), ("/llama/missing.txt", 404),
                             ("/llama/completion", 401)):
            r = await c.get(path)
            assert r.status_code == status, path
            doc.check("GET", path, r)
        assert (await c.get("/llama/completion", headers=key)).status_code == 405
