"""/slots, slot files, POST /props with a system prompt, embeddings, /infill."""

from __future__ import annotations

import math
from pathlib import Path

import httpx
import pytest
from server_helpers import PARALLEL, error_of

BAD = "invalid_request_error"


def test_slots_shape(client: httpx.Client) -> None:
    slots = client.get("/slots").json()
    assert [s["id"] for s in slots] == list(range(PARALLEL))
    for slot in slots:
        for key in ("n_ctx", "temperature", "top_k", "samplers", "next_token", "state",
                    "prompt", "model", "seed"):
            assert key in slot, key
        assert {"n_remain", "n_decoded", "stopped_eos"} <= slot["next_token"].keys()


def test_slot_save_restore_erase(client: httpx.Client, slot_dir: Path) -> None:
    prompt = "Slot files keep a prompt cache: " * 3
    client.post("/completion", json={"prompt": prompt, "n_predict": 1, "id_slot": 3})
    saved = client.post("/slots/3?action=save", json={"filename": "three.bin"}).json()
    assert saved["id_slot"] == 3 and saved["filename"] == "three.bin"
    assert saved["n_saved"] > 10 and saved["n_written"] > 0 and "save_ms" in saved["timings"]
    assert (slot_dir / "three.bin").is_file()
    erased = client.post("/slots/3?action=erase").json()
    assert erased == {"id_slot": 3, "n_erased": erased["n_erased"]} and erased["n_erased"] > 0
    restored = client.post("/slots/3?action=restore", json={"filename": "three.bin"}).json()
    assert restored["n_restored"] == saved["n_saved"] and "restore_ms" in restored["timings"]
    again = client.post("/completion", json={"prompt": prompt + "more", "n_predict": 1,
                                             "id_slot": 3}).json()
    assert again["tokens_cached"] >= saved["n_saved"] - 1


def test_prompt_cache_hits_show_in_slots_metrics_and_props(client: httpx.Client) -> None:
    history = "A long shared history that another slot computed first. " * 12
    client.post("/completion", json={"prompt": history + "One", "n_predict": 1, "id_slot": 0})
    before = client.get("/props").json()["prompt_cache"]
    again = client.post("/completion", json={"prompt": history + "Two", "n_predict": 1,
                                             "id_slot": 1}).json()
    assert again["tokens_cached"] > 100 and again["timings"]["prompt_n"] < 10
    after = client.get("/props").json()["prompt_cache"]
    assert after["hits"] == before["hits"] + 1
    assert after["tokens_reused"] - before["tokens_reused"] == again["tokens_cached"]
    slot = client.get("/slots").json()[1]["prompt_cache"]
    assert slot["hits"] >= 1 and slot["tokens_reused"] >= again["tokens_cached"]
    metrics = client.get("/metrics").text
    hits = next(float(line.split()[1]) for line in metrics.splitlines()
                if line.startswith("llamacpp:prompt_cache_hits"))
    assert hits == after["hits"]


@pytest.mark.parametrize("filename", ["../escape.bin", "/etc/passwd", "a/b.bin", "..",
                                      ".hidden", "", "x" * 300, "nul\x00.bin", "sp ace.bin"])
def test_slot_filenames_are_validated(client: httpx.Client, filename: str,
                                      slot_dir: Path) -> None:
    error_of(client.post("/slots/0?action=save", json={"filename": filename}), 400, BAD)
    assert not (slot_dir.parent / "escape.bin").exists()


def test_slot_symlink_out_of_the_directory_is_refused(client: httpx.Client, slot_dir: Path,
                                                      tmp_path: Path) -> None:
    (slot_dir / "link.bin").symlink_to(tmp_path / "outside.bin")
    error_of(client.post("/slots/0?action=save", json={"filename": "link.bin"}), 400, BAD)
    assert not (tmp_path / "outside.bin").exists()


@pytest.mark.parametrize("path", ["/slots/99?action=erase", "/slots/-1?action=erase",
                                  "/slots/abc?action=erase", "/slots/0?action=explode",
                                  "/slots/1_0?action=erase"])
def test_slot_action_errors(client: httpx.Client, path: str) -> None:
    error_of(client.post(path, json={}), 400, BAD)


def test_restore_of_a_missing_file(client: httpx.Client) -> None:
    error_of(client.post("/slots/0?action=restore", json={"filename": "missing.bin"}), 400,
             BAD)


def test_system_prompt_via_props_and_completion(client: httpx.Client) -> None:
    system = {"prompt": "Transcript of a dialog between User and Assistant.\nUser:",
              "anti_prompt": "User:", "assistant_name": "Assistant:"}
    assert client.post("/props", json={"system_prompt": system}).json() == {"success": True}
    props = client.get("/props").json()
    assert props["user_name"] == "User:" and props["assistant_name"] == "Assistant:"
    assert props["system_prompt"] == system["prompt"]
    body = client.post("/completion", json={"prompt": " Hello!\nAssistant:", "n_predict": 2,
                                            "stop": ["User:"]}).json()
    assert body["stop"] is True
    # the server-parallel seed's form: a string plus top-level names
    client.post("/completion", json={"prompt": "Hi", "n_predict": 1, "system_prompt": "Chat.",
                                     "anti_prompt": "Human:", "assistant_name": "AI:"})
    assert client.get("/props").json()["user_name"] == "Human:"
    client.post("/props", json={"system_prompt": ""})
    assert client.get("/props").json()["system_prompt"] == ""


def test_embedding_seed_shape(client: httpx.Client) -> None:
    body = client.post("/embedding", json={"content": "Hello world"}).json()
    vec = body["embedding"]
    assert len(vec) == 576 and all(isinstance(v, float) for v in vec)
    assert math.isclose(math.sqrt(sum(v * v for v in vec)), 1.0, rel_tol=1e-4)
    raw = client.post("/embedding", json={"content": "Hello world",
                                          "embd_normalize": -1}).json()["embedding"]
    assert not math.isclose(math.sqrt(sum(v * v for v in raw)), 1.0, rel_tol=1e-3)


def test_embeddings_differ_by_meaning(client: httpx.Client) -> None:
    data = client.post("/v1/embeddings", json={"input": ["a cat", "a kitten",
                                                         "stock market crash"]}).json()
    a, b, c = (d["embedding"] for d in data["data"])
    def cos(x: list[float], y: list[float]) -> float:
        return sum(p * q for p, q in zip(x, y))
    assert cos(a, b) > cos(a, c)
    assert data["usage"]["prompt_tokens"] > 0


def test_non_openai_embeddings_shape(client: httpx.Client) -> None:
    body = client.post("/embeddings", json={"input": ["x", "y"]}).json()
    assert [e["index"] for e in body] == [0, 1]
    assert len(body[0]["embedding"]) == 1 and len(body[0]["embedding"][0]) == 576


def test_embedding_errors(client: httpx.Client) -> None:
    error_of(client.post("/embedding", json={}), 400, BAD)
    error_of(client.post("/v1/embeddings", json={"input": [1.5]}), 400, BAD)
    error_of(client.post("/v1/embeddings", json={"input": [[1, 10**9]]}), 400, BAD)
    error_of(client.post("/v1/embeddings", json={"input": "x", "encoding_format": "hex"}),
             400, BAD)


def test_infill_needs_fim_tokens(client: httpx.Client) -> None:
    # SmolLM2's vocabulary has no <fim_prefix>/<fim_suffix>/<fim_middle> tokens
    r = client.post("/infill", json={"input_prefix": "def add(a, b):\n    return ",
                                     "input_suffix": "\n\nprint(add(1, 2))\n",
                                     "n_predict": 6, "temperature": 0})
    message = error_of(r, 501, "not_supported_error")["message"]
    assert "fill-in-the-middle" in message and "prefix (fim_pre)" in message
    error_of(client.post("/infill", json={"input_prefix": 5}), 400, BAD)


def test_infill_prompt_uses_the_vocabulary_fim_ids(vocab_dir: Path) -> None:
    # no model with FIM tokens is small enough to run here: build the prompt on StarCoder's
    # vocabulary, whose FIM tokens libllama knows
    from llama_ffi import Model
    from llamaserver.http._completion import InfillRequest, infill_prompt

    req = InfillRequest(input_prefix="def f():", input_suffix="\n", prompt="    ",
                        input_extra=[{"filename": "a.py", "text": "x = 1"}])
    with Model(vocab_dir / "ggml-vocab-starcoder.gguf", vocab_only=True) as starcoder:
        v = starcoder.vocab
        assert infill_prompt(v, req, spm=False) == [
            "a.py\nx = 1", v.fim_pre, "def f():", v.fim_suf, "\n", v.fim_mid, "    "]
        assert infill_prompt(v, req, spm=True)[1:5] == [v.fim_suf, "\n", v.fim_pre, "def f():"]
