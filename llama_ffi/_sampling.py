"""``SamplerParams`` (llama-server's sampling options) and ``SamplerChain`` (a libllama sampler chain).

Chain layout, built from the params::

    logit_bias (user biases, ignore_eos, model suppress tokens)
    [stages in `samplers` order]      penalties* | dry | top_k | tfs_z | typ_p | top_p | min_p
                                      | xtc | top_n_sigma | temperature | infill
    dist(seed) | greedy (temperature <= 0) | temp + mirostat (mirostat 1/2)

    * penalties run first unless `samplers` names them; with penalize_nl=False
      a snapshot/restore pair around them keeps the newline logit unchanged.

A grammar is not a chain stage: as in llama.cpp's own sampling, the chain
picks a token first and the grammar only vets it; if it rejects the pick, the
candidates are filtered by the grammar and the chain runs again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from llama_ffi._custom_samplers import LogitGuard, LogitRestore, LogitSnapshot, PythonSampler, TailFreeSampler
from llama_ffi._errors import GrammarError, InvalidTokenError, LlamaError, check_pointer, describe, reraise_pending
from llama_ffi._ffi import ffi, lib
from llama_ffi._handle import OwnedHandle

if TYPE_CHECKING:
    from llama_ffi._context import Context
    from llama_ffi._model import Model

DEFAULT_SEED = 0xFFFFFFFF
_KEEP_ARGMAX = frozenset({"top_k", "top_p", "min_p", "tfs_z", "top_n_sigma"})
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


class SamplerChain(OwnedHandle):
    """A libllama sampler chain built from ``SamplerParams`` (plus an optional grammar).

    ``n_ctx`` is what ``-1`` means for ``repeat_last_n``/``dry_penalty_last_n``
    (the model's training context when not given).  Not thread-safe.
    """

    _kind = "sampler chain"

    def __init__(self, model: Model, params: SamplerParams, *, n_ctx: int | None = None) -> None:
        vocab = model.vocab
        model_ptr = model._require()
        params.validate(vocab.n_tokens)
        self.model = model
        self.params = params
        self._n_vocab = vocab.n_tokens
        self._errors: list[BaseException] = []
        self._stages: list[PythonSampler] = []  # kept alive while the C chain may call them
        self._helpers: dict[str, Any] = {}
        self._penalties: Any = None
        self._penalty_window = 0
        self._dry: Any = None
        self._dry_window = 0
        self._grammar: Any = None
        self._greedy = params.temperature <= 0
        self._bias: dict[int, float] = {}
        self._plain_greedy = False
        self._data = ffi.new("llama_token_data[]", self._n_vocab)
        self._cur_p = ffi.new("llama_token_data_array *")
        self._single_data = ffi.new("llama_token_data[1]")
        self._single = ffi.new("llama_token_data_array *")
        self._logits: Any = ffi.NULL

        chain_params = lib.llama_sampler_chain_default_params()
        keep = (model_ptr, self._stages)  # freed after the model, before the Python stages
        self._ptr: Any = ffi.gc(
            check_pointer(lib.llama_sampler_chain_init(chain_params), LlamaError, "llama_sampler_chain_init failed"),
            lambda p, _keep=keep: lib.llama_sampler_free(p),
        )
        model._add_dependent(self)
        try:
            self._build(n_ctx if n_ctx and n_ctx > 0 else model.n_ctx_train)
            if params.grammar is not None and params.grammar.strip():
                self._grammar = self._make_grammar(params.grammar)
            # Greedy with nothing but logit biases before it: an argmax over the logits gives
            # the same token without filling a candidate array of the whole vocabulary.
            self._plain_greedy = (self._greedy and self._grammar is None and len(self._bias) <= 64
                                  and lib.llama_sampler_chain_n(self._ptr) == 1 + bool(self._bias))
        except BaseException:
            self.close()
            raise
        self._seed_penalties()

    # ------------------------------------------------------------------ construction

    def _add(self, sampler: Any) -> Any:
        lib.llama_sampler_chain_add(self._ptr, check_pointer(sampler, LlamaError, "failed to create a sampler"))
        return sampler

    def _add_python(self, stage: PythonSampler) -> None:
        self._stages.append(stage)
        self._add(stage.ptr)

    def _build(self, n_ctx: int) -> None:
        p = self.params
        vocab = self.model.vocab
        n_vocab = self._n_vocab
        seed = DEFAULT_SEED if p.seed == -1 else p.seed

        bias = {int(t): float(b) for t, b in p.logit_bias.items()}
        for tok in vocab.suppress_tokens():
            bias[tok] = -math.inf
        if p.ignore_eos:
            for tok in vocab.eog_tokens:
                bias[tok] = -math.inf
        if bias:
            entries = ffi.new("llama_logit_bias[]", list(bias.items()))
            self._add(lib.llama_sampler_init_logit_bias(n_vocab, len(bias), entries))
        self._bias = bias

        order = p.stage_order()
        if "penalties" not in order:
            order.insert(0, "penalties")
        if p.mirostat:
            order = ["penalties"]
        if self._greedy:
            # These only cut the tail and always keep the most likely token, so the argmax that
            # greedy takes is the same without them; top_k's partial sort of the whole vocabulary
            # was most of a greedy step's sampling time.  (XTC and typical-p can drop the most
            # likely token, so they stay.)
            order = [stage for stage in order if stage not in _KEEP_ARGMAX]

        for stage in order:
            if stage == "penalties":
                self._add_penalties(n_ctx)
            elif stage == "dry" and p.dry_multiplier > 0:
                window = n_ctx if p.dry_penalty_last_n == -1 else p.dry_penalty_last_n
                texts = [ffi.new("char[]", s.encode("utf-8")) for s in p.dry_sequence_breakers]
                breakers = ffi.new("const char *[]", texts) if texts else ffi.NULL
                dry = lib.llama_sampler_init_dry(vocab._vocab(), p.dry_multiplier, p.dry_base,
                                                 p.dry_allowed_length, window, breakers, len(texts))
                self._dry = self._add(dry)
                self._dry_window = window
            elif stage == "top_k" and p.top_k > 0:
                self._add(lib.llama_sampler_init_top_k(p.top_k))
            elif stage == "tfs_z" and p.tfs_z < 1.0:
                self._add_python(TailFreeSampler(self._errors, p.tfs_z, p.min_keep))
            elif stage == "typ_p" and p.typical_p < 1.0:
                self._add(lib.llama_sampler_init_typical(p.typical_p, p.min_keep))
            elif stage == "top_p" and p.top_p < 1.0:
                self._add(lib.llama_sampler_init_top_p(p.top_p, p.min_keep))
            elif stage == "min_p" and p.min_p > 0.0:
                self._add(lib.llama_sampler_init_min_p(p.min_p, p.min_keep))
            elif stage == "xtc" and p.xtc_probability > 0.0:
                self._add(lib.llama_sampler_init_xtc(p.xtc_probability, p.xtc_threshold, p.min_keep, seed))
            elif stage == "top_n_sigma" and p.top_n_sigma > 0.0:
                self._add(lib.llama_sampler_init_top_n_sigma(p.top_n_sigma))
            elif stage == "temperature" and not self._greedy:
                self._add(lib.llama_sampler_init_temp_ext(p.temperature, p.dynatemp_range, p.dynatemp_exponent))
            elif stage == "infill":
                self._add(lib.llama_sampler_init_infill(vocab._vocab()))

        if self._greedy:
            self._add(lib.llama_sampler_init_greedy())
        elif p.mirostat == 1:
            self._add(lib.llama_sampler_init_temp(p.temperature))
            self._add(lib.llama_sampler_init_mirostat(n_vocab, seed, p.mirostat_tau, p.mirostat_eta, 100))
        elif p.mirostat == 2:
            self._add(lib.llama_sampler_init_temp(p.temperature))
            self._add(lib.llama_sampler_init_mirostat_v2(seed, p.mirostat_tau, p.mirostat_eta))
        else:
            self._add(lib.llama_sampler_init_dist(seed))

    def _add_penalties(self, n_ctx: int) -> None:
        p = self.params
        window = n_ctx if p.repeat_last_n == -1 else p.repeat_last_n
        active = p.repeat_penalty != 1.0 or p.frequency_penalty != 0.0 or p.presence_penalty != 0.0
        if window <= 0 or not active or self._penalties is not None:
            return
        nl = self.model.vocab.nl
        guard = LogitGuard(nl) if not p.penalize_nl and nl >= 0 else None
        if guard is not None:
            self._add_python(LogitSnapshot(self._errors, guard))
        penalties = lib.llama_sampler_init_penalties(
            self._n_vocab, window, p.repeat_penalty, p.frequency_penalty, p.presence_penalty)
        self._penalties = self._add(penalties)
        self._penalty_window = window
        if guard is not None:
            self._add_python(LogitRestore(self._errors, guard))

    def _make_grammar(self, grammar: str) -> Any:
        check_grammar_shape(grammar)
        ptr = lib.llama_sampler_init_grammar(self.model.vocab._vocab(), grammar.encode("utf-8"), b"root")
        if not ptr:
            raise GrammarError("failed to parse the grammar (see the llama_ffi.native log for where)")
        return ffi.gc(ptr, lambda g, _keep=self.model._require(): lib.llama_sampler_free(g))

    def _seed_penalties(self) -> None:
        tokens = self.params.penalty_prompt_tokens
        if tokens:
            _feed(self._penalties, tokens, self._penalty_window)

    # ------------------------------------------------------------------ C handle

    def close(self) -> None:
        for helper in self._helpers.values():
            ffi.release(helper)
        self._helpers.clear()
        if self._grammar is not None:
            grammar, self._grammar = self._grammar, None
            ffi.release(grammar)
        if self._ptr is not None:
            chain, self._ptr = self._ptr, None
            self._penalties = self._dry = None
            ffi.release(chain)


    @property
    def seed(self) -> int:
        """The seed in use (the drawn one when the params asked for a random seed)."""
        return lib.llama_sampler_get_seed(self._require())

    def stage_names(self) -> list[str]:
        chain = self._require()
        return [ffi.string(lib.llama_sampler_name(lib.llama_sampler_chain_get(chain, i))).decode()
                for i in range(lib.llama_sampler_chain_n(chain))]

    # ------------------------------------------------------------------ history

    def accept(self, token: int) -> None:
        """Record ``token`` as generated (penalties, DRY, mirostat and grammar state)."""
        chain = self._require()
        if not 0 <= token < self._n_vocab:
            raise InvalidTokenError(f"invalid token id {token}")
        grammar = self._grammar
        if grammar is not None:
            # libllama aborts the process when a grammar is fed a token it rejects
            single = self._single
            self._single_data[0] = (token, 1.0, 0.0)
            single.data = self._single_data
            single.size = 1
            single.selected = -1
            single.sorted = False
            lib.llama_sampler_apply(grammar, single)
            if single.data[0].logit == -math.inf:
                raise GrammarError(f"token {token} is not allowed by the grammar here")
            lib.llama_sampler_accept(grammar, token)
        lib.llama_sampler_accept(chain, token)

    def accept_prompt(self, tokens: Iterable[int]) -> None:
        """Feed prompt tokens to the history-based stages only (penalties, DRY), not the grammar.

        With ``penalty_prompt_tokens`` set, the penalties stage keeps those instead.
        """
        self._require()
        tokens = list(tokens)
        self.model.vocab.check_tokens(tokens)
        if self.params.penalty_prompt_tokens is None:
            _feed(self._penalties, tokens, self._penalty_window)
        _feed(self._dry, tokens, self._dry_window)

    def reset(self) -> None:
        """Forget the history (and restart the grammar); penalty_prompt_tokens are fed again."""
        lib.llama_sampler_reset(self._require())
        if self._grammar is not None:
            lib.llama_sampler_reset(self._grammar)
        self._seed_penalties()

    # ------------------------------------------------------------------ sampling

    def _select(self, ctx: Context, idx: int) -> int:
        chain = self._require()
        if ctx.n_vocab != self._n_vocab:
            raise LlamaError("the context belongs to a model with a different vocabulary")
        logits = ctx.logits_ith(idx)
        self._logits = logits
        if self._plain_greedy:
            best = lib.llama_ffi_argmax(logits, self._n_vocab)
            if best not in self._bias:
                value = logits[best]
                for tok, bias in self._bias.items():
                    biased = logits[tok] + bias
                    if biased > value or (biased == value and tok < best):
                        best, value = tok, biased
                return best
            # the raw argmax is itself biased: let the chain decide
        cur_p = self._cur_p
        lib.llama_ffi_fill_candidates(cur_p, self._data, logits, self._n_vocab)
        lib.llama_sampler_apply(chain, cur_p)
        grammar = self._grammar
        constrained = grammar is not None and not self._grammar_allows(grammar, cur_p)
        if constrained:
            lib.llama_ffi_fill_candidates(cur_p, self._data, logits, self._n_vocab)
            lib.llama_sampler_apply(grammar, cur_p)
            lib.llama_sampler_apply(chain, cur_p)
        if self._errors:
            reraise_pending(self._errors)
        selected = cur_p.selected
        if constrained and (not 0 <= selected < cur_p.size or cur_p.data[selected].logit == -math.inf):
            raise GrammarError("no token that the grammar allows here is left by the other sampling "
                               "options (logit_bias, ignore_eos, ...)")
        if not 0 <= selected < cur_p.size:
            raise LlamaError("the sampler chain selected no token")
        return cur_p.data[selected].id

    def _grammar_allows(self, grammar: Any, cur_p: Any) -> bool:
        selected = cur_p.selected
        if not 0 <= selected < cur_p.size:
            return False
        single = self._single
        self._single_data[0] = (cur_p.data[selected].id, 1.0, 0.0)
        single.data = self._single_data
        single.size = 1
        single.selected = -1
        single.sorted = False
        lib.llama_sampler_apply(grammar, single)
        return single.data[0].logit != -math.inf

    def sample(self, ctx: Context, idx: int) -> int:
        """Sample a token from batch index ``idx``'s logits and accept it."""
        token = self._select(ctx, idx)
        self.accept(token)
        return token

    def sample_with_probs(self, ctx: Context, idx: int, n_probs: int) -> tuple[int, list[tuple[int, float]]]:
        """Sample and accept a token; also return up to ``n_probs`` ``(token, probability)`` pairs.

        The probabilities are those of the candidates left after the chain ran,
        most likely first (zero-probability candidates are left out), as
        llama-server reports them.  With greedy sampling (temperature <= 0) the
        chain computes no probabilities, so they are a plain softmax of the logits.
        """
        token = self._select(ctx, idx)
        self.accept(token)
        if n_probs <= 0:
            return token, []
        cur_p = self._cur_p
        if self._greedy:
            lib.llama_ffi_fill_candidates(cur_p, self._data, self._logits, self._n_vocab)
            lib.llama_sampler_apply(self._helper("softmax"), cur_p)
        if not cur_p.sorted:
            lib.llama_sampler_apply(self._helper(f"top{n_probs}"), cur_p)
        probs = []
        data = cur_p.data
        for i in range(min(n_probs, cur_p.size)):
            entry = data[i]
            if entry.p == 0.0:
                break
            probs.append((entry.id, entry.p))
        return token, probs

    def _helper(self, key: str) -> Any:
        """Samplers used outside the chain: ``softmax`` (a dist sampler, for its probabilities) and ``topN``."""
        helper = self._helpers.get(key)
        if helper is None:
            raw = lib.llama_sampler_init_dist(0) if key == "softmax" else lib.llama_sampler_init_top_k(int(key[3:]))
            helper = ffi.gc(check_pointer(raw, LlamaError, "failed to create a sampler"), lib.llama_sampler_free)
            self._helpers[key] = helper
        return helper


def _feed(stage: Any, tokens: Sequence[int], window: int) -> None:
    """Accept the last ``window`` of ``tokens`` into one history-keeping stage, if it exists."""
    if stage is not None:
        for tok in tokens[-window:]:
            lib.llama_sampler_accept(stage, tok)
