"""A model's thinking: its tags, the template variables that switch it, its budget, its grammar.

Thinking models write their reasoning between tags (``<think>`` ... ``</think>``) before the
answer; some templates open the block themselves at the end of the generation prompt.  Which
tags a model uses is read from its chat template (``THINK_TAGS``).  The text is split into
reasoning and content by :class:`~llamaserver.http._think_split.ReasoningSplitter`; this module
holds what is decided before generation:

- ``enable_thinking`` and ``reasoning_effort`` in the template variables, with upstream's
  precedence (server ``--chat-template-kwargs`` and ``-rea``, then the request's
  ``chat_template_kwargs``, then ``reasoning_effort: "none"``);
- the thinking budget (``reasoning_budget``, ``--reasoning-budget``): a ``TokenBudget`` whose
  forced tokens are ``--reasoning-budget-message`` and the end tag;
- a grammar that lets the model think before the constrained answer, so that a tool call or
  a JSON answer does not begin inside the thinking block.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import AliasChoices, Field

from ..engine import TokenBudget
from .._json_grammar import gbnf_literal
from ._body import ApiModel, JsonInt
from ._errors import invalid

ReasoningFormat = Literal["auto", "none", "deepseek", "deepseek-legacy"]


@dataclass(frozen=True)
class ThinkTags:
    start: str
    end: str


# The thinking tags of the templates that declare some; the first pair found in a template's
# source wins (more specific spellings first: "<seed:think>" also contains "think>").
THINK_TAGS = (
    ThinkTags("<seed:think>", "</seed:think>"),
    ThinkTags("<think>", "</think>"),
    ThinkTags("<|START_THINKING|>", "<|END_THINKING|>"),
    ThinkTags("[THINK]", "[/THINK]"),
)


def think_tags(source: str) -> ThinkTags | None:
    """The tags a chat template's model thinks in, or None for a model that does not think."""
    for tags in THINK_TAGS:
        if tags.start in source and tags.end in source:
            return tags
    return None


def opens_thinking(tags: ThinkTags | None, generation_prompt: str) -> bool:
    """Whether the rendered prompt ends inside a thinking block the template opened."""
    return tags is not None and generation_prompt.rstrip().endswith(tags.start)


class ReasoningOptions(ApiModel):
    """A chat request's reasoning fields (upstream's names; the budget under all three)."""

    reasoning_format: ReasoningFormat | None = None
    reasoning_budget: JsonInt | None = Field(
        None, ge=-1, le=2**31 - 1,
        validation_alias=AliasChoices("reasoning_budget", "reasoning_budget_tokens",
                                      "thinking_budget_tokens"))
    reasoning_budget_message: str | None = None


def template_variables(server_kwargs: Mapping[str, Any], request_kwargs: Mapping[str, Any] | None,
                       reasoning_effort: str | None, thinks: bool) -> dict[str, Any]:
    """The extra variables of one rendering, as upstream merges them.

    ``server_kwargs`` are ``--chat-template-kwargs`` with ``-rea on|off`` already written as
    ``enable_thinking``; without either, ``enable_thinking`` is whether the template thinks
    at all.  The request's ``chat_template_kwargs`` come next, and ``reasoning_effort`` last:
    ``"none"`` turns thinking off, any other level is handed to the template.
    """
    variables = {"enable_thinking": thinks, **server_kwargs, **(request_kwargs or {})}
    if not isinstance(variables["enable_thinking"], bool):
        raise invalid("'enable_thinking' in 'chat_template_kwargs' must be a boolean")
    if reasoning_effort == "none":
        variables["enable_thinking"] = False
        variables.pop("reasoning_effort", None)
    elif reasoning_effort:
        variables["reasoning_effort"] = reasoning_effort
    return variables


def thinking_budget(vocab: Any, tags: ThinkTags | None, opened: bool, n: int,
                    message: str) -> TokenBudget | None:
    """The engine's budget for ``n`` thinking tokens (-1: none), or None when the model does
    not think.  When it runs out, ``message`` and the end tag are written in place of
    sampling, tokenized with special tokens parsed (the tags are special tokens in the models
    that have them)."""
    if tags is None or n < 0:
        return None
    forced = vocab.tokenize(message, add_special=False, parse_special=True) if message else []
    forced += vocab.tokenize(tags.end, add_special=False, parse_special=True)
    return TokenBudget(end=tags.end, n=n, forced=tuple(forced),
                       start=None if opened else tags.start)


# ---- grammars that leave room for thinking -----------------------------------------------

_ROOT = re.compile(r"(?<![\w-])root(?![\w-])")
_ANSWER = "chat-answer"


def with_thinking(grammar: str, tags: ThinkTags | None, opened: bool) -> str:
    """``grammar`` preceded by a thinking block: the rest of one the prompt opened, or an
    optional one of the model's own.  ``grammar`` must define ``root`` on its first line and
    use the name nowhere else (the grammars this server builds); others are kept as they are.
    """
    if tags is None:
        return grammar
    head, _, rest = grammar.partition("\n")
    top = head[len("root ::="):]
    if not head.startswith("root ::=") or _ROOT.search(top) or _ROOT.search(rest):
        return grammar
    body = f"{_ANSWER} ::={top}\n{rest}"
    gap = 'think-gap ::= [ \\t\\n]{0,4}'
    if opened:
        root = f"root ::= think-0 think-gap {_ANSWER}"
    else:
        root = f"root ::= ([ \\n]{{0,2}} {gbnf_literal(tags.start)} think-0 think-gap)? {_ANSWER}"
    return "\n".join([root, *_text_through(tags.end, "think"), gap, body])


def _text_through(end: str, prefix: str) -> list[str]:
    """Rules ``{prefix}-0 ...``: any text up to and including the first ``end``.

    The rules are the states of a matcher of ``end`` (how much of it the text ends with), so
    that ``end`` can only appear once, at the close: a thought cannot contain the end tag.
    """
    fail = [0] * len(end)
    k = 0
    for i in range(1, len(end)):
        while k and end[i] != end[k]:
            k = fail[k - 1]
        if end[i] == end[k]:
            k += 1
        fail[i] = k

    def step(state: int, char: str) -> int:
        while state and end[state] != char:
            state = fail[state - 1]
        return state + 1 if end[state] == char else 0

    rules = []
    for state in range(len(end)):
        targets = {c: t for c in sorted(set(end)) if (t := step(state, c))}
        alts = [gbnf_literal(c) if t == len(end) else f"{gbnf_literal(c)} {prefix}-{t}"
                for c, t in targets.items()]
        others = "".join(_class_char(c) for c in targets)
        alts.append(f"[^{others}] {prefix}-0")
        rules.append(f"{prefix}-{state} ::= " + " | ".join(alts))
    return rules


def _class_char(char: str) -> str:
    code = ord(char)
    return f"\\u{code:04X}" if code <= 0xFFFF else f"\\U{code:08X}"
