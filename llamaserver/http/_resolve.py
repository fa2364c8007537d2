"""One conversion at the edge: a validated request's options -> the engine's resolved request.

Everything that needs the vocabulary or can be slow (tokenizing the prompt, logit_bias
strings and penalty_prompt, compiling a JSON schema, parsing the grammar into the sampler
chain) happens here, once, in the server's worker pool, never on the event loop.  The
defaults of the server (its sampling flags, ``--n-predict``, ``--seed``, ``--keep``,
``--cache-prompt``: :class:`RequestDefaults`) are applied here and only here.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from llama_ffi import GrammarError, InvalidTokenError, SamplerParams

from ..engine import (Engine, GenerationRequest, InvalidRequest, PreparedRequest, SystemPrompt,
                      TokenBudget)
from ..settings import ServerSettings
from .._json_grammar import SchemaError, schema_to_grammar
from ._errors import invalid
from ._options import GenerationOptions, SystemPromptObject, scales_by_id
from ._prompts import PromptInput

RANDOM_SEED = 0xFFFFFFFF

# options copied as they are into SamplerParams (same name, same meaning)
_SAMPLER_FIELDS = (
    "temperature", "dynatemp_range", "dynatemp_exponent", "top_k", "top_p", "min_p",
    "typical_p", "tfs_z", "xtc_probability", "xtc_threshold", "top_n_sigma", "repeat_penalty",
    "frequency_penalty", "presence_penalty", "penalize_nl", "dry_multiplier", "dry_base",
    "dry_allowed_length", "mirostat", "mirostat_tau", "mirostat_eta", "min_keep", "ignore_eos",
    "n_probs",
)


@dataclass(frozen=True)
class RequestDefaults:
    """What a request that sets nothing gets: the server's flags, read once at start-up."""

    sampling: SamplerParams
    n_predict: int
    n_keep: int
    cache_prompt: bool
    seed: int
    overlong_prompt: str = "auto"   # "auto": the endpoint's own rule; "error" | "truncate"

    @classmethod
    def from_settings(cls, settings: ServerSettings) -> RequestDefaults:
        """``ValueError`` for a default grammar file or schema that cannot be used."""
        return cls(settings.default_sampler_params(), settings.n_predict, settings.n_keep,
                   settings.cache_prompt, settings.seed, settings.overlong_prompt)


def effective_n_predict(opts: GenerationOptions, defaults: RequestDefaults) -> int:
    """The request's limit, bounded by the server's ``-n`` (upstream's rule)."""
    requested = opts.n_predict if opts.n_predict is not None else opts.max_tokens
    limit = defaults.n_predict
    if requested is None or requested < 0:
        return limit
    return requested if limit < 0 else min(requested, limit)


def effective_seed(opts: GenerationOptions, defaults: RequestDefaults) -> int:
    seed = opts.seed if opts.seed is not None else defaults.seed
    return RANDOM_SEED if seed < 0 else seed & 0xFFFFFFFF


class Grammar(str):
    """GBNF text that knows the request field it was made from, for the 400 that names it
    when libllama refuses the grammar (``"grammar"``, ``"json_schema"``, ``"tools"``, ...)."""

    field: str

    def __new__(cls, text: str, field: str) -> Grammar:
        grammar = super().__new__(cls, text)
        grammar.field = field
        return grammar


def schema_grammar(schema: Any, field: str) -> Grammar:
    """GBNF for the JSON schema in ``field``; a 400 naming the field if it cannot be used."""
    try:
        return Grammar(schema_to_grammar(schema), field)
    except SchemaError as exc:
        raise invalid(f"Unsupported JSON schema in '{field}': {exc}") from None


def grammar_of(opts: GenerationOptions, schema: Any = None,
               field: str = "json_schema") -> Grammar | None:
    """GBNF from ``grammar``, ``json_schema`` or an OpenAI ``response_format`` schema (whose
    place in the request is ``field``)."""
    if schema is None and opts.json_schema is not None:
        schema, field = opts.json_schema, "json_schema"
    if schema is not None and opts.grammar:
        raise invalid("Either 'json_schema' or 'grammar' can be given, not both")
    if schema is not None:
        return schema_grammar(schema, field)
    return Grammar(opts.grammar, "grammar") if opts.grammar else None


def resolve(engine: Engine, defaults: RequestDefaults, opts: GenerationOptions,
            prompt: str | Sequence[int | str], *, media: Sequence[bytes] = (),
            add_special: bool = True, parse_special: bool = True, grammar: str | None = None,
            seed: int | None = None, truncate: bool = True,
            budget: TokenBudget | None = None) -> PreparedRequest:
    """The prepared engine request for one prompt (blocking: run it in the worker pool).

    ``media`` are the encoded images/audio for the media markers of a text ``prompt``;
    ``grammar`` is the GBNF already derived from the request (see :func:`grammar_of`);
    ``seed`` overrides the request's (``n`` > 1 gives each choice its own); ``budget`` bounds
    a span of the output (a chat's thinking).  Raises
    ``ApiError`` 400/501 for bad options, ``EngineError`` for what the engine refuses.
    """
    read = prompt_tokens(engine, prompt, media, add_special=add_special,
                         parse_special=parse_special)
    try:
        return engine.prepare(_request(engine, defaults, opts, prompt, read.tokens,
                                       read.bos_added, grammar=grammar, seed=seed,
                                       truncate=truncate, media=read.media, owner=read.owner,
                                       budget=budget))
    except BaseException as exc:
        if read.owner is not None:
            read.owner.close()
        if isinstance(exc, InvalidRequest) and isinstance(exc.__cause__, GrammarError):
            field = grammar.field if isinstance(grammar, Grammar) else "grammar"
            raise invalid(f"Invalid grammar from '{field}': {exc.message}") from None
        raise


@dataclass
class PromptTokens:
    """A prompt as a generation reads it; ``owner`` (media only) is the caller's to close
    once the tokens are not submitted."""

    tokens: list[int]
    bos_added: bool
    media: Any = ()
    owner: Any = None


def prompt_tokens(engine: Engine, prompt: str | Sequence[int | str],
                  media: Sequence[bytes] = (), *, add_special: bool = True,
                  parse_special: bool = True) -> PromptTokens:
    """Tokenize a prompt (its media markers through the projector) as :func:`resolve` does;
    token-counting endpoints count with it too.  400 for a bad token id or media."""
    try:
        if media:
            assert isinstance(prompt, str)
            with_media = engine.media_prompt(prompt, list(media), add_special=add_special,
                                             parse_special=parse_special)
            return PromptTokens(with_media.tokens, with_media.bos_added, with_media.media,
                                with_media.owner)
        tokens, bos_added = engine.vocab.tokenize_prompt(prompt, add_special=add_special,
                                                         parse_special=parse_special)
        return PromptTokens(tokens, bos_added)
    except InvalidTokenError as exc:
        raise invalid(f"Invalid token in 'prompt': {exc}") from None
    except ValueError as exc:  # MediaError included
        raise invalid(f"Invalid 'prompt': {exc}") from None


def _request(engine: Engine, defaults: RequestDefaults, opts: GenerationOptions,
             prompt: str | Sequence[int | str], tokens: list[int], bos_added: bool, *,
             grammar: str | None, seed: int | None, truncate: bool, media: Any,
             owner: Any, budget: TokenBudget | None) -> GenerationRequest:
    request = GenerationRequest(
        tokens=tokens, bos_added=bos_added, media=media, media_owner=owner,
        sampling=sampler_params(opts, engine, defaults, grammar=grammar, seed=seed),
        n_predict=effective_n_predict(opts, defaults),
        n_keep=opts.n_keep if opts.n_keep is not None else defaults.n_keep,
        cache_prompt=opts.cache_prompt if opts.cache_prompt is not None else defaults.cache_prompt,
        stop=tuple(s for s in ([opts.stop] if isinstance(opts.stop, str) else opts.stop or [])
                   if s),
        system_prompt=system_prompt_of(opts, engine),
        truncate=(truncate if defaults.overlong_prompt == "auto"
                  else defaults.overlong_prompt == "truncate"),
        budget=budget,
        prompt_text=prompt if isinstance(prompt, str) else engine.vocab.detokenize(tokens),
    )
    if opts.id_slot is not None:
        request.id_slot = opts.id_slot
    if opts.t_max_predict_ms is not None:
        request.t_max_predict_ms = opts.t_max_predict_ms
    if opts.lora is not None:
        request.lora = scales_by_id(opts.lora)
    request.speculative = opts.speculative is not False and opts.speculative_n_max != 0
    request.timings_per_token = bool(opts.timings_per_token)
    request.return_progress = bool(opts.return_progress and opts.stream)
    return request


def resolve_choices(engine: Engine, defaults: RequestDefaults, opts: GenerationOptions,
                    prompts: Sequence[PromptInput], n: int, *,
                    grammar: str | None, truncate: bool = False,
                    add_special: bool = True,
                    budget: TokenBudget | None = None) -> list[PreparedRequest]:
    """``n`` prepared requests per prompt, each choice with its own seed (blocking); all or
    none.  OpenAI's endpoints answer a prompt too long for a slot with today's
    ``exceed_context_size_error`` rather than the seed's truncation."""
    base_seed = effective_seed(opts, defaults)
    prepared: list[PreparedRequest] = []
    try:
        for prompt in prompts:
            for j in range(n):
                seed = base_seed if base_seed == RANDOM_SEED else (base_seed + j) & RANDOM_SEED
                prepared.append(resolve(engine, defaults, opts, prompt.value,
                                        media=prompt.media, grammar=grammar, seed=seed,
                                        truncate=truncate, add_special=add_special,
                                        budget=budget))
    except BaseException:
        for p in prepared:
            p.close()
        raise
    return prepared


def sampler_params(opts: GenerationOptions, engine: Engine, defaults: RequestDefaults, *,
                   grammar: str | None, seed: int | None = None) -> SamplerParams:
    """The server's sampling defaults with the request's options on top."""
    fields: dict[str, Any] = {name: getattr(opts, name) for name in _SAMPLER_FIELDS
                              if getattr(opts, name) is not None}
    for name in ("repeat_last_n", "dry_penalty_last_n"):
        value = getattr(opts, name)
        if value is not None:
            fields[name] = value
    if opts.dry_sequence_breakers is not None:
        if not opts.dry_sequence_breakers:
            raise invalid("'dry_sequence_breakers' must not be an empty array")
        fields["dry_sequence_breakers"] = tuple(opts.dry_sequence_breakers)
    if opts.penalty_prompt is not None:
        fields["penalty_prompt_tokens"] = _tokens(engine, opts.penalty_prompt, "penalty_prompt")
    if opts.logit_bias:
        fields["logit_bias"] = _logit_bias(opts.logit_bias, engine)
    if opts.samplers is not None:
        # A string is upstream's one-letter form ("kypmt"); SamplerParams knows both.
        fields["samplers"] = list(opts.samplers)
    fields["seed"] = effective_seed(opts, defaults) if seed is None else seed
    if grammar is not None:
        fields["grammar"] = grammar
    params = dataclasses.replace(defaults.sampling, **fields)
    # -1 means "the whole context" for both penalty windows.
    for name in ("repeat_last_n", "dry_penalty_last_n"):
        if getattr(params, name) < 0:
            setattr(params, name, engine.n_ctx_slot)
    try:
        params.validate(engine.vocab.n_tokens)
    except ValueError as exc:  # InvalidTokenError included
        raise invalid(str(exc)) from None
    return params


def system_prompt_of(opts: GenerationOptions, engine: Engine) -> SystemPrompt | None:
    """The seed's system prompt: an object (prompt, anti_prompt, assistant_name) or a string
    (with the server-parallel seed's top-level anti_prompt / assistant_name)."""
    sp = opts.system_prompt
    if sp is None:
        return None
    if isinstance(sp, SystemPromptObject):
        return SystemPrompt.from_text(engine.vocab, sp.prompt, sp.anti_prompt, sp.assistant_name)
    return SystemPrompt.from_text(engine.vocab, sp, opts.anti_prompt or "",
                                  opts.assistant_name or "")


def _tokens(engine: Engine, value: str | list[int], what: str) -> list[int]:
    if isinstance(value, str):
        return engine.vocab.tokenize(value, add_special=False, parse_special=False)
    return _check_ids(engine, list(value), what)


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
