"""What every bench script prints: one JSON line per figure, with this machine's core count."""

from __future__ import annotations

import json
import os

CORES = os.cpu_count()


def emit(metric: str, value: float, unit: str, **extra: object) -> None:
    """Print one figure as a JSON line."""
    print(json.dumps({"metric": metric, "value": round(value, 4), "unit": unit, "cores": CORES, **extra},
                     ensure_ascii=False), flush=True)
