"""One static decoding graph for a Vosk lookahead model, shared by every recognizer in a process.

A lookahead model ships HCLr.fst and Gr.fst, and each recognizer composes them on the fly into its own cache: its
first call costs several times the CPU of later ones and each holds tens of MiB. Composed once here with OpenFst's
own tools (Debian's libfst-tools and its lookahead and n-gram plugins), the graph is read once per process and every
recognizer decodes on it. Vosk uses `graph/HCLG.fst` when a model has one; vosk_engine.model_view gives it one.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

STATIC_DIR = "static-graph"
GRAPH_FILE = "HCLG.fst"
WORDS_FILE = "words.txt"
PLUGIN = "olabel_lookahead-fst.so"
PLUGIN_DIRS = ("/usr/lib/x86_64-linux-gnu/fst", "/usr/lib/aarch64-linux-gnu/fst", "/usr/lib/fst", "/usr/local/lib/fst")
TOOLS = ("fstcompose", "fstrelabel", "fstconvert")
FST_MAGIC = 2125659606
SYMBOLS_MAGIC = 2125658996
HAS_SYMBOLS = 0x3
BUILD_TIMEOUT_S = 1800


class StaticGraphError(RuntimeError):
    """The static graph cannot be built: tools missing, a tool failed, or the model is not a lookahead model."""


def static_graph(model_dir: Path) -> Path | None:
    """The model's built static graph folder, or None."""
    folder = model_dir / STATIC_DIR
    return folder if all((folder / name).is_file() for name in (GRAPH_FILE, WORDS_FILE)) else None


def build_static_graph(model_dir: Path) -> Path:
    """Compose the model's HCLr.fst and Gr.fst into <model>/static-graph/HCLG.fst (+ words.txt); minutes, ~1 GiB."""
    graph = model_dir / "graph"
    if not all((graph / name).is_file() for name in ("HCLr.fst", "Gr.fst", "disambig_tid.int")):
        raise StaticGraphError(f"{graph} has no HCLr.fst, Gr.fst and disambig_tid.int: not a lookahead model")
    env = {**os.environ, "LD_LIBRARY_PATH": str(_plugin_dir())}
    for stale in model_dir.glob(".static-graph-*"):  # left by a build that was killed
        shutil.rmtree(stale, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix=".static-graph-", dir=model_dir) as tmp:
        work = Path(tmp)
        words = split_symbols(graph / "Gr.fst", work / "Gr.fst")
        (work / WORDS_FILE).write_text("".join(f"{word} {key}\n" for word, key in words), encoding="utf-8")
        pairs = (graph / "disambig_tid.int").read_text().split()
        (work / "disambig.pairs").write_text("".join(f"{tid} 0\n" for tid in pairs))
        _run(["fstcompose", str(graph / "HCLr.fst"), str(work / "Gr.fst"), str(work / "composed.fst")], env)
        _run(["fstrelabel", f"--relabel_ipairs={work / 'disambig.pairs'}", str(work / "composed.fst"),
              str(work / "relabelled.fst")], env)
        (work / "composed.fst").unlink()
        _run(["fstconvert", "--fst_type=const", str(work / "relabelled.fst"), str(work / GRAPH_FILE)], env)
        staged = work / STATIC_DIR
        staged.mkdir()
        for name in (GRAPH_FILE, WORDS_FILE):
            (work / name).rename(staged / name)
        shutil.rmtree(model_dir / STATIC_DIR, ignore_errors=True)
        staged.rename(model_dir / STATIC_DIR)
    return model_dir / STATIC_DIR


def split_symbols(fst_path: Path, out_path: Path) -> list[tuple[str, int]]:
    """Copy a binary FST without its symbol tables (Debian's OpenFst cannot re-read this model's); return the
    first table's symbols and keys (the words, for Vosk's words.txt)."""
    data = fst_path.read_bytes()
    reader = _Reader(data)
    if reader.int32() != FST_MAGIC:
        raise StaticGraphError(f"{fst_path} is not a binary OpenFst file")
    reader.string(), reader.string(), reader.int32()
    flags_at, flags = reader.pos, reader.int32()
    reader.skip(8 * 4)  # properties, start, states, arcs
    body_at, tables = reader.pos, []
    if flags & HAS_SYMBOLS:
        tables = [reader.symbols() for bit in (1, 2) if flags & bit]
    header = bytearray(data[:body_at])
    struct.pack_into("<i", header, flags_at, flags & ~HAS_SYMBOLS)
    out_path.write_bytes(bytes(header) + data[reader.pos:])
    if not tables:
        raise StaticGraphError(f"{fst_path} has no word symbol table")
    return tables[0]


class _Reader:
    """Little-endian fields of an OpenFst binary header."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def int32(self) -> int:
        self.pos += 4
        return struct.unpack_from("<i", self.data, self.pos - 4)[0]

    def int64(self) -> int:
        self.pos += 8
        return struct.unpack_from("<q", self.data, self.pos - 8)[0]

    def skip(self, size: int) -> None:
        self.pos += size

    def string(self) -> str:
        size = self.int32()
        self.pos += size
        return self.data[self.pos - size : self.pos].decode("utf-8")

    def symbols(self) -> list[tuple[str, int]]:
        if self.int32() != SYMBOLS_MAGIC:
            raise StaticGraphError("unreadable symbol table in the FST header")
        self.string(), self.int64()
        return [(self.string(), self.int64()) for _ in range(self.int64())]


def _plugin_dir() -> Path:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    plugins = [p.parent for d in PLUGIN_DIRS for p in Path(d).glob(f"*/{PLUGIN}")]
    if missing or not plugins:
        raise StaticGraphError("OpenFst's tools and plugins are not installed (Debian: libfst-tools and "
                               "libfst22-plugins-base; `make models` installs them as root)")
    return plugins[0]


def _run(command: list[str], env: dict[str, str]) -> None:
    try:
        subprocess.run(command, env=env, check=True, capture_output=True, timeout=BUILD_TIMEOUT_S)
    except subprocess.CalledProcessError as e:
        raise StaticGraphError(f"{command[0]} failed (exit {e.returncode}): "
                               f"{e.stderr.decode(errors='replace')[-300:]}") from e
    except subprocess.TimeoutExpired as e:
        raise StaticGraphError(f"{command[0]} ran past {BUILD_TIMEOUT_S} s") from e
