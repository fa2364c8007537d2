"""The typed settings behind llama-server's flags, and what they turn into (no model needed,
except where a test builds a real sampler chain from the defaults)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

import llamaserver
from llamaserver import ServerSettings
from llamaserver._logging import configure_logging, level
from llamaserver.cli import parse_args

# Every field of the settings before they were split into groups, with its default.
SEED_FIELDS: dict[str, Any] = {
    "model": None, "model_url": None, "hf_repo": None, "hf_file": None, "hf_token": None,
    "alias": None, "lora": [], "lora_scaled": [], "lora_init_without_apply": False,
    "lora_base": None, "mmproj": None, "chat_template": None, "chat_template_file": None,
    "system_prompt_file": None, "ctx_size": 4096, "n_predict": -1, "n_keep": 0,
    "context_shift": True, "threads": None, "threads_batch": None, "threads_http": None,
    "batch_size": 2048, "ubatch_size": 512, "parallel": 1, "cont_batching": True,
    "queue_size": 64, "flash_attn": "auto", "cache_type_k": "f16", "cache_type_v": "f16",
    "defrag_thold": -1.0, "grp_attn_n": 1, "grp_attn_w": 512, "rope_scaling": None,
    "rope_scale": 0.0, "rope_freq_base": 0.0, "rope_freq_scale": 0.0, "yarn_orig_ctx": 0,
    "yarn_ext_factor": -1.0, "yarn_attn_factor": -1.0, "yarn_beta_slow": -1.0,
    "yarn_beta_fast": -1.0, "pooling": None, "embedding": False, "spm_infill": False,
    "seed": -1, "n_gpu_layers": 0, "split_mode": "layer", "tensor_split": None, "main_gpu": 0,
    "no_kv_offload": False, "mlock": False, "no_mmap": False, "numa": None,
    "host": "127.0.0.1", "port": 8080, "path": None, "api_prefix": "", "api_key": [],
    "api_key_file": None, "ssl_key_file": None, "ssl_cert_file": None, "timeout": 600,
    "endpoint_slots": True, "endpoint_metrics": False, "endpoint_props": False,
    "slot_save_path": None, "verbose": False, "log_disable": False, "log_format": "text",
    "log_file": None,
}


def test_seed_fields_keep_their_names_and_defaults() -> None:
    from llamaserver.settings import ServerSettings as FromPackage

    assert FromPackage is ServerSettings is llamaserver.ServerSettings
    defaults = ServerSettings()
    assert {name: getattr(defaults, name) for name in SEED_FIELDS} == SEED_FIELDS


def test_sampling_defaults_are_the_library_defaults() -> None:
    from llama_ffi import SamplerParams

    assert ServerSettings().default_sampler_params() == SamplerParams()


def test_sampling_flags_become_the_request_defaults(tmp_path: Path) -> None:
    settings = parse_args(
        ["--temp", "0.3", "--top-k", "7", "--top-p", "0.5", "--min-p", "0.1", "--typical", "0.9",
         "--repeat-penalty", "1.1", "--repeat-last-n", "32", "--presence-penalty", "0.2",
         "--frequency-penalty", "0.4", "--dry-multiplier", "0.8", "--dry-base", "2",
         "--dry-allowed-length", "3", "--dry-penalty-last-n", "128",
         "--dry-sequence-breaker", "\n", "--dry-sequence-breaker", "###", "--mirostat", "2",
         "--mirostat-lr", "0.2", "--mirostat-ent", "4", "--xtc-probability", "0.5",
         "--xtc-threshold", "0.2", "--top-nsigma", "1.5", "--dynatemp-range", "0.1",
         "--dynatemp-exp", "1.3", "--ignore-eos", "--min-keep", "2", "-s", "42",
         "-l", "15043+1", "--logit-bias", "2-inf,3+0.5", "--sampling-seq", "edkypmxt",
         "--grammar", 'root ::= "a"'], environ={})
    params = settings.default_sampler_params()
    assert (params.temperature, params.top_k, params.top_p, params.min_p) == (0.3, 7, 0.5, 0.1)
    assert (params.typical_p, params.repeat_penalty, params.repeat_last_n) == (0.9, 1.1, 32)
    assert (params.presence_penalty, params.frequency_penalty) == (0.2, 0.4)
    assert (params.dry_multiplier, params.dry_base, params.dry_allowed_length,
            params.dry_penalty_last_n) == (0.8, 2.0, 3, 128)
    assert params.dry_sequence_breakers == ("\n", "###")
    assert (params.mirostat, params.mirostat_eta, params.mirostat_tau) == (2, 0.2, 4.0)
    assert (params.xtc_probability, params.xtc_threshold, params.top_n_sigma) == (0.5, 0.2, 1.5)
    assert (params.dynatemp_range, params.dynatemp_exponent) == (0.1, 1.3)
    assert (params.ignore_eos, params.min_keep, params.seed) == (True, 2, 42)
    assert params.logit_bias == {15043: 1.0, 2: float("-inf"), 3: 0.5}
    assert params.samplers == ["penalties", "dry", "top_k", "typ_p", "top_p", "min_p", "xtc",
                               "temperature"]
    assert params.grammar == 'root ::= "a"'


def test_sampler_order_and_breakers_spellings() -> None:
    assert parse_args(["--samplers", "top_k;temp;min-p"], environ={}
                      ).default_sampler_params().samplers == ["top_k", "temp", "min-p"]
    assert ServerSettings(dry_sequence_breakers="none").default_sampler_params(
    ).dry_sequence_breakers == ()
    assert parse_args(["--dry-sequence-breaker", "none", "--dry-sequence-breaker", "|"],
                      environ={}).dry_sequence_breakers == ["|"]
    for bad in ({"samplers": "top_k;adaptive_p"}, {"sampling_seq": "ka"},
                {"sampling_seq": "kq"}, {"samplers": "top_k", "sampling_seq": "k"},
                {"logit_bias": ["15043*2"]}, {"logit_bias": ["15043+inf"]},
                {"temperature": "nan"}, {"top_p": 1.5}, {"repeat_penalty": 0}):
        with pytest.raises(ValidationError):
            ServerSettings(**bad)


def test_grammar_from_files_and_schemas(tmp_path: Path) -> None:
    (tmp_path / "g.gbnf").write_text('root ::= "x"')
    (tmp_path / "s.json").write_text('{"type": "boolean"}')
    assert ServerSettings(grammar_file=tmp_path / "g.gbnf").default_grammar() == 'root ::= "x"'
    by_file = ServerSettings(json_schema_file=tmp_path / "s.json").default_grammar()
    by_text = parse_args(["-j", '{"type": "boolean"}'], environ={}).default_grammar()
    assert by_file == by_text and "true" in by_text
    with pytest.raises(ValidationError, match="cannot read"):
        ServerSettings(grammar_file=tmp_path / "missing.gbnf")
    with pytest.raises(ValidationError, match="not several"):
        ServerSettings(grammar='root ::= "x"', json_schema={"type": "string"})
    with pytest.raises(ValidationError, match="pattern"):
        ServerSettings(json_schema={"type": "string", "pattern": "a+"})


def test_default_sampler_params_build_a_working_chain(model: Any) -> None:
    from llama_ffi import SamplerChain

    settings = parse_args(["--temp", "0.7", "--sampling-seq", "kmt", "-l", "1-inf",
                           "--json-schema", '{"type": "boolean"}'], environ={})
    params = settings.default_sampler_params()
    params.validate(model.vocab.n_tokens)
    with SamplerChain(model, params, n_ctx=512) as chain:
        stages = chain.stage_names()
    assert stages[:4] == ["logit-bias", "top-k", "min-p", "temp-ext"], stages


def test_aliases_and_the_first_alias() -> None:
    settings = parse_args(["-a", "one, two", "--alias", "three,one"], environ={})
    assert settings.aliases == ["one", "two", "three"] and settings.alias == "one"
    assert ServerSettings(alias="solo").aliases == ["solo"]
    dumped = settings.model_dump(exclude_unset=True)
    assert ServerSettings.model_validate({**dumped, "alias": "new"}).aliases == ["new"]
    settings.alias = "x,y"
    assert (settings.alias, settings.aliases) == ("x", ["x", "y"])
    assert ServerSettings().alias is None


def test_chat_and_reasoning_fields() -> None:
    settings = parse_args(["--no-jinja", "--chat-template-kwargs", '{"enable_thinking": true, '
                           '"x": [1]}', "-rea", "off", "--reasoning-effort", "high",
                           "--reasoning-format", "deepseek-legacy", "--reasoning-budget", "0",
                           "--no-prefill-assistant", "--tags", "chat, fim,chat"], environ={})
    assert settings.jinja is False and settings.prefill_assistant is False
    assert settings.template_kwargs() == {"enable_thinking": False, "x": [1],
                                          "reasoning_effort": "high"}
    assert (settings.reasoning_format, settings.reasoning_budget) == ("deepseek-legacy", 0)
    assert settings.tags == ["chat", "fim"]
    assert ServerSettings(reasoning="1").reasoning == "on"
    assert ServerSettings(reasoning_effort="default").template_kwargs() == {}
    for bad in ({"chat_template_kwargs": "[1]"}, {"chat_template_kwargs": "{bad"},
                {"reasoning_format": "think"}, {"reasoning_budget": -2}):
        with pytest.raises(ValidationError):
            ServerSettings(**bad)
    # a lone surrogate, escaped in the JSON text or in a Python value, never reaches a prompt
    for bad in ({"chat_template_kwargs": '{"a": "\\ud800"}'},
                {"chat_template_kwargs": {"a": "\udc00"}},
                {"json_schema": '{"type": "string", "pattern": "\\udfff"}'}):
        with pytest.raises(ValidationError, match="lone surrogate"):
            ServerSettings(**bad)


def test_hosts_ports_and_cors_origins() -> None:
    assert ServerSettings(host="127.0.0.1,/run/llama.sock", port=0).port == 0  # one TCP address
    settings = ServerSettings(host=" 127.0.0.1, [::1] ,/run/llama.sock",
                              cors_origins="https://A.example:8443/,localhost")
    assert settings.hosts == ["127.0.0.1", "::1", "/run/llama.sock"]
    assert settings.cors_origins == ["https://a.example:8443", "localhost"]
    assert ServerSettings().cors_origins == ["*"] and ServerSettings().hosts == ["127.0.0.1"]
    for bad in ({"host": " , "}, {"host": "127.0.0.1,127.0.0.2", "port": 0},
                {"cors_origins": "example.org"}, {"cors_origins": "http://a.org/path"}):
        with pytest.raises(ValidationError):
            ServerSettings(**bad)


def test_hardware_spellings() -> None:
    assert ServerSettings(n_gpu_layers="all").n_gpu_layers == -1
    assert ServerSettings(n_gpu_layers="auto").n_gpu_layers == -1
    assert (ServerSettings(load_mode="mlock").no_mmap, ServerSettings(load_mode="mlock").mlock
            ) == (True, True)
    assert ServerSettings(load_mode="mmap+mlock").no_mmap is False
    settings = parse_args(["-t", "-1", "-tb", "-1", "--threads-http", "-1", "-np", "-1",
                           "-kvo"], environ={})
    assert (settings.threads, settings.threads_batch, settings.threads_http) == (None,) * 3
    assert settings.parallel == 1 and settings.no_kv_offload is False
    assert parse_args(["-nkvo"], environ={}).no_kv_offload is True


def test_server_fields(tmp_path: Path) -> None:
    keys = tmp_path / "keys.txt"
    keys.write_text("# the first key\nk1\n\n#k2\nk3\n")
    settings = parse_args(["--api-key", "a,b", "--api-key", "c", "--api-key-file", str(keys),
                           "--media-path", str(tmp_path), "--sleep-idle-seconds", "60",
                           "--no-webui", "--reuse-port", "--no-cors-credentials"], environ={})
    assert settings.all_api_keys() == ["a", "b", "c", "k1", "k3"]
    assert (settings.media_path, settings.sleep_idle_seconds) == (tmp_path, 60)
    assert settings.webui is False and settings.reuse_port is True
    assert settings.cors_credentials is False
    assert parse_args(["--ui"], environ={"LLAMA_ARG_UI": "0"}).webui is True
    for bad in ({"media_path": tmp_path / "none"}, {"sleep_idle_seconds": 0}):
        with pytest.raises(ValidationError):
            ServerSettings(**bad)


def test_logging_fields() -> None:
    assert parse_args(["--log-jsonl"], environ={}).log_format == "json"
    assert level(ServerSettings()) == logging.INFO
    assert level(ServerSettings(verbosity=2)) == logging.WARNING
    assert level(ServerSettings(verbosity=5)) == logging.DEBUG
    assert level(ServerSettings(verbosity=1, verbose=True)) == logging.DEBUG
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging(parse_args(["--no-log-timestamps", "--no-log-prefix"], environ={}))
        assert root.handlers[0].formatter._fmt == "%(message)s"  # type: ignore[union-attr]
        configure_logging(ServerSettings())
        assert root.handlers[0].formatter._fmt == (  # type: ignore[union-attr]
            "%(asctime)s %(levelname)s %(name)s: %(message)s")
    finally:
        root.handlers[:], _ = saved[0], root.setLevel(saved[1])


# (the chat template and -spf files are read, and checked, by llamaserver._engine_config)
@pytest.mark.parametrize("field", ["api_key_file", "ssl_key_file", "ssl_cert_file"])
def test_files_read_at_start_must_exist(field: str, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="file not found"):
        ServerSettings(**{field: tmp_path / "missing"})


def test_every_group_validator_reaches_server_settings() -> None:
    # validators are found by method name: two groups using one name would lose one
    from llamaserver.settings import (chat, context, hardware, logs, media, model, network,
                                      ray, rope, sampling, speculative, upstream)

    groups = [chat.ChatSettings, context.ContextSettings, hardware.HardwareSettings,
              logs.LogSettings, media.MediaSettings, model.ModelSettings,
              speculative.SpeculativeSettings, network.NetworkSettings,
              rope.RopeSettings, sampling.SamplingSettings, upstream.UpstreamOnly,
              ray.RaySettings]
    names = [name for group in groups for kind in ("field_validators", "model_validators")
             for name in getattr(group.__pydantic_decorators__, kind)]
    assert len(names) == len(set(names))
    ours = ServerSettings.__pydantic_decorators__
    assert set(names) == set(ours.field_validators) | set(ours.model_validators)
