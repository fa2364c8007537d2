"""Typed models of llama.cpp's own answers (and of every error), for the OpenAPI document.

The views build their answers as dicts (``_llama_shapes``, ``_completion``, ``_status``);
these models describe them.  They are not used to build answers: ``tests/server/
test_openapi.py`` validates real answers against the generated document, so a field added
to an answer without its model here fails a test instead of going undocumented.

``extra="forbid"`` makes that check strict; ``GenerationSettings`` allows extra fields
because it is derived from ``llama_ffi.SamplerParams``, which gains fields in the lower layer.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel


class Answer(BaseModel):
    """Base of answer models: every field the server sends is listed."""

    model_config = ConfigDict(extra="forbid")


# ---- errors ---------------------------------------------------------------------------------
class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="allow")  # n_prompt_tokens, n_ctx (exceed_context_size_error)

    code: int = Field(description="the HTTP status")
    message: str = Field(description="what was wrong; names the field at fault")
    type: str = Field(description="invalid_request_error, authentication_error, "
                                  "not_found_error, not_supported_error, unavailable_error, "
                                  "exceed_context_size_error, server_error, ...")


class ErrorResponse(Answer):
    """Every error, in llama.cpp's and OpenAI's shape (also an SSE event in a failed stream)."""

    error: ErrorDetail


class Success(Answer):
    success: Literal[True]


# ---- /completion ----------------------------------------------------------------------------
class Timings(Answer):
    cache_n: int
    prompt_n: int
    prompt_ms: float
    prompt_per_token_ms: float
    prompt_per_second: float
    predicted_n: int
    predicted_ms: float
    predicted_per_token_ms: float
    predicted_per_second: float
    draft_n: int | None = Field(None, description="with speculative decoding")
    draft_n_accepted: int | None = Field(None, description="with speculative decoding")


class PromptProgress(Answer):
    total: int
    cache: int
    processed: int
    time_ms: int


class TopLogprob(Answer):
    id: int
    token: str
    logprob: float | None = Field(description="null for a probability of 0")
    bytes: list[int]


class SeedProb(Answer):
    id: int
    tok_str: str
    prob: float


class TokenProbability(Answer):
    """A ``completion_probabilities`` entry: today's fields and the seed's together."""

    id: int
    token: str
    logprob: float | None
    bytes: list[int]
    top_logprobs: list[TopLogprob]
    content: str
    probs: list[SeedProb]


class LoraScaleEntry(Answer):
    id: int
    scale: float


class GenerationSettings(BaseModel):
    """The seed's ``generation_settings``: the resolved request's sampling and limits."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    n_ctx: int
    n_predict: int
    model: str
    temperature: float
    dynatemp_range: float
    dynatemp_exponent: float
    top_k: int
    top_p: float
    min_p: float
    typical_p: float
    tfs_z: float
    xtc_probability: float
    xtc_threshold: float
    top_n_sigma: float
    repeat_last_n: int
    repeat_penalty: float
    frequency_penalty: float
    presence_penalty: float
    penalize_nl: bool
    dry_multiplier: float
    dry_base: float
    dry_allowed_length: int
    dry_penalty_last_n: int
    dry_sequence_breakers: list[str]
    mirostat: int
    mirostat_tau: float
    mirostat_eta: float
    seed: int
    min_keep: int
    ignore_eos: bool
    grammar: str
    n_probs: int
    samplers: list[str]
    penalty_prompt_tokens: list[int]
    use_penalty_prompt_tokens: bool
    logit_bias: list[list[Any]] = Field(description="[token, bias] pairs; bias false: banned")
    stop: list[str]
    n_keep: int
    n_discard: int
    stream: bool
    cache_prompt: bool
    id_slot: int
    t_max_predict_ms: int
    lora: list[LoraScaleEntry]
    max_tokens: int
    timings_per_token: bool
    post_sampling_probs: bool
    backend_sampling: bool
    speculative_types: str = Field(alias="speculative.types")
    grammar_lazy: bool
    grammar_triggers: list[Any]
    preserved_tokens: list[Any]
    chat_format: str
    reasoning_format: str
    reasoning_in_content: bool
    generation_prompt: str


StopType = Literal["eos", "word", "limit", "none"]


class CompletionResult(Answer):
    """The seed's result of one prompt (in a stream: the last event, its content sent before)."""

    content: str
    id_slot: int
    stop: Literal[True]
    model: str
    tokens_predicted: int
    tokens_evaluated: int
    generation_settings: GenerationSettings
    prompt: str
    truncated: bool
    stopped_eos: bool
    stopped_word: bool
    stopped_limit: bool
    stopping_word: str
    stop_type: StopType
    tokens_cached: int
    timings: Timings
    index: int
    tokens: list[int]
    completion_probabilities: list[TokenProbability] | None = Field(
        None, description="with n_probs > 0 only")


class CompletionPartial(Answer):
    """A streamed piece of text (or, with ``return_progress``, the prompt's progress)."""

    content: str
    stop: Literal[False]
    index: int
    tokens: list[int]
    timings: Timings | None = Field(None, description="with timings_per_token only")
    completion_probabilities: list[TokenProbability] | None = None
    prompt_progress: PromptProgress | None = None


class CompletionEvent(RootModel[CompletionPartial | CompletionResult | ErrorResponse]):
    """One SSE ``data:`` of a streamed /completion: a piece, the final result, or an error."""


# ---- server state ---------------------------------------------------------------------------
class NextToken(Answer):
    has_next_token: bool
    has_new_line: bool
    n_remain: int
    n_decoded: int
    stopped_eos: bool | None = None
    stopped_limit: bool | None = None
    stopped_word: bool | None = None
    stopping_word: str


class SlotState(GenerationSettings):
    """A /slots entry: the slot's request settings (the defaults while idle) and its state."""

    id: int
    id_task: int
    task_id: int | None = None
    state: int | None = None
    is_processing: bool
    prompt: str
    n_cached_tokens: int | None = None
    speculative: bool
    params: GenerationSettings
    n_prompt_tokens: int | None = None
    n_prompt_tokens_processed: int | None = None
    n_prompt_tokens_cache: int | None = None
    next_token: NextToken


class Health(Answer):
    status: Literal["ok", "no slot available", "loading model", "error"]
    slots_idle: int | None = None
    slots_processing: int | None = None
    slots: list[SlotState] | None = Field(None, description="with ?include_slots")
    error: ErrorDetail | None = Field(None, description="while loading (503) or failed (500)")


class Modalities(Answer):
    vision: bool
    audio: bool
    video: bool


class PromptCacheStats(Answer):
    """The prompt cache across slots and host memory (empty while the model loads)."""

    hits: int | None = None
    tokens_reused: int | None = None
    host_bytes: int | None = None
    host_entries: int | None = None


class Props(Answer):
    user_name: str
    assistant_name: str
    system_prompt: str
    default_generation_settings: SlotState
    total_slots: int
    model_path: str
    model_alias: str
    model_aliases: list[str]
    model_tags: list[str]
    model_ftype: str
    chat_template: str
    chat_template_caps: dict[str, Any]
    bos_token: str
    eos_token: str
    n_ctx: int
    n_ctx_slot: int
    modalities: Modalities
    media_marker: str = Field(description="what stands for a media item in a prompt's text "
                                          "(empty without --mmproj)")
    endpoint_slots: bool
    endpoint_props: bool
    endpoint_metrics: bool
    build_info: str
    is_sleeping: bool
    prompt_cache: PromptCacheStats


class SlotSaveTimings(Answer):
    save_ms: float


class SlotRestoreTimings(Answer):
    restore_ms: float


class SlotSaved(Answer):
    id_slot: int
    filename: str
    n_saved: int
    n_written: int
    timings: SlotSaveTimings


class SlotRestored(Answer):
    id_slot: int
    filename: str
    n_restored: int
    n_read: int
    timings: SlotRestoreTimings


class SlotErased(Answer):
    id_slot: int
    n_erased: int


class SlotActionResult(RootModel[SlotSaved | SlotRestored | SlotErased]):
    """What ?action=save, restore or erase did."""


class ModelMeta(Answer):
    vocab_type: int
    n_vocab: int
    n_ctx: int
    n_ctx_train: int
    n_embd: int
    n_params: int
    size: int
    ftype: str
    modalities: Modalities


class ModelEntry(Answer):
    id: str
    aliases: list[str]
    tags: list[str]
    object: Literal["model"]
    created: int
    owned_by: str
    meta: ModelMeta | None


class OllamaDetails(Answer):
    parent_model: str
    format: str
    family: str
    families: list[str]
    parameter_size: str
    quantization_level: str


class OllamaModel(Answer):
    name: str
    model: str
    modified_at: str
    size: str
    digest: str
    type: str
    description: str
    tags: list[str]
    capabilities: list[str]
    parameters: str
    details: OllamaDetails


class ModelList(Answer):
    """OpenAI's model list (``data``) and Ollama's (``models``): upstream answers both."""

    models: list[OllamaModel]
    object: Literal["list"]
    data: list[ModelEntry]


class LoraAdapter(Answer):
    id: int
    path: str
    scale: float


# ---- text utilities -------------------------------------------------------------------------
class TokenPiece(Answer):
    id: int
    piece: str | list[int] = Field(description="bytes when the piece is not valid UTF-8 alone")


class TokenizeResult(Answer):
    tokens: list[int] | list[TokenPiece] = Field(description="pieces with with_pieces")


class DetokenizeResult(Answer):
    content: str


class AppliedTemplate(Answer):
    prompt: str


class SeedEmbedding(Answer):
    embedding: list[float]


class IndexedEmbedding(Answer):
    index: int
    embedding: list[float] | list[list[float]] = Field(
        description="one vector, or one per token when the server pools with 'none'")


class EmbeddingResult(RootModel[SeedEmbedding | list[IndexedEmbedding]]):
    """/embedding: the seed's object for one pooled input, else one entry per input."""


class EmbeddingList(RootModel[list[IndexedEmbedding]]):
    """/embeddings: one entry per input, each a list of vectors."""


# ---- rerank ---------------------------------------------------------------------------------
class RerankDocument(Answer):
    text: str


class RerankHit(Answer):
    index: int
    relevance_score: float
    document: RerankDocument | None = None


class RerankUsage(Answer):
    prompt_tokens: int
    total_tokens: int


class RerankResult(Answer):
    model: str
    object: Literal["list"]
    usage: RerankUsage
    results: list[RerankHit]


class TeiHit(Answer):
    index: int
    score: float
    text: str | None = None


class RerankAnswer(RootModel[RerankResult | list[TeiHit]]):
    """Jina/Cohere's result object, or TEI's list (the request had ``texts``)."""
