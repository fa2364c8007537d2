"""Pieces shared by the OpenAI-shaped endpoints (ids, usage, finish reasons, logprobs, the SSE body)."""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from pydantic import Field

from ..engine import FinalEvent, TokenEvent
from ._body import JsonInt
from ._options import GenerationOptions
from ._streaming import SSE_DONE, EventSource, merge_events, sse_error, sse_event


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
    return "length" if (final.stopped_limit or final.truncated) and not (
        final.stopped_eos or final.stopped_word) else "stop"


def usage(finals: list[FinalEvent], n: int = 1) -> dict[str, Any]:
    """Usage of choices ordered prompt by prompt, ``n`` per prompt (they share the prompt)."""
    prompt_tokens = sum(f.tokens_evaluated for f in finals[::max(n, 1)])
    completion = sum(f.tokens_predicted for f in finals)
    cached = sum(f.tokens_cached for f in finals[::max(n, 1)])
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion,
            "total_tokens": prompt_tokens + completion,
            "prompt_tokens_details": {"cached_tokens": cached}}


def _logprob(prob: Any) -> float:
    if not isinstance(prob, (int, float)) or prob <= 0:
        return -math.inf  # serialized as null
    return math.log(prob)


def _chosen_logprob(entry: dict[str, Any]) -> float:
    if isinstance(entry.get("logprob"), (int, float)):
        return float(entry["logprob"])
    if isinstance(entry.get("prob"), (int, float)):
        return _logprob(entry["prob"])
    for candidate in entry.get("probs") or []:
        if candidate.get("tok_str") == entry.get("content"):
            return _logprob(candidate.get("prob"))
    return -math.inf


def _utf8(text: str) -> list[int]:
    return list(text.encode("utf-8", "surrogatepass"))


def chat_logprobs(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """The seed's completion_probabilities as OpenAI chat ``logprobs``."""
    content = []
    for entry in entries:
        token = str(entry.get("content", ""))
        content.append({
            "token": token,
            "logprob": _chosen_logprob(entry),
            "bytes": _utf8(token),
            "top_logprobs": [
                {"token": str(p.get("tok_str", "")), "logprob": _logprob(p.get("prob")),
                 "bytes": _utf8(str(p.get("tok_str", "")))}
                for p in entry.get("probs") or []
            ],
        })
    return {"content": content}


def text_logprobs(entries: list[dict[str, Any]], offset: int = 0) -> dict[str, Any]:
    """The seed's completion_probabilities as OpenAI text-completion ``logprobs``."""
    tokens, token_logprobs, top, offsets = [], [], [], []
    for entry in entries:
        token = str(entry.get("content", ""))
        tokens.append(token)
        token_logprobs.append(_chosen_logprob(entry))
        top.append({str(p.get("tok_str", "")): _logprob(p.get("prob"))
                    for p in entry.get("probs") or []})
        offsets.append(offset)
        offset += len(token)
    return {"tokens": tokens, "token_logprobs": token_logprobs, "top_logprobs": top,
            "text_offset": offsets}


def include_usage(opts: OpenAIOptions) -> bool:
    return bool(opts.stream_options and opts.stream_options.get("include_usage"))


ChoiceChunks = dict[str, Any] | list[dict[str, Any]] | None


def _as_list(parts: ChoiceChunks) -> list[dict[str, Any]]:
    return [] if parts is None else parts if isinstance(parts, list) else [parts]


async def stream_choices(sources: Sequence[EventSource], head: dict[str, Any],
                         opts: OpenAIOptions, opening: list[dict[str, Any]],
                         choice: Callable[[int, TokenEvent | FinalEvent], ChoiceChunks]
                         ) -> AsyncIterator[bytes]:
    """The SSE body of a streamed OpenAI completion (chat or text).

    ``opening`` choices go first, one chunk each; then the chunks that ``choice(index, event)``
    makes of each event of every source (a choice, a list of them, or None for none; the last
    chunk of the last choice to finish also carries the timings); then the usage when the
    client asked for it, and ``[DONE]``.
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
                        chunk["timings"] = event.timings
                    yield sse_event(chunk)
            elif event.text or event.probs:
                for part in _as_list(choice(index, event)):
                    yield sse_event({**head, "choices": [part]})
        if include_usage(opts):
            ordered = [finals[i] for i in sorted(finals)]
            yield sse_event({**head, "choices": [], "usage": usage(ordered, opts.n)})
        yield SSE_DONE
    except Exception as exc:
        yield sse_error(exc)
    finally:
        for source in sources:
            await source.close()
