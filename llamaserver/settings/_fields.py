"""What the settings groups share: the command-line metadata of a field, the help groups,
the value types and the spellings of booleans and lists that llama-server accepts."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Annotated, Any, Callable, Literal

from pydantic import AfterValidator, AllowInfNan, BaseModel, BeforeValidator, ConfigDict, Field

__all__ = ["AutoSwitch", "CacheType", "Directory", "ExistingFile", "Finite", "Group", "GROUPS",
           "JsonObject", "LayerCount", "NameList", "Switch", "ThreadCount", "TRUE", "FALSE",
           "cli", "negative_env", "option", "split_list"]

CacheType = Literal["f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1"]

# pydantic takes "inf" and "nan" for a float unless told not to; no setting wants them.
Finite = Annotated[float, AllowInfNan(False)]

# llama-server's spellings (on/enabled/true/1, off/disabled/false/0) plus yes/no.
TRUE = frozenset({"1", "true", "yes", "on", "enabled"})
FALSE = frozenset({"0", "false", "no", "off", "disabled"})

# --help shows the groups in this order.
MODEL = "model"
CHAT = "chat template and reasoning"
PERF = "context and performance"
SAMPLING = "sampling (the defaults of every request)"
HARDWARE = "hardware"
SERVER = "server"
LOG = "logging"
RAY = "replicas on Ray Serve (pip install -e '.[ray]')"
GROUPS = (MODEL, CHAT, PERF, SAMPLING, HARDWARE, SERVER, RAY, LOG)


def cli(*flags: str, group: str, env: str | None = None, negative: tuple[str, ...] = (),
        **argparse_hints: Any) -> dict[str, Any]:
    """A field's ``json_schema_extra``: its flags, help group, environment variable, negative
    flags (booleans) and argparse hints (``nargs``, ``const``, ``metavar``, ``append``).

    ``invert_env``: the variable names the opposite of the field (LLAMA_ARG_KV_OFFLOAD for
    ``no_kv_offload``).
    """
    extra: dict[str, Any] = {"flags": list(flags), "group": group}
    if env:
        extra["env"] = env
    if negative:
        extra["negative_flags"] = list(negative)
    extra.update(argparse_hints)
    return extra


def option(*flags: str, group: str, default: Any = None,
           default_factory: Callable[[], Any] | None = None, env: str | None = None,
           negative: tuple[str, ...] = (), ge: float | None = None, gt: float | None = None,
           le: float | None = None, **argparse_hints: Any) -> Any:
    """A setting: the pydantic ``Field`` (default, bounds) with its command line (see
    :func:`cli`) in ``json_schema_extra``.  Its help is the docstring under the field (pydantic
    makes it the description: editors show it too).

    A settings module binds its help group once (``partial(option, group=...)``), so that a
    field reads as the ``add_argument`` call it becomes.
    """
    bounds = {name: value for name, value in (("ge", ge), ("gt", gt), ("le", le))
              if value is not None}
    extra = cli(*flags, group=group, env=env, negative=negative, **argparse_hints)
    if default_factory is not None:
        return Field(default_factory=default_factory, json_schema_extra=extra, **bounds)
    return Field(default, json_schema_extra=extra, **bounds)


def existing_file(value: Path | None) -> Path | None:
    """A file the server reads at start-up must be there: a missing one is a start-up error
    naming the flag, not a failure later (as llama-server reads them while parsing)."""
    if value is not None and not Path(value).expanduser().is_file():
        raise ValueError(f"file not found: {value}")
    return value


def existing_directory(value: Path | None) -> Path | None:
    if value is not None and not Path(value).expanduser().is_dir():
        raise ValueError(f"not a directory: {value}")
    return value


def thread_count(value: Any) -> Any:
    """None (the default) for llama-server's way of asking for it: -1 (or 0)."""
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value <= 0:
        return None
    return value


def layer_count(value: Any) -> Any:
    """-1 (every layer) for llama-server's 'all' and 'auto': without memory fitting, 'auto'
    can only mean "as many as there are"."""
    if isinstance(value, str) and value.strip().lower() in ("all", "auto"):
        return -1
    return value


def json_object(value: Any) -> Any:
    """A JSON object given as text (a flag's value) -> the dict; other values as they are."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise ValueError(f"not valid JSON ({exc})") from None
        if not isinstance(value, dict):
            raise ValueError("must be a JSON object")
    if isinstance(value, dict):
        try:  # a lone surrogate (\ud800 in the JSON) would reach prompts and grammars
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("contains a lone surrogate (text must be valid Unicode)") from None
        except (TypeError, ValueError):
            pass  # not JSON-shaped: the field's type says what is wrong
    return value


def negative_env(env: str) -> str:
    """The variable that switches a boolean off, as llama-server reads it (LLAMA_ARG_NO_X)."""
    return env.replace("LLAMA_ARG_", "LLAMA_ARG_NO_", 1)


def split_list(value: Any, separators: str = ",") -> Any:
    """``"a, b,,c"`` (or a list of such strings) -> ``["a", "b", "c"]``; other values as they are.

    Fields may be quoted as in CSV (``'"a,b",c'``), as llama-server's lists may.
    """
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)):
        return value
    out: list[Any] = []
    for item in value:
        if not isinstance(item, str):
            out.append(item)
            continue
        text = item
        for sep in separators[1:]:
            text = text.replace(sep, separators[0])
        for row in csv.reader([text], delimiter=separators[0], skipinitialspace=True):
            out.extend(part.strip() for part in row if part.strip())
    return out


def to_switch(value: Any, *, auto: bool = False) -> Any:
    """on/off (and auto) from llama-server's spellings of a three-way switch."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in TRUE:
            return "on"
        if lowered in FALSE:
            return "off"
        if auto and lowered in ("auto", "-1"):
            return "auto"
        return lowered
    return value


# A file the server reads at start-up (--mmproj, --ssl-key-file, ...).
ExistingFile = Annotated[Path | None, AfterValidator(existing_file)]
# A folder the server serves from (--path, --media-path).
Directory = Annotated[Path | None, AfterValidator(existing_directory)]
# A JSON object that a flag gives as text (--chat-template-kwargs, --json-schema).
JsonObject = Annotated[dict[str, Any], BeforeValidator(json_object)]
# Names given comma-separated, repeatedly, or both (--api-key, --alias).
NameList = Annotated[list[str], BeforeValidator(split_list)]
# on/off in any of llama-server's spellings, or auto (-fa); AutoSwitch also takes -1 for auto.
Switch = Annotated[Literal["on", "off", "auto"], BeforeValidator(to_switch)]
AutoSwitch = Annotated[Literal["on", "off", "auto"],
                       BeforeValidator(lambda value: to_switch(value, auto=True))]
# A thread count, where -1 or 0 asks for the default (None).
ThreadCount = Annotated[int | None, BeforeValidator(thread_count)]
# A count of layers to offload (-ngl, -ngld), which may be spelled 'all' or 'auto'.
LayerCount = Annotated[int, BeforeValidator(layer_count)]


class Group(BaseModel):
    """Base of every settings group (and so of ``ServerSettings``)."""

    model_config = ConfigDict(protected_namespaces=(), extra="forbid", validate_assignment=True,
                              use_attribute_docstrings=True)
