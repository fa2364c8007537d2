"""llama-server flags that have no settings field here: the one table of what happens to them.

Every flag of the pinned llama-server (``common/arg.cpp`` of commit 0c1e57098, the options
of LLAMA_EXAMPLE_SERVER and the common ones) is either a :class:`ServerSettings` field or a
row below, so that a llama-server command line always parses.  A row is one of:

``PENDING``  the capability arrives with another issue: the flag is accepted, and start-up
             prints one warning naming it ("--spec-type is accepted but not applied yet
             (speculative decoding)");
``IGNORED``  meaningless or harmless for this server: accepted, and noted in the debug log;
``REFUSED``  ignoring it would change the answers in a way the user must know: the command
             stops with one ``llamaserver: error:`` line.

A row's ``inert`` values ask for what this server does anyway (``--no-mmproj``: no
projector unless one is given), so they are accepted without a word.  The command line stores what it saw in
``ServerSettings.not_applied``; :func:`check` and :func:`warnings` read it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import Field

from ._fields import Group, negative_env

__all__ = ["Row", "ROWS", "UpstreamOnly", "check", "find", "notes", "warnings"]

PENDING, IGNORED, REFUSED = "pending", "ignored", "refused"


@dataclass(frozen=True)
class Row:
    kind: str
    reason: str                   # the capability (pending), or why (ignored, refused)
    flags: tuple[str, ...]
    metavar: str | None = None    # None: a switch (True, or False for a negative flag)
    negative: tuple[str, ...] = ()
    env: str | None = None
    type: Callable[[str], Any] = str
    nargs: int = 1
    inert: tuple[Any, ...] = ()
    needs_model: bool = False     # refused unless a model is given: the default would answer

    @property
    def name(self) -> str:
        """The row's long flag, for messages."""
        return next((f for f in self.flags if f.startswith("--")), self.flags[0])


def _rows(kind: str, reason: str, *specs: tuple[Any, ...] | str) -> list[Row]:
    """Rows from ``"FLAGS"`` (a switch) or ``("FLAGS", METAVAR, {keywords})`` specs."""
    out = []
    for spec in specs:
        flags, metavar, extra = (spec, None, {}) if isinstance(spec, str) else (
            spec[0], spec[1], spec[2] if len(spec) > 2 else {})
        out.append(Row(kind, reason, tuple(flags.split()), metavar, **extra))
    return out


def _env(name: str, **extra: Any) -> dict[str, Any]:
    return {"env": name, **extra}


def _names(*allowed: str) -> Callable[[str], str]:
    """A comma-separated list of known names, checked as llama-server checks it."""
    def parse(text: str) -> str:
        unknown = [n for n in (p.strip() for p in text.split(",")) if n and n not in allowed]
        if unknown:
            raise ValueError(f"unknown value {unknown[0]!r}; known: {', '.join(allowed)}")
        return text
    return parse


def _negative_is_off(text: str) -> float:
    value = float(text)
    return -1.0 if value < 0 else value  # every negative value means "off"


_KV_TYPES = _names("f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1")
_INT = {"type": int}
_FLOAT = {"type": float}
_OFF = {"inert": (False,)}

ROWS: tuple[Row, ...] = (
    *_rows(PENDING, "speculative decoding",
           ("--spec-draft-hf -hfd -hfrd --hf-repo-draft", "REPO",
            _env("LLAMA_ARG_SPEC_DRAFT_HF_REPO")),
           ("--spec-draft-device -devd --device-draft", "DEVICES"),
           ("--spec-draft-p-split --draft-p-split", "P",
            _env("LLAMA_ARG_SPEC_DRAFT_P_SPLIT", **_FLOAT)),
           ("--spec-draft-cpu-mask -Cd --cpu-mask-draft", "M"),
           ("--spec-draft-cpu-range -Crd --cpu-range-draft", "lo-hi"),
           ("--spec-draft-cpu-strict --cpu-strict-draft", "0|1", _INT),
           ("--spec-draft-prio --prio-draft", "N", _INT),
           ("--spec-draft-poll --poll-draft", "0|1", _INT),
           ("--spec-draft-cpu-mask-batch -Cbd --cpu-mask-batch-draft", "M"),
           ("--spec-draft-cpu-strict-batch --cpu-strict-batch-draft", "0|1", _INT),
           ("--spec-draft-prio-batch --prio-batch-draft", "N", _INT),
           ("--spec-draft-poll-batch --poll-batch-draft", "0|1", _INT),
           ("--spec-draft-type-k -ctkd --cache-type-k-draft", "TYPE",
            _env("LLAMA_ARG_SPEC_DRAFT_CACHE_TYPE_K", type=_KV_TYPES)),
           ("--spec-draft-type-v -ctvd --cache-type-v-draft", "TYPE",
            _env("LLAMA_ARG_SPEC_DRAFT_CACHE_TYPE_V", type=_KV_TYPES)),
           ("--spec-draft-override-tensor -otd --override-tensor-draft", "PATTERN=TYPE,..."),
           ("--spec-draft-cpu-moe -cmoed --cpu-moe-draft", None,
            _env("LLAMA_ARG_SPEC_DRAFT_CPU_MOE")),
           ("--spec-draft-n-cpu-moe --spec-draft-ncmoe -ncmoed --n-cpu-moe-draft", "N",
            _env("LLAMA_ARG_SPEC_DRAFT_N_CPU_MOE", **_INT)),
           ("--spec-draft-backend-sampling", None, _env(
               "LLAMA_ARG_SPEC_DRAFT_BACKEND_SAMPLING",
               negative=("--no-spec-draft-backend-sampling",))),
           ("--spec-synth-len", "L", _env("LLAMA_ARG_SPEC_SYNTH_LEN", **_FLOAT)),
           ("--spec-synth-rates", "P0,P1,...", _env("LLAMA_ARG_SPEC_SYNTH_RATES")),
           *((f"--spec-ngram-{name}", "N", _INT) for name in (
               "mod-n-min", "mod-n-max", "mod-n-match", "simple-size-n", "simple-size-m",
               "simple-min-hits", "map-k-size-n", "map-k-size-m", "map-k-min-hits",
               "map-k4v-size-n", "map-k4v-size-m", "map-k4v-min-hits")),
           # renamed upstream (which now refuses the old names); still harmless here
           ("--draft --draft-n --draft-max", "N", _env("LLAMA_ARG_DRAFT_MAX", **_INT)),
           ("--draft-min --draft-n-min", "N", _env("LLAMA_ARG_DRAFT_MIN", **_INT)),
           ("--spec-ngram-size-n", "N", _INT), ("--spec-ngram-size-m", "N", _INT),
           ("--spec-ngram-min-hits", "N", _INT),
           ("-lcs --lookup-cache-static", "FNAME"), ("-lcd --lookup-cache-dynamic", "FNAME"),
           "--spec-default"),
    *_rows(PENDING, "multimodal input",
           # --no-mmproj asks for what this server does: no projector unless --mmproj
           ("--mmproj-auto", None, _env("LLAMA_ARG_MMPROJ_AUTO", negative=(
               "--no-mmproj", "--no-mmproj-auto"), **_OFF)),
           ("-mmdev --mmproj-device", "DEVICE", _env("MTMD_BACKEND_DEVICE")),
           ("--mtmd-batch-max-tokens", "N", _env("LLAMA_ARG_MTMD_BATCH_MAX_TOKENS", **_INT)),
           ("--video-fps", "N", _env("LLAMA_ARG_VIDEO_FPS", **_FLOAT)),
           ("--video-timestamp-interval", "N",
            _env("LLAMA_ARG_VIDEO_TIMESTAMP_INTERVAL", **_INT)),
           ("--video-ffmpeg-dir", "DIR", _env("LLAMA_ARG_VIDEO_FFMPEG_DIR"))),
    *_rows(PENDING, "RAM prompt cache",
           ("--cache-idle-slots", None, _env("LLAMA_ARG_CACHE_IDLE_SLOTS",
                                             negative=("--no-cache-idle-slots",), **_OFF))),
    *_rows(PENDING, "a per-slot limit of a unified KV cache",
           ("--kv-unified-per-slot", "N", _env("LLAMA_ARG_KV_UNIFIED_PER_SLOT", **_INT))),
    *_rows(PENDING, "router mode",
           ("--models-dir", "PATH", _env("LLAMA_ARG_MODELS_DIR", needs_model=True)),
           ("--models-preset", "PATH", _env("LLAMA_ARG_MODELS_PRESET", needs_model=True)),
           ("--models-max", "N", _env("LLAMA_ARG_MODELS_MAX", **_INT)),
           ("--models-autoload", None, _env("LLAMA_ARG_MODELS_AUTOLOAD",
                                            negative=("--no-models-autoload",)))),
    *_rows(PENDING, "tensor placement",
           ("-ot --override-tensor", "PATTERN=TYPE,...", _env("LLAMA_ARG_OVERRIDE_TENSOR")),
           ("-cmoe --cpu-moe", None, _env("LLAMA_ARG_CPU_MOE")),
           ("-ncmoe --n-cpu-moe", "N", _env("LLAMA_ARG_N_CPU_MOE", **_INT)),
           ("-ncffn --n-cpu-ffn", "N", _env("LLAMA_ARG_N_CPU_FFN", **_INT))),
    *_rows(PENDING, "special tokens in generated text", "-sp --special"),
    *_rows(PENDING, "web UI settings",
           ("--ui-config --webui-config", "JSON", _env("LLAMA_ARG_UI_CONFIG")),
           ("--ui-config-file --webui-config-file", "PATH",
            _env("LLAMA_ARG_UI_CONFIG_FILE"))),
    *_rows(PENDING, "built-in agent tools and MCP",
           ("--ui-mcp-proxy --webui-mcp-proxy", None, _env(
               "LLAMA_ARG_UI_MCP_PROXY", negative=("--no-ui-mcp-proxy", "--no-webui-mcp-proxy"),
               **_OFF)),
           ("--tools", "TOOL,...", _env("LLAMA_ARG_TOOLS")),
           ("--tools-runtime", "OPTION", _env("LLAMA_ARG_TOOLS_RUNTIME")),
           ("--mcp-servers-config", "PATH", _env("LLAMA_ARG_MCP_SERVERS_CONFIG")),
           ("--mcp-servers-json", "JSON", _env("LLAMA_ARG_MCP_SERVERS_JSON")),
           ("-ag --agent", None, _env("LLAMA_ARG_AGENT", negative=("-no-ag", "--no-agent"),
                                      **_OFF))),
    *_rows(IGNORED, "thread placement and priority are left to the OS",
           ("-C --cpu-mask", "M"), ("-Cr --cpu-range", "lo-hi"),
           ("--cpu-strict", "0|1", _INT), ("--prio", "N", _INT), ("--poll", "0..100", _INT),
           ("-Cb --cpu-mask-batch", "M"), ("-Crb --cpu-range-batch", "lo-hi"),
           ("--cpu-strict-batch", "0|1", _INT), ("--prio-batch", "N", _INT),
           ("--poll-batch", "0|1", _INT)),
    *_rows(IGNORED, "libllama's defaults are used",
           ("--perf", None, _env("LLAMA_ARG_PERF", negative=("--no-perf",))),
           ("--warmup", None, {"negative": ("--no-warmup",)}),
           ("--repack", None, _env("LLAMA_ARG_REPACK", negative=("-nr", "--no-repack"))),
           ("--no-host", None, _env("LLAMA_ARG_NO_HOST")),
           ("--op-offload", None, {"negative": ("--no-op-offload",)}),
           ("-lzm --lazy-mode", "MODE", _env("LLAMA_ARG_LAZY_MODE")),
           "--check-tensors",
           ("-bs --backend-sampling", None, _env("LLAMA_ARG_BACKEND_SAMPLING"))),
    *_rows(IGNORED, "nothing is fitted to device memory: -c and -ngl are used as given",
           ("-fit --fit", "on|off", _env("LLAMA_ARG_FIT")),
           ("-fitt --fit-target", "MiB,...", _env("LLAMA_ARG_FIT_TARGET")),
           ("-fitc --fit-ctx", "N", _env("LLAMA_ARG_FIT_CTX", **_INT))),
    *_rows(IGNORED, "llama-cli's prompt options: requests carry their own text and stops",
           ("-e --escape", None, {"negative": ("--no-escape",)}),
           ("-r --reverse-prompt", "PROMPT")),
    *_rows(IGNORED, "a request goes to the slot with the longest common prefix",
           ("-sps --slot-prompt-similarity", "SIMILARITY", _FLOAT)),
    *_rows(IGNORED, "streams send no keep-alive comments",
           ("--sse-ping-interval", "N", _env("LLAMA_ARG_SSE_PING_INTERVAL", **_INT))),
    *_rows(IGNORED, "logs are not coloured",
           ("--log-colors", "on|off|auto", _env("LLAMA_ARG_LOG_COLORS"))),
    *_rows(IGNORED, "prompts are not written to files", ("--log-prompts-dir", "PATH")),
    *_rows(IGNORED, "only used by adaptive-p sampling (--adaptive-target)",
           ("--adaptive-decay", "N", _FLOAT)),
    *_rows(REFUSED, "adaptive-p sampling is not available (a negative value turns it off)",
           ("--adaptive-target", "N", {"type": _negative_is_off, "inert": (-1.0,)})),
    *_rows(REFUSED, "overriding model metadata is not supported",
           ("--override-kv", "KEY=TYPE:VALUE,...")),
    *_rows(REFUSED, "control vectors are not supported",
           ("--control-vector", "FNAME"), ("--control-vector-scaled", "FNAME:SCALE,..."),
           ("--control-vector-layer-range", "START END", {"nargs": 2, "type": int})),
    *_rows(REFUSED, "Docker Hub downloads are not supported: download the GGUF file and pass "
           "-m FILE", ("-dr --docker-repo", "[REPO/]MODEL[:QUANT]",
                       _env("LLAMA_ARG_DOCKER_REPO"))),
    *_rows(REFUSED, "preset models are not built in: pass -m FILE (or -hf REPO -hff FILE)",
           "--embd-gemma-default", "--fim-qwen-1.5b-default", "--fim-qwen-3b-default",
           "--fim-qwen-7b-default", "--fim-qwen-7b-spec", "--fim-qwen-14b-spec",
           "--fim-qwen-30b-default", "--gpt-oss-20b-default", "--gpt-oss-120b-default",
           "--vision-gemma-4b-default", "--vision-gemma-12b-default"),
)

_BY_NAME = {name: row for row in ROWS for name in (
    *row.flags, *row.negative, *((row.env,) if row.env else ()),
    *((negative_env(row.env),) if row.env and row.negative else ()))}


def find(name: str) -> Row | None:
    """The row of a flag, negative flag or environment variable, as llama-server names it."""
    return _BY_NAME.get(name)


class UpstreamOnly(Group):
    not_applied: dict[str, Any] = Field(
        default_factory=dict, description="llama-server flags (or their environment "
        "variables) given on the command line that have no field here, with their values; "
        "see llamaserver.settings.upstream.",
        json_schema_extra={"collects": "llamaserver.settings.upstream.ROWS"})


def _given(not_applied: Mapping[str, Any]) -> Iterator[tuple[str, Row, Any]]:
    for spelling, value in not_applied.items():
        row = find(spelling)
        if row is not None and value not in row.inert:
            yield spelling, row, value


def _named(spelling: str, row: Row) -> str:
    return spelling if spelling.startswith("-") else f"{spelling} ({row.name})"


def check(not_applied: Mapping[str, Any], *, has_model: bool) -> str | None:
    """Why the command must stop, or None."""
    for spelling, row, _ in _given(not_applied):
        if row.kind == REFUSED:
            return f"{_named(spelling, row)} is not supported: {row.reason}"
        if row.needs_model and not has_model:
            return (f"{_named(spelling, row)} needs {row.reason}, which this server does not "
                    "have yet; give the model with -m (or -hf/-mu)")
    return None


def warnings(not_applied: Mapping[str, Any]) -> list[str]:
    """One line per pending flag given (for ``llamaserver: warning: ...``)."""
    return [f"{_named(spelling, row)} is accepted but not applied yet ({row.reason})"
            for spelling, row, _ in _given(not_applied) if row.kind == PENDING]


def notes(not_applied: Mapping[str, Any]) -> list[str]:
    """One line per ignored flag given (for the debug log)."""
    return [f"{_named(spelling, row)} has no effect here: {row.reason}"
            for spelling, row, _ in _given(not_applied) if row.kind == IGNORED]
