"""``SamplerChain``: a libllama sampler chain built from ``SamplerParams``.

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
from llama_ffi._errors import GrammarError, InvalidTokenError, LlamaError, check_pointer, reraise_pending
from llama_ffi._ffi import ffi, lib
from llama_ffi._handle import OwnedHandle
from llama_ffi._sampler_params import (  # noqa: F401  (re-exported: the names were defined here)
    DEFAULT_SAMPLERS,
    DEFAULT_SEED,
    MAX_GRAMMAR_BYTES,
    SAMPLER_NAMES,
    SamplerParams,
    check_grammar_shape,
)

if TYPE_CHECKING:
    from llama_ffi._context import Context
    from llama_ffi._model import Model

# cut-off stages that always keep the most likely token: greedy does not need them
_KEEP_ARGMAX = frozenset({"top_k", "top_p", "min_p", "tfs_z", "top_n_sigma"})


@dataclass(frozen=True, slots=True)
class TokenProbs:
    """A sampled token with its probability and the most likely candidates, by token id.

    ``prob`` and ``top`` are probabilities after the chain's filters, as llama-server reports
    them; with greedy sampling the chain computes none, so they are a softmax of the logits.
    """

    token: int
    prob: float
    top: tuple[tuple[int, float], ...] = field(default=())


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
        """Sample and accept a token; also return up to ``n_probs`` ``(token, probability)`` pairs."""
        sampled = self.sample_probs(ctx, idx, n_probs)
        return sampled.token, list(sampled.top)

    def sample_probs(self, ctx: Context, idx: int, n_probs: int) -> TokenProbs:
        """Sample and accept a token; report its probability and the top ``n_probs`` candidates.

        The candidates are those left after the chain ran, most likely first
        (zero-probability candidates are left out), as llama-server reports them.
        """
        token = self._select(ctx, idx)
        self.accept(token)
        cur_p = self._cur_p
        if self._greedy:
            lib.llama_ffi_fill_candidates(cur_p, self._data, self._logits, self._n_vocab)
            lib.llama_sampler_apply(self._helper("softmax"), cur_p)
            prob = cur_p.data[token].p  # unsorted after the fill: index == token id
        else:
            selected = cur_p.selected
            prob = cur_p.data[selected].p if 0 <= selected < cur_p.size else 0.0
        if n_probs <= 0:
            return TokenProbs(token, prob)
        if not cur_p.sorted:
            lib.llama_sampler_apply(self._helper(f"top{n_probs}"), cur_p)
        top = []
        data = cur_p.data
        for i in range(min(n_probs, cur_p.size)):
            entry = data[i]
            if entry.p == 0.0:
                break
            top.append((entry.id, entry.p))
        return TokenProbs(token, prob, tuple(top))

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
