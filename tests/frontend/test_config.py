import pytest
from pydantic import ValidationError

from kvyard.config import AppConfig


def test_defaults_serve_embedded_model_disaggregated_on_cpu():
    cfg = AppConfig()
    assert cfg.mode == "disaggregated" and cfg.engine.device == "cpu"
    assert cfg.model.block_size % 32 == 0


def test_yaml_roundtrip_and_unknown_fields_rejected(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("mode: aggregated\nmodel: {path: /m, served_name: m, aliases: {'*': m}}\n")
    cfg = AppConfig.from_yaml(path)
    assert cfg.mode == "aggregated" and cfg.resolve_model_name("anything") == "m"
    path.write_text("mode: aggregated\nmodle: {}\n")
    with pytest.raises(ValidationError, match="modle"):
        AppConfig.from_yaml(path)
    path.write_text("- a list\n")
    with pytest.raises(ValueError, match="mapping"):
        AppConfig.from_yaml(path)


def test_cross_field_rules():
    with pytest.raises(ValidationError, match="cuda"):
        AppConfig.model_validate({"engine": {"device": "cpu"}, "decode": {"num_gpus": 1}})
    with pytest.raises(ValidationError, match="num_gpus"):
        AppConfig.model_validate({"engine": {"device": "cuda"}})


def test_model_name_resolution():
    cfg = AppConfig.model_validate({"model": {"served_name": "m", "aliases": {"claude-sonnet-4-5": "m"}}})
    assert cfg.resolve_model_name(None) == "m"
    assert cfg.resolve_model_name("claude-sonnet-4-5") == "m"
    assert cfg.resolve_model_name("gpt-5") is None
