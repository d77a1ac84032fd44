"""torchaudio without its compiled libraries: the PyPI wheel pip pulls is a CUDA build that fails to load here.

pyannote.audio and transformers import torchaudio when it is installed but use none of its compiled operators
on our paths (we read audio with soundfile), so its extension loader is replaced by a stub that loads nothing.
"""

from __future__ import annotations

import sys
import types


def stub_torchaudio_extensions() -> None:
    """Make `import torchaudio` skip its compiled libraries, and torchcodec absent; call before importing either."""
    if "torchaudio" in sys.modules:
        return
    stub = types.ModuleType("torchaudio._extension")
    stub.__dict__.update(_IS_TORCHAUDIO_EXT_AVAILABLE=False, _IS_ALIGN_AVAILABLE=False,
                         fail_if_no_align=lambda fn: fn, _load_lib=lambda lib: False)
    sys.modules["torchaudio._extension"] = stub
    sys.modules.setdefault("torchcodec", None)
