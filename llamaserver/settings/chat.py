"""How chat messages become a prompt, and what happens to a model's reasoning."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from ._fields import CHAT, Group, cli, to_switch

__all__ = ["ChatSettings"]


class ChatSettings(Group):
    chat_template: str | None = Field(
        None, description="Chat template: a built-in name (chatml, llama3, ...) or Jinja "
        "source. Default: the template stored in the model.",
        json_schema_extra=cli("--chat-template", env="LLAMA_ARG_CHAT_TEMPLATE", group=CHAT,
                              metavar="JINJA_TEMPLATE"))
    chat_template_file: Path | None = Field(
        None, description="Read the chat template (Jinja source) from this file.",
        json_schema_extra=cli("--chat-template-file", env="LLAMA_ARG_CHAT_TEMPLATE_FILE",
                              group=CHAT, metavar="FNAME"))
    jinja: bool = Field(
        True, description="Render chat templates as Jinja (in a sandbox); off: only the "
        "built-in templates libllama knows by name.",
        json_schema_extra=cli("--jinja", negative=("--no-jinja",), env="LLAMA_ARG_JINJA",
                              group=CHAT))
    chat_template_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Extra variables for every chat template "
        "rendering, as a JSON object (e.g. '{\"enable_thinking\": false}'); a request's own "
        "chat_template_kwargs add to them.",
        json_schema_extra=cli("--chat-template-kwargs", env="LLAMA_ARG_CHAT_TEMPLATE_KWARGS",
                              group=CHAT, metavar="JSON"))
    reasoning_format: Literal["auto", "none", "deepseek", "deepseek-legacy"] = Field(
        "auto", description="Where a model's thinking goes: none (left in the content), "
        "deepseek (moved to reasoning_content), deepseek-legacy (both), auto (as the template "
        "suggests).",
        json_schema_extra=cli("--reasoning-format", env="LLAMA_ARG_THINK", group=CHAT,
                              metavar="FORMAT"))
    reasoning: Literal["on", "off", "auto"] = Field(
        "auto", description="Ask the model to think (on), not to (off), or leave it to the "
        "template (auto); on/off set the template variable enable_thinking.",
        json_schema_extra=cli("-rea", "--reasoning", env="LLAMA_ARG_REASONING", group=CHAT,
                              metavar="on|off|auto"))
    reasoning_effort: str | None = Field(
        None, description="Reasoning effort handed to the template as reasoning_effort "
        "(minimal, low, medium, high, ...); 'default' or unset: the template's own.",
        json_schema_extra=cli("--reasoning-effort", env="LLAMA_ARG_REASONING_EFFORT",
                              group=CHAT, metavar="LEVEL"))
    reasoning_budget: int = Field(
        -1, ge=-1, le=2**31 - 1, description="Tokens the model may think for: -1 unlimited, "
        "0 ends thinking at once.",
        json_schema_extra=cli("--reasoning-budget", env="LLAMA_ARG_THINK_BUDGET", group=CHAT,
                              metavar="N"))
    reasoning_budget_message: str | None = Field(
        None, description="Text inserted before the end of thinking when the budget runs out.",
        json_schema_extra=cli("--reasoning-budget-message",
                              env="LLAMA_ARG_THINK_BUDGET_MESSAGE", group=CHAT,
                              metavar="MESSAGE"))
    reasoning_preserve: bool = Field(
        True, description="Keep earlier assistant turns' reasoning in the rendered history "
        "(for templates that support it), not only the last one's.",
        json_schema_extra=cli("--reasoning-preserve", negative=("--no-reasoning-preserve",),
                              env="LLAMA_ARG_REASONING_PRESERVE", group=CHAT))
    skip_chat_parsing: bool = Field(
        False, description="Return everything the model writes as content: no reasoning or "
        "tool-call parsing of chat answers.",
        json_schema_extra=cli("--skip-chat-parsing", negative=("--no-skip-chat-parsing",),
                              env="LLAMA_ARG_SKIP_CHAT_PARSING", group=CHAT))
    prefill_assistant: bool = Field(
        True, description="A chat ending in an assistant message is continued from that "
        "message; off: it counts as a finished turn.",
        json_schema_extra=cli("--prefill-assistant", negative=("--no-prefill-assistant",),
                              env="LLAMA_ARG_PREFILL_ASSISTANT", group=CHAT))

    @field_validator("chat_template_kwargs", mode="before")
    @classmethod
    def _json_object(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError as exc:
                raise ValueError(f"not valid JSON ({exc})") from None
            if not isinstance(value, dict):
                raise ValueError("must be a JSON object")
        return value

    @field_validator("reasoning", mode="before")
    @classmethod
    def _reasoning_switch(cls, value: Any) -> Any:
        return to_switch(value, auto=True)

    @field_validator("reasoning_effort")
    @classmethod
    def _effort(cls, value: str | None) -> str | None:
        value = value.strip() if value is not None else None
        return None if not value or value == "default" else value

    def template_kwargs(self) -> dict[str, Any]:
        """The variables every chat template rendering gets: --chat-template-kwargs, with
        --reasoning on/off as enable_thinking and --reasoning-effort as reasoning_effort
        (the dedicated flags win over the same keys in the JSON)."""
        kwargs = dict(self.chat_template_kwargs)
        if self.reasoning != "auto":
            kwargs["enable_thinking"] = self.reasoning == "on"
        if self.reasoning_effort is not None:
            kwargs["reasoning_effort"] = self.reasoning_effort
        return kwargs
