"""The `voicebot` command, one module per command group; importing this package registers them all."""

from voicebot.cli import audio, campaign, models, records, rules, serve  # noqa: F401 -- registers the commands
from voicebot.cli.base import main

__all__ = ["main"]
