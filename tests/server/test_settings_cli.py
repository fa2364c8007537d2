"""ServerSettings and the CLI derived from it (no model needed)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from llamaserver import ServerSettings
from llamaserver.cli import build_parser, parse_args

SEED_FLAGS = [
    "-v", "--verbose", "-t", "--threads", "-tb", "--threads-batch", "--threads-http", "-m",
    "--model", "-mu", "--model-url", "-hfr", "--hf-repo", "-hff", "--hf-file", "-a",
    "--alias", "-c", "--ctx-size", "-ngl", "--n-gpu-layers", "-mg", "--main-gpu", "-ts",
    "--tensor-split", "-b", "--batch-size", "-ub", "--ubatch-size", "--mlock", "--no-mmap",
    "--numa", "--lora", "--lora-base", "-to", "--timeout", "--host", "--port", "--path",
    "--api-key", "--api-key-file", "--embeddings", "-np", "--parallel", "-cb",
    "--cont-batching", "-spf", "--system-prompt-file", "--mmproj", "--grp-attn-n",
    "--grp-attn-w", "-n", "--n-predict", "--slots-endpoint-disable", "--metrics",
    "--slot-save-path", "--chat-template", "--log-disable", "--log-format", "--rope-scaling",
    "--rope-freq-base", "--rope-freq-scale", "--yarn-ext-factor", "--yarn-attn-factor",
    "--yarn-beta-slow", "--yarn-beta-fast", "--pooling", "-dt", "--defrag-thold", "-fa",
    "--flash-attn", "-ctk", "--cache-type-k", "-ctv", "--cache-type-v", "--spm-infill",
    "--ssl-key-file", "--ssl-cert-file",
    # server-parallel seed
    "--ctx_size", "--batch-size",
    # ours / newer upstream
    "--props", "--queue-size", "--keep", "--no-slots",
]


def _option_strings() -> set[str]:
    parser = build_parser()
    return {s for action in parser._actions for s in action.option_strings}


def test_every_seed_flag_is_accepted() -> None:
    missing = [flag for flag in SEED_FLAGS if flag not in _option_strings()]
    assert missing == []


def test_every_field_has_flags_description_and_a_parser_option() -> None:
    options = _option_strings()
    for name, info in ServerSettings.model_fields.items():
        extra = info.json_schema_extra
        assert isinstance(extra, dict), name
        if name == "not_applied":  # filled by the rows of settings.upstream, not one flag
            assert extra.get("collects") and info.description
            continue
        assert extra.get("flags"), name
        assert info.description, name
        for flag in extra["flags"]:
            assert flag in options, (name, flag)


def test_seed_style_command_line() -> None:
    settings = parse_args(
        ["-m", "model.gguf", "--ctx_size", "2048", "-t", "4", "-ngl", "33", "--batch-size",
         "512", "--parallel", "3", "-n", "512", "--cont-batching", "--api-key", "k1",
         "--api-key", "k2", "-fa", "--numa", "--slots-endpoint-disable", "-ts", "3,2",
         "-ctk", "q8_0", "--log-format", "json"], environ={})
    assert settings.model == Path("model.gguf")
    assert (settings.ctx_size, settings.threads, settings.n_gpu_layers) == (2048, 4, 33)
    assert (settings.batch_size, settings.parallel, settings.n_predict) == (512, 3, 512)
    assert settings.cont_batching is True
    assert settings.api_key == ["k1", "k2"]
    assert settings.flash_attn == "on"
    assert settings.numa == "distribute"
    assert settings.endpoint_slots is False
    assert settings.tensor_split == [3.0, 2.0]
    assert settings.cache_type_k == "q8_0"
    assert settings.log_format == "json"


def test_defaults_without_arguments() -> None:
    settings = parse_args([], environ={})
    assert settings == ServerSettings()
    assert settings.model is None  # the default model, resolved at startup
    assert (settings.host, settings.port, settings.parallel) == ("127.0.0.1", 8080, 1)


def test_environment_is_used_when_the_flag_is_absent() -> None:
    env = {"LLAMA_ARG_CTX_SIZE": "1024", "LLAMA_ARG_N_PARALLEL": "2",
           "LLAMA_ARG_ENDPOINT_METRICS": "true", "LLAMA_API_KEY": "a,b"}
    settings = parse_args([], environ=env)
    assert (settings.ctx_size, settings.parallel, settings.endpoint_metrics) == (1024, 2, True)
    assert settings.api_key == ["a", "b"]
    assert parse_args(["-c", "512"], environ=env).ctx_size == 512  # the flag wins


def test_negative_boolean_flags() -> None:
    assert parse_args(["--no-cont-batching"], environ={}).cont_batching is False
    assert parse_args(["--no-slots"], environ={}).endpoint_slots is False
    assert parse_args(["--no-context-shift"], environ={}).context_shift is False


@pytest.mark.parametrize("argv", [["-c", "-1"], ["--port", "70000"], ["-np", "0"],
                                  ["-ctk", "q3"], ["--flash-attn", "maybe"],
                                  ["--hf-file", "x.gguf"], ["-c", "abc"]])
def test_bad_values_exit_with_one_error_line(argv: list[str],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        parse_args(argv, environ={})
    assert info.value.code == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("llamaserver: error: "), lines


def test_bad_environment_value_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        parse_args([], environ={"LLAMA_ARG_EMBEDDINGS": "perhaps"})
    assert info.value.code == 1
    assert "LLAMA_ARG_EMBEDDINGS='perhaps'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_args([], environ={"LLAMA_ARG_CTX_SIZE": "big"})
    assert capsys.readouterr().err.startswith(
        "llamaserver: error: LLAMA_ARG_CTX_SIZE (-c/--ctx-size/--ctx_size): Input should be")


def test_bounds_are_checked_for_python_callers_too() -> None:
    with pytest.raises(ValidationError):
        ServerSettings(parallel=0)
    with pytest.raises(ValidationError):
        ServerSettings(unknown_option=1)  # type: ignore[call-arg]


def test_api_keys_are_hidden_from_repr(tmp_path: Path) -> None:
    key_file = tmp_path / "keys.txt"
    key_file.write_text("file-key-1\n\n  file-key-2  \n")
    settings = ServerSettings(api_key=["very-secret"], api_key_file=key_file,
                              hf_token="hf-secret")
    assert "very-secret" not in repr(settings) and "hf-secret" not in repr(settings)
    assert settings.all_api_keys() == ["very-secret", "file-key-1", "file-key-2"]


def test_help_lists_env_vars() -> None:
    parser = build_parser()
    assert isinstance(parser, argparse.ArgumentParser)
    text = parser.format_help()
    assert "LLAMA_ARG_CTX_SIZE" in text and "--system-prompt-file" in text


def test_help_is_grouped_and_names_every_flag_without_a_field() -> None:
    from llamaserver.settings import upstream

    text = build_parser().format_help()
    titles = ["model:", "chat template and reasoning:", "sampling (the defaults of every "
              "request):", "server:", "llama-server flags accepted but not applied yet",
              "llama-server flags accepted with no effect here",
              "llama-server flags refused"]
    positions = [text.index(title) for title in titles]
    assert positions == sorted(positions)
    words = set(text.replace(",", " ").replace("/", " ").split())
    missing = [f for row in upstream.ROWS for f in row.flags + row.negative if f not in words]
    assert missing == []
    assert text.startswith("usage: llamaserver [options]\n")


def test_module_entry_point_help() -> None:
    result = subprocess.run([sys.executable, "-m", "llamaserver", "--help"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert "--n-gpu-layers" in result.stdout
