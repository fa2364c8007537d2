"""Pieces shared by the OpenAI-shaped endpoints (ids, usage, finish reasons, logprobs, the SSE body)."""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import Field

from ..engine import FinalEvent, PromptProgress, TokenEvent, TokenProbs
from ._body import JsonInt
from ._llama_shapes import Pieces, logprob, progress, timings
from ._options import GenerationOptions
from ._streaming import SSE_DONE, EventSource, Outcome, merge_events, sse_error, sse_event

if TYPE_CHECKING:
    from ._context import ApiContext


class OpenAIOptions(GenerationOptions):
    """OpenAI request fields common to chat and text completions."""

    model: str | None = None
    n: JsonInt = Field(1, ge=1, le=16)
    stream_options: dict[str, Any] | None = None
    user: str | None = None


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_urlsafe(18)}"


def now() -> int:
    return int(time.time())


def finish_reason(final: FinalEvent) -> str:
    if final.stopped_shutdown:  # cut by the server's shutdown (not an OpenAI value)
        return "shutdown"
    return "length" if (final.stopped_limit or final.truncated) and not (
        final.stopped_eos or final.stopped_word) else "stop"


def usage(finals: list[FinalEvent], n: int = 1) -> dict[str, Any]:
    """Usage of choices ordered prompt by prompt, ``n`` per prompt (they share the prompt)."""
    prompt_tokens = sum(f.tokens_evaluated for f in finals[::max(n, 1)])
    completion = sum(f.tokens_predicted for f in finals)
    cached = sum(f.timings.cache_n for f in finals[::max(n, 1)])
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion,
            "total_tokens": prompt_tokens + completion,
            "prompt_tokens_details": {"cached_tokens": cached}}


def chat_logprobs(pieces: Pieces, entries: Sequence[TokenProbs]) -> dict[str, Any]:
    """Per-token probabilities as OpenAI chat ``logprobs`` (candidates keep their own ids)."""
    content = []
    for entry in entries:
        content.append({
            "id": entry.token,
            "token": pieces.text(entry.token),
            "logprob": logprob(entry.prob),
            "bytes": pieces.bytes(entry.token),
            "top_logprobs": [{"id": tok, "token": pieces.text(tok), "logprob": logprob(p),
                              "bytes": pieces.bytes(tok)} for tok, p in entry.top],
        })
    return {"content": content}


def text_logprobs(pieces: Pieces, entries: Sequence[TokenProbs], offset: int = 0
                  ) -> dict[str, Any]:
    """Per-token probabilities as OpenAI text-completion ``logprobs``.

    That format keys ``top_logprobs`` by token text: of two candidates with the same text,
    the more likely one is kept.
    """
    tokens, token_logprobs, top, offsets = [], [], [], []
    for entry in entries:
        token = pieces.text(entry.token)
        tokens.append(token)
        token_logprobs.append(logprob(entry.prob))
        alternatives: dict[str, float] = {}
        for tok, p in entry.top:  # most likely first
            alternatives.setdefault(pieces.text(tok), logprob(p))
        top.append(alternatives)
        offsets.append(offset)
        offset += len(token)
    return {"tokens": tokens, "token_logprobs": token_logprobs, "top_logprobs": top,
            "text_offset": offsets}


def verbose_view(ctx: ApiContext, sources: Sequence[EventSource], outcomes: Sequence[Outcome],
                 opts: OpenAIOptions) -> dict[str, Any]:
    """With ``-v``, upstream's ``__verbose``: the first choice in llama.cpp's own shape (the
    prompt as evaluated, the raw output, the generation settings)."""
    if not ctx.settings.verbose:
        return {}
    from ._completion import final_payload

    return {"__verbose": final_payload(ctx, sources[0], outcomes[0], opts, streamed=False)}


def include_usage(opts: OpenAIOptions) -> bool:
    return bool(opts.stream_options and opts.stream_options.get("include_usage"))


ChoiceChunks = dict[str, Any] | list[dict[str, Any]] | None


def _as_list(parts: ChoiceChunks) -> list[dict[str, Any]]:
    return [] if parts is None else parts if isinstance(parts, list) else [parts]


async def stream_choices(sources: Sequence[EventSource], head: dict[str, Any],
                         opts: OpenAIOptions, opening: list[dict[str, Any]],
                         choice: Callable[[int, TokenEvent | FinalEvent], ChoiceChunks],
                         start: Callable[[int], dict[str, Any]]) -> AsyncIterator[bytes]:
    """The SSE body of a streamed OpenAI completion (chat or text).

    ``opening`` choices go first, one chunk each; then the chunks that ``choice(index, event)``
    makes of each event of every source (a choice, a list of them, or None for none; the last
    chunk of the last choice to finish also carries the timings); then the usage when the
    client asked for it, and ``[DONE]``.  Prompt progress (``return_progress``) goes out as
    ``start(index)``'s empty choice with ``prompt_progress``; ``timings_per_token`` adds the
    timings to every chunk.
    """
    finals: dict[int, FinalEvent] = {}
    try:
        for first in opening:
            yield sse_event({**head, "choices": [first]})
        async for index, event in merge_events(sources):
            if isinstance(event, FinalEvent):
                finals[index] = event
                parts = _as_list(choice(index, event))
                for k, part in enumerate(parts):
                    chunk = {**head, "choices": [part]}
                    if len(finals) == len(sources) and k == len(parts) - 1:
                        chunk["timings"] = timings(event.timings)
                    yield sse_event(chunk)
            elif isinstance(event, PromptProgress):
                yield sse_event({**head, "choices": [start(index)],
                                 "prompt_progress": progress(event)})
            elif event.text or event.probs:
                for part in _as_list(choice(index, event)):
                    chunk = {**head, "choices": [part]}
                    if event.timings is not None:
                        chunk["timings"] = timings(event.timings)
                    yield sse_event(chunk)
        if include_usage(opts):
            ordered = [finals[i] for i in sorted(finals)]
            yield sse_event({**head, "choices": [], "usage": usage(ordered, opts.n)})
        yield SSE_DONE
    except Exception as exc:
        yield sse_error(exc)
    finally:
        for source in sources:
            await source.close()
