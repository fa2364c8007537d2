"""How chat messages become a prompt, and what happens to a model's reasoning."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any, Literal

from pydantic import field_validator

from ._fields import CHAT, AutoSwitch, Group, JsonObject, option

__all__ = ["ChatSettings"]

_opt = partial(option, group=CHAT)


class ChatSettings(Group):
    chat_template: str | None = _opt(
        "--chat-template", env="LLAMA_ARG_CHAT_TEMPLATE", default=None, metavar="JINJA_TEMPLATE")
    """Chat template: a built-in name (chatml, llama3, ...) or Jinja source. Default: the template
    stored in the model."""
    chat_template_file: Path | None = _opt(
        "--chat-template-file", env="LLAMA_ARG_CHAT_TEMPLATE_FILE", default=None, metavar="FNAME")
    """Read the chat template (Jinja source) from this file."""
    jinja: bool = _opt("--jinja", env="LLAMA_ARG_JINJA", negative=("--no-jinja",), default=True)
    """Render chat templates as Jinja (in a sandbox); off: only the built-in templates libllama
    knows by name."""
    chat_template_kwargs: JsonObject = _opt(
        "--chat-template-kwargs", env="LLAMA_ARG_CHAT_TEMPLATE_KWARGS", default_factory=dict,
        metavar="JSON")
    """Extra variables for every chat template rendering, as a JSON object (e.g.
    '{"enable_thinking": false}'); a request's own chat_template_kwargs add to them."""
    reasoning_format: Literal["auto", "none", "deepseek", "deepseek-legacy"] = _opt(
        "--reasoning-format", env="LLAMA_ARG_THINK", default="auto", metavar="FORMAT")
    """Where a model's thinking goes: none (left in the content), deepseek (moved to
    reasoning_content), deepseek-legacy (both), auto (as the template suggests)."""
    reasoning: AutoSwitch = _opt(
        "-rea", "--reasoning", env="LLAMA_ARG_REASONING", default="auto", metavar="on|off|auto")
    """Ask the model to think (on), not to (off), or leave it to the template (auto); on/off set the
    template variable enable_thinking."""
    reasoning_effort: str | None = _opt(
        "--reasoning-effort", env="LLAMA_ARG_REASONING_EFFORT", default=None, metavar="LEVEL")
    """Reasoning effort handed to the template as reasoning_effort (minimal, low, medium, high,
    ...); 'default' or unset: the template's own."""
    reasoning_budget: int = _opt(
        "--reasoning-budget", env="LLAMA_ARG_THINK_BUDGET", default=-1, ge=-1, le=2**31 - 1,
        metavar="N")
    """Tokens the model may think for: -1 unlimited, 0 ends thinking at once."""
    reasoning_budget_message: str | None = _opt(
        "--reasoning-budget-message", env="LLAMA_ARG_THINK_BUDGET_MESSAGE", default=None,
        metavar="MESSAGE")
    """Text inserted before the end of thinking when the budget runs out."""
    reasoning_preserve: bool = _opt(
        "--reasoning-preserve", env="LLAMA_ARG_REASONING_PRESERVE",
        negative=("--no-reasoning-preserve",), default=True)
    """Keep earlier assistant turns' reasoning in the rendered history (for templates that support
    it), not only the last one's."""
    skip_chat_parsing: bool = _opt(
        "--skip-chat-parsing", env="LLAMA_ARG_SKIP_CHAT_PARSING",
        negative=("--no-skip-chat-parsing",), default=False)
    """Return everything the model writes as content: no reasoning or tool-call parsing of chat
    answers."""
    prefill_assistant: bool = _opt(
        "--prefill-assistant", env="LLAMA_ARG_PREFILL_ASSISTANT",
        negative=("--no-prefill-assistant",), default=True)
    """A chat ending in an assistant message is continued from that message; off: it counts as a
    finished turn."""

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
