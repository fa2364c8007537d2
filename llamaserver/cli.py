"""Command line of ``llamaserver``: the parser is derived from :class:`ServerSettings`.

Precedence: a flag on the command line, then its environment variable (``LLAMA_ARG_*`` as
upstream names them), then the field's default.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError
from pydantic.fields import FieldInfo

from .settings import ServerSettings

if typing.TYPE_CHECKING:
    from .server import LlamaServer

__all__ = ["build_parser", "parse_args", "main"]

_TRUE = {"1", "true", "yes", "on", "enabled"}
_FALSE = {"0", "false", "no", "off", "disabled"}


def _unwrap_optional(annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _extra(info: FieldInfo) -> dict[str, Any]:
    extra = info.json_schema_extra
    return extra if isinstance(extra, dict) else {}


def _value_kwargs(annotation: Any) -> dict[str, Any]:
    """argparse keywords for a field that takes a value."""
    base = _unwrap_optional(annotation)
    origin = typing.get_origin(base)
    if origin is Literal:
        return {"choices": list(typing.get_args(base))}
    if origin is list:
        (item,) = typing.get_args(base)
        return {"type": item if item in (int, float, Path) else str}
    if base in (int, float, Path):
        return {"type": base}
    return {"type": str}


def build_parser(prog: str = "llamaserver") -> argparse.ArgumentParser:
    """An ``ArgumentParser`` with one option per :class:`ServerSettings` field.

    Every option defaults to ``argparse.SUPPRESS`` so that the namespace holds only what
    the user typed; the environment and the model's defaults fill the rest.
    """
    parser = argparse.ArgumentParser(
        prog=prog, argument_default=argparse.SUPPRESS,
        description="llama.cpp's HTTP server (llama-server API and OpenAI API) in Python.",
        epilog="Options also read LLAMA_ARG_* environment variables (shown as [env: ...]).")
    groups: dict[str, argparse._ArgumentGroup] = {}
    for name, info in ServerSettings.model_fields.items():
        extra = _extra(info)
        flags = extra.get("flags")
        if not flags:
            continue
        group_name = extra.get("group", "options")
        group = groups.get(group_name) or groups.setdefault(
            group_name, parser.add_argument_group(group_name))
        help_text = info.description or ""
        if extra.get("env"):
            help_text += f" [env: {extra['env']}]"
        annotation = info.annotation
        if _unwrap_optional(annotation) is bool:
            default = info.get_default(call_default_factory=True)
            group.add_argument(*flags, dest=name, action="store_true",
                               help=help_text + (" Default: on." if default else ""))
            negative = extra.get("negative_flags")
            if negative:
                group.add_argument(*negative, dest=name, action="store_false",
                                   help=f"Turn off {flags[-1]}.")
            continue
        kwargs = _value_kwargs(annotation)
        if typing.get_origin(_unwrap_optional(annotation)) is list and name != "tensor_split":
            kwargs["action"] = "append"
        if name == "tensor_split":
            kwargs["type"] = str  # "3,2": the settings model splits it
        for hint in ("nargs", "const", "metavar"):
            if hint in extra:
                kwargs[hint] = extra[hint]
        if "choices" in kwargs and "metavar" in extra:
            help_text += f" Choices: {', '.join(map(str, kwargs['choices']))}."
        default = info.get_default(call_default_factory=True)
        if default not in (None, [], ""):
            help_text += f" Default: {default}."
        group.add_argument(*flags, dest=name, help=help_text, **kwargs)
    return parser


def _from_environment(environ: typing.Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, info in ServerSettings.model_fields.items():
        env = _extra(info).get("env")
        if not env or env not in environ:
            continue
        raw = environ[env]
        if _unwrap_optional(info.annotation) is bool:
            lowered = raw.strip().lower()
            if lowered in _TRUE:
                values[name] = True
            elif lowered in _FALSE:
                values[name] = False
            else:
                raise ValueError(f"{env}={raw!r}: expected one of "
                                 f"{sorted(_TRUE | _FALSE)}")
        else:
            values[name] = raw  # the settings model parses and checks it like a flag value
    return values


def parse_args(argv: Sequence[str] | None = None,
               environ: typing.Mapping[str, str] | None = None) -> ServerSettings:
    """Settings from command-line arguments (default ``sys.argv[1:]``) and environment."""
    parser = build_parser()
    namespace = parser.parse_args(argv)
    try:
        values = _from_environment(os.environ if environ is None else environ)
    except ValueError as exc:
        parser.error(str(exc))
    values.update(vars(namespace))
    try:
        return ServerSettings(**values)
    except ValidationError as exc:
        parser.error(_describe(exc))
    raise AssertionError("unreachable")  # parser.error exits


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = err.get("loc") or ()
        field = ServerSettings.model_fields.get(str(loc[0])) if loc else None
        flags = _extra(field).get("flags") if field is not None else None
        where = "/".join(flags) if flags else (".".join(map(str, loc)) or "settings")
        lines.append(f"{where}: {err['msg']}")
    return "; ".join(lines)


def _error(message: str) -> int:
    print(f"llamaserver: error: {message}", file=sys.stderr)
    return 1


async def _serve(server: LlamaServer) -> BaseException | None:
    """Serve until SIGINT/SIGTERM, or until the model fails to load (returned, as upstream's
    server exits then rather than answer 503 for ever)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not on Windows
            loop.add_signal_handler(sig, stop.set)
    failure: list[BaseException] = []

    async def load() -> None:
        try:
            await server.startup(wait=True)  # the app's own startup hook then finds it started
        except Exception as exc:
            failure.append(exc)
            stop.set()

    loader = asyncio.ensure_future(load())
    try:
        await server.serve_async(shutdown_trigger=stop.wait)
    finally:
        loader.cancel()
        await asyncio.gather(loader, return_exceptions=True)
    return failure[0] if failure else None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``llamaserver`` command and ``python -m llamaserver``."""
    settings = parse_args(argv)
    from ._logging import configure_logging
    from .server import LlamaServer

    if settings.model is not None and not Path(settings.model).expanduser().is_file():
        return _error(f"model file not found: {settings.model}")
    configure_logging(settings)
    server = LlamaServer(settings)
    try:
        failure = asyncio.run(_serve(server))
    except KeyboardInterrupt:
        return 0
    except OSError as exc:  # e.g. the port is taken
        return _error(str(exc))
    if failure is not None:
        return _error(f"could not load the model: {failure}")
    return 0
