"""Projector: a tiny random-weight mmproj (tests/conftest.py) on the default model.

Its answers are meaningless; what is checked is the plumbing: loading, bitmaps and their
limits, tokenizing into text and image chunks, and evaluating them (libmtmd's helper and the
encode + decode-embeddings path the server uses) with the guards that keep libllama from
aborting the process.
"""

from __future__ import annotations

import hashlib
import math
import struct
from pathlib import Path
from typing import Iterator

import pytest

import llama_ffi
from llama_ffi import (
    Batch,
    Chunks,
    ContextError,
    Context,
    LlamaError,
    MediaError,
    MediaLimits,
    Model,
    ModelLoadError,
    Projector,
    check_projector_file,
)

TEST_JPEG = Path(llama_ffi.native_manifest()["source_dir"]) / "tools/mtmd/test-1.jpeg"
PROMPT = "<|im_start|>user\nLook: <__media__> What is it?<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture(scope="module")
def projector(model: Model, mmproj_path: Path) -> Iterator[Projector]:
    with Projector(model, mmproj_path, n_threads=1) as loaded:
        yield loaded


@pytest.fixture()
def mctx(model: Model) -> Iterator[Context]:
    with Context(model, n_ctx=256, n_batch=256, n_ubatch=256, n_threads=1) as context:
        yield context


def test_projector_loads_and_reports_what_it_takes(projector: Projector, model: Model) -> None:
    assert projector.supports_vision and not projector.supports_audio
    assert projector.audio_sample_rate is None
    assert projector.marker == "<__media__>" == llama_ffi.ffi.string(llama_ffi.lib.mtmd_default_marker()).decode()
    assert projector.uses_non_causal and not projector.uses_mrope   # libmtmd's rules for gemma3
    assert projector.n_embd == model.n_embd == 576
    assert "vision" in repr(projector)


def test_projector_of_another_width_or_no_projector_is_a_load_error(model: Model, tmp_path: Path, write_mmproj) -> None:
    with pytest.raises(ModelLoadError, match="another width"):
        Projector(model, write_mmproj(tmp_path / "narrow.gguf", model, n_embd_text=64), warmup=False)
    (tmp_path / "text.gguf").write_text("not a gguf")
    with pytest.raises(ModelLoadError):
        Projector(model, tmp_path / "text.gguf")
    with pytest.raises(ModelLoadError, match="not found"):
        Projector(model, tmp_path / "missing.gguf")


def test_malformed_projector_files_are_checked_in_a_child(model_path: Path, mmproj_path: Path, tmp_path: Path,
                                                         model: Model, write_mmproj, monkeypatch) -> None:
    import gguf

    check_projector_file(model_path, mmproj_path)
    # a projector without one layer's query weights: libmtmd dereferences NULL in its warm-up
    add_tensor = gguf.GGUFWriter.add_tensor
    monkeypatch.setattr(gguf.GGUFWriter, "add_tensor", lambda self, name, *a, **k:
                        None if name == "v.blk.1.attn_q.weight" else add_tensor(self, name, *a, **k))
    broken = write_mmproj(tmp_path / "broken.gguf", model)
    with pytest.raises(ModelLoadError, match="crashed the loading process"):
        check_projector_file(model_path, broken)
    with pytest.raises(ModelLoadError, match="not found"):
        check_projector_file(model_path, tmp_path / "missing.gguf")


def test_bitmap_from_the_upstream_test_jpeg(projector: Projector) -> None:
    data = TEST_JPEG.read_bytes()
    with projector.bitmap_from_file(TEST_JPEG) as bitmap:
        assert (bitmap.width, bitmap.height, bitmap.is_audio) == (640, 488, False)
        assert bitmap.n_bytes == 640 * 488 * 3
        assert bitmap.id == hashlib.sha256(data).hexdigest()   # content id for prompt caches
    assert bitmap.closed
    with pytest.raises(MediaError, match="closed"):
        bitmap.id


def test_bitmap_from_png_bytes_and_raw_rgb(projector: Projector, make_png) -> None:
    with projector.bitmap_from_bytes(make_png(5, 3), id="red") as png:
        assert (png.width, png.height, png.id) == (5, 3, "red")
    with projector.bitmap_from_rgb(2, 1, bytes([1, 2, 3, 4, 5, 6])) as raw:
        assert (raw.width, raw.height) == (2, 1) and len(raw.id) == 64
    with pytest.raises(MediaError, match="6 bytes, not 5"):
        projector.bitmap_from_rgb(2, 1, bytes(5))
    with pytest.raises(ValueError, match="non-empty"):
        projector.bitmap_from_rgb(2, 1, bytes(6), id="")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"hello, this is not an image at all", "not a supported image"),
        (b"", "empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "truncated"),
        (b"RIFF\x10\x00\x00\x00WEBPVP8 ", "WebP"),
        (b"\xff\xd8\xff\xe0" + bytes(60), "JPEG"),
    ],
)
def test_data_that_is_no_image_is_a_media_error(projector: Projector, data: bytes, message: str) -> None:
    with pytest.raises(MediaError, match=message) as caught:
        projector.bitmap_from_bytes(data)
    assert isinstance(caught.value, ValueError)


def test_corrupt_image_body_is_a_media_error(projector: Projector, make_png) -> None:
    png = make_png(8, 8)
    with pytest.raises(MediaError, match="could not be decoded"):
        projector.bitmap_from_bytes(png[:40] + bytes(len(png) - 40))


def test_oversized_inputs_are_refused_before_decoding(model: Model, mmproj_path: Path, make_png) -> None:
    small = MediaLimits(max_bytes=2000, max_pixels=100 * 100)
    with Projector(model, mmproj_path, n_threads=1, limits=small) as projector:
        # a 30000 x 30000 header (2.7 GB decoded) in a few bytes: refused from the header
        bomb = make_png(1, 1)
        bomb = bomb[:16] + (30000).to_bytes(4, "big") * 2 + bomb[24:]
        with pytest.raises(MediaError, match="30000 x 30000 pixels; the limit is 10000"):
            projector.bitmap_from_bytes(bomb)
        with pytest.raises(MediaError, match="bytes; the limit is 2000"):
            projector.bitmap_from_bytes(make_png(200, 200, lambda x, y: (x, y, x ^ y)))
        with pytest.raises(MediaError, match="the limit is 10000 pixels"):
            projector.bitmap_from_rgb(101, 100, bytes(101 * 100 * 3))


def wav(n_samples: int, rate: int = 16000) -> bytes:
    """A mono 16-bit PCM WAV of silence."""
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    data = bytes(2 * n_samples)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def test_audio_for_a_vision_projector_is_a_media_error(projector: Projector) -> None:
    with pytest.raises(MediaError, match="takes no audio"):
        projector.bitmap_from_bytes(wav(1600))
    with pytest.raises(MediaError, match="takes no audio"):
        projector.bitmap_from_pcm(bytes(400))


def test_tokenize_gives_text_and_image_chunks(projector: Projector, model: Model, write_mmproj) -> None:
    vocab = model.vocab

    def tok(text: str) -> list[int]:
        return vocab.tokenize(text, add_special=False, parse_special=True)

    with projector.bitmap_from_file(TEST_JPEG) as bitmap, projector.tokenize(PROMPT, [bitmap]) as chunks:
        assert [c.type for c in chunks] == ["text", "image", "text"]
        before, after = PROMPT.split(projector.marker)
        # the projector wraps the image in its begin/end text, tokenized with the neighbours
        assert list(chunks[0].tokens) == tok(before) + tok("<start_of_image>")
        assert list(chunks[2].tokens) == tok("<end_of_image>") + tok(after)
        image = chunks[1]
        assert image.n_tokens == image.n_pos == write_mmproj.tokens_per_image == 16
        assert image.tokens == () and image.is_media and image.non_causal
        assert image.id == bitmap.id == hashlib.sha256(TEST_JPEG.read_bytes()).hexdigest()
        assert chunks[0].id is None and not chunks[0].non_causal
        assert chunks.n_tokens == chunks.n_pos == len(chunks[0].tokens) + 16 + len(chunks[2].tokens)
        assert chunks.text_tokens() == list(chunks[0].tokens) + list(chunks[2].tokens)
    with pytest.raises(MediaError, match="closed"):
        chunks[0]


def test_content_ids_are_stable_and_follow_the_content(projector: Projector, make_png) -> None:
    def image_id(data: bytes, id: str | None = None) -> str | None:
        with projector.bitmap_from_bytes(data, id=id) as bitmap, projector.tokenize("<__media__>", [bitmap]) as chunks:
            return next(c.id for c in chunks if c.is_media)

    red, blue = make_png(4, 4), make_png(4, 4, (0, 0, 255))
    assert image_id(red) == image_id(red) == hashlib.sha256(red).hexdigest()
    assert image_id(blue) != image_id(red)
    assert image_id(red, id="mine") == "mine"


def test_tokenize_runs_in_threads_and_close_waits_for_them(model_path: Path, mmproj_path: Path, make_png) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with Model(model_path) as model:
        projector = Projector(model, mmproj_path, n_threads=1, warmup=False)
        png = make_png(32, 32, lambda x, y: (x * 8, y * 8, 0))

        def shape(_: int) -> list[tuple[str, int, str | None]]:
            with projector.bitmap_from_bytes(png) as bitmap, projector.tokenize("a <__media__> b", [bitmap]) as chunks:
                return [(c.type, c.n_tokens, c.id) for c in chunks]

        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(shape, i) for i in range(16)]
            futures[0].result()
            projector.close()   # waits for the calls in flight; later ones find it closed
            results = [f.exception() or f.result() for f in futures]
        done = [r for r in results if isinstance(r, list)]
        assert done and all(r == done[0] for r in done)
        assert all(isinstance(r, LlamaError) for r in results if not isinstance(r, list))


def test_markers_and_media_must_pair_up(projector: Projector, make_png) -> None:
    with projector.bitmap_from_bytes(make_png(4, 4)) as bitmap:
        with pytest.raises(MediaError, match="1 media marker"):
            projector.tokenize("one <__media__>", [bitmap, bitmap])
        with pytest.raises(MediaError, match="0 media marker"):
            projector.tokenize("none", [bitmap])
        with pytest.raises(TypeError):
            projector.tokenize("<__media__>", [b"png bytes"])  # type: ignore[list-item]


def test_tokenize_parts_never_takes_user_text_for_a_marker(projector: Projector, make_png) -> None:
    with projector.bitmap_from_bytes(make_png(4, 4)) as bitmap:
        with projector.tokenize_parts(["typed <__media__> here ", bitmap, " end"]) as chunks:
            assert [c.type for c in chunks] == ["text", "image", "text"]


def test_projector_whose_wrapper_tokens_the_model_lacks(model: Model, tmp_path: Path, write_mmproj, make_png) -> None:
    # SmolVLM's own projector type: libmtmd wraps its tiles in <fake_token_around_image> and
    # <global-img>, which SmolLM2's vocabulary lacks; libmtmd would put token -1 there
    path = write_mmproj(tmp_path / "idefics3.gguf", model, kind="idefics3")
    with Projector(model, path, n_threads=1) as projector, projector.bitmap_from_bytes(make_png(64, 64)) as bitmap:
        assert not projector.uses_non_causal
        with pytest.raises(MediaError, match="vocabulary lacks"):
            projector.tokenize("<__media__>", [bitmap])


def _eval_low_level(projector: Projector, ctx: Context, chunks) -> int:
    """The server's path: text as token batches, media encoded then decoded as embeddings."""
    n_past, last = 0, 0
    with Batch(ctx.n_batch) as batch:
        for chunk in chunks:
            is_last = chunk.index == len(chunks) - 1
            if chunk.is_media:
                embeddings = projector.encode_chunk(chunk)
                assert (embeddings.n_tokens, embeddings.n_embd) == (chunk.n_tokens, projector.n_embd)
                n_past = projector.decode_media(ctx, chunk, embeddings, n_past, logits_last=is_last)
                last = -1
            else:
                batch.clear()
                last = batch.add_tokens(list(chunk.tokens), n_past, 0, logits_last=is_last)
                ctx.decode(batch)
                n_past += chunk.n_pos
    return last


def test_encode_and_decode_embeddings_equals_eval_chunks(projector: Projector, model: Model) -> None:
    with projector.bitmap_from_file(TEST_JPEG) as bitmap, projector.tokenize(PROMPT, [bitmap]) as chunks, \
            Context(model, n_ctx=256, n_batch=256, n_ubatch=256, n_threads=1) as a, \
            Context(model, n_ctx=256, n_batch=256, n_ubatch=256, n_threads=1) as b:
        assert projector.eval_chunks(a, chunks, 0) == chunks.n_pos
        assert a.causal_attn  # switched back after the non-causal image
        expected = a.logits_list(-1)
        idx = _eval_low_level(projector, b, chunks)
        got = b.logits_list(idx)
        assert b.causal_attn
        assert max(abs(x - y) for x, y in zip(expected, got)) < 1e-3
        assert got.index(max(got)) == expected.index(max(expected))
        # and the image changed the answer: logits differ from the same prompt without it
        b.memory_clear()
        text = model.vocab.tokenize(PROMPT.replace("<__media__>", ""), add_special=False, parse_special=True)
        with Batch(len(text)) as batch:
            batch.add_tokens(text, 0, 0)
            b.decode(batch)
        assert max(abs(x - y) for x, y in zip(expected, b.logits_list(-1))) > 0.1


def test_decode_media_in_pieces_only_when_causal(projector: Projector, model: Model) -> None:
    with projector.bitmap_from_file(TEST_JPEG) as bitmap, projector.tokenize("<__media__>", [bitmap]) as chunks, \
            Context(model, n_ctx=64, n_batch=64, n_ubatch=8, n_threads=1) as ctx:
        image = next(c for c in chunks if c.is_media)
        embeddings = projector.encode_chunk(image)
        assert len(embeddings.view()) == 16 * 576 and math.isfinite(embeddings.row(0)[0])
        # 16 non-causal tokens in ubatches of 8: libllama would abort the process
        with pytest.raises(ContextError, match="at least 16"):
            projector.decode_media(ctx, image, embeddings, 0)
        with pytest.raises(ContextError, match="at least 16"):
            projector.eval_chunks(ctx, chunks, 0, logits_last=False)
        assert ctx.seq_pos_max(0) == -1 and ctx.causal_attn


def test_eval_chunks_guards(projector: Projector, model: Model, mctx: Context, make_png, write_mmproj,
                            tmp_path: Path) -> None:
    # libmtmd's test chunks (text, then an image): the helper would give no logits at the end
    with Chunks(projector, llama_ffi.lib.mtmd_test_create_input_chunks()) as test_chunks:
        assert [c.type for c in test_chunks] == ["text", "image"]
        with pytest.raises(ContextError, match="ends with a media chunk"):
            projector.eval_chunks(mctx, test_chunks, 0)
    with projector.bitmap_from_bytes(make_png(4, 4)) as bitmap:
        with projector.tokenize("ends with <__media__>", [bitmap]) as chunks:
            assert projector.eval_chunks(mctx, chunks, 0, logits_last=False) == chunks.n_pos
            with pytest.raises(ValueError, match="n_batch"):
                projector.eval_chunks(mctx, chunks, 0, n_batch=mctx.n_batch + 1)
            with pytest.raises(ValueError, match="sequence id"):
                projector.eval_chunks(mctx, chunks, 0, seq_id=3, logits_last=False)
            with pytest.raises(ContextError, match="do not fit"):
                projector.eval_chunks(mctx, chunks, 250, logits_last=False)
            with Projector(model, write_mmproj(tmp_path / "other.gguf", model, seed=1), n_threads=1) as other:
                with pytest.raises(LlamaError, match="another projector"):
                    other.eval_chunks(mctx, chunks, 0, logits_last=False)
                with pytest.raises(LlamaError, match="another projector"):
                    other.encode_chunk(chunks[1])
            with pytest.raises(ValueError, match="is text"):
                projector.encode_chunk(chunks[0])


def test_closing_the_model_closes_the_projector(model_path: Path, mmproj_path: Path, make_png) -> None:
    model = Model(model_path)
    projector = Projector(model, mmproj_path, n_threads=1, warmup=False)
    bitmap = projector.bitmap_from_bytes(make_png(2, 2))
    model.close()
    assert projector.closed
    with pytest.raises(LlamaError, match="projector is closed"):
        projector.tokenize("<__media__>", [bitmap])
    bitmap.close()


def test_mrope_batch_lays_positions_out_section_major() -> None:
    # an M-RoPE model reads pos[j * n_tokens + i] for section j of row i
    with Batch(4, embd=2, n_pos=4) as batch:
        rows = [(10, 0, 0, 0), (10, 0, 1, 0), (10, 1, 0, 0)]
        assert batch.add_embeddings(bytes(3 * 2 * 4), rows, 0, logits_last=True) == 2
        pos = llama_ffi.ffi.unpack(batch._struct.pos, 12)
        assert pos == [10, 10, 10, 0, 0, 1, 0, 1, 0, 0, 0, 0]
        with pytest.raises(LlamaError, match="one add_embeddings call"):
            batch.add_embeddings(bytes(8), [(1, 1, 1, 1)], 0)
    with pytest.raises(ValueError, match="embedding batch"):
        Batch(4, n_pos=4)


def test_add_embeddings_equals_add_embedding_per_row() -> None:
    values = [float(v) for v in range(6)]
    with Batch(4, embd=3) as bulk, Batch(4, embd=3) as single:
        bulk.add_embeddings(llama_ffi.ffi.new("float[]", values), 5, 1, logits_last=True)
        single.add_embedding(values[:3], 5, 1, False)
        single.add_embedding(values[3:], 6, 1, True)
        for batch in (bulk, single):
            assert llama_ffi.ffi.unpack(batch._struct.embd, 6) == values
            assert llama_ffi.ffi.unpack(batch._struct.pos, 2) == [5, 6]
            assert [batch._struct.seq_id[i][0] for i in range(2)] == [1, 1]
            assert batch.outputs == [1]
        with pytest.raises(ValueError, match="whole rows"):
            bulk.add_embeddings(bytes(8), 0, 0)
