"""Generation options shared by /completion, /infill and the OpenAI endpoints.

The request model only checks types and bounds; every value left out stays ``None`` so that
``llama_ffi.SamplerParams`` and ``GenerationRequest`` keep the single set of defaults.
``to_generation_request`` turns the options into the engine's request, resolving what needs
the vocabulary (logit_bias strings, penalty_prompt, token ids).
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import Field

from llama_ffi import SamplerChain, SamplerParams

from ..engine import Engine, GenerationRequest
from ..settings import ServerSettings
from .._json_grammar import SchemaError, schema_to_grammar
from ._body import ApiModel, JsonInt
from ._errors import invalid, not_supported
from ._lora import LoraScale, scales_by_id

Int32 = Annotated[JsonInt, Field(ge=-(2**31), le=2**31 - 1)]
Count = Annotated[JsonInt, Field(ge=0, le=2**31 - 1)]
CountOrAll = Annotated[JsonInt, Field(ge=-1, le=2**31 - 1)]

RANDOM_SEED = 0xFFFFFFFF


class SystemPrompt(ApiModel):
    """The seed's ``system_prompt`` object (also the -spf file's content)."""

    prompt: str = ""
    anti_prompt: str = ""
    assistant_name: str = ""


class GenerationOptions(ApiModel):
    """Every llama.cpp generation option (names and meaning as /completion takes them)."""

    temperature: float | None = None
    dynatemp_range: float | None = Field(None, ge=0)
    dynatemp_exponent: float | None = None
    top_k: Int32 | None = None
    top_p: float | None = None
    min_p: float | None = None
    typical_p: float | None = None
    tfs_z: float | None = None
    xtc_probability: float | None = Field(None, ge=0, le=1)
    xtc_threshold: float | None = None
    top_n_sigma: float | None = None
    n_predict: CountOrAll | None = None
    max_tokens: CountOrAll | None = None
    n_keep: CountOrAll | None = None
    stream: bool = False
    stop: list[str] | str | None = None
    repeat_penalty: float | None = Field(None, ge=0)
    repeat_last_n: CountOrAll | None = None
    penalize_nl: bool | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    penalty_prompt: str | list[JsonInt] | None = None
    dry_multiplier: float | None = Field(None, ge=0)
    dry_base: float | None = Field(None, ge=0)
    dry_allowed_length: Count | None = None
    dry_penalty_last_n: CountOrAll | None = None
    dry_sequence_breakers: list[str] | None = None
    mirostat: JsonInt | None = Field(None, ge=0, le=2)
    mirostat_tau: float | None = None
    mirostat_eta: float | None = None
    grammar: str | None = None
    json_schema: dict[str, Any] | bool | None = None
    seed: JsonInt | None = Field(None, ge=-(2**63), le=2**64 - 1)
    ignore_eos: bool | None = None
    logit_bias: list[Any] | dict[str, Any] | None = None
    n_probs: JsonInt | None = Field(None, ge=0, le=1024)
    min_keep: Count | None = None
    image_data: list[Any] | None = None
    id_slot: JsonInt | None = Field(None, ge=-1, le=2**31 - 1)
    cache_prompt: bool | None = None
    system_prompt: str | SystemPrompt | None = None
    anti_prompt: str | None = None
    assistant_name: str | None = None
    samplers: list[str] | str | None = None
    t_max_predict_ms: Count | None = None
    return_tokens: bool = False
    lora: list[LoraScale] | None = None


def check_grammar(engine: Engine, grammar: str) -> None:
    """Parse a grammar now, so that a bad one is the request's 400, not a failed slot."""
    chain = SamplerChain(engine.model, SamplerParams(grammar=grammar))
    chain.close()


def _check_ids(engine: Engine, ids: list[int], what: str) -> list[int]:
    n_vocab = engine.vocab.n_tokens
    for tok in ids:
        if not 0 <= tok < n_vocab:
            raise invalid(f"Invalid token id {tok} in '{what}' (the vocabulary has {n_vocab} "
                          "tokens)")
    return ids


def _logit_bias(raw: list[Any] | dict[str, Any], engine: Engine) -> dict[int, float]:
    if isinstance(raw, dict):
        pairs = list(raw.items())
    else:
        pairs = []
        for item in raw:
            if not isinstance(item, list) or len(item) != 2:
                raise invalid("'logit_bias' entries must be [token, bias] pairs")
            pairs.append((item[0], item[1]))
    biases: dict[int, float] = {}
    for key, bias in pairs:
        if bias is False:
            value = -math.inf
        elif isinstance(bias, (int, float)) and not isinstance(bias, bool):
            value = float(bias)
        else:
            raise invalid("'logit_bias' values must be numbers or false")
        if isinstance(key, int) and not isinstance(key, bool):
            ids = [key]
        elif isinstance(key, str) and isinstance(raw, dict) and _is_int_text(key):
            ids = [int(key)]
        elif isinstance(key, str):
            ids = engine.vocab.tokenize(key, add_special=False, parse_special=False)
        else:
            raise invalid("'logit_bias' tokens must be token ids or strings")
        for tok in _check_ids(engine, ids, "logit_bias"):
            biases[tok] = value
    return biases


def _is_int_text(text: str) -> bool:
    stripped = text.strip()
    return stripped.lstrip("-").isdigit() and len(stripped) < 20


def check_prompt_tokens(engine: Engine, prompt: str | list[Any]) -> None:
    """Token ids in a prompt must exist: libllama aborts on an id outside the vocabulary."""
    if isinstance(prompt, list):
        _check_ids(engine, [p for p in prompt if isinstance(p, int)], "prompt")


def resolve_grammar(opts: GenerationOptions, schema: Any = None) -> str | None:
    """GBNF from ``grammar``, ``json_schema`` or an OpenAI ``response_format`` schema."""
    if schema is None and opts.json_schema is not None:
        schema = opts.json_schema
    if schema is not None and opts.grammar:
        raise invalid("Either 'json_schema' or 'grammar' can be given, not both")
    if schema is not None:
        try:
            return schema_to_grammar(schema)
        except SchemaError as exc:
            raise invalid(f"Unsupported JSON schema: {exc}") from None
    return opts.grammar or None


def effective_n_predict(opts: GenerationOptions, settings: ServerSettings) -> int:
    requested = opts.n_predict if opts.n_predict is not None else opts.max_tokens
    limit = settings.n_predict
    if requested is None or requested < 0:
        return limit
    return requested if limit < 0 else min(requested, limit)


def effective_seed(opts: GenerationOptions, settings: ServerSettings) -> int:
    seed = opts.seed if opts.seed is not None else settings.seed
    return RANDOM_SEED if seed < 0 else seed & 0xFFFFFFFF


def sampler_params(opts: GenerationOptions, engine: Engine, settings: ServerSettings, *,
                   grammar: str | None, seed: int | None = None) -> SamplerParams:
    """``SamplerParams`` with the given options; everything else keeps its default."""
    fields: dict[str, Any] = {}
    for name in ("temperature", "dynatemp_range", "dynatemp_exponent", "top_k", "top_p",
                 "min_p", "typical_p", "tfs_z", "xtc_probability", "xtc_threshold",
                 "top_n_sigma", "repeat_penalty", "frequency_penalty", "presence_penalty",
                 "penalize_nl", "dry_multiplier", "dry_base", "dry_allowed_length",
                 "mirostat", "mirostat_tau", "mirostat_eta", "min_keep", "ignore_eos",
                 "n_probs"):
        value = getattr(opts, name)
        if value is not None:
            fields[name] = value
    # -1 means "the whole context" for both penalty windows.
    for name in ("repeat_last_n", "dry_penalty_last_n"):
        value = getattr(opts, name)
        if value is not None:
            fields[name] = engine.n_ctx_slot if value < 0 else value
    if opts.dry_sequence_breakers is not None:
        if not opts.dry_sequence_breakers:
            raise invalid("'dry_sequence_breakers' must not be an empty array")
        fields["dry_sequence_breakers"] = tuple(opts.dry_sequence_breakers)
    if opts.penalty_prompt is not None:
        if isinstance(opts.penalty_prompt, str):
            tokens = engine.vocab.tokenize(opts.penalty_prompt, add_special=False,
                                           parse_special=False)
        else:
            tokens = _check_ids(engine, list(opts.penalty_prompt), "penalty_prompt")
        fields["penalty_prompt_tokens"] = tokens
    if opts.logit_bias:
        fields["logit_bias"] = _logit_bias(opts.logit_bias, engine)
    if opts.samplers is not None:
        # A string is upstream's one-letter form ("kypmt"); SamplerParams knows both.
        fields["samplers"] = list(opts.samplers)
    fields["seed"] = effective_seed(opts, settings) if seed is None else seed
    if grammar is not None:
        check_grammar(engine, grammar)  # GrammarError -> 400
        fields["grammar"] = grammar
    params = SamplerParams(**fields)
    try:
        params.validate(engine.vocab.n_tokens)
    except ValueError as exc:  # InvalidTokenError included
        raise invalid(str(exc)) from None
    return params


def to_generation_request(opts: GenerationOptions, engine: Engine, settings: ServerSettings,
                          prompt: str | list[Any], *, add_special: bool = True,
                          parse_special: bool = True, grammar: str | None = None,
                          seed: int | None = None, n_predict: int | None = None,
                          ) -> GenerationRequest:
    """The engine request for one prompt; raises ``ApiError`` (400/501) for bad options."""
    if opts.image_data:
        raise not_supported("Image input is not supported by this server (it has no "
                            "multimodal projector)")
    if opts.id_slot is not None and opts.id_slot >= engine.n_slots:
        raise invalid(f"id_slot {opts.id_slot} is out of range: this server has "
                      f"{engine.n_slots} slot(s), numbered from 0")
    check_prompt_tokens(engine, prompt)
    params = sampler_params(opts, engine, settings, grammar=grammar, seed=seed)
    stop = [opts.stop] if isinstance(opts.stop, str) else list(opts.stop or [])
    request = GenerationRequest(
        prompt=prompt,
        sampling=params,
        n_predict=effective_n_predict(opts, settings) if n_predict is None else n_predict,
        n_keep=opts.n_keep if opts.n_keep is not None else settings.n_keep,
        stop=[s for s in stop if s],
        add_special=add_special,
        parse_special=parse_special,
    )
    if opts.cache_prompt is not None:
        request.cache_prompt = opts.cache_prompt
    if opts.id_slot is not None:
        request.id_slot = opts.id_slot
    if opts.n_probs is not None:
        request.n_probs = opts.n_probs
    if opts.ignore_eos is not None:
        request.ignore_eos = opts.ignore_eos
    if opts.t_max_predict_ms is not None:
        request.t_max_predict_ms = opts.t_max_predict_ms
    if opts.lora is not None:
        request.lora = scales_by_id(opts.lora)
    apply_system_prompt(opts, engine, request)
    return request


def apply_system_prompt(opts: GenerationOptions, engine: Engine,
                        request: GenerationRequest | None) -> None:
    """The seed's system prompt: an object (prompt, anti_prompt, assistant_name) or a string
    (with the server-parallel seed's top-level anti_prompt / assistant_name)."""
    sp = opts.system_prompt
    if sp is None:
        return
    if isinstance(sp, SystemPrompt):
        engine.set_system_prompt(sp.prompt, sp.anti_prompt, sp.assistant_name)
    elif opts.anti_prompt is not None or opts.assistant_name is not None:
        engine.set_system_prompt(sp, opts.anti_prompt or "", opts.assistant_name or "")
    elif request is not None:
        request.system_prompt = sp
    else:
        engine.set_system_prompt(sp)
