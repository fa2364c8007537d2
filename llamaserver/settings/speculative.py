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

    @field_validator("model_draft")
    @classmethod
    def _draft_exists(cls, value: Path | None) -> Path | None:
        return existing_file(value)

    @property
    def ngram_speculation(self) -> bool:
        return any(t in NGRAM_TYPES for t in self.spec_type)
