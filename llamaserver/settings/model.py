"""Which model is served, under which names, with which adapters."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from ._fields import MODEL, Group, cli, split_list

__all__ = ["ModelSettings"]


class ModelSettings(Group):
    model: Path | None = Field(
        None, description="Path of the GGUF model file. Default: the bundled default model "
        "(llama_ffi.default_model_path()).",
        json_schema_extra=cli("-m", "--model", env="LLAMA_ARG_MODEL", group=MODEL,
                              metavar="FNAME"))
    model_url: str | None = Field(
        None, description="Download the model from this URL (kept in the cache directory) "
        "when --model is not given.",
        json_schema_extra=cli("-mu", "--model-url", env="LLAMA_ARG_MODEL_URL", group=MODEL,
                              metavar="MODEL_URL"))
    hf_repo: str | None = Field(
        None, description="Hugging Face repository (user/name) to download the model from; "
        "use with --hf-file.",
        json_schema_extra=cli("-hf", "-hfr", "--hf-repo", env="LLAMA_ARG_HF_REPO", group=MODEL,
                              metavar="REPO"))
    hf_file: str | None = Field(
        None, description="File inside --hf-repo to download.",
        json_schema_extra=cli("-hff", "--hf-file", env="LLAMA_ARG_HF_FILE", group=MODEL,
                              metavar="FILE"))
    hf_token: str | None = Field(
        None, description="Hugging Face access token for gated repositories (never logged).",
        json_schema_extra=cli("-hft", "--hf-token", env="HF_TOKEN", group=MODEL,
                              metavar="TOKEN"))
    offline: bool = Field(
        False, description="Never touch the network: a model given by URL or repository must "
        "already be in the download cache.",
        json_schema_extra=cli("--offline", env="LLAMA_ARG_OFFLINE", group=MODEL))
    aliases: list[str] = Field(
        default_factory=list, description="Names of the model in API responses, "
        "comma-separated; the first is the one reported (default: the model file path). "
        "Python callers may also pass alias=...; settings.alias is the first name.",
        json_schema_extra=cli("-a", "--alias", env="LLAMA_ARG_ALIAS", group=MODEL,
                              metavar="NAME[,NAME...]"))
    tags: list[str] = Field(
        default_factory=list, description="Tags of the model, comma-separated (informational).",
        json_schema_extra=cli("--tags", env="LLAMA_ARG_TAGS", group=MODEL,
                              metavar="TAG[,TAG...]"))
    lora: list[Path] = Field(
        default_factory=list, description="LoRA adapter file to apply at scale 1 (repeatable, "
        "or comma-separated). GET/POST /lora-adapters list them and set their scales.",
        json_schema_extra=cli("--lora", group=MODEL, metavar="FNAME"))
    lora_scaled: list[tuple[Path, float]] = Field(
        default_factory=list, description="LoRA adapter with its scale, FNAME:SCALE "
        "(repeatable, or comma-separated).",
        json_schema_extra=cli("--lora-scaled", group=MODEL, metavar="FNAME:SCALE"))
    lora_init_without_apply: bool = Field(
        False, description="Load the LoRA adapters at scale 0; apply them later through "
        "POST /lora-adapters or a request's `lora` field.",
        json_schema_extra=cli("--lora-init-without-apply", group=MODEL))
    lora_base: Path | None = Field(
        None, description="Accepted for compatibility and ignored: libllama applies an adapter "
        "to the loaded model.",
        json_schema_extra=cli("--lora-base", group=MODEL, metavar="FNAME"))
    system_prompt_file: Path | None = Field(
        None, description="JSON file {\"prompt\", \"anti_prompt\", \"assistant_name\"} (or a "
        "plain text file) with the system prompt shared by all slots.",
        json_schema_extra=cli("-spf", "--system-prompt-file", group=MODEL, metavar="FNAME"))

    @model_validator(mode="before")
    @classmethod
    def _alias_keyword(cls, data: Any) -> Any:
        # ``alias`` is the seed's single name; ``aliases`` holds every name.  An explicit
        # ``alias`` (a keyword, or an override over a dumped settings) replaces the list.
        if isinstance(data, dict) and "alias" in data:
            data = dict(data)
            alias = data.pop("alias")
            data["aliases"] = [] if alias is None else alias
        return data

    @field_validator("aliases", "tags", mode="before")
    @classmethod
    def _name_list(cls, value: Any) -> Any:
        names = split_list(value)
        if isinstance(names, list):
            return list(dict.fromkeys(names))  # upstream keeps a set: each name once
        return names

    @field_validator("lora", mode="before")
    @classmethod
    def _path_list(cls, value: Any) -> Any:
        if isinstance(value, Path):
            value = str(value)
        if isinstance(value, list):
            value = [str(item) if isinstance(item, Path) else item for item in value]
        return split_list(value)

    @field_validator("lora_scaled", mode="before")
    @classmethod
    def _scaled_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            return value
        out: list[Any] = []
        for item in value:
            if not isinstance(item, str):
                out.append(item)
                continue
            for part in filter(None, item.split(",")):
                path, sep, scale = part.rpartition(":")
                if not sep or not path:
                    raise ValueError(f"{part!r} is not FNAME:SCALE")
                out.append((path, scale))
        return out

    @model_validator(mode="after")
    def _repo_and_file(self) -> "ModelSettings":
        if self.hf_file and not self.hf_repo:
            raise ValueError("--hf-file needs --hf-repo")
        return self

    @property
    def alias(self) -> str | None:
        """The name reported for the model: the first of ``aliases`` (None: the file path)."""
        return self.aliases[0] if self.aliases else None

    @alias.setter
    def alias(self, value: str | list[str] | None) -> None:
        self.aliases = [] if value is None else value  # type: ignore[assignment]
