"""``Batch``: owns a ``llama_batch`` (``llama_batch_init``/``llama_batch_free``)."""

from __future__ import annotations

import sys
import weakref
from typing import Any, Sequence

from llama_ffi._errors import LlamaError
from llama_ffi._ffi import ffi, lib

_INT32_ONE = (1).to_bytes(4, sys.byteorder)


class Batch:
    """Tokens (with positions, sequence ids and output flags) for one ``Context.decode``.

    The batch is reusable: ``clear()`` it and ``add()`` again.  ``add`` returns
    the token's index in the batch, which is what ``Context.logits_ith`` and
    ``SamplerChain.sample`` take for tokens added with ``logits=True``.
    """

    def __init__(self, capacity: int, *, n_seq_max: int = 1, embd: int = 0) -> None:
        if capacity < 1:
            raise ValueError("batch capacity must be at least 1")
        if n_seq_max < 1:
            raise ValueError("n_seq_max must be at least 1")
        if embd < 0:
            raise ValueError("embd must be >= 0")
        struct = lib.llama_batch_init(capacity, embd, n_seq_max)
        self._struct: Any = struct
        # llama_batch_free is the only way to release the arrays; the finalizer
        # is the safety net for a batch that is never closed.
        self._finalizer = weakref.finalize(self, lib.llama_batch_free, struct)
        self.capacity = capacity
        self.n_seq_max = n_seq_max
        self.embd = embd
        self._token = struct.token
        self._embd = struct.embd
        self._pos = struct.pos
        self._n_seq_id = struct.n_seq_id
        self._seq_id = struct.seq_id
        self._logits = struct.logits
        self._n = 0
        self.outputs: list[int] = []  # indices added with logits=True, in order
        struct.n_tokens = 0

    def __len__(self) -> int:
        return self._n

    def __repr__(self) -> str:
        return f"<Batch {self._n}/{self.capacity} tokens>"

    def clear(self) -> None:
        self._n = 0
        self._struct.n_tokens = 0
        self.outputs.clear()

    def _slot(self, seq_ids: int | Sequence[int]) -> int:
        i = self._n
        if i >= self.capacity:
            if not self._finalizer.alive:
                raise LlamaError("the batch is closed")
            raise LlamaError(f"batch is full ({self.capacity} tokens)")
        if isinstance(seq_ids, int):
            self._n_seq_id[i] = 1
            self._seq_id[i][0] = seq_ids
        else:
            n = len(seq_ids)
            if not 1 <= n <= self.n_seq_max:
                raise ValueError(f"a token belongs to 1..{self.n_seq_max} sequences, got {n}")
            row = self._seq_id[i]
            for j, seq in enumerate(seq_ids):
                row[j] = seq
            self._n_seq_id[i] = n
        return i

    def _place(self, i: int, pos: int, logits: bool) -> int:
        """Finish row ``i`` (already holding its token or embedding and its sequences)."""
        self._pos[i] = pos
        self._logits[i] = 1 if logits else 0
        if logits:
            self.outputs.append(i)
        self._n = i + 1
        self._struct.n_tokens = i + 1
        return i

    def add(self, token: int, pos: int, seq_ids: int | Sequence[int], logits: bool) -> int:
        """Append a token at position ``pos`` of ``seq_ids``; return its index in the batch."""
        if self.embd:
            raise LlamaError("this batch holds embeddings; use add_embedding")
        i = self._slot(seq_ids)
        self._token[i] = token
        return self._place(i, pos, logits)

    def add_tokens(self, tokens: Sequence[int], pos0: int, seq_id: int, *, logits_last: bool = True) -> int:
        """Append ``tokens`` at positions ``pos0, pos0 + 1, ...`` of sequence ``seq_id``; only the
        last one asks for logits (if ``logits_last``).  Returns the last token's index.

        The same batch as ``add`` called once per token, filled with a handful of C-level
        copies instead: prompts go through here.
        """
        if self.embd:
            raise LlamaError("this batch holds embeddings; use add_embedding")
        if isinstance(seq_id, bool) or not isinstance(seq_id, int):
            raise TypeError(f"seq_id must be an int, not {type(seq_id).__name__}")
        n = len(tokens)
        if n == 0:
            raise ValueError("add_tokens needs at least one token")
        i = self._n
        if i + n > self.capacity:
            if not self._finalizer.alive:
                raise LlamaError("the batch is closed")
            raise LlamaError(f"batch is full ({self.capacity} tokens; {i} used, {n} more asked)")
        end = i + n
        # Nothing counts until n_tokens moves, so a bad value part-way leaves the batch as it was.
        self._token[i:end] = tokens
        self._pos[i:end] = range(pos0, pos0 + n)
        ffi.memmove(self._n_seq_id + i, _INT32_ONE * n, 4 * n)  # each token in one sequence
        for row in ffi.unpack(self._seq_id + i, n):  # one malloc'ed row per token: no bulk copy
            row[0] = seq_id
        ffi.memmove(self._logits + i, bytes(n), n)
        last = end - 1
        if logits_last:
            self._logits[last] = 1
            self.outputs.append(last)
        self._n = end
        self._struct.n_tokens = end
        return last

    def add_embedding(self, values: Sequence[float], pos: int, seq_ids: int | Sequence[int], logits: bool) -> int:
        """Append one input embedding row (batches made with ``embd > 0``)."""
        if not self.embd:
            raise LlamaError("this batch holds token ids; use add")
        if len(values) != self.embd:
            raise ValueError(f"embedding row has {len(values)} values, batch expects {self.embd}")
        i = self._slot(seq_ids)
        start = i * self.embd
        for j, value in enumerate(values):
            self._embd[start + j] = value
        return self._place(i, pos, logits)

    def tokens(self) -> list[int]:
        return ffi.unpack(self._token, self._n) if not self.embd and self._n else []

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def close(self) -> None:
        self.clear()
        self.capacity = 0
        self._finalizer()

    def __enter__(self) -> Batch:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
