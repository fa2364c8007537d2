"""What the settings groups share: the command-line metadata of a field, the help groups,
the value types and the spellings of booleans and lists that llama-server accepts."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AllowInfNan, BaseModel, ConfigDict

__all__ = ["CacheType", "Finite", "Group", "GROUPS", "TRUE", "FALSE", "cli", "existing_file",
           "negative_env", "split_list", "to_switch"]

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


def existing_file(value: Path | None) -> Path | None:
    """A file the server reads at start-up must be there: a missing one is a start-up error
    naming the flag, not a failure later (as llama-server reads them while parsing)."""
    if value is not None and not Path(value).expanduser().is_file():
        raise ValueError(f"file not found: {value}")
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


class Group(BaseModel):
    """Base of every settings group (and so of ``ServerSettings``)."""

    model_config = ConfigDict(protected_namespaces=(), extra="forbid", validate_assignment=True)
