"""POST /rerank (and its aliases) on the tiny random-weight BERT reranker
(tests/tiny_reranker.py), against upstream's llama-server on the same file."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_helpers import error_of, running_server, upstream_server

BAD = "invalid_request_error"
QUERY = "What is a giant panda?"
DOCS = [
    "hi",
    "it is a bear",
    "The giant panda (Ailuropoda melanoleuca) is a bear species endemic to China.",
    "Pandas is a Python library for data analysis.",
    "Ünïcödé, 東京 and emoji 🐼 in one document",
    "",
]
# the plain server's physical batch (the model's positions go to 128): a longer pair is a 400
UBATCH = 64
TEMPLATE = "[CLS] query: {query} [SEP] document: {document} [SEP]"


@pytest.fixture(scope="module")
def rerank(reranker_path: Path) -> Iterator[httpx.Client]:
    # queue_size=0 with 2 slots: a request never holds more than two queue places, so even
    # a long list of documents passes through an otherwise empty queue
    with running_server(model=reranker_path, reranking=True, ctx_size=512, parallel=2,
                        batch_size=UBATCH, ubatch_size=UBATCH, threads=1, queue_size=0,
                        alias="tiny-reranker") as running:
        with httpx.Client(base_url=running.url, timeout=120) as client:
            yield client


@pytest.fixture(scope="module")
def templated_path(write_reranker, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_reranker(tmp_path_factory.mktemp("reranker") / "templated.gguf", seed=1,
                          template=TEMPLATE)


@pytest.fixture(scope="module")
def templated(templated_path: Path) -> Iterator[httpx.Client]:
    """A model with a rerank template, served with --embedding --pooling rank."""
    with running_server(model=templated_path, embedding=True, pooling="rank", ctx_size=512,
                        threads=1) as running:
        with httpx.Client(base_url=running.url, timeout=120) as client:
            yield client


def _results(client: httpx.Client, **body: Any) -> list[dict[str, Any]]:
    r = client.post("/rerank", json={"query": QUERY, "documents": DOCS, **body})
    assert r.status_code == 200, r.text
    return r.json()["results"]


def test_response_shape(rerank: httpx.Client) -> None:
    body = rerank.post("/rerank", json={"query": QUERY, "documents": DOCS}).json()
    assert body.keys() == {"model", "object", "usage", "results"}
    assert body["model"] == "tiny-reranker" and body["object"] == "list"
    usage = body["usage"]
    assert usage["prompt_tokens"] == usage["total_tokens"] > 2 * len(DOCS)
    assert sorted(r["index"] for r in body["results"]) == list(range(len(DOCS)))
    for result in body["results"]:
        assert result.keys() == {"index", "relevance_score"}
        assert isinstance(result["relevance_score"], float)
    named = rerank.post("/rerank", json={"query": QUERY, "documents": DOCS, "model": "mine"})
    assert named.json()["model"] == "mine"


def test_sorted_by_score_and_deterministic(rerank: httpx.Client) -> None:
    results = _results(rerank)
    scores = [r["relevance_score"] for r in results]
    assert scores == sorted(scores, reverse=True)
    assert len(set(scores)) == len(scores)  # random weights, yet the documents differ
    assert _results(rerank) == results
    # a document's score does not depend on its neighbours or its place
    by_text = {DOCS[r["index"]]: r["relevance_score"] for r in results}
    reordered = rerank.post("/rerank", json={"query": QUERY, "documents": DOCS[::-1]}).json()
    assert {DOCS[::-1][r["index"]]: r["relevance_score"]
            for r in reordered["results"]} == by_text


def test_equal_documents_keep_their_order(rerank: httpx.Client) -> None:
    body = {"query": QUERY, "documents": ["same text", "other", "same text"]}
    results = rerank.post("/rerank", json=body).json()["results"]
    same = [r["index"] for r in results if r["index"] != 1]
    assert same == [0, 2]


@pytest.mark.parametrize("path", ["/reranking", "/v1/rerank", "/v1/reranking"])
def test_aliases(rerank: httpx.Client, path: str) -> None:
    body = {"query": QUERY, "documents": DOCS}
    assert rerank.post(path, json=body).json() == rerank.post("/rerank", json=body).json()


@pytest.mark.parametrize("top_n", [0, 1, 3, len(DOCS), 1000])
def test_top_n(rerank: httpx.Client, top_n: int) -> None:
    assert _results(rerank, top_n=top_n) == _results(rerank)[:top_n]


def test_return_documents_and_object_documents(rerank: httpx.Client) -> None:
    plain = _results(rerank)
    with_docs = _results(rerank, return_documents=True)
    assert [{k: v for k, v in r.items() if k != "document"} for r in with_docs] == plain
    assert all(r["document"] == {"text": DOCS[r["index"]]} for r in with_docs)
    assert _results(rerank, return_text=True) == with_docs
    objects = rerank.post("/rerank", json={"query": QUERY,
                                           "documents": [{"text": d} for d in DOCS]})
    assert objects.json()["results"] == plain


def test_tei_form(rerank: httpx.Client) -> None:
    jina = _results(rerank, top_n=3)
    tei = rerank.post("/rerank", json={"query": QUERY, "texts": DOCS, "top_n": 3,
                                       "return_text": True}).json()
    assert tei == [{"index": r["index"], "score": r["relevance_score"],
                    "text": DOCS[r["index"]]} for r in jina]


def test_many_documents_pass_an_empty_queue(rerank: httpx.Client) -> None:
    docs = [f"document number {i}" for i in range(40)]
    r = rerank.post("/rerank", json={"query": QUERY, "documents": docs})
    assert r.status_code == 200 and len(r.json()["results"]) == 40


def test_template_is_used(templated: httpx.Client, templated_path: Path) -> None:
    from llama_ffi import Model

    with Model(templated_path, vocab_only=True) as model:
        vocab = model.vocab
        text = TEMPLATE.replace("{query}", QUERY).replace("{document}", DOCS[1])
        n_tokens = len(vocab.tokenize(text, add_special=False, parse_special=True))
    body = templated.post("/rerank", json={"query": QUERY, "documents": [DOCS[1]]}).json()
    assert body["usage"]["prompt_tokens"] == n_tokens


def test_embedding_model_serves_no_generation(rerank: httpx.Client) -> None:
    # BERT has no KV cache: libllama would abort a generation; it is a 501 instead
    for path, body in (("/completion", {"prompt": "hi", "n_predict": 2}),
                       ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]})):
        error_of(rerank.post(path, json=body), 501, "not_supported_error")
    # --reranking serves embeddings too, as in llama-server (the rank-pooled output)
    assert rerank.post("/embedding", json={"content": "hi"}).status_code == 200
    assert rerank.get("/health").status_code == 200


@pytest.mark.parametrize(("argv", "environ"), [
    (["--rerank"], {}), (["--reranking"], {}), ([], {"LLAMA_ARG_RERANKING": "1"}),
    (["--embedding", "--pooling", "rank"], {})])
def test_flags_turn_on_rank_pooled_embeddings(argv: list[str], environ: dict[str, str]) -> None:
    from llamaserver._engine_config import engine_config
    from llamaserver.cli import parse_args

    config = engine_config(parse_args(["-m", "model.gguf", *argv], environ))
    assert config.embedding and config.pooling == "rank"


def test_not_enabled_is_501(client: httpx.Client) -> None:
    for path in ("/rerank", "/v1/rerank"):
        error = error_of(client.post(path, json={"query": "q", "documents": ["d"]}), 501,
                         "not_supported_error")
        assert error["message"] == ("This server does not support reranking. Start it with "
                                    "`--reranking`")


@pytest.mark.parametrize(("body", "field"), [
    ({"documents": ["a"]}, "'query'"),
    ({"query": 5, "documents": ["a"]}, "'query'"),
    ({"query": None, "documents": ["a"]}, "'query'"),
    ({"query": "q"}, '"documents"'),
    ({"query": "q", "documents": []}, '"documents"'),
    ({"query": "q", "documents": "a"}, "'documents'"),
    ({"query": "q", "documents": ["a", 5]}, "'documents[1]'"),
    ({"query": "q", "documents": ["a", None]}, "'documents[1]'"),
    ({"query": "q", "documents": [{"title": "a"}]}, "'documents[0]'"),
    ({"query": "q", "documents": [{"text": 7}]}, "'documents[0]'"),
    ({"query": "q", "texts": ["a", ["b"]]}, "'texts[1]'"),
    ({"query": "q", "documents": ["a"], "top_n": -1}, "'top_n'"),
    ({"query": "q", "documents": ["a"], "top_n": 2**40}, "'top_n'"),
    ({"query": "q", "documents": ["a"], "top_n": "2"}, "'top_n'"),
    ({"query": "q", "documents": ["a"], "top_n": 1.5}, "'top_n'"),
    ({"query": "q", "documents": ["a"], "return_documents": "yes"}, "'return_documents'"),
    ({"query": "q", "documents": ["a"], "return_text": 1}, "'return_text'"),
    ({"query": "q", "documents": ["a", "word " * UBATCH]}, "'documents[1]'"),
])
def test_bad_input_is_400_naming_the_field(rerank: httpx.Client, body: dict,
                                           field: str) -> None:
    message = error_of(rerank.post("/rerank", json=body), 400, BAD)["message"]
    assert field in message
    assert rerank.get("/health").status_code == 200


def test_too_long_for_the_batch_says_which_flag(rerank: httpx.Client) -> None:
    body = {"query": "q", "documents": ["short", "word " * UBATCH]}
    message = error_of(rerank.post("/rerank", json=body), 400, BAD)["message"]
    assert "'documents[1]'" in message and "--ubatch-size" in message


def test_too_long_for_the_model_is_a_context_error(templated: httpx.Client) -> None:
    body = {"query": "q", "documents": ["word " * 200]}
    error = error_of(templated.post("/rerank", json=body), 400, "exceed_context_size_error")
    assert "'documents[0]'" in error["message"]
    assert error["n_ctx"] == 128 and error["n_prompt_tokens"] > 200


@pytest.mark.parametrize(("body", "field"), [
    ({"query": "\ud800", "documents": ["a"]}, "'query'"),
    ({"query": "q", "documents": ["a", "b\udfff"]}, "'documents.1'"),
    ({"query": "q", "documents": [{"text": "\ud83d"}]}, "'documents.0.text'"),
])
def test_lone_surrogates_are_400(rerank: httpx.Client, body: dict, field: str) -> None:
    raw = json.dumps(body)  # ensure_ascii: the surrogate travels as an escape
    r = rerank.post("/rerank", content=raw, headers={"Content-Type": "application/json"})
    message = error_of(r, 400, BAD)["message"]
    assert field in message and "surrogate" in message


def test_body_must_be_an_object(rerank: httpx.Client) -> None:
    error_of(rerank.post("/rerank", json=["q", "d"]), 400, BAD)
    error_of(rerank.post("/rerank", content=b"{not json",
                         headers={"Content-Type": "application/json"}), 400, BAD)


# ---------------------------------------------------------------- parity with llama-server

@pytest.fixture(scope="module", params=["plain", "templated"])
def both(request: pytest.FixtureRequest, reranker_path: Path, templated_path: Path,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    """(ours, upstream's) on the same model file, with the same batch sizes."""
    if request.param == "plain":
        path, extra = reranker_path, ["-b", str(UBATCH), "-ub", str(UBATCH)]
    else:
        path, extra = templated_path, []
    ours = request.getfixturevalue("rerank" if request.param == "plain" else "templated")
    args = ["-m", str(path), "--reranking", "-c", "512", "-np", "2", *extra]
    with upstream_server(args, tmp_path_factory.mktemp("upstream-rerank")) as theirs:
        yield ours, theirs


def test_scores_equal_upstream(both: tuple[httpx.Client, httpx.Client]) -> None:
    ours, theirs = both
    for body in ({"query": QUERY, "documents": DOCS},
                 {"query": "bears", "documents": DOCS[:3], "top_n": 2},
                 {"query": "", "documents": ["a", "b", "c d e"]}):
        mine, upstream = (c.post("/rerank", json=body).json() for c in (ours, theirs))
        assert mine["usage"] == upstream["usage"]
        assert [r["index"] for r in mine["results"]] == [r["index"] for r in upstream["results"]]
        for a, b in zip(mine["results"], upstream["results"]):
            # upstream may put several pairs in one batch: the sums run in another order
            assert a["relevance_score"] == pytest.approx(b["relevance_score"], abs=1e-4)
    tei = {"query": QUERY, "texts": DOCS[:4], "return_text": True}
    mine, upstream = (c.post("/rerank", json=tei).json() for c in (ours, theirs))
    assert [(r["index"], r["text"]) for r in mine] == [(r["index"], r["text"]) for r in upstream]
    assert [r["score"] for r in mine] == pytest.approx([r["score"] for r in upstream], abs=1e-4)
