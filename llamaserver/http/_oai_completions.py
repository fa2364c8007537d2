"""OpenAI text completions: POST /v1/completions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from pydantic import Field
from quart import Blueprint, Response

from ..engine import Engine, FinalEvent, TokenEvent
from ._body import JsonInt
from ._context import ApiContext, json_response
from ._errors import invalid, not_supported
from ._intake import read_model
from ._llama_shapes import Pieces, timings
from ._openai import (OpenAIOptions, finish_reason, new_id, now, stream_choices,
                      text_logprobs, usage, verbose_view)
from ._media import decode_prompts
from ._prompts import split_prompts
from ._resolve import grammar_of, resolve_choices
from ._streaming import drain_all, open_all, sse_response


class TextCompletionRequest(OpenAIOptions):
    prompt: str | list[Any] | dict[str, Any]
    echo: bool = False
    logprobs: JsonInt | None = Field(None, ge=0, le=20)
    best_of: JsonInt | None = Field(None, ge=1, le=16)
    suffix: str | None = None


def _prompt_text(engine: Engine, prompt: str | list[Any]) -> str:
    if isinstance(prompt, str):
        return prompt
    return "".join(p if isinstance(p, str) else engine.vocab.detokenize([p])
                   for p in prompt)


def add_routes(bp: Blueprint, ctx: ApiContext) -> None:
    @bp.post("/v1/completions")
    async def v1_completions() -> Response:
        opts = await read_model(ctx, TextCompletionRequest)
        engine = ctx.ready_engine()
        if opts.suffix:
            raise not_supported("'suffix' is not supported; use /infill for fill-in-the-middle")
        if opts.best_of is not None and opts.best_of != opts.n:
            raise invalid("'best_of' must equal 'n' (no server-side ranking)")
        if opts.logprobs and not opts.n_probs:
            opts.n_probs = opts.logprobs
        prompts = split_prompts(opts.prompt)
        prepared = await ctx.run_blocking(lambda: resolve_choices(
            engine, ctx.defaults, opts, decode_prompts(prompts, engine, ctx.media_policy),
            opts.n, grammar=grammar_of(opts)))
        echoes = [_prompt_text(engine, p.value) if opts.echo else "" for p in prompts
                  for _ in range(opts.n)]
        sources = await open_all(ctx, prepared)
        cid, created = new_id("cmpl"), now()
        model = opts.model or ctx.model_id
        head = {"id": cid, "object": "text_completion", "created": created, "model": model,
                "system_fingerprint": ctx.fingerprint}
        pieces = ctx.pieces
        if opts.stream:
            return sse_response(_stream(pieces, sources, head, echoes, opts))
        outcomes = await drain_all(sources)
        choices = []
        for index, outcome in enumerate(outcomes):
            choices.append({
                "text": echoes[index] + outcome.final.content,
                "index": index,
                "logprobs": text_logprobs(pieces, outcome.probs, len(echoes[index]))
                if opts.logprobs else None,
                "finish_reason": finish_reason(outcome.final),
            })
        finals = [o.final for o in outcomes]
        return json_response({**head, "choices": choices, "usage": usage(finals, opts.n),
                              "timings": timings(finals[0].timings),
                              **verbose_view(ctx, sources, outcomes, opts)})


def _stream(pieces: Pieces, sources: list[Any], head: dict[str, Any], echoes: list[str],
            opts: TextCompletionRequest) -> AsyncIterator[bytes]:
    def choice(index: int, event: TokenEvent | FinalEvent) -> dict[str, Any]:
        if isinstance(event, FinalEvent):
            return {"text": "", "index": index, "logprobs": None,
                    "finish_reason": finish_reason(event)}
        logprobs = text_logprobs(pieces, event.probs or []) if opts.logprobs else None
        return {"text": event.text, "index": index, "logprobs": logprobs,
                "finish_reason": None}

    def start(index: int) -> dict[str, Any]:
        return {"text": "", "index": index, "logprobs": None, "finish_reason": None}

    opening = [{**start(index), "text": echo} for index, echo in enumerate(echoes) if echo]
    return stream_choices(sources, head, opts, opening, choice, start)
