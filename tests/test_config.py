from pathlib import Path

import pytest

from voicebot.config import VOSK_MODEL_NAME, ConfigError, load_config


def test_defaults_live_under_home(tmp_path: Path):
    config = load_config(env={}, home=tmp_path)
    assert config.models_dir == tmp_path / "models"
    assert config.vosk_model == tmp_path / "models" / VOSK_MODEL_NAME
    assert config.vosk_model_source is None
    assert config.shared_dir == tmp_path.parent / "shared"


def test_argument_beats_environment_beats_file(tmp_path: Path):
    (tmp_path / "voicebot.toml").write_text('models_dir = "/from/file"\ndata_dir = "/data/file"\n')
    env = {"VOICEBOT_HOME": str(tmp_path), "VOICEBOT_MODELS_DIR": "/from/env"}
    assert load_config(env=env).models_dir == Path("/from/env")
    assert load_config(env=env, models_dir="/from/arg").models_dir == Path("/from/arg")
    assert load_config(env={"VOICEBOT_HOME": str(tmp_path)}).models_dir == Path("/from/file")
    assert load_config(env=env).data_dir == Path("/data/file")


def test_vosk_model_variable_names_the_model_and_the_first_fetch_source(tmp_path: Path):
    config = load_config(env={"VOICEBOT_VOSK_MODEL": str(tmp_path / "m")}, home=tmp_path)
    assert config.vosk_model == tmp_path / "m"
    assert config.vosk_model_source == tmp_path / "m"


def test_malformed_toml_is_a_clear_error(tmp_path: Path):
    (tmp_path / "voicebot.toml").write_text("models_dir = \n")
    with pytest.raises(ConfigError, match=r"voicebot\.toml: not valid TOML"):
        load_config(env={}, home=tmp_path)


def test_unknown_setting_is_a_clear_error(tmp_path: Path):
    (tmp_path / "voicebot.toml").write_text('model_dir = "/typo"\n')
    with pytest.raises(ConfigError, match=r"unknown setting.*model_dir"):
        load_config(env={}, home=tmp_path)
    with pytest.raises(ConfigError, match="unknown setting"):
        load_config(env={}, colour="red")
