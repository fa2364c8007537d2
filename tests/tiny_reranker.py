"""A tiny random-weight reranker GGUF, written with ggml-org's ``gguf`` package.

The layout is llama.cpp's for a BERT cross-encoder (src/models/bert.cpp; what
convert_hf_to_gguf.py writes for bge-reranker): token, token-type and learned position
embeddings, post-norm encoder layers, and a classification head (``cls`` dense + tanh, then
``cls.output`` to one score per label) read by ``rank`` pooling from the first token. The
vocabulary (WordPiece, 30522 tokens) is copied from upstream's ``ggml-vocab-bert-bge.gguf``;
an EOS (= [SEP]) is added so that a pair reads ``[CLS] query [SEP] [SEP] document [SEP]``,
the layout of XLM-RoBERTa rerankers such as bge-reranker-v2-m3. Scores are meaningless; the
plumbing is real.
"""

from __future__ import annotations

from pathlib import Path

from gguf_files import copy_tokenizer, model_writer, save_gguf

N_EMBD = 32
N_FF = 64
N_HEAD = 4
N_LAYER = 2
N_CTX_TRAIN = 128
SEP = 102  # [SEP] in the BERT vocabulary


def write_reranker(path: Path, vocab_file: Path, *, seed: int = 0, labels: list[str] | None = None,
                   template: str | None = None) -> Path:
    """``labels``: the classifier's outputs (one score when None); ``template``: a
    ``tokenizer.chat_template.rerank`` with ``{query}`` and ``{document}``."""
    import gguf
    import numpy as np

    rng = np.random.default_rng(seed)
    vocab = gguf.GGUFReader(str(vocab_file))
    writer = model_writer(path, "bert", f"llama-ffi test reranker (seed {seed})", {
        "block_count": N_LAYER, "context_length": N_CTX_TRAIN, "embedding_length": N_EMBD,
        "feed_forward_length": N_FF, "attention.head_count": N_HEAD,
        "pooling_type": int(gguf.PoolingType.RANK)})
    writer.add_float32("bert.attention.layer_norm_epsilon", 1e-12)
    writer.add_bool("bert.attention.causal", False)
    if labels:
        writer.add_array("bert.classifier.output_labels", labels)
    n_vocab = copy_tokenizer(writer, vocab)
    writer.add_uint32("tokenizer.ggml.eos_token_id", SEP)
    writer.add_bool("tokenizer.ggml.add_eos_token", True)
    if template is not None:
        writer.add_string("tokenizer.chat_template.rerank", template)

    n_out = len(labels) if labels else 1

    def normal(*shape: int, std: float = 0.2) -> "np.ndarray":
        return rng.normal(0.0, std, shape).astype(np.float32)

    def norm(prefix: str) -> dict[str, "np.ndarray"]:
        return {f"{prefix}.weight": 1.0 + normal(N_EMBD, std=0.1),
                f"{prefix}.bias": normal(N_EMBD, std=0.02)}

    # numpy shapes are ggml's reversed: a [n_in, n_out] ggml matrix is (n_out, n_in) here
    tensors = {"token_embd.weight": normal(n_vocab, N_EMBD, std=0.5),
               "token_types.weight": normal(2, N_EMBD),
               "position_embd.weight": normal(N_CTX_TRAIN, N_EMBD),
               **norm("token_embd_norm")}
    for i in range(N_LAYER):
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            tensors[f"blk.{i}.{name}.weight"] = normal(N_EMBD, N_EMBD)
            tensors[f"blk.{i}.{name}.bias"] = normal(N_EMBD, std=0.02)
        tensors.update(norm(f"blk.{i}.attn_output_norm"))
        tensors.update(norm(f"blk.{i}.layer_output_norm"))
        tensors[f"blk.{i}.ffn_up.weight"] = normal(N_FF, N_EMBD)
        tensors[f"blk.{i}.ffn_up.bias"] = normal(N_FF, std=0.02)
        tensors[f"blk.{i}.ffn_down.weight"] = normal(N_EMBD, N_FF)
        tensors[f"blk.{i}.ffn_down.bias"] = normal(N_EMBD, std=0.02)
    tensors["cls.weight"] = normal(N_EMBD, N_EMBD)
    tensors["cls.bias"] = normal(N_EMBD, std=0.02)
    tensors["cls.output.weight"] = normal(n_out, N_EMBD, std=1.0)
    tensors["cls.output.bias"] = normal(n_out, std=0.1)
    save_gguf(writer, tensors)
    return path
