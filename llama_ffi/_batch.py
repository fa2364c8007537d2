"""``Batch``: owns a ``llama_batch`` (``llama_batch_init``/``llama_batch_free``)."""

from __future__ import annotations

import sys
import weakref
from typing import Any, Sequence

from llama_ffi._errors import LlamaError
from llama_ffi._ffi import ffi, lib

_INT32_ONE = (1).to_bytes(4, sys.byteorder)


def _free_with_own_pos(struct: Any, original_pos: Any, _own_pos: Any) -> None:
    struct.pos = original_pos  # llama_batch_free frees the array llama_batch_init made
    lib.llama_batch_free(struct)


class Batch:
    """Tokens (with positions, sequence ids and output flags) for one ``Context.decode``.

    The batch is reusable: ``clear()`` it and ``add()`` again.  ``add`` returns
    the token's index in the batch, which is what ``Context.logits_ith`` and
    ``SamplerChain.sample`` take for tokens added with ``logits=True``.
    """

    def __init__(self, capacity: int, *, n_seq_max: int = 1, embd: int = 0, n_pos: int = 1) -> None:
        if capacity < 1:
            raise ValueError("batch capacity must be at least 1")
        if n_seq_max < 1:
            raise ValueError("n_seq_max must be at least 1")
        if embd < 0:
            raise ValueError("embd must be >= 0")
        if n_pos < 1 or (n_pos > 1 and not embd):
            raise ValueError("n_pos > 1 (M-RoPE positions per row) needs an embedding batch (embd > 0)")
        struct = lib.llama_batch_init(capacity, embd, n_seq_max)
        self._struct: Any = struct
        # llama_batch_free is the only way to release the arrays; the finalizer
        # is the safety net for a batch that is never closed.
        if n_pos > 1:
            # An M-RoPE model reads n_pos positions per embedding row, section-major
            # (pos[j * n_tokens + i]); llama_batch_init makes room for one per row.
            own_pos = ffi.new("llama_pos[]", capacity * n_pos)
            self._finalizer = weakref.finalize(self, _free_with_own_pos, struct, struct.pos, own_pos)
            struct.pos = own_pos
        else:
            self._finalizer = weakref.finalize(self, lib.llama_batch_free, struct)
        self.capacity = capacity
        self.n_seq_max = n_seq_max
        self.embd = embd
        self.n_pos = n_pos
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
            if self.closed:
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
        i = self._n
        if type(seq_ids) is int and i < self.capacity:  # _slot's one-sequence case, inline: per token
            self._n_seq_id[i] = 1
            self._seq_id[i][0] = seq_ids
        else:
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
            if self.closed:
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

    def add_embeddings(self, values: Any, pos: int | Sequence[Sequence[int]], seq_id: int, *,
                       logits_last: bool = False) -> int:
        """Append rows of input embeddings for sequence ``seq_id``; return the last row's index.

        ``values``: ``n x embd`` floats, row-major (``MediaEmbeddings``, a cdata ``float[]``, or
        any buffer of float32: array, memoryview, numpy), copied in bulk. ``pos``: the first
        row's position (rows at ``pos, pos + 1, ...``), or, in a batch made with ``n_pos > 1``
        (M-RoPE), one ``n_pos``-tuple per row. An ``n_pos > 1`` batch holds one call's rows:
        libllama lays their positions out by the batch's final size.
        """
        if not self.embd:
            raise LlamaError("this batch holds token ids; use add or add_tokens")
        if isinstance(seq_id, bool) or not isinstance(seq_id, int):
            raise TypeError(f"seq_id must be an int, not {type(seq_id).__name__}")
        src = getattr(values, "data", values) if hasattr(values, "n_embd") else values
        if not isinstance(src, ffi.CData):
            src = ffi.from_buffer("float[]", src)
        elif ffi.typeof(src).kind != "array":
            raise TypeError("values must be a float[] array or a buffer, not a pointer of unknown length")
        n_floats = ffi.sizeof(src) // ffi.sizeof("float")
        if n_floats == 0 or n_floats % self.embd:
            raise ValueError(f"{n_floats} floats are not whole rows of {self.embd}")
        n = n_floats // self.embd
        i = self._n
        if i + n > self.capacity:
            if self.closed:
                raise LlamaError("the batch is closed")
            raise LlamaError(f"batch is full ({self.capacity} rows; {i} used, {n} more asked)")
        if self.n_pos > 1:
            if i:
                raise LlamaError("an M-RoPE batch (n_pos > 1) holds one add_embeddings call")
            rows = [(pos + k,) * self.n_pos for k in range(n)] if isinstance(pos, int) else list(pos)
            if len(rows) != n or any(len(r) != self.n_pos for r in rows):
                raise ValueError(f"M-RoPE positions: {n} rows of {self.n_pos} values expected")
            for j in range(self.n_pos):
                self._pos[j * n : (j + 1) * n] = [r[j] for r in rows]
        elif isinstance(pos, int):
            self._pos[i : i + n] = range(pos, pos + n)
        else:
            raise TypeError("positions per row are for batches made with n_pos > 1; give the first position")
        ffi.memmove(self._embd + i * self.embd, src, n_floats * ffi.sizeof("float"))
        ffi.memmove(self._n_seq_id + i, _INT32_ONE * n, 4 * n)
        for row in ffi.unpack(self._seq_id + i, n):
            row[0] = seq_id
        ffi.memmove(self._logits + i, bytes(n), n)
        last = i + n - 1
        if logits_last:
            self._logits[last] = 1
            self.outputs.append(last)
        self._n = i + n
        self._struct.n_tokens = i + n
        return last

    def tokens(self) -> list[int]:
        return ffi.unpack(self._token, self._n) if not self.embd and self._n else []

    @property
    def closed(self) -> bool:
        return self.capacity == 0  # close() empties it; an open batch holds at least one token

    def close(self) -> None:
        self.clear()
        self.capacity = 0
        self._finalizer()

    def __enter__(self) -> Batch:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
