"""The Jinja environment chat templates render in: immutable sandbox, every costly hook bounded.

On top of ``ImmutableSandboxedEnvironment``:

- the code generator routes each ``{% for %}`` iterable (and each recursive
  ``loop(...)`` call) through a counting wrapper, so every iteration of every
  loop counts, empty bodies and filtered-out items included; ``~`` and list,
  tuple and dict literals go through size checks too;
- every binary operator is intercepted (``call_binop``): big integers, string
  and list repeats, ``%`` formatting are sized before they run;
- every filter is wrapped: sized before it runs when its size is predictable
  from its arguments (``center``, ``indent``, ``join``, ``format`` ...), admitted
  after, and each item a filter's generator yields (``map``, ``batch`` ...)
  counts as a loop iteration; wrapped filters take the context, which also
  stops Jinja from running them at compile time, outside any budget;
- calls of str/bytes/int methods are sized the same way, ``str.format`` runs
  through a formatter that sizes each field, and block/macro output is joined
  by a bounded ``concat``;
- ``lipsum`` and ``urlize`` are gone (text generators and a regex over
  unbounded words have no place in a prompt); ``namespace`` objects print
  without their contents.

The budget of the render in progress is per thread (``RenderBudget``); each
render runs in its own thread (see ``_interruptible``).
"""

from __future__ import annotations

import json
import math
import re
import threading
import types
from collections.abc import Sized
from datetime import datetime
from typing import Any, Callable

import jinja2.ext
import jinja2.nodes as nodes
from jinja2.compiler import CodeGenerator, Frame, optimizeconst
from jinja2.filters import make_attrgetter, sync_do_join
from jinja2.runtime import LoopContext, Macro, markup_join, str_join
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedFormatter
from jinja2.utils import Namespace, _PassArg, pass_context
from markupsafe import EscapeFormatter, Markup

from llama_ffi._errors import TemplateError
from llama_ffi._template_estimates import (
    FILTERS, INT_METHODS, TEXT_METHODS, Estimator, format_spec_size, join_size, printf_size, sum_size, text_size,
)
from llama_ffi._template_limits import RenderBudget

MAX_MESSAGE_CHARS = 1000  # of an error a template raises: it goes back to the client
_STRFTIME_MAX = 256  # strftime grows its buffer up to 256 x the format's length
_JSON_INDENT_MAX = 64
_WORD = re.compile(r"\w+")
_METHODS = (types.BuiltinMethodType, types.MethodType)
_LOOKUP_METHODS = frozenset({"get", "items", "keys", "values", "index", "count", "find", "rfind"})


# Jinja has no custom nodes: the count is a filter, under a name no template can spell.
_COUNTED = "counted iteration"


class _BoundedCodeGenerator(CodeGenerator):
    def visit_Template(self, node: nodes.Template, frame: Frame | None = None) -> None:
        # Before any code is written: Jinja collects the filters a template uses up front.
        for loop in node.find_all(nodes.For):
            loop.iter = nodes.Filter(loop.iter, _COUNTED, [], [], None, None, lineno=loop.iter.lineno)
        super().visit_Template(node, frame)

    @optimizeconst
    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.bounded_concat((")
        for part in node.nodes:
            self.visit(part, frame)
            self.write(", ")
        if frame.eval_ctx.volatile:
            self.write("), context.eval_ctx.autoescape)")
        else:
            self.write(f"), {bool(frame.eval_ctx.autoescape)})")

    def visit_List(self, node: nodes.List, frame: Frame) -> None:
        self.write("environment.admit_literal(")
        super().visit_List(node, frame)
        self.write(")")

    def visit_Dict(self, node: nodes.Dict, frame: Frame) -> None:
        self.write("environment.admit_literal(")
        super().visit_Dict(node, frame)
        self.write(")")

    def visit_Tuple(self, node: nodes.Tuple, frame: Frame) -> None:
        if node.ctx != "load":  # an assignment target: nothing is built
            super().visit_Tuple(node, frame)
            return
        self.write("environment.admit_literal(")
        super().visit_Tuple(node, frame)
        self.write(")")


class _CountedIterable:
    """An iterable whose every item costs one loop iteration; sized when the original is."""

    __slots__ = ("_iterable", "_budget")

    def __init__(self, iterable: Any, budget: RenderBudget) -> None:
        self._iterable = iterable
        self._budget = budget

    def __len__(self) -> int:
        return len(self._iterable)  # a TypeError for generators: LoopContext then counts by itself

    def __iter__(self) -> Any:
        count = self._budget.count_loops
        for item in self._iterable:
            count()
            yield item


class _Namespace(Namespace):
    """``namespace()``: prints without its contents, so nothing walks what it holds."""

    def __repr__(self) -> str:
        return "<Namespace>"


class _GenerationTag(jinja2.ext.Extension):
    """``{% generation %}...{% endgeneration %}`` (Hugging Face's marker for assistant text): renders its body."""

    tags = {"generation"}

    def parse(self, parser: Any) -> Any:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.Scope(body, lineno=lineno)


class _BoundedFormatter(SandboxedFormatter):
    """``str.format``: each field is sized (value and every width/precision) before it is formatted."""

    _made = 0

    def vformat(self, format_string: str, args: Any, kwargs: Any) -> str:
        self._made = len(format_string)
        return super().vformat(format_string, args, kwargs)

    def format_field(self, value: Any, format_spec: str) -> Any:
        budget = self._env.budget()  # type: ignore[attr-defined]
        self._made += format_spec_size(budget, value, format_spec)
        budget.expect(self._made, "str.format")
        return super().format_field(value, format_spec)


class _BoundedEscapeFormatter(_BoundedFormatter, EscapeFormatter):
    pass


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """The environment; ``render`` is the only way in, and needs the render's ``RenderBudget``."""

    code_generator_class = _BoundedCodeGenerator
    intercepted_binops = frozenset(["+", "-", "*", "/", "//", "%", "**"])

    def __init__(self) -> None:
        super().__init__(trim_blocks=True, lstrip_blocks=True, autoescape=False,
                         extensions=["jinja2.ext.loopcontrols", _GenerationTag])
        self._local = threading.local()  # .budget: the render in progress on this thread
        self.globals.pop("lipsum", None)
        self.globals.update(namespace=_Namespace, raise_exception=_raise_exception, strftime_now=_strftime_now)
        filters = {name: _bounded(name, fn, FILTERS.get(name))
                   for name, fn in self.filters.items() if name != "urlize"}
        filters.update({"join": _join, "sum": _sum, "tojson": _tojson, "wordcount": _wordcount,
                        _COUNTED: _counted_iter})
        self.filters = filters

    def budget(self) -> RenderBudget:
        budget: RenderBudget | None = getattr(self._local, "budget", None)
        if budget is None:
            raise TemplateError("chat templates render only through ChatTemplate.render")
        return budget

    def render(self, template: jinja2.Template, variables: dict[str, Any], budget: RenderBudget) -> str:
        """Render on this thread under ``budget``; limits and template errors raise as they are."""
        self._local.budget = budget
        try:
            limit = budget.limits.max_output_chars
            chunks: list[str] = []
            total = 0
            for chunk in template.generate(variables):
                total += len(chunk)
                if total > limit:
                    budget.fail(f"chat template output exceeds {limit:,} characters")
                chunks.append(chunk)
            if budget.violation is not None:  # broken, then swallowed by code that caught it
                raise TemplateError(budget.violation)
            return "".join(chunks)
        finally:
            self._local.budget = None

    # -- hooks in the compiled templates

    def admit_literal(self, value: Any) -> Any:
        return self.budget().admit(value)

    def bounded_concat(self, parts: tuple[Any, ...], markup: bool) -> str:
        budget = self.budget()
        budget.expect(sum(text_size(budget, part) for part in parts), "'~'")
        return budget.admit(markup_join(parts) if markup else str_join(parts))  # type: ignore[no-any-return]

    def concat(self, parts: Any) -> str:  # type: ignore[override]  # joins a macro's or a block's output
        budget = self.budget()
        parts = parts if isinstance(parts, list) else list(parts)
        budget.expect(sum(map(len, parts)), "a block's output")
        return budget.admit("".join(parts))  # type: ignore[no-any-return]

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        budget = self.budget()
        if type(left) is str and type(right) is str and operator == "+":  # most of what templates do
            budget.expect(len(left) + len(right), "'+'")
        else:
            _size_binop(budget, operator, left, right)
        return budget.admit(self.binop_table[operator](left, right))

    def getitem(self, obj: Any, argument: Any) -> Any:
        value = super().getitem(obj, argument)
        budget = getattr(self._local, "budget", None)  # None while compiling constant slices
        if budget is not None and isinstance(argument, slice):
            budget.admit(value)
        return value

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        if not (isinstance(value, (types.MethodType, types.BuiltinMethodType))
                and getattr(value, "__name__", None) in ("format", "format_map")
                and isinstance(getattr(value, "__self__", None), str)):
            return None
        text: str = value.__self__
        formatter = _BoundedEscapeFormatter(self, escape=text.escape) if isinstance(text, Markup) \
            else _BoundedFormatter(self)
        mapping_form = value.__name__ == "format_map"

        def bounded_format(*args: Any, **kwargs: Any) -> str:
            if mapping_form:
                if kwargs or len(args) != 1:
                    raise TypeError("format_map() takes exactly one positional argument")
                args, kwargs = (), args[0]
            return type(text)(formatter.vformat(text, args, kwargs))

        bounded_format.__name__ = value.__name__
        return bounded_format

    def call(self, context: Any, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        budget = self.budget()
        budget.check_stopped()
        if isinstance(obj, LoopContext):  # loop(children) in a recursive for: those iterations count too
            if args:
                args = (_CountedIterable(args[0], budget), *args[1:])
            return super().call(context, obj, *args, **kwargs)
        if isinstance(obj, Macro):  # its varargs/kwargs are new containers of these values
            budget.admit_all((*args, *kwargs.values()))
            return super().call(context, obj, *args, **kwargs)
        owner = getattr(obj, "__self__", None)
        if owner is not None and not isinstance(owner, type) and isinstance(obj, _METHODS):
            wrapped = self.wrap_str_format(obj)  # str.format reached some way other than getattr
            if wrapped is not None:  # (older Jinja 3.1 releases never call wrap_str_format)
                obj = wrapped
            elif isinstance(obj, types.BuiltinMethodType):
                args = _size_method(budget, owner, obj.__name__, args, kwargs)
        result = super().call(context, obj, *args, **kwargs)
        return budget.admit(result, new=getattr(obj, "__name__", "") not in _LOOKUP_METHODS)


def _size_binop(budget: RenderBudget, operator: str, left: Any, right: Any) -> None:
    ints = isinstance(left, int) and isinstance(right, int)
    if operator == "**" and ints and right > 0 and abs(left) > 1:
        budget.expect_int(right * math.log10(abs(left)), "'**'")
    elif operator == "*":
        if ints:
            budget.expect_int((left.bit_length() + right.bit_length()) * 0.30103, "'*'")
        elif isinstance(right, int) and not isinstance(left, (int, float)):
            budget.expect(budget.measure(left)[0] * max(right, 0), "'*'")
        elif isinstance(left, int) and not isinstance(right, (int, float)):
            budget.expect(budget.measure(right)[0] * max(left, 0), "'*'")
    elif operator == "+" and isinstance(left, (str, bytes, list, tuple)):
        budget.expect(budget.measure(left)[0] + budget.measure(right)[0], "'+'")
    elif operator == "%" and isinstance(left, (str, bytes)):
        budget.expect(printf_size(budget, left, right), "'%' formatting")


def _size_method(budget: RenderBudget, owner: Any, name: str, args: tuple[Any, ...],
                 kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """Refuse a str/bytes/int method call that would build too much; returns the args to call with."""
    estimator: Estimator | None = None
    if isinstance(owner, (str, bytes)):
        if name == "join" and args and not isinstance(args[0], Sized):
            args = (list(args[0]), *args[1:])  # a generator: sized once, joined from the list
        estimator = TEXT_METHODS.get(name)
    elif isinstance(owner, int):
        estimator = INT_METHODS.get(name)
    if estimator is not None:
        try:
            size = estimator(budget, owner, *args, **kwargs)
        except TypeError:
            size = 0  # arguments the method itself will reject
        budget.expect(size, f"'{name}'")
    limit = budget.limits.max_value_size
    for arg in (*args, *kwargs.values()):  # any other size a builtin could take from a number
        if isinstance(arg, int) and abs(arg) > limit:
            budget.expect(abs(arg), f"'{name}' with argument {arg}")
    return args


def _bounded(name: str, func: Callable[..., Any], estimate: Estimator | None) -> Callable[..., Any]:
    """A filter sized before it runs (when it has an estimator) and admitted after."""
    pass_arg = _PassArg.from_obj(func)
    what = f"the '{name}' filter"

    def bounded(context: Any, value: Any, *args: Any, **kwargs: Any) -> Any:
        env = context.environment
        budget: RenderBudget = env.budget()
        budget.check_stopped()
        if estimate is not None:
            try:
                size = estimate(budget, value, *args, **kwargs)
            except TypeError:
                size = 0  # arguments the filter itself will reject
            budget.expect(size, what)
        if pass_arg is _PassArg.context:
            result = func(context, value, *args, **kwargs)
        elif pass_arg is _PassArg.eval_context:
            result = func(context.eval_ctx, value, *args, **kwargs)
        elif pass_arg is _PassArg.environment:
            result = func(env, value, *args, **kwargs)
        else:
            result = func(value, *args, **kwargs)
        if isinstance(result, types.GeneratorType):  # map, select, batch ...: each item it yields counts
            return _CountedIterable(result, budget).__iter__()
        return budget.admit(result, new=result is not value)

    bounded.__name__ = bounded.__qualname__ = f"bounded_{name}"
    return pass_context(bounded)


@pass_context  # never run at compile time, outside a budget
def _counted_iter(context: Any, iterable: Any) -> _CountedIterable:
    return _CountedIterable(iterable, context.environment.budget())


def _items(context: Any, value: Any, attribute: Any) -> list[Any]:
    items = list(value)
    if attribute is not None:
        getter = make_attrgetter(context.environment, attribute)
        items = [getter(item) for item in items]
    return items


@pass_context
def _join(context: Any, value: Any, d: str = "", attribute: Any = None) -> str:
    budget: RenderBudget = context.environment.budget()
    items = _items(context, value, attribute)
    budget.expect(join_size(budget, d, items), "the 'join' filter")
    return budget.admit(sync_do_join(context.eval_ctx, items, d))  # type: ignore[no-any-return]


@pass_context
def _sum(context: Any, iterable: Any, attribute: Any = None, start: Any = 0) -> Any:
    budget: RenderBudget = context.environment.budget()
    items = _items(context, iterable, attribute)
    budget.expect(sum_size(budget, items, start), "the 'sum' filter")
    return budget.admit(sum(items, start))


@pass_context
def _tojson(context: Any, value: Any, indent: Any = None, separators: Any = None, sort_keys: bool = False,
            ensure_ascii: bool = False) -> str:
    """Hugging Face's ``tojson``: plain JSON, no HTML escaping, non-ASCII kept; encoded in bounded pieces."""
    budget: RenderBudget = context.environment.budget()
    if indent is not None and not (
        (isinstance(indent, int) and 0 <= indent <= _JSON_INDENT_MAX)
        or (isinstance(indent, str) and len(indent) <= _JSON_INDENT_MAX)
    ):
        raise TemplateError(f"chat template: tojson indent must be at most {_JSON_INDENT_MAX} (spaces or characters)")
    encoder = json.JSONEncoder(ensure_ascii=ensure_ascii, indent=indent, sort_keys=sort_keys,
                               separators=tuple(separators) if separators else None)
    limit = budget.limits.max_value_size
    pieces: list[str] = []
    made = 0
    for piece in encoder.iterencode(value):  # not one-shot: Python-level, piece by piece
        made += len(piece)
        if made > limit:
            budget.expect(made, "the 'tojson' filter")
        pieces.append(piece)
    return budget.admit("".join(pieces))  # type: ignore[no-any-return]


@pass_context
def _wordcount(context: Any, s: Any) -> int:
    context.environment.budget().check_stopped()
    return sum(1 for _ in _WORD.finditer(str(s)))  # counted, not listed: a list of every word is big


def _raise_exception(message: Any) -> None:
    text = str(message)
    if len(text) > MAX_MESSAGE_CHARS:
        text = text[:MAX_MESSAGE_CHARS] + "..."
    raise TemplateError(f"chat template raised: {text}")


def _strftime_now(fmt: str) -> str:
    if not isinstance(fmt, str) or len(fmt) > _STRFTIME_MAX:
        raise TemplateError(f"chat template: strftime_now takes a format string of at most {_STRFTIME_MAX} characters")
    return datetime.now().strftime(fmt)
