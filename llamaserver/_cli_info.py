"""The command's print-and-exit flags (llama-server's --version, --list-devices, --cache-list,
--completion-bash) and the help section listing llama-server flags without a field."""

from __future__ import annotations

import argparse
import os
import textwrap
from collections.abc import Iterable, Sequence
from typing import Any

from .settings import upstream

__all__ = ["add_info_flags", "upstream_help"]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        ours = version("llama-ffi")
    except PackageNotFoundError:
        ours = "unknown"
    line = f"llamaserver {ours}"
    try:
        from llama_ffi import native_manifest

        manifest = native_manifest()
        line += (f" (llama.cpp {str(manifest.get('upstream_commit', '?'))[:9]}, "
                 f"{manifest.get('backend', '?')} backend)")
    except Exception:  # no native build yet: the version alone still answers the question
        pass
    return line


def _devices(rpc: str | None) -> str:
    """upstream's listing: the devices layers can go to (not the CPU), remote ones of
    ``--rpc`` (given before --list-devices, or LLAMA_ARG_RPC) included."""
    try:
        import llama_ffi

        if rpc:
            llama_ffi.add_rpc_servers([e for e in rpc.split(",") if e.strip()])
        found = [d for d in llama_ffi.devices() if d.type != "cpu"]
    except Exception as exc:  # no native build, an unreachable server: say so rather than fail
        return f"Available devices: unknown ({exc})"
    lines = ["Available devices:"]
    for d in found:
        free, total = d.memory()  # one question each (for RPC, one call to its server)
        lines.append(f"  {d.name}: {d.description} ({total >> 20} MiB, {free >> 20} MiB free)")
    if not found:
        lines.append("  (none)")
    return "\n".join(lines)


def _cache_list() -> str:
    from ._download import cache_dir

    root = cache_dir()
    files = sorted(root.glob("*.gguf")) if root.is_dir() else []
    lines = [f"models in the cache ({root}): {len(files)}"]
    lines += [f"{i:4d}. {path.name}" for i, path in enumerate(files, 1)]
    return "\n".join(lines)


def _completion(parser: argparse.ArgumentParser) -> str:
    flags = sorted({s for a in parser._actions for s in a.option_strings})
    words = " ".join(flags)
    return textwrap.dedent(f"""\
        # llamaserver bash completion: source <(llamaserver --completion-bash)
        _llamaserver_complete() {{
            local cur="${{COMP_WORDS[COMP_CWORD]}}"
            COMPREPLY=( $(compgen -W "{words}" -- "$cur") )
        }}
        complete -o default -F _llamaserver_complete llamaserver
        """)


class _PrintAndExit(argparse.Action):
    def __init__(self, option_strings: Sequence[str], dest: str, *, what: str,
                 **kwargs: Any) -> None:
        kwargs["default"] = argparse.SUPPRESS
        super().__init__(option_strings, dest, nargs=0, **kwargs)
        self.what = what

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        if self.what == "devices":
            rpc = getattr(namespace, "rpc", None) or os.environ.get("LLAMA_ARG_RPC")
            print(_devices(",".join(rpc) if isinstance(rpc, list) else rpc))
            parser.exit(0)
        text = {"version": _version, "cache": _cache_list}.get(self.what)
        print(text() if text else _completion(parser))
        parser.exit(0)


def add_info_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("information (print and exit)")
    group.add_argument("-h", "--help", "--usage", action="help",
                       help="Show this help and exit.")
    for flags, what, text in (
            (("--version",), "version", "Show the version and the libllama build."),
            (("--list-devices",), "devices", "Show the devices this build can offload to "
             "(with an earlier --rpc, the remote ones too)."),
            (("-cl", "--cache-list"), "cache", "List the models in the download cache."),
            (("--completion-bash",), "completion", "Print a bash completion script.")):
        group.add_argument(*flags, action=_PrintAndExit, what=what, help=text)


def _spelling(row: upstream.Row) -> str:
    text = "/".join(row.flags + row.negative)
    return f"{text} {row.metavar}" if row.metavar else text


def upstream_help(rows: Iterable[upstream.Row], width: int = 96) -> str:
    """The flags of ``rows``, one paragraph per reason, for a help group's description."""
    by_reason: dict[str, list[str]] = {}
    for row in rows:
        by_reason.setdefault(row.reason, []).append(_spelling(row))
    paragraphs = []
    for reason, spellings in by_reason.items():
        paragraphs.append(textwrap.fill(f"{reason}: " + ", ".join(spellings), width=width,
                                        initial_indent="", subsequent_indent="    ",
                                        break_on_hyphens=False))
    return "\n".join(paragraphs)
