"""``SamplerParams``: llama-server's sampling options, checked before libllama sees them."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

from llama_ffi._errors import GrammarError, InvalidTokenError, describe

DEFAULT_SEED = 0xFFFFFFFF
DEFAULT_SAMPLERS = ("dry", "top_k", "tfs_z", "typ_p", "top_p", "min_p", "xtc", "temperature")
MAX_GRAMMAR_BYTES = 1 << 20
MAX_GRAMMAR_NESTING = 128

# accepted spellings (llama-server's, the seed's and llama.cpp's aliases) -> stage
SAMPLER_NAMES = {
    "dry": "dry",
    "top_k": "top_k", "top-k": "top_k", "topk": "top_k", "k": "top_k",
    "tfs_z": "tfs_z", "tfs-z": "tfs_z", "tfsz": "tfs_z", "tfs": "tfs_z", "f": "tfs_z",
    "typ_p": "typ_p", "typ-p": "typ_p", "typp": "typ_p", "typ": "typ_p", "typical_p": "typ_p",
    "typical": "typ_p", "y": "typ_p",
    "top_p": "top_p", "top-p": "top_p", "topp": "top_p", "nucleus": "top_p", "p": "top_p",
    "min_p": "min_p", "min-p": "min_p", "minp": "min_p", "m": "min_p",
    "xtc": "xtc", "x": "xtc",
    "top_n_sigma": "top_n_sigma", "top-n-sigma": "top_n_sigma", "topnsigma": "top_n_sigma", "s": "top_n_sigma",
    "temperature": "temperature", "temp": "temperature", "t": "temperature",
    "penalties": "penalties", "e": "penalties",
    "infill": "infill", "i": "infill",
}

_FLOAT_FIELDS = (
    "temperature", "dynatemp_range", "dynatemp_exponent", "top_p", "min_p", "typical_p", "tfs_z",
    "xtc_probability", "xtc_threshold", "top_n_sigma", "repeat_penalty", "frequency_penalty",
    "presence_penalty", "dry_multiplier", "dry_base", "mirostat_tau", "mirostat_eta",
)


@dataclass
class SamplerParams:
    """Sampling options, named as llama-server's ``/completion`` names them."""

    temperature: float = 0.8
    dynatemp_range: float = 0.0
    dynatemp_exponent: float = 1.0
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    typical_p: float = 1.0
    tfs_z: float = 1.0
    xtc_probability: float = 0.0
    xtc_threshold: float = 0.1
    top_n_sigma: float = -1.0
    repeat_last_n: int = 64
    repeat_penalty: float = 1.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    penalize_nl: bool = False
    penalty_prompt_tokens: list[int] | None = None
    dry_multiplier: float = 0.0
    dry_base: float = 1.75
    dry_allowed_length: int = 2
    dry_penalty_last_n: int = -1
    dry_sequence_breakers: Sequence[str] = ("\n", ":", '"', "*")
    mirostat: int = 0
    mirostat_tau: float = 5.0
    mirostat_eta: float = 0.1
    seed: int = DEFAULT_SEED
    min_keep: int = 0
    logit_bias: dict[int, float] = field(default_factory=dict)
    ignore_eos: bool = False
    grammar: str | None = None
    n_probs: int = 0
    samplers: list[str] = field(default_factory=lambda: list(DEFAULT_SAMPLERS))

    def stage_order(self) -> list[str]:
        """``samplers`` as canonical stage names (ValueError on an unknown name)."""
        order = []
        for name in self.samplers:
            stage = SAMPLER_NAMES.get(str(name).strip().lower())
            if stage is None:
                raise ValueError(f"unknown sampler {describe(name)}; known: {sorted(set(SAMPLER_NAMES.values()))}")
            order.append(stage)
        return order

    def validate(self, n_vocab: int) -> None:
        """Raise ``ValueError`` (``InvalidTokenError`` for token ids) on options libllama must not see."""
        for name in _FLOAT_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, not {describe(value)}")
        if self.repeat_penalty <= 0:
            raise ValueError("repeat_penalty must be greater than 0")
        if self.dry_base < 0 or self.dry_multiplier < 0:
            raise ValueError("dry_multiplier and dry_base must be >= 0")
        for name, low in (("top_k", None), ("repeat_last_n", -1), ("dry_allowed_length", 0),
                          ("dry_penalty_last_n", -1), ("min_keep", 0), ("n_probs", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or (low is not None and value < low):
                bound = "" if low is None else f" >= {low}"
                raise ValueError(f"{name} must be an integer{bound}, not {describe(value)}")
        if self.mirostat not in (0, 1, 2):
            raise ValueError("mirostat must be 0, 1 or 2")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not -1 <= self.seed <= DEFAULT_SEED:
            raise ValueError(f"seed must be -1 or an unsigned 32-bit integer, not {describe(self.seed)}")
        for tok, bias in self.logit_bias.items():
            if isinstance(tok, bool) or not isinstance(tok, int) or not 0 <= tok < n_vocab:
                raise InvalidTokenError(f"logit_bias names invalid token {describe(tok)} (vocabulary has {n_vocab})")
            if isinstance(bias, bool) or not isinstance(bias, (int, float)) or math.isnan(bias) or bias == math.inf:
                raise ValueError(f"logit_bias for token {tok} must be a finite number or -inf, not {describe(bias)}")
        for tok in self.penalty_prompt_tokens or ():
            if isinstance(tok, bool) or not isinstance(tok, int) or not 0 <= tok < n_vocab:
                raise InvalidTokenError(f"penalty_prompt_tokens holds invalid token {describe(tok)}")
        if any(not isinstance(s, str) for s in self.dry_sequence_breakers):
            raise ValueError("dry_sequence_breakers must be strings")
        if self.grammar is not None and not isinstance(self.grammar, str):
            raise ValueError("grammar must be a string")
        self.stage_order()


def check_grammar_shape(grammar: str) -> None:
    """Reject grammars big or deep enough to exhaust libllama's recursive parser."""
    if len(grammar.encode("utf-8")) > MAX_GRAMMAR_BYTES:
        raise GrammarError(f"grammar is larger than {MAX_GRAMMAR_BYTES} bytes")
    depth = 0
    i = 0
    n = len(grammar)
    while i < n:
        c = grammar[i]
        if c == "#":
            while i < n and grammar[i] != "\n":
                i += 1
        elif c in "\"[":
            close = '"' if c == '"' else "]"
            i += 1
            while i < n and grammar[i] != close:
                i += 2 if grammar[i] == "\\" else 1
        elif c == "{":
            end = grammar.find("}", i)
            bounds = grammar[i + 1 : end].split(",") if end > 0 else []
            if len(bounds) == 2 and all(b.strip().isdigit() for b in bounds):
                low, high = (int(b) for b in bounds)
                if low > high:
                    # libllama's parser never returns on such a repetition
                    raise GrammarError(f"repetition {{{low},{high}}} has its minimum above its maximum")
        elif c == "(":
            depth += 1
            if depth > MAX_GRAMMAR_NESTING:
                raise GrammarError(f"grammar nests parentheses deeper than {MAX_GRAMMAR_NESTING}")
        elif c == ")":
            depth -= 1
        i += 1
