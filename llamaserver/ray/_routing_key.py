"""What the router knows of a request: hashes of its prompt's leading parts.

A replica's prompt cache holds token prefixes.  The ingress has no tokenizer and renders no
template, so it approximates them by the request's text, cut into parts whose hashes each
cover every part before them: two requests share their first ``k`` hashes exactly when they
share their first ``k`` parts.

- A chat is cut at its messages (role and content each).  A conversation's next turn is the
  turn before plus an answer and a question, so it starts with all of that turn's hashes;
  two conversations that share a system prompt share only its hash.
- A prompt (``/completion``, ``/v1/completions``, ``/infill``) is cut into blocks of
  ``BLOCK_CHARS`` characters; a partial last block is left out (``whole`` says whether the
  last hash covers the whole prompt).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from typing import Any

__all__ = ["BLOCK_CHARS", "MAX_BLOCKS", "ROUTED_PATHS", "RoutingKey", "block_hashes", "routing_key"]

BLOCK_CHARS = 128
MAX_BLOCKS = 512            # the first 512 parts decide (64 Ki characters of a prompt)
_CHAT_PATHS = frozenset({"/v1/chat/completions", "/chat/completions"})
_PROMPT_PATHS = frozenset({"/completion", "/completions", "/v1/completions", "/infill"})
ROUTED_PATHS = _CHAT_PATHS | _PROMPT_PATHS


@dataclasses.dataclass(frozen=True)
class RoutingKey:
    """``blocks``: cumulative 8-byte hashes (empty: nothing to go by); ``whole``: the last one
    covers the whole request; ``avoid``: replica ids a retry must not go back to."""

    blocks: tuple[bytes, ...] = ()
    whole: bool = False
    avoid: tuple[str, ...] = ()

    def retry_avoiding(self, replica_id: str | None) -> RoutingKey:
        return dataclasses.replace(self, avoid=self.avoid + ((replica_id,) if replica_id else ()))


def _part_text(part: Any) -> str:
    if isinstance(part, str):
        return part
    if isinstance(part, Mapping):
        if isinstance(part.get("text"), str):
            return part["text"]
        # an image or audio part: the same media give the same text
        return json.dumps(part, sort_keys=True, default=str)
    return ""


def _chain(parts: list[bytes]) -> tuple[bytes, ...]:
    hashes = []
    previous = b""
    for part in parts[:MAX_BLOCKS]:
        previous = hashlib.blake2b(previous + part, digest_size=8).digest()
        hashes.append(previous)
    return tuple(hashes)


def _chat_key(messages: Any) -> RoutingKey:
    if not isinstance(messages, list):
        return RoutingKey()
    parts = []
    for message in messages:
        if isinstance(message, Mapping):
            content = message.get("content")
            text = "".join(_part_text(p) for p in (content if isinstance(content, list) else [content]))
            parts.append(f"{message.get('role', '')}\n{text}".encode("utf-8", "surrogatepass"))
    return RoutingKey(_chain(parts), whole=bool(parts))


def _prompt_text(prompt: Any) -> str:
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, Mapping):          # upstream's {"prompt_string", "multimodal_data"}
        return _prompt_text(prompt.get("prompt_string", ""))
    if isinstance(prompt, list) and prompt:
        if isinstance(prompt[0], (str, list, Mapping)):
            return _prompt_text(prompt[0])   # several prompts go to one replica: the first decides
        return " ".join(str(t) for t in prompt)   # token ids (and mixed lists) as text
    return ""


def block_hashes(text: str) -> tuple[bytes, ...]:
    """One hash per complete block of ``text`` (a partial last block is left out)."""
    n = min(len(text) // BLOCK_CHARS, MAX_BLOCKS)
    return _chain([text[i * BLOCK_CHARS:(i + 1) * BLOCK_CHARS].encode("utf-8", "surrogatepass")
                   for i in range(n)])


def routing_key(path: str, body: Any) -> RoutingKey:
    """The key of a request to ``path`` with JSON ``body`` (empty when there is nothing to go
    by: another route, a body that is not an object)."""
    if not isinstance(body, Mapping):
        return RoutingKey()
    if path in _CHAT_PATHS:
        return _chat_key(body.get("messages"))
    if path in _PROMPT_PATHS:
        text = _prompt_text(body.get("prompt", body.get("input_prefix", "")))
        return RoutingKey(block_hashes(text), whole=bool(text) and len(text) % BLOCK_CHARS == 0)
    return RoutingKey()
