"""Settings of speculative decoding (llama-server's --spec-* flags that apply here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ._fields import PERF, cli, existing_file, split_list

__all__ = ["SpeculativeSettings", "NGRAM_TYPES", "DRAFT_TYPES"]

NGRAM_TYPES = ("ngram-simple", "ngram-map-k", "ngram-map-k4v", "ngram-mod", "ngram-cache")
DRAFT_TYPES = ("draft-simple", "draft-eagle3", "draft-mtp", "draft-dflash", "draft-dspark")


class SpeculativeSettings(BaseModel):
    model_config = ConfigDict(protected_namespaces=(), extra="forbid", validate_assignment=True)

    spec_type: list[str] = Field(
        default_factory=lambda: ["none"], description="Speculative decoding, comma-separated "
        "(llama-server's names): ngram-* drafts from n-grams of the prompt and the text so far "
        "(one drafter serves every ngram name), draft-* with --model-draft; none: off.",
        json_schema_extra=cli("--spec-type", env="LLAMA_ARG_SPEC_TYPE", group=PERF,
                              metavar="TYPES"))
    model_draft: Path | None = Field(
        None, description="A small model with the same vocabulary that drafts tokens.",
        json_schema_extra=cli("--spec-draft-model", "-md", "--model-draft",
                              env="LLAMA_ARG_SPEC_DRAFT_MODEL", group=PERF, metavar="FNAME"))
    n_gpu_layers_draft: int = Field(
        0, ge=-1, le=2**31 - 1, description="Layers of the draft model on the GPU (-1, 'all' "
        "or 'auto': all of them).",
        json_schema_extra=cli("--spec-draft-ngl", "-ngld", "--gpu-layers-draft",
                              "--n-gpu-layers-draft", env="LLAMA_ARG_N_GPU_LAYERS_DRAFT",
                              group=PERF, metavar="N"))
    threads_draft: int | None = Field(
        None, ge=1, le=1024, description="Threads of the draft model (default: --threads).",
        json_schema_extra=cli("--spec-draft-threads", "-td", "--threads-draft", group=PERF,
                              metavar="N"))
    threads_batch_draft: int | None = Field(
        None, ge=1, le=1024, description="Threads of the draft model for catching up on a "
        "prompt (default: --threads-draft).",
        json_schema_extra=cli("--spec-draft-threads-batch", "-tbd", "--threads-batch-draft",
                              group=PERF, metavar="N"))
    spec_draft_n_max: int = Field(
        16, ge=0, le=1024, description="Most draft tokens checked in one step.",
        json_schema_extra=cli("--spec-draft-n-max", env="LLAMA_ARG_SPEC_DRAFT_N_MAX",
                              group=PERF, metavar="N"))
    spec_draft_n_min: int = Field(
        0, ge=0, le=1024, description="Fewest draft tokens worth checking.",
        json_schema_extra=cli("--spec-draft-n-min", env="LLAMA_ARG_SPEC_DRAFT_N_MIN",
                              group=PERF, metavar="N"))
    spec_draft_p_min: float = Field(
        0.0, ge=0.0, le=1.0, description="A draft model's draft stops at a token it gives "
        "less than this probability.",
        json_schema_extra=cli("--spec-draft-p-min", "--draft-p-min",
                              env="LLAMA_ARG_SPEC_DRAFT_P_MIN", group=PERF, metavar="P"))

    @field_validator("spec_type", mode="before")
    @classmethod
    def _types(cls, value: Any) -> Any:
        names = split_list(value)
        if isinstance(names, list):
            known = ("none", *NGRAM_TYPES, *DRAFT_TYPES)
            unknown = [n for n in names if n not in known]
            if unknown:
                raise ValueError(f"unknown type {unknown[0]!r}; known: {', '.join(known)}")
        return names

    @field_validator("n_gpu_layers_draft", mode="before")
    @classmethod
    def _draft_all_layers(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() in ("all", "auto"):
            return -1
        return value

    @field_validator("threads_draft", "threads_batch_draft", mode="before")
    @classmethod
    def _draft_default_threads(cls, value: Any) -> Any:
        return None if value in (-1, "-1") else value

    @field_validator("model_draft")
    @classmethod
    def _draft_exists(cls, value: Path | None) -> Path | None:
        return existing_file(value)

    @property
    def ngram_speculation(self) -> bool:
        return any(t in NGRAM_TYPES for t in self.spec_type)

    @property
    def draft_speculation(self) -> bool:
        """A draft model drafts: given one, unless --spec-type names only n-gram drafting
        (or none)."""
        if self.model_draft is None:
            return False
        types = [t for t in self.spec_type if t != "none"]
        return not types or any(t in DRAFT_TYPES for t in types)
