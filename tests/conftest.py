"""Shared fixtures: the default model, loaded once per test session.

llama_ffi is imported inside the fixtures, so test directories that do not
need the compiled binding (tests/build) still collect without it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest
from gguf_files import save_gguf

# upstream's source tree fetched by the lead before build_native.py existed
_FALLBACK_SOURCE_DIRS = (Path("/tmp/dl/llama_cpp_python-0.3.36/vendor/llama.cpp"),)


@pytest.fixture(scope="session")
def model_path() -> Path:
    import llama_ffi

    return llama_ffi.default_model_path()


@pytest.fixture(scope="session")
def model(model_path: Path) -> Iterator["llama_ffi.Model"]:  # noqa: F821
    import llama_ffi

    with llama_ffi.Model(model_path) as loaded:
        yield loaded


@pytest.fixture(scope="session")
def vocab_dir() -> Path:
    """Directory holding upstream's ``ggml-vocab-*.gguf`` tokenizer fixtures (with ``.inp``/``.out``)."""
    import llama_ffi

    candidates = []
    if os.environ.get("LLAMA_FFI_VOCAB_DIR"):
        candidates.append(Path(os.environ["LLAMA_FFI_VOCAB_DIR"]))
    try:
        candidates.append(Path(llama_ffi.native_manifest()["source_dir"]) / "models")
    except (FileNotFoundError, KeyError, TypeError):
        pass
    candidates += [d / "models" for d in _FALLBACK_SOURCE_DIRS]
    for directory in candidates:
        if any(directory.glob("ggml-vocab-*.gguf")):
            return directory
    pytest.skip("no llama.cpp source tree with models/ggml-vocab-*.gguf (build_native.py keeps one)")


# Tiny LoRA adapters for the default model, written with ggml-org's ``gguf`` package: each adds
# ``B @ A`` (rank 4) to every layer's attention query and output weights. ``zero=True`` (B = 0)
# changes nothing; random A and B change the output.
_LORA_RANK = 4


def _write_lora(path: Path, model, *, zero: bool, seed: int = 0, arch: str = "llama",
               n_embd: int | None = None) -> Path:
    import gguf
    import numpy as np

    rng = np.random.default_rng(seed)
    n_embd = n_embd or model.n_embd
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_string("general.type", "adapter")
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", float(_LORA_RANK))
    for layer in range(model.n_layer):
        for name in ("attn_q", "attn_output"):
            # numpy shapes are ggml's reversed: A is [n_in, rank] and B [rank, n_out] in ggml
            a = rng.normal(0.0, 0.5, (_LORA_RANK, n_embd)).astype(np.float32)
            b = (np.zeros if zero else lambda shape: rng.normal(0.0, 0.5, shape))((n_embd, _LORA_RANK))
            writer.add_tensor(f"blk.{layer}.{name}.weight.lora_a", a)
            writer.add_tensor(f"blk.{layer}.{name}.weight.lora_b", np.asarray(b, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="session")
def write_lora():
    """``write_lora(path, model, zero=..., seed=..., n_embd=...)`` writes a LoRA GGUF for ``model``."""
    return _write_lora


# Tiny random-weight multimodal projectors (mmproj GGUF) for the default model, written with
# ggml-org's ``gguf`` package in the layout clip.cpp loads (tools/mtmd/clip.cpp, clip-impl.h):
# a SigLIP-style vision tower (patch conv, learned positions, pre-norm layers, post-norm) and
# a projector into the language model's n_embd. Answers are meaningless; the plumbing is real.
#
# kind="gemma3" (the default): the image is resized to image_size², its patches average-pooled
#   by scale_factor per side, RMS-normed and projected: (image_size / patch_size / scale_factor)²
#   tokens per image (16 here), one image chunk, wrapped in "<start_of_image>"/"<end_of_image>"
#   text, decoded with non-causal attention (libmtmd's rule for this projector type).
# kind="idefics3" (SmolVLM's type): pixel-shuffled patches through one linear layer; libmtmd
#   wraps the tiles in SmolVLM's own special tokens, which SmolLM2's vocabulary lacks.
MMPROJ_IMAGE_SIZE = 64
MMPROJ_PATCH_SIZE = 8
MMPROJ_SCALE_FACTOR = 2
MMPROJ_TOKENS_PER_IMAGE = (MMPROJ_IMAGE_SIZE // MMPROJ_PATCH_SIZE // MMPROJ_SCALE_FACTOR) ** 2


def _write_mmproj(path: Path, model, *, seed: int = 0, kind: str = "gemma3", n_embd_text: int | None = None,
                  n_embd: int = 64, n_ff: int = 128, n_head: int = 4, n_layer: int = 2) -> Path:
    import gguf
    import numpy as np

    rng = np.random.default_rng(seed)
    n_embd_text = n_embd_text or model.n_embd
    n_patches = (MMPROJ_IMAGE_SIZE // MMPROJ_PATCH_SIZE) ** 2

    def normal(*shape: int, std: float) -> "np.ndarray":
        return rng.normal(0.0, std, shape).astype(np.float32)

    def norm_weight(n: int) -> "np.ndarray":
        return (1.0 + normal(n, std=0.1)).astype(np.float32)

    writer = gguf.GGUFWriter(str(path), "clip")
    writer.add_string("general.name", f"llama-ffi test projector ({kind}, seed {seed})")
    writer.add_bool("clip.has_vision_encoder", True)
    writer.add_string("clip.projector_type", kind)
    writer.add_bool("clip.use_gelu", True)
    writer.add_uint32("clip.vision.image_size", MMPROJ_IMAGE_SIZE)
    writer.add_uint32("clip.vision.patch_size", MMPROJ_PATCH_SIZE)
    writer.add_uint32("clip.vision.embedding_length", n_embd)
    writer.add_uint32("clip.vision.feed_forward_length", n_ff)
    writer.add_uint32("clip.vision.block_count", n_layer)
    writer.add_uint32("clip.vision.projection_dim", n_embd_text)
    writer.add_uint32("clip.vision.attention.head_count", n_head)
    writer.add_float32("clip.vision.attention.layer_norm_epsilon", 1e-6)
    writer.add_array("clip.vision.image_mean", [0.5, 0.5, 0.5])
    writer.add_array("clip.vision.image_std", [0.5, 0.5, 0.5])
    writer.add_uint32("clip.vision.projector.scale_factor", MMPROJ_SCALE_FACTOR)
    if kind == "idefics3":
        writer.add_uint32("clip.vision.preproc_image_size", MMPROJ_IMAGE_SIZE)

    # numpy shapes are ggml's reversed: a [n_in, n_out] ggml matrix is (n_out, n_in) here
    tensors = {
        "v.patch_embd.weight": normal(n_embd, 3, MMPROJ_PATCH_SIZE, MMPROJ_PATCH_SIZE, std=0.1),
        "v.patch_embd.bias": normal(n_embd, std=0.02),
        "v.position_embd.weight": normal(n_patches, n_embd, std=0.1),
        "v.post_ln.weight": norm_weight(n_embd),
        "v.post_ln.bias": normal(n_embd, std=0.02),
    }
    for i in range(n_layer):
        for name in ("attn_q", "attn_k", "attn_v", "attn_out"):
            tensors[f"v.blk.{i}.{name}.weight"] = normal(n_embd, n_embd, std=0.1)
            tensors[f"v.blk.{i}.{name}.bias"] = normal(n_embd, std=0.02)
        for name in ("ln1", "ln2"):
            tensors[f"v.blk.{i}.{name}.weight"] = norm_weight(n_embd)
            tensors[f"v.blk.{i}.{name}.bias"] = normal(n_embd, std=0.02)
        tensors[f"v.blk.{i}.ffn_up.weight"] = normal(n_ff, n_embd, std=0.1)
        tensors[f"v.blk.{i}.ffn_up.bias"] = normal(n_ff, std=0.02)
        tensors[f"v.blk.{i}.ffn_down.weight"] = normal(n_embd, n_ff, std=0.1)
        tensors[f"v.blk.{i}.ffn_down.bias"] = normal(n_embd, std=0.02)
    if kind == "gemma3":
        tensors["mm.soft_emb_norm.weight"] = norm_weight(n_embd)
        # used transposed by clip.cpp: ggml [n_embd_text, n_embd]
        tensors["mm.input_projection.weight"] = normal(n_embd, n_embd_text, std=1.0 / np.sqrt(n_embd))
    elif kind == "idefics3":
        merged = n_embd * MMPROJ_SCALE_FACTOR**2
        tensors["mm.model.fc.weight"] = normal(n_embd_text, merged, std=1.0 / np.sqrt(merged))
    else:
        raise ValueError(f"unknown projector kind {kind!r}")
    save_gguf(writer, tensors)
    return path


_write_mmproj.image_size = MMPROJ_IMAGE_SIZE              # type: ignore[attr-defined]
_write_mmproj.tokens_per_image = MMPROJ_TOKENS_PER_IMAGE  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def write_mmproj():
    """``write_mmproj(path, model, seed=..., kind="gemma3"|"idefics3")`` writes a tiny projector
    (mmproj GGUF) for ``model``; ``write_mmproj.tokens_per_image`` is what one image becomes."""
    return _write_mmproj


@pytest.fixture(scope="session")
def mmproj_path(tmp_path_factory: pytest.TempPathFactory, model) -> Path:
    """The default tiny projector (gemma3 type, seed 0) for the default model, written once."""
    return _write_mmproj(tmp_path_factory.mktemp("mmproj") / "mmproj-test.gguf", model)


def _make_png(width: int, height: int, pixel=(255, 0, 0)) -> bytes:
    """A PNG (8-bit RGB) of ``width x height``; ``pixel`` is an (r, g, b) or a function (x, y) -> (r, g, b)."""
    import struct
    import zlib

    at = pixel if callable(pixel) else (lambda x, y: pixel)
    rows = b"".join(b"\0" + bytes(c for x in range(width) for c in at(x, y)) for y in range(height))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


@pytest.fixture(scope="session")
def make_png():
    """``make_png(width, height, pixel=(r, g, b) or fn(x, y))`` -> PNG bytes."""
    return _make_png


@pytest.fixture(scope="session")
def write_reranker(vocab_dir: Path):
    """``write_reranker(path, seed=..., labels=[...], template=...)`` writes a tiny BERT
    reranker (tests/tiny_reranker.py) with upstream's BERT vocabulary."""
    from tiny_reranker import write_reranker as write

    return lambda path, **options: write(path, vocab_dir / "ggml-vocab-bert-bge.gguf", **options)


@pytest.fixture(scope="session")
def reranker_path(tmp_path_factory: pytest.TempPathFactory, write_reranker) -> Path:
    """The default tiny reranker (one score, no rerank template), written once."""
    return write_reranker(tmp_path_factory.mktemp("reranker") / "reranker-test.gguf")


@pytest.fixture(scope="session")
def draft_model_path(tmp_path_factory: pytest.TempPathFactory, model_path: Path) -> Path:
    """A tiny random-weight llama with the default model's vocabulary (tests/tiny_llama.py):
    a draft model that guesses badly."""
    from tiny_llama import write_tiny_llama

    return write_tiny_llama(tmp_path_factory.mktemp("draft") / "draft-test.gguf", model_path)
