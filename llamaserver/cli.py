"""Command line of ``llamaserver``: the parser is derived from :class:`ServerSettings`, plus
the rows of :mod:`llamaserver.settings.upstream` (llama-server flags without a field).

Precedence: a flag on the command line, then its environment variable (``LLAMA_ARG_*`` as
upstream names them, and ``LLAMA_ARG_NO_*`` for a boolean's negative), then the default.
As in llama-server, ``--flag_name`` is read as ``--flag-name``.  Every bad input ends the
command with one ``llamaserver: error: ...`` line and exit status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import types
import typing
from collections.abc import Mapping, Sequence, Set
from pathlib import Path
from typing import Any, NoReturn

from pydantic import ValidationError
from pydantic.fields import FieldInfo

from ._cli_info import add_info_flags, upstream_help
from .settings import ServerSettings, upstream
from .settings._fields import FALSE, GROUPS, TRUE, negative_env

if typing.TYPE_CHECKING:
    from .server import LlamaServer

__all__ = ["build_parser", "parse_args", "main"]

_log = logging.getLogger("llamaserver")

_UPSTREAM_GROUPS = (
    (upstream.PENDING, "llama-server flags accepted but not applied yet (each one given "
                       "prints a warning at start-up)"),
    (upstream.IGNORED, "llama-server flags accepted with no effect here"),
    (upstream.REFUSED, "llama-server flags refused (ignoring them would change the answers)"),
)
_ROWS_DEST = "not_applied"
_SWITCH_INTERVAL_S = 0.001


def print_line(kind: str, message: str) -> None:
    """``llamaserver: error: ...`` / ``llamaserver: warning: ...`` on stderr."""
    print(f"llamaserver: {kind}: {message}", file=sys.stderr)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        print_line("error", message)
        self.exit(1)


class _Switch(argparse.Action):
    """A boolean field's flags and negative flags in one help entry."""

    def __init__(self, option_strings: Sequence[str], dest: str, *,
                 negatives: Sequence[str] = (), **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, **kwargs)
        self.negatives = frozenset(negatives)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        setattr(namespace, self.dest, option_string not in self.negatives)


class _Upstream(argparse.Action):
    """Records a row's flag and value in the namespace's ``not_applied`` dict (the last
    spelling of a row wins, as the last occurrence of a flag does upstream)."""

    def __init__(self, option_strings: Sequence[str], dest: str, *, row: upstream.Row,
                 **kwargs: Any) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self.row = row

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        seen = dict(getattr(namespace, _ROWS_DEST, None) or {})
        for spelling in [s for s in seen if upstream.find(s) is self.row]:
            del seen[spelling]
        if self.row.metavar is None:
            values = option_string not in self.row.negative
        seen[str(option_string)] = values
        setattr(namespace, _ROWS_DEST, seen)


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


def _is_bool(info: FieldInfo) -> bool:
    return _unwrap_optional(info.annotation) is bool


def _choices(info: FieldInfo) -> list[Any]:
    base = _unwrap_optional(info.annotation)
    return list(typing.get_args(base)) if typing.get_origin(base) is typing.Literal else []


def _add_field(group: argparse._ArgumentGroup, name: str, info: FieldInfo) -> None:
    extra = _extra(info)
    help_text = info.description or ""
    negatives = extra.get("negative_flags", [])
    if extra.get("env"):
        env = extra["env"]
        help_text += f" [env: {env}" + (f", {negative_env(env)}" if negatives else "") + "]"
    default = info.get_default(call_default_factory=True)
    if _is_bool(info):
        group.add_argument(*extra["flags"], *negatives, dest=name, action=_Switch,
                           negatives=negatives, help=help_text + (" Default: on." if default
                                                                  else ""))
        return
    # Values reach the settings model as text: it parses and checks them, with the same
    # rules for the command line, the environment and Python callers.
    kwargs: dict[str, Any] = {"type": str}
    is_list = typing.get_origin(_unwrap_optional(info.annotation)) is list
    if extra.get("append", is_list):  # repeatable: every occurrence counts
        kwargs["action"] = "append"
    for hint in ("nargs", "const", "metavar"):
        if hint in extra:
            kwargs[hint] = extra[hint]
    choices = _choices(info)
    if choices and "metavar" in extra:
        help_text += f" Choices: {', '.join(map(str, choices))}."
    if default not in (None, [], "", {}):
        shown = ",".join(map(str, default)) if isinstance(default, list) else default
        help_text += f" Default: {shown}."
    group.add_argument(*extra["flags"], dest=name, help=help_text, **kwargs)


def _explained(parse: Any) -> Any:
    """A row's value parser whose ValueError text reaches the user (argparse would replace
    it with "invalid <type> value")."""
    if parse in (int, float, str):
        return parse

    def checked(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return checked


def _add_row(parser: argparse.ArgumentParser, row: upstream.Row) -> None:
    kwargs: dict[str, Any]
    if row.metavar is None:
        kwargs = {"nargs": 0}
    else:
        kwargs = {"type": _explained(row.type), "nargs": None if row.nargs == 1 else row.nargs,
                  "metavar": tuple(row.metavar.split()) if row.nargs > 1 else row.metavar}
    parser.add_argument(*row.flags, *row.negative, dest=f"upstream {row.name}",
                        action=_Upstream, row=row, help=argparse.SUPPRESS, **kwargs)


def build_parser(prog: str = "llamaserver") -> argparse.ArgumentParser:
    """An ``ArgumentParser`` with one option per :class:`ServerSettings` field and one per
    row of :mod:`llamaserver.settings.upstream`.

    Every option defaults to ``argparse.SUPPRESS`` so that the namespace holds only what
    the user typed; the environment and the model's defaults fill the rest.
    """
    parser = _Parser(
        prog=prog, argument_default=argparse.SUPPRESS, add_help=False, allow_abbrev=False,
        usage=f"{prog} [options]", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="llama.cpp's HTTP server (llama-server API and OpenAI API) in Python. "
        "Takes llama-server's flags.",
        epilog="Options also read LLAMA_ARG_* environment variables (shown as [env: ...]); "
        "a flag wins over its variable.")
    add_info_flags(parser)
    groups = {name: parser.add_argument_group(name) for name in GROUPS}
    for name, info in ServerSettings.model_fields.items():
        extra = _extra(info)
        if extra.get("flags"):
            _add_field(groups[extra["group"]], name, info)
    for kind, title in _UPSTREAM_GROUPS:
        rows = [row for row in upstream.ROWS if row.kind == kind]
        parser.add_argument_group(title, upstream_help(rows))
        for row in rows:
            _add_row(parser, row)
    return parser


def _switch(env: str, raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in TRUE:
        return True
    if lowered in FALSE:
        return False
    raise ValueError(f"{env}={raw!r}: expected one of {', '.join(sorted(TRUE | FALSE))}")


def _from_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, info in ServerSettings.model_fields.items():
        extra = _extra(info)
        env = extra.get("env")
        if not env:
            continue
        negative = negative_env(env) if extra.get("negative_flags") else None
        if negative and negative in environ:  # upstream: LLAMA_ARG_NO_X set means off
            values[name] = bool(extra.get("invert_env"))
        elif env in environ and _is_bool(info):
            values[name] = _switch(env, environ[env]) != bool(extra.get("invert_env"))
        elif env in environ:
            values[name] = environ[env]  # the settings model parses and checks it
    return values


def _rows_from_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for row in upstream.ROWS:
        if not row.env:
            continue
        negative = negative_env(row.env) if row.negative else None
        if negative and negative in environ:
            seen[negative] = False
        elif row.env in environ:
            raw = environ[row.env]
            try:
                seen[row.env] = _switch(row.env, raw) if row.metavar is None else row.type(raw)
            except ValueError as exc:
                raise ValueError(f"{row.env}={raw!r}: {exc}") from None
    return seen


def _normalize(argv: Sequence[str], known: set[str]) -> list[str]:
    """``--flag_name`` -> ``--flag-name`` when only the latter is an option (llama-server
    reads every long flag that way)."""
    out = []
    for arg in argv:
        name, eq, value = arg.partition("=")
        if arg.startswith("--") and name not in known and name.replace("_", "-") in known:
            arg = name.replace("_", "-") + eq + value
        out.append(arg)
    return out


def parse_args(argv: Sequence[str] | None = None,
               environ: Mapping[str, str] | None = None) -> ServerSettings:
    """Settings from command-line arguments (default ``sys.argv[1:]``) and environment.

    Bad input exits with status 1 after one ``llamaserver: error:`` line.
    """
    parser = build_parser()
    known = {s for action in parser._actions for s in action.option_strings}
    args = _normalize(sys.argv[1:] if argv is None else argv, known)
    namespace = vars(parser.parse_args(args))
    environ = os.environ if environ is None else environ
    try:
        values = _from_environment(environ)
        rows = _rows_from_environment(environ)
    except ValueError as exc:
        parser.error(str(exc))
    given = namespace.pop(_ROWS_DEST, {})
    flagged = {upstream.find(spelling) for spelling in given}
    rows = {name: value for name, value in rows.items() if upstream.find(name) not in flagged}
    from_env = set(values) - set(namespace)
    values.update(namespace)
    values[_ROWS_DEST] = {**rows, **given}  # a flag wins over its row's variable
    try:
        settings = ServerSettings(**values)
    except ValidationError as exc:
        parser.error(_describe(exc, from_env))
    has_model = any((settings.model, settings.model_url, settings.hf_repo))
    reason = upstream.check(settings.not_applied, has_model=has_model)
    if reason:
        parser.error(reason)
    return settings


def _describe(exc: ValidationError, from_env: Set[str] = frozenset()) -> str:
    """One line for a failed validation, naming flags (or the variable a value came from)."""
    lines = []
    for err in exc.errors():
        loc = err.get("loc") or ()
        field = ServerSettings.model_fields.get(str(loc[0])) if loc else None
        extra = _extra(field) if field is not None else {}
        where = "/".join(extra.get("flags", ())) or ".".join(map(str, loc))
        if loc and loc[0] in from_env and extra.get("env"):
            where = f"{extra['env']} ({where})"
        message = str(err["msg"]).removeprefix("Value error, ")
        lines.append(f"{where}: {message}" if where else message)
    return "; ".join(lines)


async def _serve(server: LlamaServer) -> BaseException | None:
    """Serve until SIGINT/SIGTERM, or until the model fails to load (returned, as upstream's
    server exits then rather than answer 503 for ever).

    A signal drains the server while it still listens (new requests get 503, running ones
    may finish within --shutdown-timeout); a second one stops the wait.  Then hypercorn
    closes the sockets.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def on_signal() -> None:
        if stop.is_set():
            server.hurry_shutdown()
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not on Windows
            loop.add_signal_handler(sig, on_signal)
    failure: list[BaseException] = []

    async def load() -> None:
        try:
            await server.startup(wait=True)  # the app's own startup hook then finds it started
        except Exception as exc:
            failure.append(exc)
            stop.set()

    async def drained() -> None:
        await stop.wait()
        await server.shutdown()

    loader = asyncio.ensure_future(load())
    try:
        await server.serve_async(shutdown_trigger=drained)
    finally:
        loader.cancel()
        await asyncio.gather(loader, return_exceptions=True)
    return failure[0] if failure else None


def _serve_on_ray(settings: ServerSettings) -> int:
    from ._logging import configure_logging

    try:
        from .ray import run
    except ImportError as exc:
        print_line("error", f"--ray-replicas needs Ray Serve ({exc}): pip install -e '.[ray]'")
        return 1
    configure_logging(settings)
    try:
        run(settings)
    except KeyboardInterrupt:
        return 0
    except Exception as exc:  # e.g. no cluster at --ray-address
        _log.debug("start-up on Ray failed", exc_info=True)
        print_line("error", str(exc) or type(exc).__name__)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``llamaserver`` command and ``python -m llamaserver``."""
    settings = parse_args(argv)
    from ._logging import configure_logging
    from .server import LlamaServer

    for line in upstream.warnings(settings.not_applied):
        print_line("warning", line)
    if settings.model is not None and not Path(settings.model).expanduser().is_file():
        print_line("error", f"model file not found: {settings.model}")
        return 1
    from ._engine_config import ConfigError
    from ._preflight import preflight

    try:
        preflight(settings)
    except ConfigError as exc:
        print_line("error", str(exc))
        return 1
    if settings.ray_replicas or settings.ray_max_replicas:
        return _serve_on_ray(settings)
    # The process is the server's own: a thread that runs Python (a chat template, a large
    # body's validation) gives the lock up every 1 ms instead of 5, so the event loop (and
    # /health) waits at most a few ms per busy thread.
    sys.setswitchinterval(_SWITCH_INTERVAL_S)
    try:
        configure_logging(settings)
        for line in upstream.notes(settings.not_applied):
            _log.debug(line)
        server = LlamaServer(settings)
        failure = asyncio.run(_serve(server))
    except KeyboardInterrupt:
        return 0
    except Exception as exc:  # e.g. the port is taken: one line, never a traceback
        _log.debug("start-up failed", exc_info=True)
        print_line("error", str(exc) or type(exc).__name__)
        return 1
    if failure is not None:
        print_line("error", f"could not load the model: {failure}")
        return 1
    return 0
