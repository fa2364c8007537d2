"""The prompt forms llama-server accepts, split into one entry per prompt.

One prompt is a string, token ids, a mix of both (``[12, 34, "text", 56]``), or an object
``{"prompt_string": ..., "multimodal_data": [base64, ...]}``.  An array that holds no token id
at its top level is several prompts, each in one of those forms (``["a", [1, 2], {...}]``);
an array with a token id at its top level is one prompt.  The same rule serves /completion,
/v1/completions and the embedding endpoints, as in upstream.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ._errors import invalid

__all__ = ["PromptInput", "split_prompts"]


@dataclass(frozen=True)
class PromptInput:
    value: str | list[int | str]          # text, or token ids and text mixed
    # the media for the text's markers: base64 as sent, bytes once decoded (_media)
    media: list[Any] = field(default_factory=list)


def _is_id(item: Any) -> bool:
    return isinstance(item, int) and not isinstance(item, bool)


def _one(item: Any, name: str) -> PromptInput:
    if isinstance(item, str):
        return PromptInput(item)
    if isinstance(item, list):
        if not item:
            raise invalid(f"'{name}' must not hold an empty array")
        if not all(_is_id(t) or isinstance(t, str) for t in item):
            raise invalid(f"'{name}' arrays must hold token ids and strings only")
        return PromptInput(list(item))
    if isinstance(item, dict) and "prompt_string" in item:
        text = item["prompt_string"]
        media = item.get("multimodal_data", [])
        if not isinstance(text, (str, list)) or isinstance(text, list) and not all(
                _is_id(t) or isinstance(t, str) for t in text):
            raise invalid(f"'{name}.prompt_string' must be a string or token ids and strings")
        if not isinstance(media, list) or not all(isinstance(m, str) for m in media):
            raise invalid(f"'{name}.multimodal_data' must be an array of base64 strings")
        return PromptInput(text if isinstance(text, str) else list(text), list(media))
    raise invalid(f"'{name}' elements must be a string, token ids, a mix of both, or "
                  "{\"prompt_string\": ..., \"multimodal_data\": [...]}")


def split_prompts(value: Any, name: str = "prompt") -> list[PromptInput]:
    """Every prompt of a request's ``prompt`` (or ``input``/``content``) field; 400s."""
    if isinstance(value, list):
        if not value:
            raise invalid(f"'{name}' must not be empty")
        if not any(_is_id(item) for item in value):
            return [_one(item, name) for item in value]
    return [_one(value, name)]
