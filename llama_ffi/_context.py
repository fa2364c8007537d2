"""``Context``: owns a ``llama_context*`` (KV cache, decode, logits, state)."""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from llama_ffi._batch import Batch
from llama_ffi._callbacks import ABORT_CALLBACK, CallbackSlot
from llama_ffi._errors import (
    ContextError,
    LlamaError,
    StateError,
    check_decode,
    check_pointer,
    check_size,
    reraise_pending,
)
from llama_ffi._ffi import ffi, lib
from llama_ffi._handle import OwnedHandle
from llama_ffi._context_params import context_params
from llama_ffi._model import POOLING_NAMES

if TYPE_CHECKING:
    from llama_ffi._lora import LoraAdapter
    from llama_ffi._model import Model

class Context(OwnedHandle):
    """An inference context on a ``Model``: KV cache, decoding, logits and embeddings.

    Not thread-safe: use one context from one thread at a time.
    """

    _closed_error = ContextError
    _kind = "context"

    def __init__(
        self,
        model: Model,
        *,
        n_ctx: int = 0,
        n_batch: int = 2048,
        n_ubatch: int = 512,
        n_seq_max: int = 1,
        n_threads: int | None = None,
        n_threads_batch: int | None = None,
        embeddings: bool = False,
        pooling: str | None = None,
        flash_attn: str | bool = "auto",
        type_k: str = "f16",
        type_v: str = "f16",
        offload_kqv: bool = True,
        rope_freq_base: float = 0.0,
        rope_freq_scale: float = 0.0,
        rope_scaling: str | None = None,
        yarn_ext_factor: float | None = None,
        yarn_attn_factor: float | None = None,
        yarn_beta_fast: float | None = None,
        yarn_beta_slow: float | None = None,
        yarn_orig_ctx: int = 0,
        kv_unified: bool = True,
        swa_full: bool = False,
        n_outputs_max: int = 0,
        n_outputs_max_per_seq: int = 0,
        no_perf: bool = False,
    ) -> None:
        model_ptr = model._require()
        if model.vocab_only:
            # libllama creates the context but aborts the process on the first decode
            raise ContextError(f"{model.path.name} was loaded with vocab_only=True: it has no weights to run")
        params = context_params(
            n_ctx=n_ctx, n_batch=n_batch, n_ubatch=n_ubatch, n_seq_max=n_seq_max,
            n_threads=n_threads, n_threads_batch=n_threads_batch, embeddings=embeddings,
            pooling=pooling, flash_attn=flash_attn, type_k=type_k, type_v=type_v,
            offload_kqv=offload_kqv, rope_freq_base=rope_freq_base,
            rope_freq_scale=rope_freq_scale, rope_scaling=rope_scaling,
            yarn_ext_factor=yarn_ext_factor, yarn_attn_factor=yarn_attn_factor,
            yarn_beta_fast=yarn_beta_fast, yarn_beta_slow=yarn_beta_slow,
            yarn_orig_ctx=yarn_orig_ctx, kv_unified=kv_unified, swa_full=swa_full,
            n_outputs_max=n_outputs_max, n_outputs_max_per_seq=n_outputs_max_per_seq,
            no_perf=no_perf)

        ptr = check_pointer(
            lib.llama_init_from_model(model_ptr, params),
            ContextError,
            "failed to create the context (see the llama_ffi.native log)",
        )
        # the destructor keeps the model's handle alive: a context must be
        # freed before its model even when both are garbage at once
        self._ptr: Any = ffi.gc(ptr, lambda p, _model=model_ptr: lib.llama_free(p))
        self.model = model
        self._mem: Any = lib.llama_get_memory(ptr)
        self.n_ctx: int = lib.llama_n_ctx(ptr)
        self.n_ctx_seq: int = lib.llama_n_ctx_seq(ptr)
        self.n_batch: int = lib.llama_n_batch(ptr)
        self.n_ubatch: int = lib.llama_n_ubatch(ptr)
        self.n_seq_max: int = lib.llama_n_seq_max(ptr)
        self.kv_unified: bool = kv_unified or self.n_seq_max == 1
        self.n_vocab: int = model.vocab.n_tokens
        self.embeddings: bool = embeddings
        self.pooling: str = POOLING_NAMES.get(lib.llama_pooling_type(ptr), "unspecified")
        self.causal_attn: bool = bool(lib.llama_get_causal_attn(ptr))  # non-causal: a batch fits a ubatch
        # No memory (BERT-like encoders have no KV cache): libllama runs a decode as an encode, which
        # makes every token an output, and more outputs than it reserved abort the process.
        self.has_memory: bool = self._mem != ffi.NULL
        outputs_max = self.n_batch if n_outputs_max == 0 or model.has_encoder else n_outputs_max
        self._encode_limit = min(self.n_batch, self.n_ubatch, outputs_max)
        self._outputs: Sequence[int] = ()  # batch indices with logits from the last decode
        self._abort: CallbackSlot | None = None
        self._loras: dict[LoraAdapter, float] = {}
        model._add_dependent(self)

    # ------------------------------------------------------------------ C handle

    def close(self) -> None:
        if self._ptr is None:
            return
        ptr, self._ptr = self._ptr, None
        self._mem = None
        ffi.release(ptr)
        self._abort = None

    def __repr__(self) -> str:
        return f"<Context n_ctx={self.n_ctx} n_seq_max={self.n_seq_max}{' closed' if self._ptr is None else ''}>"

    # ------------------------------------------------------------------ decoding

    def _check_batch(self, batch: Batch, limit: int, what: str) -> None:
        n = len(batch)
        if n == 0:
            raise ContextError(f"cannot {what} an empty batch")
        if batch.closed:
            raise ContextError("the batch is closed")
        if n > limit:
            raise ContextError(f"batch of {n} tokens exceeds the context's limit of {limit} for {what}")

    def decode(self, batch: Batch) -> None:
        """Run the model on ``batch``; ``DecodeError`` (``code`` 1: no KV space) on failure."""
        ptr = self._require()
        limit = (self._encode_limit if not self.has_memory
                 else self.n_batch if self.causal_attn else min(self.n_batch, self.n_ubatch))
        self._check_batch(batch, limit, "decode")
        self._outputs = ()
        code = lib.llama_decode(ptr, batch._struct)
        if code:
            self._raise_callback_error()
            check_decode(code, "llama_decode")
        self._outputs = tuple(batch.outputs)

    def encode(self, batch: Batch) -> None:
        """Run the encoder (encoder-decoder and embedding models) on ``batch``."""
        ptr = self._require()
        self._check_batch(batch, self._encode_limit, "encode")
        self._outputs = ()
        code = lib.llama_encode(ptr, batch._struct)
        if code:
            self._raise_callback_error()
            check_decode(code, "llama_encode")
        self._outputs = tuple(range(len(batch)))

    def set_causal_attn(self, causal: bool) -> None:
        """Causal (the default) or non-causal attention (some projectors' media) for the next decodes."""
        lib.llama_set_causal_attn(self._require(), bool(causal))
        self.causal_attn = bool(causal)

    def _set_outputs(self, outputs: Sequence[int]) -> None:
        """Record the batch indices with logits of a decode made outside ``decode`` (libmtmd's helper)."""
        self._outputs = tuple(outputs)

    def _raise_callback_error(self) -> None:
        if self._abort is not None:
            reraise_pending(self._abort.errors)

    def _check_output(self, i: int) -> None:
        outputs = self._outputs
        if i in outputs or (i < 0 and -i <= len(outputs)):
            return
        raise ContextError(f"batch index {i} has no output (add the token with logits=True)")

    def logits_ith(self, i: int) -> Any:
        """The ``n_vocab`` logits of batch index ``i`` (a ``float*`` view valid until the next decode)."""
        ptr = self._require()
        self._check_output(i)
        logits = lib.llama_get_logits_ith(ptr, i)
        if not logits:  # checked here, not by check_pointer: this runs for every sampled token
            raise ContextError(f"no logits for batch index {i}")
        return logits

    def logits_list(self, i: int) -> list[float]:
        return ffi.unpack(self.logits_ith(i), self.n_vocab)

    def embeddings_ith(self, i: int) -> list[float]:
        """The output embedding of batch index ``i`` (contexts made with ``embeddings=True``)."""
        ptr = self._require()
        self._check_output(i)
        row = check_pointer(lib.llama_get_embeddings_ith(ptr, i), ContextError, f"no embeddings for batch index {i}")
        return ffi.unpack(row, self.model.n_embd_out)

    def embeddings_seq(self, seq_id: int) -> list[float]:
        """The pooled embedding of a sequence (contexts with a pooling type other than none)."""
        ptr = self._require()
        self._check_seq(seq_id)
        row = check_pointer(
            lib.llama_get_embeddings_seq(ptr, seq_id),
            ContextError,
            f"no pooled embedding for sequence {seq_id} (is the context pooling?)",
        )
        n = self.model.n_cls_out if self.pooling == "rank" else self.model.n_embd_out
        return ffi.unpack(row, n)

    def set_abort_callback(self, fn: Callable[[], bool] | None) -> None:
        """``fn()`` returning True aborts the running decode (``DecodeError`` code 2)."""
        ptr = self._require()
        if fn is None:
            lib.llama_set_abort_callback(ptr, ffi.NULL, ffi.NULL)
            self._abort = None
            return
        slot = CallbackSlot(fn)
        lib.llama_set_abort_callback(ptr, ABORT_CALLBACK, slot.handle)
        self._abort = slot

    def set_n_threads(self, n_threads: int, n_threads_batch: int) -> None:
        if n_threads < 1 or n_threads_batch < 1:
            raise ValueError("thread counts must be >= 1")
        lib.llama_set_n_threads(self._require(), n_threads, n_threads_batch)

    @property
    def loras(self) -> dict[LoraAdapter, float]:
        """The LoRA adapters applied to this context, with their scales."""
        return dict(self._loras)

    def set_loras(self, loras: Mapping[LoraAdapter, float]) -> None:
        """Apply these adapters at these scales (and no others); ``{}`` removes them all."""
        ptr = self._require()
        chosen: dict[LoraAdapter, float] = {}
        for adapter, scale in loras.items():
            if adapter.model is not self.model:
                raise LlamaError(f"{adapter!r} was loaded for another model")
            adapter._require()
            scale = float(scale)
            if not math.isfinite(scale):
                raise ValueError(f"the scale of {adapter!r} must be finite, not {scale}")
            chosen[adapter] = scale
        n = len(chosen)
        if n:
            handles = ffi.new("struct llama_adapter_lora *[]", [a._ptr for a in chosen])
            scales = ffi.new("float[]", list(chosen.values()))
        else:  # libllama asserts that an empty set is passed as NULLs
            handles, scales = ffi.NULL, ffi.NULL
        lib.llama_set_adapters_lora(ptr, handles, n, scales)
        self._loras = chosen
        for adapter in chosen:
            adapter._used_by(self)

    def _forget_lora(self, adapter: LoraAdapter) -> None:
        if adapter in self._loras and self._ptr is not None:
            self.set_loras({a: s for a, s in self._loras.items() if a is not adapter})

    def set_embeddings(self, enabled: bool) -> None:
        lib.llama_set_embeddings(self._require(), enabled)
        self.embeddings = enabled

    def perf(self) -> dict[str, float]:
        data = lib.llama_perf_context(self._require())
        return {
            "t_start_ms": data.t_start_ms,
            "t_load_ms": data.t_load_ms,
            "t_p_eval_ms": data.t_p_eval_ms,
            "t_eval_ms": data.t_eval_ms,
            "n_p_eval": data.n_p_eval,
            "n_eval": data.n_eval,
            "n_reused": data.n_reused,
        }

    def perf_reset(self) -> None:
        lib.llama_perf_context_reset(self._require())

    # ------------------------------------------------------------------ memory (KV cache)

    def _memory(self) -> Any:
        self._require()
        return self._mem

    def _check_seq(self, seq_id: int, *, allow_any: bool = False) -> None:
        if isinstance(seq_id, bool) or not isinstance(seq_id, int):
            raise TypeError("sequence ids are ints")
        if allow_any and seq_id < 0:
            return
        if not 0 <= seq_id < self.n_seq_max:
            raise ValueError(f"sequence id {seq_id} out of range 0..{self.n_seq_max - 1}")

    @property
    def memory_can_shift(self) -> bool:
        return bool(lib.llama_memory_can_shift(self._memory()))

    def memory_clear(self, data: bool = True) -> None:
        lib.llama_memory_clear(self._memory(), data)

    def seq_rm(self, seq: int, p0: int = -1, p1: int = -1) -> bool:
        """Remove positions ``[p0, p1)`` of ``seq`` (-1: any sequence / open end); False if impossible."""
        self._check_seq(seq, allow_any=True)
        return bool(lib.llama_memory_seq_rm(self._memory(), seq, p0, p1))

    def seq_cp(self, src: int, dst: int, p0: int = -1, p1: int = -1) -> None:
        """Give ``dst`` the cells of ``src`` in positions [p0, p1).  With a KV stream per
        sequence (``kv_unified=False``) the cells are copied, and libllama copies only whole
        sequences (it aborts the process on a part): copy all, then ``seq_rm`` the rest."""
        self._check_seq(src)
        self._check_seq(dst)
        size = self.n_ctx_seq
        if (not self.kv_unified and src != dst
                and ((0 < p0 and p0 + 1 < size) or (0 < p1 and p1 + 1 < size))):
            raise ContextError("across KV streams seq_cp copies whole sequences only "
                               "(p0 = p1 = -1)")
        lib.llama_memory_seq_cp(self._memory(), src, dst, p0, p1)

    def seq_keep(self, seq: int) -> None:
        self._check_seq(seq)
        lib.llama_memory_seq_keep(self._memory(), seq)

    def _check_shift(self) -> None:
        if not self.memory_can_shift:
            raise ContextError("this context's memory cannot shift positions")

    def seq_add(self, seq: int, p0: int, p1: int, delta: int) -> None:
        self._check_seq(seq)
        self._check_shift()
        lib.llama_memory_seq_add(self._memory(), seq, p0, p1, delta)

    def seq_div(self, seq: int, p0: int, p1: int, d: int) -> None:
        self._check_seq(seq)
        if d < 1:
            raise ValueError("seq_div divisor must be >= 1")
        self._check_shift()
        lib.llama_memory_seq_div(self._memory(), seq, p0, p1, d)

    def seq_pos_min(self, seq: int) -> int:
        self._check_seq(seq)
        return lib.llama_memory_seq_pos_min(self._memory(), seq)

    def seq_pos_max(self, seq: int) -> int:
        """Largest position held for ``seq``; -1 when it is empty."""
        self._check_seq(seq)
        return lib.llama_memory_seq_pos_max(self._memory(), seq)

    # ------------------------------------------------------------------ state

    def state_seq_get(self, seq: int) -> bytes:
        """A snapshot of one sequence's state (KV cache) as bytes."""
        ptr = self._require()
        self._check_seq(seq)
        size = lib.llama_state_seq_get_size(ptr, seq)
        buf = ffi.new("uint8_t[]", max(size, 1))
        n = lib.llama_state_seq_get_data(ptr, buf, size, seq)
        check_size(n, StateError, f"could not read the state of sequence {seq}")
        return ffi.buffer(buf, n)[:]

    def state_seq_set(self, seq: int, data: bytes) -> int:
        """Load a ``state_seq_get`` snapshot into ``seq``; returns the bytes read."""
        ptr = self._require()
        self._check_seq(seq)
        if not data:
            raise StateError("empty state")
        src = ffi.from_buffer("uint8_t[]", data)
        n = lib.llama_state_seq_set_data(ptr, src, len(data), seq)
        return check_size(n, StateError, f"could not restore the state of sequence {seq}")

    def state_seq_save_file(self, path: str | os.PathLike[str], seq: int, tokens: Sequence[int], *,
                            placeholders: bool = False) -> int:
        """Write ``seq``'s state and its ``tokens`` to ``path``; returns the bytes written.

        With ``placeholders``, negative ids may stand for cells that are no token (media
        embeddings, as the caller numbers them); libllama stores the ids as they are.
        """
        ptr = self._require()
        self._check_seq(seq)
        self.model.vocab.check_tokens(
            [t for t in tokens if not (isinstance(t, int) and t < 0)] if placeholders else tokens)
        arr = ffi.new("llama_token[]", list(tokens)) if tokens else ffi.NULL
        n = lib.llama_state_seq_save_file(ptr, os.fsencode(path), seq, arr, len(tokens))
        return check_size(n, StateError, f"could not save sequence {seq} to {os.fspath(path)}")

    def state_seq_load_file(self, path: str | os.PathLike[str], seq: int) -> list[int]:
        """Restore ``seq`` from a ``state_seq_save_file`` file; returns its tokens."""
        ptr = self._require()
        self._check_seq(seq)
        if not os.path.isfile(path):
            raise StateError(f"no state file at {os.fspath(path)}")
        fpath = os.fsencode(path)
        count = ffi.new("size_t *")
        check_size(
            lib.llama_state_seq_load_file(ptr, fpath, seq, ffi.NULL, 0, count),
            StateError,
            f"{os.fspath(path)} is not a sequence state file for this model",
        )
        capacity = max(count[0], 1)
        tokens = ffi.new("llama_token[]", capacity)
        n = lib.llama_state_seq_load_file(ptr, fpath, seq, tokens, capacity, count)
        check_size(n, StateError, f"could not load sequence {seq} from {os.fspath(path)}")
        return ffi.unpack(tokens, count[0])

