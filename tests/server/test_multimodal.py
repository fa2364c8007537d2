"""Images in prompts over HTTP, with a tiny random-weight projector for the default model
(tests/conftest.py ``mmproj_path``: gemma3 type, 16 tokens an image).  Its answers mean
nothing; the plumbing is what is tested: same image same answer, upstream's own tool gives the
same tokens, images beside text-only requests, the image's cells reused from the cache."""

from __future__ import annotations

import asyncio
import base64
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from server_helpers import Running, client_fixture, error_of, running_server

import llama_ffi

TEST_JPEG = Path(llama_ffi.native_manifest()["source_dir"]) / "tools/mtmd/test-1.jpeg"
MTMD_CLI = Path(llama_ffi.__file__).parent / "_native" / "bin" / "llama-mtmd-cli"
QUESTION = "Describe the image."
GREEDY = {"n_predict": 8, "temperature": 0}
BAD = "invalid_request_error"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture(scope="module")
def mm(mmproj_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    with running_server(parallel=4, ctx_size=2048, mmproj=mmproj_path, embedding=True,
                        threads=1, media_max_bytes=400_000,
                        slot_save_path=tmp_path_factory.mktemp("mm-slots")) as running:
        yield running


c = client_fixture("mm")


@pytest.fixture(scope="module")
def images(make_png) -> dict[str, bytes]:
    return {"jpeg": TEST_JPEG.read_bytes(),
            "gradient": make_png(64, 64, lambda x, y: (4 * x, 4 * y, 128)),
            "red": make_png(48, 48, (255, 0, 0))}


def noise_png(make_png) -> bytes:
    """A PNG over the test server's --media-max-bytes: noise does not compress."""
    import random

    rng = random.Random(0)
    return make_png(400, 400, lambda x, y: (rng.randrange(256), rng.randrange(256),
                                            rng.randrange(256)))


def seed_request(c: httpx.Client, image: bytes | None, **extra) -> dict:
    body = {"prompt": ("USER: [img-7] " if image else "USER: ") + QUESTION + "\nASSISTANT:",
            **GREEDY, **extra}
    if image is not None:
        body["image_data"] = [{"data": b64(image), "id": 7}]
    r = c.post("/completion", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def test_props_and_models_report_vision(c: httpx.Client) -> None:
    props = c.get("/props").json()
    assert props["modalities"]["vision"] is True and props["modalities"]["audio"] is False
    assert props["media_marker"].startswith("<__media_")
    models = c.get("/v1/models").json()
    assert "multimodal" in models["models"][0]["capabilities"]
    assert models["data"][0]["meta"]["modalities"]["vision"] is True


def test_same_image_same_answer_other_image_other_answer(c: httpx.Client, images) -> None:
    a = seed_request(c, images["jpeg"], cache_prompt=False)["content"]
    assert seed_request(c, images["jpeg"], cache_prompt=False)["content"] == a
    b = seed_request(c, images["gradient"], cache_prompt=False)["content"]
    none = seed_request(c, None, cache_prompt=False)["content"]
    assert len({a, b, none}) == 3, (a, b, none)


def test_greedy_tokens_equal_llama_mtmd_cli(c: httpx.Client, model_path: Path,
                                            mmproj_path: Path) -> None:
    if not MTMD_CLI.is_file():
        pytest.skip("llama-mtmd-cli was not built (python build_native.py --with-server)")
    expected = subprocess.run(
        [str(MTMD_CLI), "-m", str(model_path), "--mmproj", str(mmproj_path), "--image",
         str(TEST_JPEG), "-p", QUESTION, "--chat-template", "chatml", "--temp", "0", "-n", "8",
         "-c", "512", "-t", "1"], capture_output=True, text=True, timeout=120,
        check=True).stdout.strip("\n")
    assert len(expected) > 10
    # the prompt llama-mtmd-cli builds: chatml, the image before the question
    prompt = llama_ffi.ChatTemplate.builtin("chatml").render(
        [{"role": "user", "content": "<__media__>" + QUESTION}])
    body = {"prompt": {"prompt_string": prompt, "multimodal_data": [b64(TEST_JPEG.read_bytes())]},
            "cache_prompt": False, **GREEDY}
    assert c.post("/completion", json=body).json()["content"] == expected


def test_image_beside_text_only_requests(mm: Running, c: httpx.Client, images) -> None:
    texts = ["The capital of France is", "One, two, three,", "Water boils at"]
    alone = [c.post("/completion", json={"prompt": t, "cache_prompt": False, **GREEDY}).json()[
        "content"] for t in texts]
    with_image = seed_request(c, images["jpeg"], cache_prompt=False)["content"]

    async def together() -> list[dict]:
        async with httpx.AsyncClient(base_url=mm.url, timeout=120) as ac:
            image_body = {"prompt": "USER: [img-7] " + QUESTION + "\nASSISTANT:",
                          "image_data": [{"data": b64(images["jpeg"]), "id": 7}],
                          "cache_prompt": False, **GREEDY}
            calls = [ac.post("/completion", json=image_body)] + [
                ac.post("/completion", json={"prompt": t, "cache_prompt": False, **GREEDY})
                for t in texts]
            return [r.json() for r in await asyncio.gather(*calls)]

    results = asyncio.run(together())
    assert results[0]["content"] == with_image
    assert [r["content"] for r in results[1:]] == alone


def test_cached_image_is_reused(c: httpx.Client, images) -> None:
    first = seed_request(c, images["red"], id_slot=2)
    again = seed_request(c, images["red"], id_slot=2)
    assert again["content"] == first["content"]
    assert again["timings"]["prompt_n"] == 1  # only the last token: image cells reused
    assert again["tokens_cached"] >= 16 and again["timings"]["cache_n"] >= 16
    other = seed_request(c, images["gradient"], id_slot=2)  # a new image: evaluated again
    assert other["timings"]["prompt_n"] >= 16


def test_a_saved_slot_with_an_image_restores(c: httpx.Client, images) -> None:
    first = seed_request(c, images["gradient"], id_slot=3)
    saved = c.post("/slots/3?action=save", json={"filename": "image.bin"}).json()
    assert saved["n_saved"] >= 16
    assert c.post("/slots/3?action=erase").json()["n_erased"] == saved["n_saved"]
    restored = c.post("/slots/3?action=restore", json={"filename": "image.bin"}).json()
    assert restored["n_restored"] == saved["n_saved"]
    again = seed_request(c, images["gradient"], id_slot=3)
    assert again["content"] == first["content"]
    assert again["timings"]["prompt_n"] == 1  # the image's restored cells serve it


def test_openai_client_with_an_image(mm: Running, images) -> None:
    import openai

    url = "data:image/jpeg;base64," + b64(images["jpeg"])
    with openai.OpenAI(base_url=mm.url + "/v1", api_key="none", max_retries=0) as client:
        reply = client.chat.completions.create(model="x", max_tokens=8, temperature=0, messages=[
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                         {"type": "text", "text": QUESTION}]}])
        assert reply.choices[0].message.content
        assert reply.usage.prompt_tokens > 16  # the image's cells are prompt tokens
        with pytest.raises(openai.BadRequestError):  # the projector takes no audio
            client.chat.completions.create(model="x", max_tokens=2, messages=[
                {"role": "user", "content": [{"type": "input_audio", "input_audio": {
                    "data": b64(b"RIFF....WAVEfmt "), "format": "wav"}}]}])


def test_embedding_with_an_image(c: httpx.Client, images) -> None:
    def vector(body: dict) -> list[float]:
        r = c.post("/embedding", json=body)
        assert r.status_code == 200, r.text
        return r.json()["embedding"]

    plain = vector({"content": "a picture [img-1]".replace("[img-1]", "")})
    pictured = vector({"content": "a picture [img-1]",
                       "image_data": [{"data": b64(images["jpeg"]), "id": 1}]})
    assert len(pictured) == len(plain) and pictured != plain


@pytest.mark.parametrize("case", ["marker without image", "image without marker", "not base64",
                                  "not an image", "too large", "object marker count",
                                  "remote url", "bad image id"])
def test_bad_media_is_400(c: httpx.Client, images, make_png, case: str) -> None:
    prompt = "USER: [img-1] hi"
    good = b64(images["red"])
    body = {
        "marker without image": {"prompt": "USER: [img-2] hi", "image_data": [
            {"data": good, "id": 1}]},
        "image without marker": {"prompt": "USER: hi", "image_data": [{"data": good, "id": 1}]},
        "not base64": {"prompt": prompt, "image_data": [{"data": "***", "id": 1}]},
        "not an image": {"prompt": prompt, "image_data": [{"data": b64(b"GIF89a" + b"x" * 50),
                                                           "id": 1}]},
        "too large": {"prompt": prompt, "image_data": [{"data": b64(noise_png(make_png)),
                                                        "id": 1}]},
        "object marker count": {"prompt": {"prompt_string": "no marker here",
                                           "multimodal_data": [good]}},
        "remote url": None,
        "bad image id": {"prompt": prompt, "image_data": [{"data": good, "id": "1"}]},
    }[case]
    if body is None:
        r = c.post("/v1/chat/completions", json={"max_tokens": 2, "messages": [
            {"role": "user", "content": [{"type": "image_url", "image_url": {
                "url": "http://127.0.0.1:9/x.png"}}]}]})
    else:
        r = c.post("/completion", json={**body, "n_predict": 2})
    message = error_of(r, 400, BAD)["message"]
    assert "image" in message or "media" in message or "prompt" in message
    assert c.post("/completion", json={"prompt": "ok", "n_predict": 1}).status_code == 200


def test_media_without_a_projector_is_400(client: httpx.Client, images) -> None:
    error_of(client.post("/completion", json={"prompt": "[img-1] hi", "n_predict": 1,
                                              "image_data": [{"data": b64(images["red"]),
                                                              "id": 1}]}), 400, BAD)
    error_of(client.post("/v1/chat/completions", json={"max_tokens": 1, "messages": [
        {"role": "user", "content": [{"type": "image_url", "image_url": {
            "url": "data:image/png;base64," + b64(images["red"])}}]}]}), 400, BAD)
