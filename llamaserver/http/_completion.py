"""llama.cpp's own completion API: POST /completion (/completions) and POST /infill.

One prompt gives the seed's result object; several prompts (or ``n_cmpl`` > 1) give an array
of them, each with its ``index``, and their streams interleave, as in today's llama-server.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from pydantic import Field
from quart import Blueprint, Response

from llama_ffi import Vocab

from ..engine import FinalEvent, PromptProgress, TokenEvent
from ._body import JsonInt
from ._context import ApiContext, dumps, json_response
from ._errors import invalid, not_supported
from ._intake import read_model
from ._llama_shapes import probability_entry, progress, timings
from ._options import GenerationOptions
from ._media import decode_prompts
from ._prompts import PromptInput, split_prompts
from ._resolve import grammar_of, resolve_choices
from ._streaming import (EventSource, Outcome, drain_all, merge_events, open_all, sse_error,
                         sse_event, sse_response)


_log = logging.getLogger("llamaserver.http")


class CompletionRequest(GenerationOptions):
    # one prompt or several, in the forms of _prompts
    prompt: str | list[Any] | dict[str, Any]
    n_cmpl: JsonInt = Field(1, ge=1, le=16)


class InfillRequest(GenerationOptions):
    input_prefix: str = ""
    input_suffix: str = ""
    input_extra: list[dict[str, Any]] = []
    prompt: str = ""


def stop_type(final: FinalEvent) -> str:
    if final.stopped_shutdown:
        return "shutdown"
    if final.stopped_eos:
        return "eos"
    if final.stopped_word:
        return "word"
    if final.stopped_limit:
        return "limit"
    return "none"


def final_payload(ctx: ApiContext, source: EventSource, outcome: Outcome,
                  opts: GenerationOptions, *, streamed: bool, index: int = 0) -> dict[str, Any]:
    """The seed's result object (in a stream: the last event, whose content was sent)."""
    final = outcome.final
    prepared = source.prepared
    payload: dict[str, Any] = {
        "content": "" if streamed else final.content,
        "id_slot": final.id_slot,
        "stop": True,
        "model": ctx.model_id,
        "tokens_predicted": final.tokens_predicted,
        "tokens_evaluated": final.tokens_evaluated,
        "generation_settings": ctx.generation_settings(prepared.request, prepared.lora,
                                                       stream=opts.stream),
        "prompt": prepared.request.prompt_text,
        "truncated": final.truncated,
        "stopped_eos": final.stopped_eos,
        "stopped_word": final.stopped_word,
        "stopped_limit": final.stopped_limit,
        "stopping_word": final.stopping_word,
        "stop_type": stop_type(final),
        "tokens_cached": final.tokens_cached,
        "timings": timings(final.timings),
        "index": index,
        "tokens": list(final.tokens) if (opts.return_tokens and not streamed) else [],
    }
    if (opts.n_probs or 0) > 0:
        pieces = ctx.pieces
        payload["completion_probabilities"] = [] if streamed else [
            probability_entry(pieces, p) for p in outcome.probs]
    return payload


def partial_payload(ctx: ApiContext, event: TokenEvent | PromptProgress,
                    opts: GenerationOptions, index: int = 0) -> dict[str, Any]:
    if isinstance(event, PromptProgress):
        return {"content": "", "stop": False, "index": index, "tokens": [],
                "prompt_progress": progress(event)}
    payload: dict[str, Any] = {"content": event.text, "stop": False, "index": index,
                               "tokens": list(event.tokens)}
    if event.timings is not None:
        payload["timings"] = timings(event.timings)
    if (opts.n_probs or 0) > 0:
        pieces = ctx.pieces
        payload["completion_probabilities"] = [probability_entry(pieces, p)
                                               for p in event.probs or []]
    return payload


async def respond(ctx: ApiContext, sources: list[EventSource], opts: GenerationOptions, *,
                  several: bool) -> Response:
    """One result object, or an array of them when the request asked for several."""
    if opts.stream:
        return sse_response(_stream(ctx, sources, opts))
    outcomes = await drain_all(sources)
    payloads = [final_payload(ctx, source, outcome, opts, streamed=False, index=i)
                for i, (source, outcome) in enumerate(zip(sources, outcomes))]
    if ctx.settings.verbose:
        _log.info("/completion response: %s", dumps(payloads))
    return json_response(payloads if several else payloads[0])


async def _stream(ctx: ApiContext, sources: list[EventSource], opts: GenerationOptions
                  ) -> AsyncIterator[bytes]:
    try:
        async for index, event in merge_events(sources):
            if isinstance(event, FinalEvent):
                yield sse_event(final_payload(ctx, sources[index], Outcome(event), opts,
                                              streamed=True, index=index))
            elif isinstance(event, PromptProgress) or event.text or event.probs:
                yield sse_event(partial_payload(ctx, event, opts, index))
    except Exception as exc:
        yield sse_error(exc)
    finally:
        for source in sources:
            await source.close()


_FIM_ROLES = (("fim_pre", "prefix"), ("fim_suf", "suffix"), ("fim_mid", "middle"))


def infill_prompt(vocab: Vocab, req: InfillRequest, spm: bool) -> list[int | str]:
    """Prefix/suffix/middle prompt built from the model's fill-in-the-middle tokens."""
    missing = [f"{role} ({name})" for name, role in _FIM_ROLES if getattr(vocab, name) < 0]
    if missing:
        raise not_supported("/infill needs a model with fill-in-the-middle tokens; this model's "
                            f"vocabulary has no {', '.join(missing)} token")
    pre, suf, mid = vocab.fim_pre, vocab.fim_suf, vocab.fim_mid
    rep, sep = vocab.fim_rep, vocab.fim_sep
    prompt: list[int | str] = []
    if vocab.add_bos and vocab.bos >= 0:
        prompt.append(vocab.bos)
    chunks = []
    for chunk in req.input_extra:
        text, filename = chunk.get("text"), chunk.get("filename", "")
        if not isinstance(text, str) or not isinstance(filename, str):
            raise invalid("'input_extra' items must be {\"filename\": str, \"text\": str}")
        chunks.append((filename, text))
    if chunks and rep >= 0 and sep >= 0:  # repository-level layout
        prompt += [rep, "myproject\n"]
        for filename, text in chunks:
            prompt += [sep, f"{filename}\n{text}"]
        prompt += [sep, "filename\n"]
    else:
        prompt += [f"{filename}\n{text}" if filename else text for filename, text in chunks]
    if spm:
        prompt += [suf, req.input_suffix, pre, req.input_prefix]
    else:
        prompt += [pre, req.input_prefix, suf, req.input_suffix]
    prompt += [mid] + ([req.prompt] if req.prompt else [])
    return [p for p in prompt if p != ""]


def add_routes(bp: Blueprint, ctx: ApiContext) -> None:
    def log_request(data: dict[str, Any]) -> None:  # where the body is parsed
        _log.info("/completion request: %s", dumps(data))

    async def completion() -> Response:
        opts = await read_model(ctx, CompletionRequest,
                                check=log_request if ctx.settings.verbose else None)
        engine = ctx.ready_engine()
        prompts = split_prompts(opts.prompt)
        prepared = await ctx.run_blocking(lambda: resolve_choices(
            engine, ctx.defaults, opts,
            decode_prompts(prompts, engine, ctx.media_policy, image_data=opts.image_data),
            opts.n_cmpl, grammar=grammar_of(opts), truncate=True))
        sources = await open_all(ctx, prepared)
        return await respond(ctx, sources, opts, several=len(sources) > 1)

    bp.add_url_rule("/completion", "completion", completion, methods=["POST"])
    bp.add_url_rule("/completions", "completions", completion, methods=["POST"])

    @bp.post("/infill")
    async def infill() -> Response:
        opts = await read_model(ctx, InfillRequest)
        engine = ctx.ready_engine()
        prompt = infill_prompt(engine.vocab, opts, ctx.settings.spm_infill)
        if opts.image_data:
            raise invalid("/infill takes no 'image_data'")
        prepared = await ctx.run_blocking(lambda: resolve_choices(
            engine, ctx.defaults, opts, [PromptInput(prompt)], 1, grammar=grammar_of(opts),
            truncate=True, add_special=False))
        return await respond(ctx, await open_all(ctx, prepared), opts, several=False)
