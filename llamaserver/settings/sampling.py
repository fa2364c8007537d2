"""Sampling: the server-wide defaults of every request's sampling options.

Field names follow ``llama_ffi.SamplerParams`` (and so llama-server's /completion options);
the defaults are SamplerParams' own, so that ``ServerSettings().default_sampler_params()``
equals ``SamplerParams()``.  A request's own options override these defaults.
"""

from __future__ import annotations

from functools import partial
import json
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import field_validator, model_validator

from ._fields import SAMPLING, Finite, Group, JsonObject, option, split_list

if TYPE_CHECKING:
    from llama_ffi import SamplerParams

__all__ = ["SamplingSettings"]

# SamplerParams fields that take a setting of the same name unchanged.
_SAME_NAME = (
    "temperature", "dynatemp_range", "dynatemp_exponent", "top_k", "top_p", "min_p",
    "typical_p", "xtc_probability", "xtc_threshold", "top_n_sigma", "repeat_last_n",
    "repeat_penalty", "frequency_penalty", "presence_penalty", "dry_multiplier", "dry_base",
    "dry_allowed_length", "dry_penalty_last_n", "mirostat", "mirostat_tau", "mirostat_eta",
    "min_keep", "ignore_eos",
)

# --sampling-seq: llama-server's one-letter codes of the samplers (adaptive-p is 'a').
_SEQUENCE_LETTERS = {
    "d": "dry", "k": "top_k", "y": "typ_p", "p": "top_p", "s": "top_n_sigma", "m": "min_p",
    "t": "temperature", "x": "xtc", "i": "infill", "e": "penalties", "a": "adaptive_p",
}

_LOGIT_BIAS = re.compile(r"^\s*(\d+)\s*([+-])\s*(\S+)\s*$")

_INT32 = 2**31 - 1


_opt = partial(option, group=SAMPLING, metavar="N")


class SamplingSettings(Group):
    seed: int = _opt("-s", "--seed", default=-1, ge=-1, le=2**32 - 1, metavar="SEED")
    """Default RNG seed of requests that give none (-1 = random)."""
    temperature: Finite = _opt("--temp", "--temperature", env="LLAMA_ARG_TEMPERATURE", default=0.8)
    """Temperature (<= 0: greedy)."""
    dynatemp_range: Finite = _opt("--dynatemp-range", default=0.0, ge=0.0)
    """Dynamic temperature range: temperature +/- this (0 = off)."""
    dynatemp_exponent: Finite = _opt("--dynatemp-exp", default=1.0)
    """Dynamic temperature exponent."""
    top_k: int = _opt("--top-k", env="LLAMA_ARG_TOP_K", default=40, ge=-_INT32, le=_INT32)
    """Keep the K most likely tokens (<= 0 = off)."""
    top_p: Finite = _opt("--top-p", env="LLAMA_ARG_TOP_P", default=0.95, ge=0.0, le=1.0)
    """Nucleus sampling: the smallest set of tokens holding this probability (1.0 = off)."""
    min_p: Finite = _opt("--min-p", env="LLAMA_ARG_MIN_P", default=0.05, ge=0.0, le=1.0)
    """Drop tokens less likely than this fraction of the most likely one (0 = off)."""
    typical_p: Finite = _opt("--typical", "--typical-p", default=1.0, ge=0.0)
    """Locally typical sampling, parameter p (1.0 = off)."""
    top_n_sigma: Finite = _opt("--top-nsigma", "--top-n-sigma", default=-1.0)
    """Keep tokens within N standard deviations of the top logit (< 0 = off)."""
    xtc_probability: Finite = _opt("--xtc-probability", default=0.0, ge=0.0, le=1.0)
    """XTC: chance of removing the top choices (0 = off)."""
    xtc_threshold: Finite = _opt("--xtc-threshold", default=0.1, ge=0.0, le=1.0)
    """XTC: probability a choice needs to be removable (> 0.5 = off)."""
    repeat_last_n: int = _opt("--repeat-last-n", default=64, ge=-1, le=_INT32)
    """Tokens looked back at by the repetition penalties (0 = off, -1 = the context size)."""
    repeat_penalty: Finite = _opt(
        "--repeat-penalty", env="LLAMA_ARG_REPEAT_PENALTY", default=1.0, gt=0.0)
    """Penalty of a repeated token (1.0 = off)."""
    presence_penalty: Finite = _opt(
        "--presence-penalty", env="LLAMA_ARG_PRESENCE_PENALTY", default=0.0)
    """Penalty of a token that appeared at all (0 = off)."""
    frequency_penalty: Finite = _opt(
        "--frequency-penalty", env="LLAMA_ARG_FREQUENCY_PENALTY", default=0.0)
    """Penalty per earlier occurrence of a token (0 = off)."""
    dry_multiplier: Finite = _opt("--dry-multiplier", default=0.0, ge=0.0)
    """DRY (don't repeat yourself) multiplier (0 = off)."""
    dry_base: Finite = _opt("--dry-base", default=1.75, ge=0.0)
    """DRY base of the exponential penalty."""
    dry_allowed_length: int = _opt("--dry-allowed-length", default=2, ge=0, le=_INT32)
    """DRY: repeated sequences up to this length go unpenalised."""
    dry_penalty_last_n: int = _opt("--dry-penalty-last-n", default=-1, ge=-1, le=_INT32)
    """DRY: tokens looked back at (0 = off, -1 = the context size)."""
    dry_sequence_breakers: list[str] | None = _opt(
        "--dry-sequence-breaker", default=None, metavar="STRING")
    """DRY sequence breaker (repeatable); the first one given replaces the defaults (\\n : " *),
    'none' means no breakers."""
    mirostat: int = _opt("--mirostat", default=0, ge=0, le=2)
    """Mirostat sampling: 0 off, 1 Mirostat, 2 Mirostat 2.0 (top-k, top-p and typical-p are then
    skipped)."""
    mirostat_eta: Finite = _opt("--mirostat-lr", default=0.1, ge=0.0)
    """Mirostat learning rate (eta)."""
    mirostat_tau: Finite = _opt("--mirostat-ent", default=5.0, ge=0.0)
    """Mirostat target entropy (tau)."""
    min_keep: int = _opt("--min-keep", default=0, ge=0, le=_INT32)
    """Fewest tokens every filtering sampler must keep."""
    ignore_eos: bool = _opt("--ignore-eos", default=False)
    """Keep generating past the end-of-text token."""
    logit_bias: dict[int, float] = _opt(
        "-l", "--logit-bias", default_factory=dict, metavar="TOKEN_ID(+/-)BIAS", append=True)
    """Bias of one token, TOKEN_ID+BIAS or TOKEN_ID-BIAS (e.g. 15043+1, 15043-inf); repeatable or
    comma-separated."""
    samplers: list[str] | None = _opt("--samplers", default=None, metavar="SAMPLERS", append=False)
    """Order of the samplers, separated by ';' (or ','), e.g.
    penalties;dry;top_k;typ_p;top_p;min_p;xtc;temperature."""
    sampling_seq: str | None = _opt(
        "--sampler-seq", "--sampling-seq", default=None, metavar="SEQUENCE")
    """Order of the samplers in one-letter codes: d dry, k top-k, y typical, p top-p, s top-n-sigma,
    m min-p, x xtc, t temperature, e penalties, i infill (e.g. edkypmxt)."""
    grammar: str | None = _opt("--grammar", default=None, metavar="GRAMMAR")
    """GBNF grammar every answer must follow."""
    grammar_file: Path | None = _opt("--grammar-file", default=None, metavar="FNAME")
    """Read the GBNF grammar from this file."""
    json_schema: JsonObject | None = _opt("-j", "--json-schema", default=None, metavar="SCHEMA")
    """JSON schema every answer must follow (turned into a grammar), e.g. '{"type": "object"}'."""
    json_schema_file: Path | None = _opt("-jf", "--json-schema-file", default=None, metavar="FNAME")
    """Read the JSON schema from this file."""

    # ---- parsing of the command-line spellings ------------------------------------------
    @field_validator("dry_sequence_breakers", mode="before")
    @classmethod
    def _breakers(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        if isinstance(value, (list, tuple)) and "none" in value:
            last_none = len(value) - 1 - list(value)[::-1].index("none")
            return list(value[last_none + 1:])  # as upstream: "none" drops the breakers before it
        return value

    @field_validator("logit_bias", mode="before")
    @classmethod
    def _biases(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)):
            return value
        biases: dict[int, float] = {}
        for item in split_list(list(value)):
            match = _LOGIT_BIAS.match(item) if isinstance(item, str) else None
            if match is None:
                raise ValueError(f"{item!r} is not TOKEN_ID+BIAS or TOKEN_ID-BIAS")
            token, sign, amount = match.groups()
            try:
                bias = float(amount)
            except ValueError:
                raise ValueError(f"{item!r}: {amount!r} is not a number") from None
            biases[int(token)] = -bias if sign == "-" else bias
        return biases

    @field_validator("logit_bias")
    @classmethod
    def _finite_or_ban(cls, value: dict[int, float]) -> dict[int, float]:
        for token, bias in value.items():
            if math.isnan(bias) or bias == math.inf:  # -inf bans the token; +inf means nothing
                raise ValueError(f"the bias of token {token} must be a number or -inf")
        return value

    @field_validator("samplers", mode="before")
    @classmethod
    def _sampler_list(cls, value: Any) -> Any:
        return split_list(value, ";,")

    @field_validator("samplers")
    @classmethod
    def _known_samplers(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            _check_stages(value)
        return value

    @field_validator("sampling_seq")
    @classmethod
    def _known_letters(cls, value: str | None) -> str | None:
        if value is not None:
            unknown = sorted(set(value) - set(_SEQUENCE_LETTERS))
            if unknown:
                raise ValueError(f"unknown sampler letter(s) {''.join(unknown)!r}; known: "
                                 f"{''.join(sorted(_SEQUENCE_LETTERS))}")
            _check_stages([_SEQUENCE_LETTERS[c] for c in value])
        return value

    @model_validator(mode="after")
    def _one_grammar(self) -> "SamplingSettings":
        given = [flag for flag, value in (
            ("--grammar", self.grammar), ("--grammar-file", self.grammar_file),
            ("--json-schema", self.json_schema), ("--json-schema-file", self.json_schema_file),
        ) if value is not None]
        if len(given) > 1:
            raise ValueError(f"give one of {', '.join(given)}, not several")
        if self.samplers is not None and self.sampling_seq is not None:
            raise ValueError("give --samplers or --sampling-seq, not both")
        self.default_grammar()  # a missing file or an unsupported schema fails at start-up
        return self

    # ---- the request defaults ------------------------------------------------------------
    def default_grammar(self) -> str | None:
        """The GBNF grammar of --grammar, --grammar-file, --json-schema or --json-schema-file."""
        if self.grammar is not None:
            return self.grammar
        if self.grammar_file is not None:
            return _read(self.grammar_file)
        schema: Any = self.json_schema
        if self.json_schema_file is not None:
            try:
                schema = json.loads(_read(self.json_schema_file))
            except ValueError as exc:
                raise ValueError(f"{self.json_schema_file}: not valid JSON ({exc})") from None
        if schema is None:
            return None
        from .._json_grammar import schema_to_grammar

        return schema_to_grammar(schema)  # SchemaError is a ValueError

    def default_sampler_params(self) -> SamplerParams:
        """``llama_ffi.SamplerParams`` holding these defaults: the starting point of every
        request's sampling options (and of /props' default_generation_settings).

        ``repeat_last_n`` / ``dry_penalty_last_n`` may be -1 (the context size): give the
        ``SamplerChain`` its ``n_ctx``.  Token ids in ``logit_bias`` are checked against the
        vocabulary by ``SamplerParams.validate``.
        """
        from llama_ffi import DEFAULT_SEED, SamplerParams

        values: dict[str, Any] = {name: getattr(self, name) for name in _SAME_NAME}
        if self.dry_sequence_breakers is not None:
            values["dry_sequence_breakers"] = tuple(self.dry_sequence_breakers)
        values["logit_bias"] = dict(self.logit_bias)
        if self.samplers is not None:
            values["samplers"] = list(self.samplers)
        elif self.sampling_seq is not None:
            values["samplers"] = [_SEQUENCE_LETTERS[c] for c in self.sampling_seq]
        values["seed"] = DEFAULT_SEED if self.seed < 0 else self.seed
        values["grammar"] = self.default_grammar()
        return SamplerParams(**values)


def _check_stages(names: list[str]) -> None:
    from llama_ffi import SamplerParams  # its table of sampler names is the one rule

    SamplerParams(samplers=list(names)).stage_order()


def _read(path: Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
