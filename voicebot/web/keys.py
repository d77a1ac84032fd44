"""The application's state keys, shared by the console and the adapters that live in the web app."""

from __future__ import annotations

import weakref

from aiohttp import web

from voicebot.call import CallBoard, Engines
from voicebot.config import Config, ServeConfig
from voicebot.web.auth import AuthState, Session

CONFIG = web.AppKey("config", Config)
SERVE = web.AppKey("serve", ServeConfig)
ENGINES = web.AppKey("engines", Engines)
BOARD = web.AppKey("board", CallBoard)
AUTH = web.AppKey("auth", AuthState)
SOCKETS = web.AppKey("sockets", weakref.WeakKeyDictionary)
"""The console's open event streams, each mapped to the hash of its session token."""
SESSION = web.RequestKey("session", Session)
"""The signed-in session of a request that passed the session gate."""
