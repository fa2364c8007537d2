"""A tiny random-weight llama GGUF with another model's vocabulary, written with ggml-org's
``gguf`` package: a draft model that shares the default model's tokens but guesses badly, so
that speculative decoding's rejections are exercised.  The output is meaningless; the
plumbing is real."""

from __future__ import annotations

from pathlib import Path

from gguf_files import copy_tokenizer, model_writer, save_gguf

N_EMBD = 64
N_FF = 128
N_HEAD = 4
N_LAYER = 2
N_CTX_TRAIN = 4096


def write_tiny_llama(path: Path, vocab_model: Path, *, seed: int = 0) -> Path:
    """A llama with ``vocab_model``'s tokenizer (every ``tokenizer.*`` key copied)."""
    import gguf
    import numpy as np

    rng = np.random.default_rng(seed)
    source = gguf.GGUFReader(str(vocab_model))
    writer = model_writer(path, "llama", f"llama-ffi test draft model (seed {seed})", {
        "block_count": N_LAYER, "context_length": N_CTX_TRAIN, "embedding_length": N_EMBD,
        "feed_forward_length": N_FF, "attention.head_count": N_HEAD,
        "attention.head_count_kv": N_HEAD, "rope.dimension_count": N_EMBD // N_HEAD})
    writer.add_float32("llama.attention.layer_norm_rms_epsilon", 1e-5)
    n_vocab = copy_tokenizer(writer, source)

    def normal(*shape: int, std: float = 0.2) -> "np.ndarray":
        return rng.normal(0.0, std, shape).astype(np.float32)

    # numpy shapes are ggml's reversed: a [n_in, n_out] ggml matrix is (n_out, n_in) here
    tensors = {"token_embd.weight": normal(n_vocab, N_EMBD, std=0.5),
               "output_norm.weight": np.ones(N_EMBD, dtype=np.float32)}
    for i in range(N_LAYER):
        tensors[f"blk.{i}.attn_norm.weight"] = np.ones(N_EMBD, dtype=np.float32)
        tensors[f"blk.{i}.ffn_norm.weight"] = np.ones(N_EMBD, dtype=np.float32)
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            tensors[f"blk.{i}.{name}.weight"] = normal(N_EMBD, N_EMBD)
        tensors[f"blk.{i}.ffn_gate.weight"] = normal(N_FF, N_EMBD)
        tensors[f"blk.{i}.ffn_up.weight"] = normal(N_FF, N_EMBD)
        tensors[f"blk.{i}.ffn_down.weight"] = normal(N_EMBD, N_FF)
    save_gguf(writer, tensors)
    return path
