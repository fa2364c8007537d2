"""Fitting a prompt into a slot's context, and comparing token lists."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._errors import InvalidRequest, PromptTooLong

if TYPE_CHECKING:
    from .types import GenerationRequest

__all__ = ["user_prompt", "fit_prompt", "common_prefix"]


def user_prompt(request: GenerationRequest, n_sys: int) -> tuple[list[int], int]:
    """The request's own tokens behind ``n_sys`` shared ones, and how many a shift keeps.

    As in the seed: BOS starts the system prompt when there is one, else the prompt.
    """
    tokens = request.tokens
    bos = request.bos_added
    user = tokens[1:] if bos and n_sys else tokens
    if request.n_keep < 0:
        return user, len(user)
    return user, min(request.n_keep + (1 if bos and not n_sys else 0), len(user))


def fit_prompt(tokens: list[int], n_ctx: int, n_sys: int, n_keep: int, *,
               truncate: bool = True) -> tuple[list[int], bool]:
    """Fit ``tokens`` after ``n_sys`` shared tokens into ``n_ctx`` positions, leaving room to
    generate; returns (tokens, truncated).

    Without ``truncate`` a prompt that does not fit is a ``PromptTooLong`` error (today's
    llama-server).  With it, as the seed's server did: the first ``n_keep`` tokens stay, then
    whole blocks of half the remaining room are dropped from the front of the rest until it
    fits.
    """
    n = len(tokens)
    n_avail = n_ctx - n_sys
    if n < n_avail:
        return tokens, False
    if not truncate:
        raise PromptTooLong(
            f"the request exceeds the available context size: the prompt has {n + n_sys} "
            f"tokens and a slot holds {n_ctx}; try increasing the context size or enabling "
            "context shift", n_prompt_tokens=n + n_sys, n_ctx=n_ctx)
    n_left = n_avail - n_keep
    if n_left < 2:
        raise InvalidRequest(
            f"the prompt ({n} tokens) does not fit in the context of a slot ({n_avail} tokens "
            f"available) while keeping n_keep = {n_keep} tokens")
    block = n_left // 2
    erased = (n - n_keep - block) // block
    kept = tokens[:n_keep] + tokens[n_keep + erased * block:]
    return kept, True


def common_prefix(a: list[int], b: list[int]) -> int:
    """Length of the longest common prefix of two token lists."""
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    # Narrow down in large steps with C-speed slice comparisons, then walk the last block.
    lo, step = 0, 256
    while lo + step <= n and a[lo:lo + step] == b[lo:lo + step]:
        lo += step
    while lo < n and a[lo] == b[lo]:
        lo += 1
    return lo
