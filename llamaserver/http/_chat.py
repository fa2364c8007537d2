"""OpenAI chat completions (POST /v1/chat/completions) and POST /apply-template.

The conversation is rendered by the engine's ``ChatTemplate`` (llama_ffi's sandboxed Jinja)
off the event loop, then generated like any prompt.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from pydantic import Field
from quart import Blueprint, Response

from ..engine import Engine, FinalEvent, PreparedRequest, TokenEvent
from .._json_grammar import JSON_GRAMMAR
from ._body import JsonInt
from ._context import ApiContext, json_response
from ._errors import invalid
from ._intake import read_model
from ._llama_shapes import Pieces, timings
from ._openai import (ChoiceChunks, OpenAIOptions, chat_logprobs, finish_reason, new_id, now,
                      stream_choices, usage, verbose_view)
from ._resolve import grammar_of, resolve_choices
from ._streaming import drain_all, open_all, sse_response
from ._chat_prompt import ChatTemplateOptions, render_chat
from ._prompts import PromptInput
from ._tools import ToolPlan, plan_tools


class ChatRequest(OpenAIOptions, ChatTemplateOptions):
    max_completion_tokens: JsonInt | None = Field(None, ge=-1, le=2**31 - 1)
    logprobs: bool = False
    top_logprobs: JsonInt | None = Field(None, ge=0, le=20)
    response_format: dict[str, Any] | None = None


def _strip_bos(engine: Engine, prompt: str) -> str:
    """Templates often write the BOS text themselves; the tokenizer adds it once."""
    vocab = engine.vocab
    if vocab.add_bos and vocab.bos >= 0:
        bos = vocab.token_to_piece(vocab.bos, special=True).decode("utf-8", "replace")
        if bos and prompt.startswith(bos):
            prompt = prompt[len(bos):]
    return prompt


def _response_format_grammar(opts: ChatRequest) -> str | None:
    fmt = opts.response_format
    if not fmt:
        return grammar_of(opts)
    kind = fmt.get("type")
    if kind == "text":
        return grammar_of(opts)
    if kind == "json_object":
        schema = fmt.get("schema")
        return grammar_of(opts, schema) if schema is not None else JSON_GRAMMAR
    if kind == "json_schema":
        spec = fmt.get("json_schema") or {}
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if schema is None:
            schema = fmt.get("schema")
        if schema is None:
            raise invalid("'response_format' of type json_schema needs a 'schema'")
        return grammar_of(opts, schema)
    raise invalid("'response_format.type' must be 'text', 'json_object' or 'json_schema'")


def prepare_chat(ctx: ApiContext, engine: Engine, opts: ChatRequest
                 ) -> tuple[list[PreparedRequest], ToolPlan | None, str]:
    """Tools, grammar, template and sampler chains of a chat request: the blocking part."""
    plan = plan_tools(opts.tools, opts.tool_choice, opts.parallel_tool_calls)
    if plan is not None:
        if opts.response_format or opts.grammar or opts.json_schema:
            raise invalid("tools cannot be combined with 'response_format', 'grammar' or "
                          "'json_schema'")
        grammar = plan.grammar
    else:
        grammar = _response_format_grammar(opts)
    rendered = render_chat(engine, opts, ctx.media_policy, plan=plan,
                           prefill_assistant=ctx.settings.prefill_assistant,
                           variables=ctx.settings.template_kwargs())
    prompt = PromptInput(_strip_bos(engine, rendered.text), rendered.media)
    prepared = resolve_choices(engine, ctx.defaults, opts, [prompt], opts.n, grammar=grammar)
    return prepared, plan, rendered.prefill


def add_routes(bp: Blueprint, ctx: ApiContext) -> None:
    async def chat_completions() -> Response:
        opts = await read_model(ctx, ChatRequest, check=ctx.limits.check_chat)
        engine = ctx.ready_engine()
        if opts.max_completion_tokens is not None and opts.max_tokens is None:
            opts.max_tokens = opts.max_completion_tokens
        if opts.logprobs and not opts.n_probs:
            opts.n_probs = max(opts.top_logprobs or 0, 1)
        prepared, plan, prefill = await ctx.run_blocking(prepare_chat, ctx, engine, opts)
        sources = await open_all(ctx, prepared)
        head = {"id": new_id("chatcmpl"), "created": now(),
                "model": opts.model or ctx.model_id, "system_fingerprint": ctx.fingerprint}
        if opts.stream:
            return sse_response(_stream(ctx.pieces, sources, head, opts, plan, prefill))
        outcomes = await drain_all(sources)
        choices = []
        for index, outcome in enumerate(outcomes):
            message, finish = _message(outcome.final, plan, prefill)
            logprobs = chat_logprobs(ctx.pieces, outcome.probs) if opts.logprobs else None
            choices.append({"index": index, "message": message, "logprobs": logprobs,
                            "finish_reason": finish})
        finals = [o.final for o in outcomes]
        return json_response({**head, "object": "chat.completion", "choices": choices,
                              "usage": usage(finals, opts.n),
                              "timings": timings(finals[0].timings),
                              **verbose_view(ctx, sources, outcomes, opts)})

    bp.add_url_rule("/v1/chat/completions", "v1_chat_completions", chat_completions,
                    methods=["POST"])
    bp.add_url_rule("/chat/completions", "chat_completions", chat_completions,
                    methods=["POST"])

    @bp.post("/apply-template")
    async def apply_template() -> Response:
        opts = await read_model(ctx, ChatTemplateOptions, check=ctx.limits.check_chat)
        engine = ctx.ready_engine()

        def render() -> str:
            plan = plan_tools(opts.tools, opts.tool_choice, opts.parallel_tool_calls)
            return render_chat(engine, opts, ctx.media_policy, plan=plan,
                               prefill_assistant=ctx.settings.prefill_assistant,
                               variables=ctx.settings.template_kwargs()).text

        return json_response({"prompt": await ctx.run_blocking(render)})


def _message(final: FinalEvent, plan: ToolPlan | None, prefill: str = ""
             ) -> tuple[dict[str, Any], str]:
    """The assistant message and finish_reason of one choice (a continued message's text
    starts the content, as upstream's generation prompt does)."""
    if plan is None:
        return {"role": "assistant", "content": prefill + final.content}, finish_reason(final)
    content, calls = plan.read(final.content)
    if calls:
        return {"role": "assistant", "content": None, "tool_calls": calls}, "tool_calls"
    return {"role": "assistant", "content": content}, finish_reason(final)


def _stream(pieces: Pieces, sources: list[Any], head: dict[str, Any], opts: ChatRequest,
            plan: ToolPlan | None, prefill: str) -> AsyncIterator[bytes]:
    def choice(index: int, event: TokenEvent | FinalEvent) -> ChoiceChunks:
        if plan is not None:
            # The JSON answer is read whole: nothing goes out until it is complete.
            if not isinstance(event, FinalEvent):
                return None
            message, finish = _message(event, plan)
            if "tool_calls" in message:
                delta = {"tool_calls": [{"index": k, **call}
                                        for k, call in enumerate(message["tool_calls"])]}
            else:
                delta = {"content": message["content"]}
            return [{"index": index, "delta": delta, "logprobs": None, "finish_reason": None},
                    {"index": index, "delta": {}, "logprobs": None, "finish_reason": finish}]
        if isinstance(event, FinalEvent):
            return {"index": index, "delta": {}, "logprobs": None,
                    "finish_reason": finish_reason(event)}
        logprobs = chat_logprobs(pieces, event.probs or []) if opts.logprobs else None
        return {"index": index, "delta": {"content": event.text}, "logprobs": logprobs,
                "finish_reason": None}

    def start(index: int) -> dict[str, Any]:
        return {"index": index, "delta": {"role": "assistant", "content": ""},
                "logprobs": None, "finish_reason": None}

    opening = [start(index) for index in range(len(sources))]
    if prefill and plan is None:
        opening += [{**start(index), "delta": {"content": prefill}}
                    for index in range(len(sources))]
    return stream_choices(sources, {**head, "object": "chat.completion.chunk"}, opts,
                          opening, choice, start)
