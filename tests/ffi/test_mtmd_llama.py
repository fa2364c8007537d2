"""Llama with a projector: images in generate/stream/chat, and equality with upstream's llama-mtmd-cli."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

import llama_ffi
from llama_ffi import Llama, MediaError

TEST_JPEG = Path(llama_ffi.native_manifest()["source_dir"]) / "tools/mtmd/test-1.jpeg"
MTMD_CLI = Path(llama_ffi.__file__).parent / "_native" / "bin" / "llama-mtmd-cli"
QUESTION = "Describe the image."
N_PREDICT = 8


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


def user(*parts: dict) -> list[dict]:
    return [{"role": "user", "content": list(parts)}]


def image_part(data: bytes, mime: str = "image/png") -> dict:
    return {"type": "image_url", "image_url": {"url": data_url(data, mime)}}


TEXT = {"type": "text", "text": QUESTION}


@pytest.fixture(scope="module")
def llm(model_path: Path, mmproj_path: Path) -> Iterator[Llama]:
    # chatml: the template llama-mtmd-cli is told to use below (the model's own Jinja template
    # adds a system prompt that llama-mtmd-cli's one-message formatting leaves out)
    with Llama(model_path, mmproj=mmproj_path, n_ctx=512, n_threads=1, chat_template="chatml") as instance:
        yield instance


def greedy_chat(llm: Llama, messages: list[dict]) -> str:
    return llm.chat(messages, max_tokens=N_PREDICT, temperature=0.0)  # type: ignore[return-value]


def mtmd_cli(model_path: Path, mmproj: Path, image: Path, prompt: str) -> str:
    if not MTMD_CLI.is_file():
        pytest.skip("llama_ffi/_native/bin/llama-mtmd-cli was not built (python build_native.py --with-server)")
    done = subprocess.run(
        [str(MTMD_CLI), "-m", str(model_path), "--mmproj", str(mmproj), "--image", str(image), "-p", prompt,
         "--chat-template", "chatml", "--temp", "0", "-n", str(N_PREDICT), "-c", "512", "-t", "1"],
        capture_output=True, text=True, timeout=120, check=True)
    # stdout: a blank line after the prompt is evaluated, the generated pieces, a newline
    return done.stdout.strip("\n")


def test_chat_with_an_image_equals_llama_mtmd_cli(llm: Llama, model_path: Path, mmproj_path: Path) -> None:
    expected = mtmd_cli(model_path, mmproj_path, TEST_JPEG, QUESTION)
    assert len(expected) > 10  # it did generate
    # llama-mtmd-cli puts the image marker before the prompt text, as the parts here do
    assert greedy_chat(llm, user(image_part(TEST_JPEG.read_bytes(), "image/jpeg"), TEXT)) == expected
    # generate on the rendered prompt is the same thing, the image given by path
    rendered = llm.chat_template.render([{"role": "user", "content": "<__media__>" + QUESTION}])
    assert llm.generate(rendered, images=[TEST_JPEG], max_tokens=N_PREDICT, temperature=0.0) == expected


def test_same_image_same_answer_other_image_other_answer(llm: Llama, make_png) -> None:
    jpeg = TEST_JPEG.read_bytes()
    gradient = make_png(64, 64, lambda x, y: (4 * x, 4 * y, 128))
    with_jpeg = greedy_chat(llm, user(image_part(jpeg, "image/jpeg"), TEXT))
    with_png = greedy_chat(llm, user(image_part(gradient), TEXT))
    without = greedy_chat(llm, [{"role": "user", "content": QUESTION}])
    assert len({with_jpeg, with_png, without}) == 3
    # again, in another order: the prompt cache must not hand one image's state to another
    assert greedy_chat(llm, user(image_part(gradient), TEXT)) == with_png
    assert greedy_chat(llm, user(image_part(jpeg, "image/jpeg"), TEXT)) == with_jpeg
    assert greedy_chat(llm, user(image_part(jpeg, "image/jpeg"), TEXT)) == with_jpeg  # from the cache


def test_generate_puts_images_first_without_markers_and_streams(llm: Llama, make_png) -> None:
    png = make_png(16, 16, (0, 200, 0))
    marked = llm.generate("<__media__>A picture of", images=[png], max_tokens=6, temperature=0.0)
    assert llm.generate("A picture of", images=[png], max_tokens=6, temperature=0.0) == marked
    pieces = list(llm.stream("A picture of", images=[png], max_tokens=6, temperature=0.0))
    assert "".join(pieces) == marked
    with pytest.raises(MediaError, match="1 media marker"):
        llm.generate("<__media__> and", images=[png, png], max_tokens=2)


def test_user_text_cannot_place_media(llm: Llama, make_png) -> None:
    # the literal marker in a text part stays text: the one image goes where its part is
    reply = greedy_chat(llm, user({"type": "text", "text": "What is <__media__>?"}, image_part(make_png(8, 8))))
    assert isinstance(reply, str) and reply


@pytest.mark.parametrize(
    ("part", "error", "message"),
    [
        ({"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}, MediaError, "only data: URLs"),
        ({"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@"}}, MediaError, "base64"),
        ({"type": "image_url", "image_url": {"url": data_url(b"GIF89a")}}, MediaError, "truncated"),
        ({"type": "input_audio", "input_audio": {"data": base64.b64encode(b"RIFF").decode()}}, MediaError, "not a supported"),
        ({"type": "video_url", "video_url": {}}, ValueError, "unsupported content part"),
    ],
)
def test_bad_media_parts_are_errors(llm: Llama, part: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        llm.chat(user(part, TEXT), max_tokens=2)


def test_images_without_a_projector_are_a_media_error(model_path: Path, make_png) -> None:
    with Llama(model_path, n_ctx=128, n_threads=1) as plain:
        with pytest.raises(MediaError, match="mmproj"):
            plain.generate("Look:", images=[make_png(4, 4)], max_tokens=2)
        with pytest.raises(MediaError, match="mmproj"):
            plain.chat(user(image_part(make_png(4, 4)), TEXT), max_tokens=2)
        # text-only parts need no projector
        assert isinstance(plain.chat(user(TEXT), max_tokens=2, temperature=0.0), str)


def test_image_prompt_over_the_context_is_a_context_error(model_path: Path, mmproj_path: Path, make_png) -> None:
    with Llama(model_path, mmproj=mmproj_path, n_ctx=256, n_threads=1) as small:
        n_ctx = small.context.n_ctx
        with pytest.raises(llama_ffi.ContextError, match=f"does not fit the context of {n_ctx}"):
            small.generate(" word" * (n_ctx - 20), images=[make_png(4, 4)], max_tokens=1)
        # fits without the image's 16 tokens and its wrapper text
        assert small.generate(" word" * (n_ctx - 40), max_tokens=1, temperature=0.0) is not None
