"""``ChatTemplate``: renders chat messages into a prompt.

Chat templates ship inside model files, so they are untrusted code.  Jinja
sources are rendered in a bounded sandbox (``_template_sandbox``): a template
cannot loop, compute or allocate past the budgets in ``TemplateLimits``, and
each render runs in a thread of its own that is abandoned at its deadline
(``_interruptible``), so a hostile template costs one request its time, never
the server.  Any failure is a ``TemplateError``.  The names libllama knows
(``chatml``, ``llama3``, ...) are rendered by libllama itself.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import jinja2

from llama_ffi._errors import TemplateError
from llama_ffi._ffi import ffi, lib
from llama_ffi._interruptible import call_with_deadline
from llama_ffi._template_limits import RenderBudget, TemplateLimits
from llama_ffi._template_sandbox import MAX_MESSAGE_CHARS, BoundedSandbox

if TYPE_CHECKING:
    from llama_ffi._model import Model

DEFAULT_MAX_OUTPUT_CHARS = TemplateLimits.max_output_chars
DEFAULT_TIMEOUT_S = TemplateLimits.timeout
FALLBACK_TEMPLATE = "chatml"
_TEMPLATE_NAME = re.compile(r"[\w.\-]{1,128}")
# Variables render() sets itself, or that the environment defines: extra variables may not replace them.
_RESERVED = frozenset({"messages", "add_generation_prompt", "tools", "bos_token", "eos_token", "self",
                       "loop", "range", "dict", "namespace", "cycler", "joiner",
                       "raise_exception", "strftime_now"})


def builtin_template_names() -> list[str]:
    """Template names libllama renders without Jinja (``llama_chat_builtin_templates``)."""
    count = lib.llama_chat_builtin_templates(ffi.NULL, 0)
    names = ffi.new("const char *[]", max(count, 1))
    count = lib.llama_chat_builtin_templates(names, count)
    return [ffi.string(names[i]).decode() for i in range(count)]


def _short(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE_CHARS else text[:MAX_MESSAGE_CHARS] + "..."


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

    ``render`` raises ``TemplateError`` for anything that goes wrong, including a
    render past any of its budgets: ``timeout`` seconds (the render is abandoned),
    ``max_output_chars``, ``max_loop_iterations`` (every ``{% for %}`` iteration),
    ``max_int_digits``, ``max_value_size`` (any one value or operation, in bytes;
    default ``max_output_chars``) and ``max_total_size`` (all values built in one
    render; default 8 x ``max_value_size``).  ``render`` may be called from any
    number of threads at once.
    """

    def __init__(
        self,
        source: str,
        *,
        bos_token: str = "",
        eos_token: str = "",
        max_output_chars: int = DEFAULT_MAX_OUTPUT_CHARS,
        timeout: float = DEFAULT_TIMEOUT_S,
        max_loop_iterations: int = TemplateLimits.max_loop_iterations,
        max_int_digits: int = TemplateLimits.max_int_digits,
        max_value_size: int = 0,
        max_total_size: int = 0,
    ) -> None:
        if not isinstance(source, str):
            raise TemplateError("a chat template source must be a string")
        self._describe(source, None, bos_token, eos_token, TemplateLimits(
            timeout=timeout, max_output_chars=max_output_chars,
            max_loop_iterations=max_loop_iterations, max_int_digits=max_int_digits,
            max_value_size=max_value_size, max_total_size=max_total_size))
        self._env = BoundedSandbox()
        try:
            self._template = self._env.from_string(source)
        except jinja2.TemplateError as exc:
            raise TemplateError(_short(f"invalid chat template: {exc}")) from exc
        except RecursionError as exc:
            raise TemplateError("chat template nests too deeply") from exc
        except (ValueError, MemoryError, OverflowError) as exc:  # e.g. an integer literal too long to parse
            raise TemplateError(_short(f"invalid chat template: {exc}")) from exc

    @classmethod
    def builtin(cls, name: str, *, bos_token: str = "", eos_token: str = "") -> ChatTemplate:
        """One of ``builtin_template_names()``, rendered by ``llama_chat_apply_template``."""
        if name not in builtin_template_names():
            raise TemplateError(f"unknown built-in chat template {name!r}")
        return cls._libllama(name, name, bos_token, eos_token)

    @classmethod
    def _libllama(cls, source: str, name: str, bos_token: str, eos_token: str) -> ChatTemplate:
        self = cls.__new__(cls)
        self._describe(source, name, bos_token, eos_token, TemplateLimits())
        return self

    def _describe(self, source: str, name: str | None, bos_token: str, eos_token: str,
                  limits: TemplateLimits) -> None:
        self.limits = limits
        self.source = source
        self.name = name  # the built-in name, for libllama-rendered templates
        self.bos_token, self.eos_token = bos_token, eos_token
        self._env: BoundedSandbox | None = None  # None: libllama renders it
        self._template: jinja2.Template | None = None

    @classmethod
    def from_model(cls, model: Model, override: str | None = None, *, jinja: bool = True,
                   **limits: Any) -> ChatTemplate:
        """The model's template, or ``override``: a built-in name, a template named in the model, or a Jinja source.

        A model without a template gets ``chatml``, as llama-server does.  ``limits`` are the
        constructor's budgets (``timeout=``, ``max_output_chars=``, ...) for a Jinja template.
        Without ``jinja`` (llama-server's ``--no-jinja``) a source is not run: libllama's own
        renderer recognizes the formats it knows from it, and ``TemplateError`` says it does not.
        """
        vocab = model.vocab
        bos = vocab.token_to_piece(vocab.bos, special=True).decode("utf-8", "replace") if vocab.bos >= 0 else ""
        eos = vocab.token_to_piece(vocab.eos, special=True).decode("utf-8", "replace") if vocab.eos >= 0 else ""
        if override and override in builtin_template_names():
            return cls.builtin(override, bos_token=bos, eos_token=eos)
        source = model.chat_template()
        if override and _TEMPLATE_NAME.fullmatch(override):
            source = model.chat_template(override)
            if source is None:
                raise TemplateError(f"unknown chat template {override!r}: not built in, not in the model")
        elif override:
            source = override
        if source is None:
            return cls.builtin(FALLBACK_TEMPLATE, bos_token=bos, eos_token=eos)
        if jinja:
            return cls(source, bos_token=bos, eos_token=eos, **limits)
        template = cls._libllama(source, "libllama", bos, eos)
        template.render([{"role": "user", "content": "test"}])  # a format libllama knows?
        return template

    @property
    def is_builtin(self) -> bool:
        return self.name is not None

    def __repr__(self) -> str:
        return f"<ChatTemplate {self.name or 'jinja'}>"

    def render(
        self,
        messages: Sequence[Mapping[str, Any]],
        /,
        *,
        add_generation_prompt: bool = True,
        tools: Sequence[Mapping[str, Any]] | None = None,
        variables: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> str:
        """The prompt for ``messages`` (each a mapping with ``role`` and ``content``).

        ``variables`` and ``kwargs`` are extra template variables (a request's
        ``chat_template_kwargs``, ``enable_thinking``, ...); a name ``render`` sets
        itself (``messages``, ``tools``, ``bos_token``, ...) is a ``TemplateError``.
        """
        if not isinstance(messages, Sequence) or isinstance(messages, (str, bytes)):
            raise TemplateError("messages must be a list of mappings")
        for message in messages:
            if not isinstance(message, Mapping):
                raise TemplateError("each message must be a mapping with 'role' and 'content'")
        extra = _extra_variables(variables, kwargs)
        if self.name is not None:
            if tools:
                raise TemplateError(f"the built-in template {self.name!r} cannot render tools")
            return self._render_builtin(messages, add_generation_prompt)
        return self._render_jinja(messages, add_generation_prompt, tools, extra)

    def _render_jinja(self, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool,
                      tools: Any, extra: dict[str, Any]) -> str:
        env, template, limits = self._env, self._template, self.limits
        assert env is not None and template is not None
        variables: dict[str, Any] = {
            **extra,
            "bos_token": self.bos_token,
            "eos_token": self.eos_token,
            "messages": list(messages),
            "add_generation_prompt": add_generation_prompt,
        }
        if tools is not None:
            variables["tools"] = list(tools)
        budget = RenderBudget(limits)

        def stop() -> None:
            budget.stopped = f"chat template took longer than {limits.timeout:g} s to render"

        try:
            return call_with_deadline(lambda: env.render(template, variables, budget), limits.timeout,
                                      name="chat-template-render", on_timeout=stop)
        except TimeoutError as exc:
            raise TemplateError(f"chat template took longer than {limits.timeout:g} s to render") from exc
        except TemplateError as exc:
            raise TemplateError(_short(str(exc))) from exc
        except jinja2.TemplateError as exc:
            raise TemplateError(_short(f"chat template failed: {exc}")) from exc
        except RecursionError as exc:
            raise TemplateError("chat template recursed too deeply") from exc
        except MemoryError as exc:
            raise TemplateError("chat template ran out of memory") from exc
        except Exception as exc:  # noqa: BLE001 - template code can raise anything
            raise TemplateError(_short(f"chat template failed: {type(exc).__name__}: {exc}")) from exc

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


def _extra_variables(variables: Mapping[str, Any] | None, kwargs: dict[str, Any]) -> dict[str, Any]:
    """``variables`` and ``kwargs`` as one dict; a reserved or non-string name is a ``TemplateError``."""
    if variables is not None and not isinstance(variables, Mapping):
        raise TemplateError("chat template variables must be a mapping of names to values")
    extra = {**(variables or {}), **kwargs}
    for name in extra:
        if not isinstance(name, str):
            raise TemplateError(f"chat template variable names must be strings, not {type(name).__name__}")
        if name in _RESERVED:
            raise TemplateError(f"{name!r} cannot be passed as a chat template variable: the template "
                                "already defines it")
    return extra
