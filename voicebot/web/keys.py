"""The serving process's state keys: what create_app holds and wires into the console, calls and adapters."""

from __future__ import annotations

import weakref

from aiohttp import web

from voicebot.adapters.audiosocket import AudioSocketServer
from voicebot.adapters.sip import SipAdapter, SipSettings
from voicebot.call import CallBoard, Engines
from voicebot.cluster import ClusterBus
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
AUDIOSOCKET = web.AppKey("audiosocket", AudioSocketServer)
"""The app's running AudioSocket server, when `audiosocket_port` is set."""
SIP_SETTINGS = web.AppKey("sip_settings", SipSettings)
"""Stack settings for the SIP adapter, when a test sets its own before the app starts."""
SIP_ADAPTER = web.AppKey("sip_adapter", SipAdapter)
"""The app's running SIP adapter, when `sip_listen` is set (campaigns dial through it)."""
CLUSTER = web.AppKey("cluster", ClusterBus)
"""The link to the other nodes, when the store is shared."""
