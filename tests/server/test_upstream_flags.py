"""Every flag of the pinned llama-server parses here (no model needed).

The flag list is read from the fetched ``common/arg.cpp`` (tests/server/upstream_args.py):
each option of LLAMA_EXAMPLE_SERVER and the common ones is started on the parser with a
plausible value, and must parse, print and exit (--help, --version, ...), or stop with the
one error line its row of ``llamaserver.settings.upstream`` calls for.  Its environment
variable must have the same effect as the flag.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from upstream_args import UpstreamOption, server_options

from llamaserver import ServerSettings
from llamaserver.cli import parse_args
from llamaserver.settings import upstream


def _arg_cpp() -> Path:
    import llama_ffi

    source = llama_ffi.native_manifest().get("source_dir")
    path = Path(source) / "common" / "arg.cpp" if source else None
    if path is None or not path.is_file():
        pytest.skip(f"upstream's common/arg.cpp is not at {path} (build_native.py fetches it)")
    return path


def _options() -> list[UpstreamOption]:
    seen: dict[tuple[str, ...], UpstreamOption] = {}
    for option in server_options(_arg_cpp()):
        seen.setdefault(tuple(option.flags), option)  # -np is registered twice upstream
    return list(seen.values())


# Flags that print something and exit 0, as upstream's do.
PRINT_AND_EXIT = {"-h", "--help", "--usage", "--version", "-cl", "--cache-list",
                  "--completion-bash", "--list-devices"}

# A plausible value where "1" / "x" would not be one.
VALUES = {
    "-fa": "on", "--flash-attn": "on", "--spec-type": "ngram-mod,draft-simple",
    "-ctk": "q8_0", "-ctv": "q8_0", "--spec-draft-type-k": "q8_0", "--spec-draft-type-v": "q8_0",
    "--rope-scaling": "yarn", "--pooling": "mean", "-sm": "row", "--numa": "isolate",
    "--reasoning-format": "deepseek", "-rea": "off", "--log-colors": "auto", "-fit": "off",
    "-lm": "mmap+mlock", "-lzm": "auto", "-ngl": "all", "--chat-template-kwargs": '{"a": 1}',
    "-j": '{"type": "object"}', "--samplers": "top_k;temperature", "--sampler-seq": "edkt",
    "-l": "15043-inf", "--host": "127.0.0.1,/tmp/llamaserver-test.sock",
    "--cors-origins": "http://localhost:3000,https://example.org", "--lora-scaled": "a.gguf:0.5",
    "-ts": "3,1", "--dry-sequence-breaker": "none", "-a": "one,two", "--tags": "chat,fim",
    "--port": "8081", "--api-prefix": "/llama", "--sleep-idle-seconds": "30",
    "--cache-reuse": "256", "--reasoning-effort": "low", "-to": "30", "--reasoning-budget": "0",
    "--control-vector-layer-range": ["1", "2"], "-cram": "1024", "--adaptive-target": "0.5",
    "--chat-template": "chatml", "-mu": "https://example.org/model.gguf",
    "--rpc": "127.0.0.1:50052,[::1]:50053",
}
# Flags that need a companion to make sense (our rules, as in the seed).
# ("@FLAG": the file made for FLAG)
COMPANIONS = {"-hff": ["-hf", "user/repo"],
              "--ssl-key-file": ["--ssl-cert-file", "@--ssl-cert-file"],
              "--ssl-cert-file": ["--ssl-key-file", "@--ssl-key-file"]}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("flags")
    (root / "grammar.gbnf").write_text('root ::= "yes" | "no"\n')
    (root / "schema.json").write_text('{"type": "object"}')
    (root / "keys.txt").write_text("# comment\nkey-1\n")
    (root / "media").mkdir()
    (root / "template.jinja").write_text("{{ messages }}")
    (root / "mmproj.gguf").write_bytes(b"GGUF")  # parsing only checks that it exists
    for name in ("key.pem", "cert.pem"):
        (root / name).write_text("-----BEGIN-----\n")
    return {"--grammar-file": str(root / "grammar.gbnf"), "-jf": str(root / "schema.json"),
            "--api-key-file": str(root / "keys.txt"), "--media-path": str(root / "media"),
            "--path": str(root / "media"),
            "--chat-template-file": str(root / "template.jinja"),
            "--mmproj": str(root / "mmproj.gguf"), "-md": str(root / "mmproj.gguf"),
            "--spec-draft-model": str(root / "mmproj.gguf"),
            "--model-draft": str(root / "mmproj.gguf"),
            "--ssl-key-file": str(root / "key.pem"), "--ssl-cert-file": str(root / "cert.pem")}


def _value(option: UpstreamOption, files: dict[str, str]) -> list[str]:
    for flag in option.flags:
        if flag in files:
            return [files[flag]]
        if flag in VALUES:
            value = VALUES[flag]
            return value if isinstance(value, list) else [value]
    if option.n_values == 0:
        return []
    hint = option.value_hint or ""
    numeric = (hint in ("N", "SEED", "SECONDS", "INDEX", "L", "P", "SIMILARITY")
               or hint.lstrip("<[")[:1].isdigit())  # <0|1>, <0...100>
    return ["1"] * option.n_values if numeric else ["x"] * option.n_values


def _expected_error(flag: str, argv: list[str]) -> str | None:
    row = upstream.find(flag)
    if row is None:
        return None
    if row.kind == upstream.REFUSED:
        return f"llamaserver: error: {flag} is not supported: {row.reason}"
    if row.needs_model and "-m" not in argv:
        return (f"llamaserver: error: {flag} needs {row.reason}, which this server does not "
                "have yet; give the model with -m (or -hf/-mu)")
    return None


def _companion(option: UpstreamOption, files: dict[str, str]) -> list[str]:
    words = next((COMPANIONS[f] for f in option.flags if f in COMPANIONS), [])
    return [files[w[1:]] if w.startswith("@") else w for w in words]


def _cases(files: dict[str, str]) -> Iterator[tuple[str, list[str]]]:
    for option in _options():
        value = _value(option, files)
        for flag in option.flags + option.negative:
            taken = value if flag in option.flags else []
            yield flag, [flag, *taken, *_companion(option, files)]


def test_the_flag_list_is_read_from_arg_cpp() -> None:
    options = _options()
    flags = {f for o in options for f in o.flags + o.negative}
    # a sample the issue names, and the examples' rule: common options come too
    assert {"--temp", "--offline", "--tags", "--no-jinja", "--reasoning-format", "--cache-ram",
            "--kv-unified", "--spec-type", "--no-mmproj", "--models-dir", "-t"} <= flags
    assert len(options) > 200


def test_every_server_flag_parses(files: dict[str, str],
                                  capsys: pytest.CaptureFixture[str]) -> None:
    failures = []
    count = 0
    for flag, argv in _cases(files):
        count += 1
        expected = _expected_error(flag, argv)
        try:
            parse_args(argv, environ={})
        except SystemExit as exit_:
            err = capsys.readouterr().err.strip()
            if flag in PRINT_AND_EXIT and exit_.code == 0:
                continue
            if expected is None or exit_.code != 1 or err != expected:
                failures.append((argv, exit_.code, err))
            continue
        capsys.readouterr()
        if expected is not None or flag in PRINT_AND_EXIT:
            failures.append((argv, "parsed", expected))
    assert failures == [], f"{len(failures)} of {count} flags"


@pytest.mark.parametrize("row", [r for r in upstream.ROWS if r.needs_model],
                         ids=lambda r: r.name)
def test_router_flags_are_accepted_next_to_a_model(row: upstream.Row) -> None:
    settings = parse_args(["-m", "model.gguf", row.flags[0], "dir"], environ={})
    assert upstream.warnings(settings.not_applied) == [
        f"{row.flags[0]} is accepted but not applied yet (router mode)"]


def _comparable(settings: ServerSettings) -> dict[str, Any]:
    values = settings.model_dump()
    values["not_applied"] = sorted(map(repr, settings.not_applied.values()))
    return values


def test_every_environment_variable_acts_as_its_flag(
        files: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    mismatches = []
    for option in _options():
        if not option.env or set(option.flags) & PRINT_AND_EXIT:
            continue
        flag = option.flags[0]
        value = _value(option, files)
        cases = [({option.env: value[0] if value else "1"}, [flag, *value])]
        if option.negative:
            negative_env = option.env.replace("LLAMA_ARG_", "LLAMA_ARG_NO_", 1)
            cases += [({option.env: "0"}, [option.negative[0]]),
                      ({negative_env: "1"}, [option.negative[0]])]
        for environ, argv in cases:
            companion = _companion(option, files)
            try:
                by_env = _comparable(parse_args(companion, environ=environ))
            except SystemExit as exit_:
                by_env = {"exit": exit_.code}
            try:
                by_flag = _comparable(parse_args(argv + companion, environ={}))
            except SystemExit as exit_:
                by_flag = {"exit": exit_.code}
            capsys.readouterr()
            if by_env != by_flag:
                mismatches.append((environ, argv))
    assert mismatches == []


def test_flag_beats_environment_beats_default() -> None:
    environ = {"LLAMA_ARG_TEMPERATURE": "0.3", "LLAMA_ARG_JINJA": "false",
               "LLAMA_ARG_MODELS_MAX": "4"}
    assert ServerSettings().temperature == 0.8 and ServerSettings().jinja is True
    by_env = parse_args([], environ=environ)
    assert (by_env.temperature, by_env.jinja) == (0.3, False)
    assert by_env.not_applied == {"LLAMA_ARG_MODELS_MAX": 4}
    by_flag = parse_args(["--temp", "0.5", "--jinja", "--models-max", "2"], environ=environ)
    assert (by_flag.temperature, by_flag.jinja) == (0.5, True)
    assert by_flag.not_applied == {"--models-max": 2}  # one entry: the flag's


def test_negative_environment_variable_switches_off() -> None:
    environ = {"LLAMA_ARG_NO_CONTEXT_SHIFT": "1", "LLAMA_ARG_NO_KV_UNIFIED": "1",
               "LLAMA_ARG_KV_OFFLOAD": "0", "LLAMA_ARG_NO_MMPROJ_OFFLOAD": "1"}
    settings = parse_args([], environ=environ)
    assert settings.context_shift is False and settings.kv_unified is False
    assert settings.no_kv_offload is True  # LLAMA_ARG_KV_OFFLOAD names the opposite field
    assert settings.mmproj_offload is False and settings.not_applied == {}


def test_underscores_in_long_flags_read_as_dashes() -> None:
    settings = parse_args(["--n_gpu_layers", "2", "--top_k", "5", "--spec_type", "ngram-mod",
                           "--ctx_size", "256", "--no_context_shift", "--models_max", "3"],
                          environ={})
    assert (settings.n_gpu_layers, settings.top_k, settings.ctx_size) == (2, 5, 256)
    assert settings.context_shift is False and settings.spec_type == ["ngram-mod"]
    assert settings.not_applied == {"--models-max": 3}


def test_last_spelling_of_a_row_wins() -> None:
    settings = parse_args(["--spec-draft-prio", "2", "--prio-draft", "3"], environ={})
    assert settings.not_applied == {"--prio-draft": 3}
    assert upstream.warnings(settings.not_applied) == [
        "--prio-draft is accepted but not applied yet (speculative decoding)"]


def test_inert_values_are_accepted_without_a_warning() -> None:
    settings = parse_args(["--no-mmproj", "--no-agent", "--adaptive-target", "-3"],
                          environ={})
    assert len(settings.not_applied) == 3
    assert upstream.warnings(settings.not_applied) == []
    assert upstream.check(settings.not_applied, has_model=False) is None


def test_ignored_flags_are_notes_not_warnings() -> None:
    settings = parse_args(["--cpu-mask", "ff", "--no-perf", "--log-colors", "on"], environ={})
    assert upstream.warnings(settings.not_applied) == []
    assert upstream.notes(settings.not_applied) == [
        "--cpu-mask has no effect here: thread placement and priority are left to the OS",
        "--no-perf has no effect here: libllama's defaults are used",
        "--log-colors has no effect here: logs are not coloured"]


@pytest.mark.parametrize("argv,message", [
    (["--spec-draft-n-max", "many"], "--spec-draft-n-max: Input should be a valid integer"),
    (["--spec-type", "fast"], "--spec-type: unknown type 'fast'; known: none,"),
    (["--override-kv", "a=int:1"], "--override-kv is not supported: overriding model metadata"),
    (["--fim-qwen-7b-default"], "--fim-qwen-7b-default is not supported: preset models"),
])
def test_bad_or_refused_upstream_flags_are_one_error_line(
        argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        parse_args(argv, environ={})
    assert exit_.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"llamaserver: error: {message}"), err


def test_refused_environment_variable_names_its_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args([], environ={"LLAMA_ARG_DOCKER_REPO": "gemma3"})
    assert capsys.readouterr().err.strip() == (
        "llamaserver: error: LLAMA_ARG_DOCKER_REPO (--docker-repo) is not supported: Docker Hub "
        "downloads are not supported: download the GGUF file and pass -m FILE")


def test_no_flag_is_both_a_field_and_a_row() -> None:
    field_flags = {f for info in ServerSettings.model_fields.values()
                   for key in ("flags", "negative_flags")
                   for f in (info.json_schema_extra or {}).get(key, [])}  # type: ignore[union-attr]
    row_flags = {f for row in upstream.ROWS for f in row.flags + row.negative}
    assert field_flags & row_flags == set()
    assert all(row.kind in (upstream.PENDING, upstream.IGNORED, upstream.REFUSED)
               for row in upstream.ROWS)


@pytest.mark.parametrize("flag,expected", [
    ("--version", "llamaserver 0.1.0 (llama.cpp 0c1e57098"),
    ("--completion-bash", "complete -o default -F _llamaserver_complete llamaserver"),
    ("--list-devices", "Available devices:"),
    ("--cache-list", "models in the cache ("),
])
def test_print_and_exit_flags(flag: str, expected: str, tmp_path: Path,
                              monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LLAMASERVER_CACHE", str(tmp_path))
    (tmp_path / "cached.gguf").write_bytes(b"GGUF")
    with pytest.raises(SystemExit) as exit_:
        parse_args([flag], environ={})
    out = capsys.readouterr().out
    assert exit_.value.code == 0 and expected in out
    if flag == "--completion-bash":
        assert "--spec-type" in out and "--temp" in out
    if flag == "--cache-list":
        assert "   1. cached.gguf" in out
