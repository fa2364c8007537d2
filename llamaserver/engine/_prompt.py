"""Turning a request's prompt into tokens, and fitting it into a slot's context."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._errors import InvalidRequest

if TYPE_CHECKING:
    from llama_ffi import Vocab

__all__ = ["tokenize_prompt", "fit_prompt", "common_prefix"]


def tokenize_prompt(vocab: Vocab, prompt: str | list[int | str], *, add_special: bool,
                    parse_special: bool) -> tuple[list[int], bool]:
    """Tokens of a string, a token list, or a mix; and whether a BOS was added.

    As in the seed, special tokens (BOS) are added only when the prompt is a string or its
    first element is one.
    """
    from llama_ffi import InvalidTokenError

    if isinstance(prompt, str):
        tokens = vocab.tokenize(prompt, add_special=add_special, parse_special=parse_special)
        return tokens, bool(add_special and tokens and vocab.add_bos and tokens[0] == vocab.bos)
    if not isinstance(prompt, list):
        raise InvalidRequest("'prompt' must be a string or an array of strings and token ids")
    tokens: list[int] = []
    bos_added = False
    ids: list[int] = []
    for i, item in enumerate(prompt):
        if isinstance(item, str):
            special = add_special and i == 0
            piece = vocab.tokenize(item, add_special=special, parse_special=parse_special)
            if special and piece and vocab.add_bos and piece[0] == vocab.bos:
                bos_added = True
            tokens.extend(piece)
        elif isinstance(item, int) and not isinstance(item, bool):
            tokens.append(item)
            ids.append(item)
        else:
            raise InvalidRequest("'prompt' array items must be strings or token ids")
    if ids:
        try:
            vocab.check_tokens(ids)
        except InvalidTokenError as exc:
            raise InvalidRequest(f"invalid token in prompt: {exc}") from None
    return tokens, bos_added


def fit_prompt(tokens: list[int], n_avail: int, n_keep: int) -> tuple[list[int], bool]:
    """Fit ``tokens`` into ``n_avail`` positions (leaving room to generate); (tokens, truncated).

    Like the seed's server: the first ``n_keep`` tokens stay, then whole blocks of half the
    remaining room are dropped from the front of the rest until it fits.
    """
    n = len(tokens)
    if n < n_avail:
        return tokens, False
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
