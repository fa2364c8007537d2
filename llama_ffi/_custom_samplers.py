"""Sampler stages written in Python and plugged into a libllama sampler chain.

libllama accepts user samplers: a ``llama_sampler_i`` table of callbacks plus a
context pointer (``llama_sampler_init``).  Here the callbacks are
``extern "Python"`` functions and the context pointer is the cffi handle of a
``PythonSampler``, so libllama's chain calls ``PythonSampler.apply`` with the
candidate array in place.

The stages:

- ``TailFreeSampler``: tail-free sampling (``tfs_z``), which libllama dropped.
- ``LogitSnapshot``/``LogitRestore``: a pair around the penalties stage that
  keeps one token's logit (the newline, for ``penalize_nl=False``) untouched.

An exception raised in ``apply`` cannot cross libllama's C++ frames: it is
appended to the owner's error list and re-raised once the chain returns.
"""

from __future__ import annotations

import math
import struct
from typing import Any

from llama_ffi._errors import LlamaError, check_pointer
from llama_ffi._ffi import ffi, lib

_TOKEN_DATA = struct.Struct("=iff")  # llama_token_data: id, logit, p
assert _TOKEN_DATA.size == ffi.sizeof("llama_token_data")


def _columns(cur_p: Any) -> tuple[list[int], list[float]]:
    """(ids, logits) of a candidate array, read in two C-speed passes."""
    n = cur_p.size
    raw = memoryview(ffi.buffer(cur_p.data, n * _TOKEN_DATA.size))
    return raw.cast("i")[0::3].tolist(), raw.cast("f")[1::3].tolist()


class PythonSampler:
    """Base class: a libllama sampler whose ``apply`` is this object's ``apply``.

    ``ptr`` is the ``llama_sampler*``; once added to a chain, the chain owns
    and frees it (and ``ptr`` becomes None through the ``free`` callback).
    The owner must keep this object alive while the C sampler exists.
    """

    name = b"python"

    def __init__(self, errors: list[BaseException]) -> None:
        self._errors = errors
        self._handle = ffi.new_handle(self)
        self._c_name = ffi.new("char[]", self.name)
        iface = ffi.new("struct llama_sampler_i *")
        iface.name = lib.llama_ffi_sampler_name
        iface.apply = lib.llama_ffi_sampler_apply
        iface.free = lib.llama_ffi_sampler_free
        self._iface = iface
        self.ptr: Any = check_pointer(
            lib.llama_sampler_init(iface, self._handle), LlamaError, "llama_sampler_init failed"
        )

    def apply(self, cur_p: Any) -> None:
        raise NotImplementedError


class TailFreeSampler(PythonSampler):
    """Tail-free sampling (Phillips, 2019).

    Candidates are ranked by logit; the absolute second differences of their
    probabilities, normalised to sum 1, are accumulated from the head, and the
    tail starts where that sum first exceeds ``z``.
    """

    name = b"tail-free"

    def __init__(self, errors: list[BaseException], z: float, min_keep: int) -> None:
        super().__init__(errors)
        self.z = z
        self.min_keep = max(1, min_keep)

    def apply(self, cur_p: Any) -> None:
        n = cur_p.size
        if self.z >= 1.0 or n <= 2:
            return
        ids, logits = _columns(cur_p)
        order = sorted(range(n), key=logits.__getitem__, reverse=True)
        top = logits[order[0]]
        if top == -math.inf:
            return
        weights = [math.exp(logits[i] - top) for i in order]
        total = math.fsum(weights)
        probs = [w / total for w in weights]
        slopes = [probs[i] - probs[i + 1] for i in range(n - 1)]
        curvature = [abs(slopes[i] - slopes[i + 1]) for i in range(n - 2)]
        mass = math.fsum(curvature)
        keep = n
        if mass > 1e-12:
            running = 0.0
            for i, c in enumerate(curvature):
                running += c / mass
                if running > self.z and i >= self.min_keep:
                    keep = i
                    break
        keep = min(max(keep, self.min_keep), n)
        if keep == n:
            return
        packed = b"".join(_TOKEN_DATA.pack(ids[order[j]], logits[order[j]], probs[j]) for j in range(keep))
        ffi.memmove(cur_p.data, packed, len(packed))
        cur_p.size = keep
        cur_p.sorted = True


class LogitGuard:
    """State shared by a ``LogitSnapshot``/``LogitRestore`` pair."""

    __slots__ = ("token", "index", "logit")

    def __init__(self, token: int) -> None:
        self.token = token
        self.index = -1
        self.logit = 0.0


class _GuardStage(PythonSampler):
    """A stage that shares one ``LogitGuard`` with its partner stage."""

    def __init__(self, errors: list[BaseException], guard: LogitGuard) -> None:
        super().__init__(errors)
        self.guard = guard


class LogitSnapshot(_GuardStage):
    """Remembers where ``guard.token`` is in the candidates and its logit."""

    name = b"logit-snapshot"

    def apply(self, cur_p: Any) -> None:
        guard = self.guard
        token = guard.token
        data = cur_p.data
        # before any reordering stage the array is indexed by token id
        if token < cur_p.size and data[token].id == token:
            index = token
        else:
            ids, _ = _columns(cur_p)
            index = ids.index(token) if token in ids else -1
        guard.index = index
        if index >= 0:
            guard.logit = data[index].logit


class LogitRestore(_GuardStage):
    """Puts back the logit ``LogitSnapshot`` saved (stages in between only change logits in place)."""

    name = b"logit-restore"

    def apply(self, cur_p: Any) -> None:
        guard = self.guard
        index = guard.index
        if 0 <= index < cur_p.size:
            entry = cur_p.data[index]
            if entry.id == guard.token:
                entry.logit = guard.logit
        guard.index = -1


@ffi.def_extern()
def llama_ffi_sampler_name(smpl):  # type: ignore[no-untyped-def]
    return ffi.from_handle(smpl.ctx)._c_name


@ffi.def_extern()
def llama_ffi_sampler_apply(smpl, cur_p) -> None:  # type: ignore[no-untyped-def]
    stage: PythonSampler = ffi.from_handle(smpl.ctx)
    try:
        stage.apply(cur_p)
    except BaseException as exc:  # noqa: BLE001 - re-raised by SamplerChain after C returns
        stage._errors.append(exc)


@ffi.def_extern()
def llama_ffi_sampler_free(smpl) -> None:  # type: ignore[no-untyped-def]
    ffi.from_handle(smpl.ctx).ptr = None
