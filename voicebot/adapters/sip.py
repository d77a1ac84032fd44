"""SIP/RTP adapter on baresip-python: answer (or place) calls, supervise each as a live Call, bridge in-path."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache

import baresip
import numpy as np
from aiohttp import web
from baresip import (
    Account,
    AudioNotActive,
    AudioRestarted,
    BaresipError,
    CallFailed,
    CallState,
    Config,
    Event,
    UserAgent,
)

from voicebot.call import Call, CallBoard, CallInfo, Engines
from voicebot.frames import LEGS, Leg
from voicebot.web.keys import BOARD, ENGINES, SERVE

log = logging.getLogger(__name__)


class SipConfigError(ValueError):
    """A SIP setting (listen address, forward URI template) is malformed."""


class ProtocolError(ValueError):
    """An INVITE carried unusable X-Voicebot headers or no usable called user; the call is refused."""


class SipCallError(RuntimeError):
    """The SIP stack could not start, or an outbound call was refused, failed or went unanswered."""


PACKET_S = 0.020
READ_MAX_BYTES = 8192
GAP_SLACK_S = 0.2
"""A leg whose RTP has paused this long is padded with silence, as a phone line carries it."""
WARN_TONE_HZ = 1000
WARN_TONE_S = 0.3
HEADER_LEG, HEADER_CALL, HEADER_TZ, HEADER_AGENT = "X-Voicebot-Leg", "X-Voicebot-Call", "X-Debtor-TZ", "X-Agent-Id"
EXPOSED_HEADERS = (HEADER_LEG, HEADER_CALL, HEADER_TZ, HEADER_AGENT, "To")
_TOKEN = re.compile(r"[A-Za-z0-9._:@+/-]{1,128}")
_ZONE = re.compile(r"[A-Za-z0-9_+/-]{1,64}")
_URI_USER = re.compile(r"sips?:([^@;>\s]+)@", re.IGNORECASE)
_USER = re.compile(r"[A-Za-z0-9_.!~*'()&=+$,;?/%-]{1,64}")
_MAX_ZONES = 4


# --- pure helpers ----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class CallHeaders:
    """What an INVITE's X- headers say about the call it opens."""

    leg: Leg = "agent"
    group: str | None = None
    """X-Voicebot-Call: SIP calls sharing it are the legs of one supervised call (a fork, tap mode)."""
    zones: tuple[str, ...] = ()
    agent_id: str | None = None


def parse_call_headers(headers: Mapping[str, str]) -> CallHeaders:
    """Read X-Voicebot-Leg, X-Voicebot-Call, X-Debtor-TZ (comma-separated) and X-Agent-Id."""
    h = {k.lower(): v.strip() for k, v in headers.items()}
    leg = h.get(HEADER_LEG.lower(), "agent").lower() or "agent"
    if leg not in LEGS:
        raise ProtocolError(f"{HEADER_LEG} must be agent or customer")
    group = h.get(HEADER_CALL.lower()) or None
    if group is not None and not _TOKEN.fullmatch(group):
        raise ProtocolError(f"{HEADER_CALL} must be 1-128 characters of A-Z a-z 0-9 . _ : @ + / -")
    zones = tuple(z.strip() for z in h.get(HEADER_TZ.lower(), "").split(",") if z.strip())
    if len(zones) > _MAX_ZONES or not all(_ZONE.fullmatch(z) for z in zones):
        raise ProtocolError(f"{HEADER_TZ} must list at most {_MAX_ZONES} IANA zone names, e.g. Asia/Shanghai")
    agent = h.get(HEADER_AGENT.lower()) or None
    if agent is not None and not _TOKEN.fullmatch(agent):
        raise ProtocolError(f"{HEADER_AGENT} must be 1-128 characters of A-Z a-z 0-9 . _ : @ + / -")
    return CallHeaders(leg=leg, group=group, zones=zones, agent_id=agent)


def parse_listen(value: str) -> tuple[str, int]:
    """`host:port` (or `[v6]:port`) → (host, port)."""
    host, sep, port = value.strip().rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65535 or any(c in host for c in " /[]"):
        raise SipConfigError(f"SIP listen address must be HOST:PORT such as 127.0.0.1:5080, not {value!r}")
    return host, int(port)


def check_forward_template(template: str) -> str:
    """Validate a forward URI template: a sip:/sips: URI whose only placeholder is {user}."""
    try:
        probe = template.format(user="u")
    except (KeyError, IndexError, ValueError):
        raise SipConfigError(f"forward URI template may only use {{user}}, not {template!r}") from None
    if not probe.lower().startswith(("sip:", "sips:")) or any(c in probe for c in " \r\n<>\""):
        raise SipConfigError(f"forward URI must look like sip:{{user}}@pbx.example:5060, not {template!r}")
    return template


def fill_forward_uri(template: str, to_header: str | None) -> str:
    """The URI to bridge a call to: the template with {user} = the user the caller dialled (its To header)."""
    if "{user}" not in template:
        return template
    match = _URI_USER.search(to_header or "")
    if match is None or not _USER.fullmatch(match.group(1)):
        raise ProtocolError("the INVITE's To header names no usable user to forward to")
    return template.format(user=match.group(1))


def silence_due(fed_samples: int, elapsed_s: float, rate: int, slack_s: float = GAP_SLACK_S) -> int:
    """Samples of silence to add so a leg's audio clock trails the wall clock by at most `slack_s`."""
    return max(0, int((elapsed_s - slack_s) * rate) - fed_samples)


def end_reason(close_text: str | None) -> str:
    """The call_end reason for a SIP call the far end or the network closed."""
    return "rtp timeout" if close_text and "rtp" in close_text.lower() else "remote hang-up"


@cache
def warning_tone(rate: int) -> bytes:
    """A short 1 kHz beep as 16-bit PCM."""
    t = np.arange(int(rate * WARN_TONE_S)) / rate
    return (np.sin(2 * np.pi * WARN_TONE_HZ * t) * 8000).astype("<i2").tobytes()


def _other(leg: Leg) -> Leg:
    return "customer" if leg == "agent" else "agent"


async def _bye(sip: baresip.Call) -> None:
    if sip.state is not CallState.CLOSED:
        with contextlib.suppress(BaresipError):
            await sip.hangup()


# --- one supervised call ---------------------------------------------------------------------------

@dataclass(slots=True)
class _LegClock:
    rate: int = 0
    t0: float | None = None
    fed: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class SipSettings:
    """Stack settings beyond ServeConfig; tests put their own in app[SIP_SETTINGS]."""

    rtp_timeout_s: int = 10
    """A call whose RTP stops this long (a peer that vanished without BYE) is closed."""
    max_calls: int = 64
    dial_timeout_s: float = 30.0
    clock: Callable[[], datetime] | None = field(default=None, repr=False)
    """The wall clock calls are timed by (tests pin it inside calling hours)."""


class SipSession:
    """One supervised Call and the SIP calls carrying its legs; it is the Call's CallControl."""

    def __init__(self, info: CallInfo, engines: Engines, board: CallBoard, *, bridged: bool,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.bridged = bridged
        self.grouped = False
        self.sip: dict[Leg, baresip.Call] = {}
        self.call = Call(info, engines, self, board, now=clock)
        self.hangup_reason: str | None = None
        self.close_text: str | None = None
        self.ending = False
        self._forced: str | None = None
        self._over = asyncio.Event()
        self._clocks = {leg: _LegClock() for leg in LEGS}
        self._quiet_until: dict[Leg, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def attach(self, leg: Leg, sip: baresip.Call) -> None:
        """Carry `leg` on this SIP call: its audio, DTMF and close."""
        self.sip[leg] = sip
        sip.on(lambda event: self._on_event(leg, event))
        sip.on_dtmf(lambda digit: self._on_digit(leg, digit.digit))
        if sip.state is CallState.CLOSED:
            self._closed(leg, None)

    async def run(self) -> None:
        """Start the Call, pump audio every 20 ms until the call is over, then end it."""
        await self.call.start()
        log.info("sip call %s: started, legs %s, mode %s, bridged %s", self.call.call_id, ",".join(self.sip),
                 self.call.info.mode, self.bridged)
        try:
            await self._pump()
        finally:
            self.ending = True
            for sip in self.sip.values():
                await _bye(sip)
            reason = self._forced or (f"hangup: {self.hangup_reason}" if self.hangup_reason is not None
                                      else end_reason(self.close_text))
            await self.call.end(reason)
            log.info("sip call %s: ended (%s)", self.call.call_id, reason.split(":")[0])

    def stop(self, reason: str) -> None:
        """End the call from outside (server shutdown): BYE every leg and end with `reason`."""
        self._forced = self._forced or reason
        self._over.set()

    # CallControl -----------------------------------------------------------------------------------

    async def hangup(self, reason: str) -> None:
        """Send BYE on every leg; the session's task then ends the Call."""
        if self.hangup_reason is None and not self._over.is_set():
            self.hangup_reason = reason
        for sip in list(self.sip.values()):
            await _bye(sip)
        self._over.set()

    async def mute(self, leg: Leg, muted: bool) -> None:
        """Pass silence instead of the leg's audio to the other party (bridged calls); note the state."""
        self.call.mark_muted(leg, muted)

    async def warn(self, leg: Leg | None) -> None:
        """Play a short beep to the leg's speaker (the agent when no leg is named)."""
        sip = self.sip.get(leg or "agent")
        if sip is None or sip.state is not CallState.ESTABLISHED:
            return
        with contextlib.suppress(BaresipError):
            info = sip.audio.info()
            sip.audio.flush_tx()
            sip.audio.write(warning_tone(info.tx_sample_rate or 8000))
            self._quiet_until[leg or "agent"] = time.monotonic() + WARN_TONE_S

    # events ----------------------------------------------------------------------------------------

    def _on_event(self, leg: Leg, event: baresip.StackEvent) -> None:
        if event.event is Event.CALL_CLOSED:
            self._closed(leg, event.text)

    def _closed(self, leg: Leg, text: str | None) -> None:
        self.close_text = self.close_text or text
        log.info("sip call %s: %s leg closed", self.call.call_id, leg)
        if not self.grouped or all(s.state is CallState.CLOSED for s in self.sip.values()):
            self._over.set()

    def _on_digit(self, leg: Leg, digit: str) -> None:
        self.call.press(leg, digit)
        self.call.emit({"type": "dtmf", "leg": leg})
        other = self.sip.get(_other(leg))
        if self.bridged and other is not None and other.state is CallState.ESTABLISHED:
            task = asyncio.create_task(self._relay_digit(other, digit))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _relay_digit(sip: baresip.Call, digit: str) -> None:
        with contextlib.suppress(BaresipError, ValueError):
            await sip.send_dtmf(digit)

    # audio -----------------------------------------------------------------------------------------

    async def _pump(self) -> None:
        due = time.monotonic()
        while not self._over.is_set():
            now = time.monotonic()
            for leg, sip in list(self.sip.items()):
                pcm = self._take(leg, sip, now)
                if pcm:
                    self.call.feed(leg, pcm, "pcm16", self._clocks[leg].rate)
                    if self.bridged:
                        self._pass(_other(leg), leg, pcm, now)
            due = max(due + PACKET_S, now - 5 * PACKET_S)
            await asyncio.sleep(max(0.0, due - time.monotonic()))

    def _take(self, leg: Leg, sip: baresip.Call, now: float) -> bytes:
        """The leg's audio received since the last tick, padded with silence over RTP gaps."""
        clock = self._clocks[leg]
        if sip.state is CallState.CLOSED:
            return b""
        try:
            if not clock.rate:
                info = sip.audio.info()
                if not info.rx_ready:
                    return b""
                clock.rate = info.rx_sample_rate
            data = sip.audio.read(READ_MAX_BYTES)
        except (AudioNotActive, AudioRestarted):
            data = b""
        if data and clock.t0 is None:
            clock.t0 = now - len(data) / 2 / clock.rate
        if clock.t0 is None:
            return b""
        clock.fed += len(data) // 2
        gap = silence_due(clock.fed, now - clock.t0, clock.rate)
        clock.fed += gap
        return data + bytes(2 * gap)

    def _pass(self, dest: Leg, src: Leg, pcm: bytes, now: float) -> None:
        """Bridge: send `src`'s audio on to `dest` (silence while `src` is muted or `dest` hears a beep)."""
        sip = self.sip.get(dest)
        if sip is None or sip.state is not CallState.ESTABLISHED or now < self._quiet_until.get(dest, 0.0):
            return
        with contextlib.suppress(AudioNotActive, AudioRestarted):
            sip.audio.write(bytes(len(pcm)) if src in self.call.muted else pcm)


# --- the user agent --------------------------------------------------------------------------------

class SipAdapter:
    """One baresip user agent: answers every INVITE (or refuses it), places outbound calls, owns the sessions."""

    def __init__(self, engines: Engines, board: CallBoard, *, listen: str, forward: str | None = None,
                 mode: str = "in-path", zones: tuple[str, ...] = (), settings: SipSettings | None = None) -> None:
        self.host, self.port = parse_listen(listen)
        self.forward = check_forward_template(forward) if forward else None
        self.engines, self.board, self.mode, self.zones = engines, board, mode, zones
        self.settings = settings or SipSettings()
        self.draining = False
        self.refused = 0
        self.runtime: baresip.Runtime | None = None
        self.ua: UserAgent | None = None
        self._runs: dict[SipSession, asyncio.Task[None]] = {}
        self._groups: dict[str, SipSession] = {}
        self._pending = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Start the SIP stack listening on the configured address (one per process)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        config = Config(net_interface=None if self.host in ("0.0.0.0", "::") else self.host, audio_driver="aumem",
                        max_concurrent_calls=None, expose_headers=EXPOSED_HEADERS,
                        rtp_timeout=self.settings.rtp_timeout_s, extra_config_text=f"sip_listen {host}:{self.port}\n")
        self.runtime = baresip.Runtime()
        try:
            await self.runtime.start(config)
            account = Account(user="voicebot", domain=f"{host}:{self.port}", password="", reg_interval=0,
                              audio_codecs=("pcmu", "pcma"), extra_params=("catchall=yes",))
            self.ua = await UserAgent.create(self.runtime, account)
        except BaresipError as e:
            await self.runtime.close()
            raise SipCallError(f"SIP stack could not listen on {host}:{self.port} ({type(e).__name__}); "
                               "is the port (and the next one, for TLS) free?") from e
        self.ua.on_incoming(self._on_incoming)
        log.info("sip: listening on port %d%s", self.port, ", bridging in-path" if self.forward else "")

    async def close(self) -> None:
        """Refuse new calls, end the live ones (BYE, call_end `server shutdown`), stop the stack."""
        self.draining = True
        for session in list(self._runs):
            session.stop("server shutdown")
        await asyncio.gather(*self._runs.values(), *self._tasks, return_exceptions=True)
        if self.runtime is not None:
            await self.runtime.close()

    @property
    def live_calls(self) -> int:
        """SIP calls answered or being set up."""
        return self._pending + sum(len(s.sip) for s in self._runs)

    async def dial(self, uri: str, *, leg: Leg = "customer", headers: Mapping[str, str] | None = None,
                   zones: tuple[str, ...] = (), agent_id: str | None = None) -> Call:
        """Place a supervised outbound call (a campaign's call to `leg`); returns once it is answered."""
        if self.draining or self.live_calls >= self.settings.max_calls:
            raise SipCallError("not placing a call: the server is draining or at capacity")
        self._pending += 1
        try:
            sip = await self._place(uri, headers)
        finally:
            self._pending -= 1
        session = self._session(CallHeaders(leg=leg, zones=zones, agent_id=agent_id), bridged=False)
        session.attach(leg, sip)
        self._launch(session)
        return session.call

    async def _place(self, uri: str, headers: Mapping[str, str] | None = None) -> baresip.Call:
        """Dial `uri` and wait until it answers; SipCallError if it does not."""
        assert self.ua is not None, "start() the adapter first"
        try:
            sip = await self.ua.dial(uri, headers=dict(headers or {}))
            await sip.wait_established(self.settings.dial_timeout_s)
        except CallFailed as e:
            raise SipCallError(f"outbound call not answered ({type(e).__name__}, status {e.status})") from e
        except (BaresipError, ValueError) as e:
            raise SipCallError(f"outbound call could not be placed ({type(e).__name__})") from e
        return sip

    def _on_incoming(self, sip: baresip.Call) -> None:
        task = asyncio.create_task(self._admit(sip))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _admit(self, sip: baresip.Call) -> None:
        """Answer an INVITE as a leg of a new or grouped session, bridging it when forwarding; else refuse it."""
        try:
            headers = parse_call_headers(sip.headers)
            forwarding = self.forward is not None and headers.group is None
            target = fill_forward_uri(self.forward, sip.headers.get("To")) if forwarding else None
        except ProtocolError as e:
            log.warning("sip: refused an INVITE with unusable headers (%s)", type(e).__name__)
            return await self._refuse(sip)
        joined = self._groups.get(headers.group or "")
        if joined is not None and not joined.ending and headers.leg not in joined.sip:
            return await self._join(joined, headers.leg, sip)
        if self.draining or joined is not None or self.live_calls + (2 if target else 1) > self.settings.max_calls:
            return await self._refuse(sip)
        self._pending += 2 if target else 1
        try:
            outbound = await self._place(target) if target else None
        except SipCallError as e:
            log.warning("sip: forward failed (%s); refusing the inbound call", e)
            return await self._refuse(sip)
        finally:
            self._pending -= 2 if target else 1
        if not await self._answer(sip):
            if outbound is not None:
                await _bye(outbound)
            return
        session = self._session(headers, bridged=outbound is not None)
        session.attach(headers.leg, sip)
        if outbound is not None:
            session.attach(_other(headers.leg), outbound)
        if headers.group:
            session.grouped = True
            self._groups[headers.group] = session
        self._launch(session)

    async def _join(self, session: SipSession, leg: Leg, sip: baresip.Call) -> None:
        if await self._answer(sip):
            session.attach(leg, sip)
            log.info("sip call %s: %s leg joined", session.call.call_id, leg)

    @staticmethod
    async def _answer(sip: baresip.Call) -> bool:
        # video=True keeps an audio-only offer from drawing a re-INVITE the stack sends after answering without video
        try:
            await sip.answer(video=True)
        except BaresipError as e:
            log.info("sip: caller left before the answer (%s)", type(e).__name__)
            return False
        return True

    async def _refuse(self, sip: baresip.Call) -> None:
        self.refused += 1
        with contextlib.suppress(BaresipError):
            await sip.reject()

    def _session(self, headers: CallHeaders, *, bridged: bool) -> SipSession:
        clock = self.settings.clock
        info = CallInfo(adapter="sip", mode="tap" if headers.group else self.mode,
                        zones=headers.zones or self.zones, agent_id=headers.agent_id,
                        **({"started_at": clock()} if clock else {}))
        return SipSession(info, self.engines, self.board, bridged=bridged, clock=clock)

    def _launch(self, session: SipSession) -> None:
        task = asyncio.create_task(session.run(), name=f"sip:{session.call.call_id[:8]}")
        self._runs[session] = task
        task.add_done_callback(lambda _: self._forget(session))

    def _forget(self, session: SipSession) -> None:
        self._runs.pop(session, None)
        for key in [k for k, s in self._groups.items() if s is session]:
            del self._groups[key]


SIP_SETTINGS = web.AppKey("sip_settings", SipSettings)
SIP_ADAPTER = web.AppKey("sip_adapter", SipAdapter)
"""The app's running SIP adapter, when `sip_listen` is set (campaigns dial through it)."""


async def sip_ctx(app: web.Application) -> AsyncIterator[None]:
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
