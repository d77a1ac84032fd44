"""The application's state keys, shared by the console and the adapters that live in the web app."""

from __future__ import annotations

from aiohttp import web

from voicebot.call import CallBoard, Engines
from voicebot.config import Config, ServeConfig

CONFIG = web.AppKey("config", Config)
SERVE = web.AppKey("serve", ServeConfig)
ENGINES = web.AppKey("engines", Engines)
BOARD = web.AppKey("board", CallBoard)
