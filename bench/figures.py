"""What every bench script prints: one JSON line per figure, with this machine's core count."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

CORES = os.cpu_count()


def emit(metric: str, value: float, unit: str, **extra: object) -> None:
    """Print one figure as a JSON line."""
    print(json.dumps({"metric": metric, "value": round(value, 4), "unit": unit, "cores": CORES, **extra},
                     ensure_ascii=False), flush=True)


def frozen(path: Path) -> Path:
    """The path of a blind set whose sha256 still matches the one it was frozen with; exit otherwise."""
    want = (path.parent / f"{path.name}.sha256").read_text().split()[0]
    if hashlib.sha256(path.read_bytes()).hexdigest() != want:
        sys.exit(f"{path} does not match its frozen sha256: a blind set must never change")
    return path
