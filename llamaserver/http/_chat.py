"""OpenAI chat completions (POST /v1/chat/completions) and POST /apply-template.

The conversation is rendered by the engine's ``ChatTemplate`` (llama_ffi's sandboxed Jinja)
off the event loop, then generated like any prompt; the answer is read into reasoning,
content and tool calls by ``_chat_answer`` and shaped here as OpenAI's message and deltas.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from pydantic import Field
from quart import Blueprint, Response

from ..engine import Engine, FinalEvent, PreparedRequest, TokenEvent, TokenProbs
from .._json_grammar import JSON_GRAMMAR
from ._body import JsonInt
from ._chat_answer import CONTENT, REASONING, Answer, AnswerPlan, Part
from ._chat_prompt import ChatDefaults, ChatPrompt, ChatTemplateOptions, render_chat
from ._context import ApiContext, json_response
from ._errors import invalid
from ._intake import read_model
from ._llama_shapes import Pieces, timings
from ._openai import (ChoiceChunks, OpenAIOptions, chat_logprobs, new_id, now, stream_choices,
                      usage, verbose_view)
from ._prompts import PromptInput
from ._reasoning import ReasoningOptions, thinking_budget, with_thinking
from ._resolve import grammar_of, prompt_tokens, resolve_choices
from ._streaming import drain_all, open_all, sse_response


class ChatRequest(OpenAIOptions, ChatTemplateOptions, ReasoningOptions):
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
        return (grammar_of(opts, schema, "response_format.schema") if schema is not None
                else JSON_GRAMMAR)
    if kind == "json_schema":
        spec = fmt.get("json_schema") or {}
        schema = spec.get("schema") if isinstance(spec, dict) else None
        field = "response_format.json_schema.schema"
        if schema is None:
            schema, field = fmt.get("schema"), "response_format.schema"
        if schema is None:
            raise invalid("'response_format' of type json_schema needs a 'schema'")
        return grammar_of(opts, schema, field)
    raise invalid("'response_format.type' must be 'text', 'json_object' or 'json_schema'")


@dataclass
class PreparedChat:
    """A chat request ready to submit: one prepared request per choice, and how to read
    their answers."""

    prepared: list[PreparedRequest]
    answer: AnswerPlan


def chat_prompt(ctx: ApiContext, engine: Engine, opts: ChatRequest,
                defaults: ChatDefaults) -> tuple[ChatPrompt, PromptInput]:
    """The rendered chat (tools, thinking tags, prefill) and the prompt it gives (blocking:
    the template runs, media load).  Token counts count this prompt."""
    rendered = render_chat(engine, opts, ctx.media_policy, defaults)
    return rendered, PromptInput(_strip_bos(engine, rendered.text), rendered.media)


def prepare_chat(ctx: ApiContext, engine: Engine, opts: ChatRequest,
                 defaults: ChatDefaults | None = None) -> PreparedChat:
    """Tools, grammar, template, thinking budget and sampler chains of a chat request: the
    blocking part.  ``defaults``: the server's chat settings (read from ``ctx.settings``)."""
    if defaults is None:
        defaults = ChatDefaults.from_settings(ctx.settings)
    rendered, prompt = chat_prompt(ctx, engine, opts, defaults)
    tools = rendered.tools or rendered.native
    if tools is not None:
        if opts.response_format or opts.grammar or opts.json_schema:
            raise invalid("tools cannot be combined with 'response_format', 'grammar' or "
                          "'json_schema'")
        grammar = rendered.tools.grammar if rendered.tools else rendered.native.grammar()
    else:
        grammar = _response_format_grammar(opts)
    if grammar is not None and not opts.grammar:  # a grammar of ours: room to think first
        grammar = with_thinking(grammar, rendered.tags, rendered.opened)
    budget = thinking_budget(
        engine.vocab, rendered.tags, rendered.opened,
        defaults.reasoning_budget if opts.reasoning_budget is None else opts.reasoning_budget,
        defaults.reasoning_budget_message if opts.reasoning_budget_message is None
        else opts.reasoning_budget_message)
    prepared = resolve_choices(engine, ctx.defaults, opts, [prompt], opts.n, grammar=grammar,
                               budget=budget)
    return PreparedChat(prepared, AnswerPlan.of(
        rendered, opts.reasoning_format or defaults.reasoning_format, defaults.parse_output))


async def count_chat_tokens(ctx: ApiContext, chat: ChatRequest) -> int:
    """The number of tokens the prompt of ``chat`` would have: the same template, tools and
    tokenizer as a generation, without running one."""
    engine = ctx.ready_engine()

    def count() -> int:
        _rendered, prompt = chat_prompt(ctx, engine, chat, ChatDefaults.from_settings(ctx.settings))
        read = prompt_tokens(engine, prompt.value, prompt.media)
        if read.owner is not None:
            read.owner.close()
        return len(read.tokens)

    return await ctx.run_blocking(count)


def add_routes(bp: Blueprint, ctx: ApiContext) -> None:
    async def chat_completions() -> Response:
        opts = await read_model(ctx, ChatRequest, check=ctx.limits.check_chat)
        engine = ctx.ready_engine()
        if opts.max_completion_tokens is not None and opts.max_tokens is None:
            opts.max_tokens = opts.max_completion_tokens
        if opts.logprobs and not opts.n_probs:
            opts.n_probs = max(opts.top_logprobs or 0, 1)
        chat = await ctx.run_blocking(prepare_chat, ctx, engine, opts)
        sources = await open_all(ctx, chat.prepared)
        head = {"id": new_id("chatcmpl"), "created": now(),
                "model": opts.model or ctx.model_id, "system_fingerprint": ctx.fingerprint}
        if opts.stream:
            return sse_response(_stream(ctx.pieces, sources, head, opts, chat.answer))
        outcomes = await drain_all(sources)
        choices = []
        for index, outcome in enumerate(outcomes):
            answer = chat.answer.read(outcome.final)
            logprobs = chat_logprobs(ctx.pieces, outcome.probs) if opts.logprobs else None
            choices.append({"index": index, "message": _message(answer), "logprobs": logprobs,
                            "finish_reason": answer.finish_reason})
        finals = [o.final for o in outcomes]
        return json_response({**head, "object": "chat.completion", "choices": choices,
                              "usage": usage(finals, opts.n),
                              "timings": timings(finals[0].timings),
                              **verbose_view(ctx, sources, outcomes, opts)})

    bp.add_url_rule("/v1/chat/completions", "v1_chat_completions", chat_completions,
                    methods=["POST"])
    bp.add_url_rule("/chat/completions", "chat_completions", chat_completions,
                    methods=["POST"])

    async def input_tokens() -> Response:
        """The prompt's token count, without generating (today's llama-server)."""
        opts = await read_model(ctx, ChatRequest, check=ctx.limits.check_chat)
        count = await count_chat_tokens(ctx, opts)
        return json_response({"object": "response.input_tokens", "input_tokens": count})

    for prefix in ("/v1", ""):
        bp.add_url_rule(f"{prefix}/chat/completions/input_tokens",
                        f"{prefix.strip('/') or 'bare'}_chat_input_tokens", input_tokens,
                        methods=["POST"])

    @bp.post("/apply-template")
    async def apply_template() -> Response:
        opts = await read_model(ctx, ChatTemplateOptions, check=ctx.limits.check_chat)
        engine = ctx.ready_engine()

        def render() -> str:
            return render_chat(engine, opts, ctx.media_policy,
                               ChatDefaults.from_settings(ctx.settings)).text

        return json_response({"prompt": await ctx.run_blocking(render)})


def _message(answer: Answer) -> dict[str, Any]:
    """The assistant message of one choice: reasoning and tool calls only when there are
    some (a continued message's text starts the content, as upstream's generation prompt
    does)."""
    message: dict[str, Any] = {"role": "assistant", "content": answer.content}
    if answer.reasoning is not None:
        message["reasoning_content"] = answer.reasoning
    if answer.tool_calls:
        message["tool_calls"] = answer.tool_calls
    return message


class _Deltas:
    """One streamed choice as OpenAI chunks: each call gets the next index, and the logprobs
    of tokens whose text is held back go out with the next chunk."""

    def __init__(self, index: int, pieces: Pieces, logprobs: bool) -> None:
        self.index = index
        self._pieces = pieces
        self._logprobs = logprobs
        self._calls = 0
        self._pending: list[TokenProbs] = []

    def chunks(self, parts: list[Part], probs: list[TokenProbs] | None = None,
               finish: str | None = None) -> list[dict[str, Any]]:
        if self._logprobs and probs:
            self._pending += probs
        out = []
        for kind, value in parts:
            if kind == CONTENT:
                delta: dict[str, Any] = {"content": value}
            elif kind == REASONING:
                delta = {"reasoning_content": value}
            else:
                delta = {"tool_calls": [{"index": self._calls, **value}]}
                self._calls += 1
            out.append(self._chunk(delta))
        if finish is not None:
            out.append(self._chunk({}, finish))
        return out

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        logprobs = None
        if self._pending:
            logprobs, self._pending = chat_logprobs(self._pieces, self._pending), []
        return {"index": self.index, "delta": delta, "logprobs": logprobs,
                "finish_reason": finish}


def _stream(pieces: Pieces, sources: list[Any], head: dict[str, Any], opts: ChatRequest,
            plan: AnswerPlan) -> AsyncIterator[bytes]:
    readers = [plan.reader() for _ in sources]
    deltas = [_Deltas(index, pieces, opts.logprobs) for index in range(len(sources))]

    def choice(index: int, event: TokenEvent | FinalEvent) -> ChoiceChunks:
        if isinstance(event, FinalEvent):
            parts, answer = readers[index].finish(event)
            return deltas[index].chunks(parts, finish=answer.finish_reason)
        return deltas[index].chunks(readers[index].feed(event.text), event.probs) or None

    def start(index: int) -> dict[str, Any]:
        return {"index": index, "delta": {"role": "assistant", "content": ""},
                "logprobs": None, "finish_reason": None}

    opening = [start(index) for index in range(len(sources))]
    for reader, choice_deltas in zip(readers, deltas):
        opening += choice_deltas.chunks(reader.start())
    return stream_choices(sources, {**head, "object": "chat.completion.chunk"}, opts,
                          opening, choice, start)
