"""Admission control: how many calls one process supervises at once, and how long a silent stream may stay."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

log = logging.getLogger(__name__)

CALLS_PER_CORE = 10
"""Two-leg calls one core keeps in real time (every threat hung up, p95 within 1 s), with a margin: bench/live.py on
this project's 2-core machine, recognizers on the shared static graph, was real time at 24 calls, not at 28."""
IDLE_TIMEOUT_S = 30.0
MAX_AHEAD_S = 2.0
"""How far a leg's audio may run ahead of the wall clock before its stream is read no faster than real time."""


class CallRefused(Exception):
    """The server is at capacity: the adapter refuses the call in its protocol's own way, so it goes elsewhere."""


def default_capacity() -> int:
    """Calls this machine supervises in real time: CALLS_PER_CORE for each core."""
    return CALLS_PER_CORE * (os.cpu_count() or 1)


@dataclass(slots=True)
class Admission:
    """The process's call slots: a call takes one before it starts and gives it back when it has ended."""

    capacity: int = 0
    """Calls at once; 0: default_capacity()."""
    idle_timeout_s: float = IDLE_TIMEOUT_S
    """A call whose legs bring no media for this long is ended (recorded and audited)."""
    live: int = 0
    refused: int = 0

    def __post_init__(self) -> None:
        if self.capacity < 0 or self.idle_timeout_s <= 0:
            raise ValueError("capacity must be 0 (measured) or more, and the idle timeout positive")
        self.capacity = self.capacity or default_capacity()

    @property
    def full(self) -> bool:
        """Whether a new call would be refused now."""
        return self.live >= self.capacity

    def check(self, adapter: str) -> None:
        """Raise CallRefused (logged and counted) when a new call would find no free slot."""
        if self.full:
            self.refused += 1
            log.warning("refused a %s call: %d calls live, capacity %d (refused so far: %d)", adapter, self.live,
                        self.capacity, self.refused)
            raise CallRefused(f"at capacity ({self.capacity} calls)")

    def take(self, adapter: str) -> None:
        """Take a slot for a new call, or raise CallRefused when none is free."""
        self.check(adapter)
        self.live += 1

    def give_back(self) -> None:
        """Free the slot of a call that has ended."""
        self.live = max(0, self.live - 1)
