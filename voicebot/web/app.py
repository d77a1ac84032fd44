"""create_app(): the supervisor console, the media endpoints and the adapters' servers in one aiohttp app."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from functools import partial

import aiohttp
from aiohttp import web

from voicebot.adapters.audiosocket import AudioSocketServer
from voicebot.adapters.pbx import PbxWebhook
from voicebot.adapters.sip import SipAdapter
from voicebot.adapters.twilio import setup as setup_twilio
from voicebot.admission import Admission
from voicebot.audit_pg import PgAuditLog
from voicebot.bot import BotSetupError, load_kit
from voicebot.call import CallBoard, Engines, load_hearing
from voicebot.cluster import ClusterBus
from voicebot.config import Config, ServeConfig
from voicebot.stores import open_audit_log, open_recordings
from voicebot.web.access_log import redact_access_log
from voicebot.web.auth import AuthSettings
from voicebot.web.console import setup_console
from voicebot.web.keys import AUDIOSOCKET, BOARD, CLUSTER, CONFIG, ENGINES, SERVE, SIP_ADAPTER, SIP_SETTINGS
from voicebot.web.qa import setup_qa
from voicebot.web.qa_month import setup_qa_month
from voicebot.web.qa_reports import setup_qa_reports
from voicebot.web.qa_review import setup_qa_review


def create_app(config: Config, serve: ServeConfig, engines: Engines | None = None, *,
               auth: AuthSettings | None = None) -> web.Application:
    """The whole server; `engines` may be passed in (tests share one loaded model), else loaded on start-up."""
    redact_access_log()
    app = web.Application()
    app[CONFIG] = config
    app[SERVE] = serve
    board = app[BOARD] = CallBoard()
    app.cleanup_ctx.extend([_engines_ctx(engines), _cluster_ctx, _audiosocket_ctx, _sip_ctx])
    app.router.add_get("/healthz", healthz)
    setup_console(app, auth or AuthSettings())
    setup_qa(app)
    setup_qa_month(app)
    setup_qa_review(app)
    setup_qa_reports(app)
    setup_twilio(app, serve=serve, config=config, board=board, engines=lambda: app[ENGINES])
    return app


def _engines_ctx(given: Engines | None):
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        config, serve = app[CONFIG], app[SERVE]
        admission = Admission(capacity=serve.max_calls, idle_timeout_s=serve.idle_timeout_s)
        if given is not None:  # shared loaded parts; this server's own limits
            app[ENGINES] = dataclasses.replace(given, admission=admission)
            yield
            return
        loop = asyncio.get_running_loop()
        load = partial(load_hearing, config, semantic=serve.semantic_model)
        hearings = [await loop.run_in_executor(None, load, pack) for pack in (serve.pack, *serve.other_packs)]
        audit = await loop.run_in_executor(None, open_audit_log, config, serve.db, serve.audit_key)
        session, pbx = None, None
        if serve.pbx_webhook:
            session = aiohttp.ClientSession()
            pbx = PbxWebhook(serve.pbx_webhook, serve.media_token, session)
        recordings = await loop.run_in_executor(None, open_recordings, config, serve.db, serve.recordings_dir)
        default, others = hearings[0], {h.rules.pack.language: h for h in hearings[1:]}
        app[ENGINES] = Engines(asr=default.asr, rules=default.rules, meaning=default.meaning, audit=audit,
                               recordings=recordings, pbx=pbx, admission=admission, others=others)
        with contextlib.suppress(BotSetupError):  # no NLU model installed: bot calls are refused when they come
            await loop.run_in_executor(None, load_kit, config)  # else the first bot call's debtor hears 3 s of nothing
        yield
        for call in list(app[BOARD].calls.values()):
            await call.end("server shutdown")
        if session is not None:
            await session.close()
        app[ENGINES].shutdown()
        recordings.close()
        audit.close()

    return ctx


async def _cluster_ctx(app: web.Application) -> AsyncIterator[None]:
    """Follow the other nodes' calls, and let them follow ours, when the store is shared."""
    audit = app[ENGINES].audit
    if not isinstance(audit, PgAuditLog):
        yield
        return
    bus = app[CLUSTER] = ClusterBus(audit.url, app[SERVE].node, audit.derived_key("cluster"), app[BOARD])
    task = asyncio.create_task(bus.run())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _audiosocket_ctx(app: web.Application) -> AsyncIterator[None]:
    """Run the AudioSocket TCP server on its configured address for the app's lifetime when `audiosocket_port` is
    set."""
    serve = app[SERVE]
    if serve.audiosocket_port is None:
        yield
        return
    server = AudioSocketServer(app[ENGINES], app[BOARD], serve)
    await server.start(serve.audiosocket_host, serve.audiosocket_port)
    app[AUDIOSOCKET] = server
    yield
    await server.close()


async def _sip_ctx(app: web.Application) -> AsyncIterator[None]:
    """Run the SIP user agent for the app's lifetime when `sip_listen` is set."""
    serve = app[SERVE]
    if not serve.sip_listen:
        yield
        return
    adapter = SipAdapter(app[ENGINES], app[BOARD], listen=serve.sip_listen, forward=serve.sip_forward,
                         mode=serve.mode, zones=serve.zones, settings=app.get(SIP_SETTINGS))
    await adapter.start()
    app[SIP_ADAPTER] = adapter
    try:
        yield
    finally:
        await adapter.close()


async def healthz(request: web.Request) -> web.Response:
    """Liveness, live calls and capacity (a balancer routes elsewhere when `full`), and storage faults: while the
    audit log or the recordings cannot be written, 503 with what failed; no authentication, no call data."""
    engines = request.app[ENGINES]
    admission = engines.admission
    faults = {name: fault for name, fault in (("audit", engines.audit.fault), ("recordings", engines.recordings.fault))
              if fault}
    return web.json_response({"ok": not faults, "calls": len(request.app[BOARD].calls), "capacity": admission.capacity,
                              "full": admission.full, "refused": admission.refused, "faults": faults},
                             status=503 if faults else 200)
