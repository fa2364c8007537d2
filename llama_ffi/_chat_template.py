"""``ChatTemplate``: renders chat messages into a prompt.

Chat templates ship inside model files, so they are untrusted code.  Jinja
sources are rendered in ``jinja2.sandbox.ImmutableSandboxedEnvironment`` with a
wall-clock budget and a cap on the output (and on any string or list the
template builds on the way); any failure is a ``TemplateError``.  The names
libllama knows (``chatml``, ``llama3``, ...) are rendered by libllama itself.
"""

from __future__ import annotations

import json
import re
import threading
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import jinja2
import jinja2.ext
import jinja2.nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from llama_ffi._errors import TemplateError
from llama_ffi._ffi import ffi, lib

if TYPE_CHECKING:
    from llama_ffi._model import Model

DEFAULT_MAX_OUTPUT_CHARS = 8_000_000
DEFAULT_TIMEOUT_S = 5.0
FALLBACK_TEMPLATE = "chatml"
_TEMPLATE_NAME = re.compile(r"[\w.\-]{1,128}")


def builtin_template_names() -> list[str]:
    """Template names libllama renders without Jinja (``llama_chat_builtin_templates``)."""
    count = lib.llama_chat_builtin_templates(ffi.NULL, 0)
    names = ffi.new("const char *[]", max(count, 1))
    count = lib.llama_chat_builtin_templates(names, count)
    return [ffi.string(names[i]).decode() for i in range(count)]


class _RenderBudget(threading.local):
    deadline: float = 0.0
    max_chars: int = DEFAULT_MAX_OUTPUT_CHARS


def _size(value: Any) -> int:
    return len(value) if isinstance(value, (str, bytes, list, tuple, dict)) else 0


class _GenerationTag(jinja2.ext.Extension):
    """``{% generation %}...{% endgeneration %}`` (Hugging Face's marker for assistant text): renders its body."""

    tags = {"generation"}

    def parse(self, parser: Any) -> Any:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.Scope(body, lineno=lineno)


class _Sandbox(ImmutableSandboxedEnvironment):
    """The sandbox, plus checks on time and size wherever a template can loop or grow data."""

    intercepted_binops = frozenset(["*", "**"])

    def __init__(self) -> None:
        super().__init__(
            trim_blocks=True,
            lstrip_blocks=True,
            extensions=["jinja2.ext.loopcontrols", _GenerationTag],
            autoescape=False,
        )
        self.budget = _RenderBudget()
        self.globals["raise_exception"] = _raise_exception
        self.globals["strftime_now"] = _strftime_now
        self.filters["tojson"] = _tojson

    def _check(self, value: Any = None) -> Any:
        budget = self.budget
        if budget.deadline and time.monotonic() > budget.deadline:
            raise TemplateError("chat template took too long to render")
        if _size(value) > budget.max_chars:
            raise TemplateError("chat template built a value larger than the output limit")
        return value

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        __self._check()
        for arg in (*args, *kwargs.values()):
            __self._check(arg)
        return __self._check(super().call(__context, __obj, *args, **kwargs))

    def getattr(self, obj: Any, attribute: str) -> Any:
        return self._check(super().getattr(obj, attribute))

    def getitem(self, obj: Any, argument: Any) -> Any:
        return self._check(super().getitem(obj, argument))

    def call_filter(self, name: str, value: Any, args: Any = None, kwargs: Any = None, context: Any = None,
                    eval_ctx: Any = None) -> Any:
        self._check()
        return self._check(super().call_filter(name, value, args, kwargs, context, eval_ctx))

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        self._check()
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if _size(seq) and isinstance(times, int) and _size(seq) * times > self.budget.max_chars:
                    raise TemplateError("chat template built a value larger than the output limit")
        elif operator == "**" and isinstance(right, (int, float)) and abs(right) > 1024:
            raise TemplateError("exponent too large in chat template")
        return self._check(super().call_binop(context, operator, left, right))


def _raise_exception(message: str) -> None:
    raise TemplateError(f"chat template raised: {message}")


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


def _tojson(value: Any, indent: int | None = None, separators: Any = None, sort_keys: bool = False,
            ensure_ascii: bool = False) -> str:
    # Hugging Face's tojson: plain JSON, no HTML escaping, non-ASCII kept
    return json.dumps(value, indent=indent, separators=tuple(separators) if separators else None,
                      sort_keys=sort_keys, ensure_ascii=ensure_ascii)


def _text_content(content: Any) -> str:
    """Message content as one string (OpenAI-style lists of parts keep their text parts)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, Mapping) and part.get("type") == "text" and isinstance(part.get("text"), str):
                parts.append(part["text"])
            elif isinstance(part, str):
                parts.append(part)
        return "".join(parts)
    raise TemplateError(f"message content must be a string or a list of parts, not {type(content).__name__}")


class ChatTemplate:
    """A chat template: a Jinja source (sandboxed) or one of libllama's built-in names.

    ``render`` raises ``TemplateError`` for anything that goes wrong, including
    a render that exceeds ``timeout`` seconds or ``max_output_chars`` characters.
    """

    def __init__(
        self,
        source: str,
        *,
        bos_token: str = "",
        eos_token: str = "",
        max_output_chars: int = DEFAULT_MAX_OUTPUT_CHARS,
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        if not isinstance(source, str):
            raise TemplateError("a chat template source must be a string")
        self.source = source
        self.name: str | None = None  # the built-in name, for libllama-rendered templates
        self.bos_token = bos_token
        self.eos_token = eos_token
        self.max_output_chars = max_output_chars
        self.timeout = timeout
        self._env: _Sandbox | None = None
        self._template: jinja2.Template | None = None
        try:
            self._env = _Sandbox()
            self._template = self._env.from_string(source)
        except jinja2.TemplateError as exc:
            raise TemplateError(f"invalid chat template: {exc}") from exc
        except RecursionError as exc:
            raise TemplateError("chat template nests too deeply") from exc

    @classmethod
    def builtin(cls, name: str, *, bos_token: str = "", eos_token: str = "") -> ChatTemplate:
        """One of ``builtin_template_names()``, rendered by ``llama_chat_apply_template``."""
        if name not in builtin_template_names():
            raise TemplateError(f"unknown built-in chat template {name!r}")
        self = cls.__new__(cls)
        self.source = name
        self.name = name
        self.bos_token = bos_token
        self.eos_token = eos_token
        self.max_output_chars = DEFAULT_MAX_OUTPUT_CHARS
        self.timeout = DEFAULT_TIMEOUT_S
        self._env = None
        self._template = None
        return self

    @classmethod
    def from_model(cls, model: Model, override: str | None = None) -> ChatTemplate:
        """The model's template, or ``override``: a built-in name, a template named in the model, or a Jinja source.

        A model without a template gets ``chatml``, as llama-server does.
        """
        vocab = model.vocab
        bos = vocab.token_to_piece(vocab.bos, special=True).decode("utf-8", "replace") if vocab.bos >= 0 else ""
        eos = vocab.token_to_piece(vocab.eos, special=True).decode("utf-8", "replace") if vocab.eos >= 0 else ""
        if override:
            if override in builtin_template_names():
                return cls.builtin(override, bos_token=bos, eos_token=eos)
            if _TEMPLATE_NAME.fullmatch(override):
                named = model.chat_template(override)
                if named is None:
                    raise TemplateError(f"unknown chat template {override!r}: not built in, not in the model")
                return cls(named, bos_token=bos, eos_token=eos)
            return cls(override, bos_token=bos, eos_token=eos)
        source = model.chat_template()
        if source is None:
            return cls.builtin(FALLBACK_TEMPLATE, bos_token=bos, eos_token=eos)
        return cls(source, bos_token=bos, eos_token=eos)

    @property
    def is_builtin(self) -> bool:
        return self.name is not None

    def __repr__(self) -> str:
        return f"<ChatTemplate {self.name or 'jinja'}>"

    def render(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        add_generation_prompt: bool = True,
        tools: Sequence[Mapping[str, Any]] | None = None,
        **kwargs: Any,
    ) -> str:
        """The prompt for ``messages`` (each a mapping with ``role`` and ``content``)."""
        if not isinstance(messages, Sequence) or isinstance(messages, (str, bytes)):
            raise TemplateError("messages must be a list of mappings")
        for message in messages:
            if not isinstance(message, Mapping):
                raise TemplateError("each message must be a mapping with 'role' and 'content'")
        if self.name is not None:
            if tools:
                raise TemplateError(f"the built-in template {self.name!r} cannot render tools")
            return self._render_builtin(messages, add_generation_prompt)
        return self._render_jinja(messages, add_generation_prompt, tools, kwargs)

    def _render_jinja(self, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool,
                      tools: Any, kwargs: dict[str, Any]) -> str:
        assert self._env is not None and self._template is not None
        variables: dict[str, Any] = {
            "bos_token": self.bos_token,
            "eos_token": self.eos_token,
            **kwargs,
            "messages": list(messages),
            "add_generation_prompt": add_generation_prompt,
        }
        if tools is not None:
            variables["tools"] = list(tools)
        budget = self._env.budget
        budget.deadline = time.monotonic() + self.timeout
        budget.max_chars = self.max_output_chars
        chunks: list[str] = []
        total = 0
        try:
            for chunk in self._template.generate(**variables):
                total += len(chunk)
                if total > self.max_output_chars:
                    raise TemplateError(f"chat template output exceeds {self.max_output_chars} characters")
                if time.monotonic() > budget.deadline:
                    raise TemplateError("chat template took too long to render")
                chunks.append(chunk)
        except TemplateError:
            raise
        except jinja2.TemplateError as exc:
            raise TemplateError(f"chat template failed: {exc}") from exc
        except RecursionError as exc:
            raise TemplateError("chat template recursed too deeply") from exc
        except Exception as exc:  # noqa: BLE001 - template code can raise anything
            raise TemplateError(f"chat template failed: {type(exc).__name__}: {exc}") from exc
        finally:
            budget.deadline = 0.0
        return "".join(chunks)

    def _render_builtin(self, messages: Iterable[Mapping[str, Any]], add_generation_prompt: bool) -> str:
        keep: list[Any] = []
        entries = []
        for message in messages:
            role = ffi.new("char[]", str(message.get("role", "")).encode("utf-8"))
            content = ffi.new("char[]", _text_content(message.get("content")).encode("utf-8"))
            keep += (role, content)
            entries.append((role, content))
        chat = ffi.new("struct llama_chat_message[]", entries) if entries else ffi.NULL
        name = self.source.encode("utf-8")
        size = 1024 + 2 * sum(len(ffi.string(c)) for _, c in entries)
        while True:
            buf = ffi.new("char[]", size)
            n = lib.llama_chat_apply_template(name, chat, len(entries), add_generation_prompt, buf, size)
            if n < 0:
                raise TemplateError(f"libllama could not apply the chat template {self.source!r}")
            if n < size:
                return ffi.unpack(buf, n).decode("utf-8", "replace")
            size = n + 1
