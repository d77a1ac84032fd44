"""SIP/RTP adapter on baresip-python: answer every INVITE (or refuse it), supervise calls, bridge them in-path.

One user agent listens on `sip_listen` and answers any called user. An answered call is the `agent` leg of a
supervised Call unless `X-Voicebot-Leg: customer` says otherwise; SIP calls sharing an `X-Voicebot-Call` value
are the two legs of one tapped Call (a fork from a PBX). With `sip_forward`, the inbound call is bridged in-path
(B2BUA) to the filled-in URI, which becomes the other leg. `X-Debtor-TZ` and `X-Agent-Id` describe the call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

import baresip
from baresip import Account, BaresipError, CallFailed, Config, UserAgent

from voicebot.adapters.sip_session import SipSession, bye, other_leg
from voicebot.admission import CallRefused
from voicebot.bot import BotCall, start_bot_call
from voicebot.call import Call, CallBoard, CallInfo, Engines, LanguageNotServed, call_language
from voicebot.config import Config as VoicebotConfig
from voicebot.frames import LEGS, Leg

log = logging.getLogger(__name__)


class SipConfigError(ValueError):
    """A SIP setting (listen address, forward URI template) is malformed."""


class ProtocolError(ValueError):
    """An INVITE carried unusable X-Voicebot headers or no usable called user; the call is refused."""


class SipCallError(RuntimeError):
    """The SIP stack could not start, or an outbound call was refused, failed or went unanswered."""


HEADER_LEG, HEADER_CALL, HEADER_TZ, HEADER_AGENT = "X-Voicebot-Leg", "X-Voicebot-Call", "X-Debtor-TZ", "X-Agent-Id"
HEADER_VERIFIED, HEADER_LANGUAGE = "X-Identity-Verified", "X-Call-Language"
EXPOSED_HEADERS = (HEADER_LEG, HEADER_CALL, HEADER_TZ, HEADER_AGENT, HEADER_VERIFIED, HEADER_LANGUAGE, "To")
_TOKEN = re.compile(r"[A-Za-z0-9._:@+/-]{1,128}")
_ZONE = re.compile(r"[A-Za-z0-9_+/-]{1,64}")
_MAX_ZONES = 4
_URI_USER = re.compile(r"sips?:([^@;>\s]+)@", re.IGNORECASE)
_USER = re.compile(r"[A-Za-z0-9_.!~*'()&=+$,;?/%-]{1,64}")


# --- pure helpers ----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class CallHeaders:
    """What an INVITE's X- headers say about the call it opens."""

    leg: Leg = "agent"
    group: str | None = None
    """X-Voicebot-Call: SIP calls sharing it are the legs of one supervised call (a fork, tap mode)."""
    zones: tuple[str, ...] = ()
    agent_id: str | None = None
    account_id: str | None = None
    """Set by the campaign dialer for the calls it places (kept with the recording)."""
    verified: bool = False
    """X-Identity-Verified: yes: the PBX confirmed the debtor's identity before the call reached us."""
    language: str | None = None
    """X-Call-Language: zh or en (None: the pack's)."""


def parse_call_headers(headers: Mapping[str, str]) -> CallHeaders:
    """Read X-Voicebot-Leg, X-Voicebot-Call, X-Debtor-TZ (comma-separated), X-Agent-Id, X-Identity-Verified and
    X-Call-Language."""
    h = {k.lower(): v.strip() for k, v in headers.items()}
    leg = h.get(HEADER_LEG.lower(), "").lower() or "agent"
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
    verified = h.get(HEADER_VERIFIED.lower(), "no").lower()
    if verified not in ("yes", "no"):
        raise ProtocolError(f"{HEADER_VERIFIED} must be yes or no")
    try:
        language = call_language(h.get(HEADER_LANGUAGE.lower()))
    except ValueError as e:
        raise ProtocolError(f"{HEADER_LANGUAGE}: {e}") from None
    return CallHeaders(leg=leg, group=group, zones=zones, agent_id=agent, verified=verified == "yes",
                       language=language)


def parse_listen(value: str) -> tuple[str, int]:
    """`host:port` (or `[v6]:port`) → (host, port)."""
    host, sep, port = value.strip().rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    usable = sep and host and port.isascii() and port.isdigit() and 0 < int(port) < 65535
    if not usable or any(c in host for c in " /[]"):
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


# --- the user agent --------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class SipSettings:
    """Stack settings beyond ServeConfig (tests give their own, e.g. to pin the clock)."""

    rtp_timeout_s: int = 10
    """A call whose RTP stops this long (a peer that vanished without BYE) is closed."""
    max_calls: int = 64
    """SIP calls at once (a bridged call counts two); more INVITEs are refused with 486 Busy Here."""
    dial_timeout_s: float = 30.0
    clock: Callable[[], datetime] | None = field(default=None, repr=False)
    """The wall clock calls are timed by (tests pin it inside calling hours)."""


ACK_TIMEOUT_S = 4.0
"""How long an answered INVITE may wait for its ACK (a real caller's comes within a round trip)."""


class SipAdapter:
    """One baresip user agent: answers or refuses every INVITE, places outbound calls, owns the sessions."""

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
        self._admits: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Start the SIP stack on the listen address (UDP and TCP there, TLS on the next port); one per process."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        config = Config(net_interface=None if self.host in ("0.0.0.0", "::") else self.host, audio_driver="aumem",
                        max_concurrent_calls=None, expose_headers=EXPOSED_HEADERS,
                        rtp_timeout=self.settings.rtp_timeout_s, extra_config_text=f"sip_listen {host}:{self.port}\n")
        self.runtime = baresip.Runtime()
        self.runtime.on_dead = self._on_dead
        try:
            await self.runtime.start(config)
            account = Account(user="voicebot", domain=f"{host}:{self.port}", password="", reg_interval=0,
                              audio_codecs=("pcmu", "pcma"), extra_params=("catchall=yes",))
            self.ua = await UserAgent.create(self.runtime, account)
        except BaresipError as e:
            with contextlib.suppress(BaresipError):
                await self.runtime.close()
            raise SipCallError(f"SIP stack could not listen on {host}:{self.port} ({type(e).__name__}); is the "
                               "port (and the next one, for TLS) free, and no other SIP stack running here?") from e
        self.ua.on_incoming(self._on_incoming)
        log.info("sip: listening on port %d%s", self.port, ", bridging in-path" if self.forward else "")

    async def close(self) -> None:
        """Refuse new calls, end the live ones (BYE, call_end `server shutdown`), stop the stack."""
        self.draining = True
        for task in self._admits:
            task.cancel()
        for session in list(self._runs):
            session.stop("server shutdown")
        await asyncio.gather(*self._runs.values(), *self._admits, return_exceptions=True)
        if self.runtime is not None:
            await self.runtime.close()

    @property
    def live_calls(self) -> int:
        """SIP calls answered or being set up."""
        return self._pending + sum(len(s.sip) for s in self._runs)

    async def dial(self, uri: str, *, leg: Leg = "customer", headers: Mapping[str, str] | None = None,
                   zones: tuple[str, ...] = (), agent_id: str | None = None) -> Call:
        """Place a supervised outbound call (a campaign's call to `leg`); returns the Call once it is answered."""
        sip = await self._place_counted(uri, headers)
        session = self._session(CallHeaders(leg=leg, zones=zones, agent_id=agent_id))
        session.attach(leg, sip)
        self._launch(session)
        return session.call

    async def dial_bot(self, uri: str, config: VoicebotConfig, params: Mapping[str, str], *,
                       zones: tuple[str, ...] = (), agent_id: str | None = None,
                       account_id: str | None = None) -> BotCall:
        """Place a call the bot makes: the callee is the `customer` leg, the bot speaks on the SIP call's RTP."""
        headers = CallHeaders(leg="customer", zones=zones, agent_id=agent_id, account_id=account_id)
        session = self._session(headers, mode="in-path")
        bot = await start_bot_call(config, self.engines, self.board, session.call.info, params, session)
        session.use_bot(bot)
        session.attach("customer", await self._place_counted(uri))
        self._launch(session)
        return bot

    async def _place_counted(self, uri: str, headers: Mapping[str, str] | None = None) -> baresip.Call:
        """`_place`, refused while draining or at capacity, counted as a call being set up meanwhile."""
        if self.draining or self.live_calls >= self.settings.max_calls or self.engines.admission.full:
            raise SipCallError("not placing a call: the server is draining or at capacity")
        self._pending += 1
        try:
            return await self._place(uri, headers)
        finally:
            self._pending -= 1

    async def _place(self, uri: str, headers: Mapping[str, str] | None = None) -> baresip.Call:
        """Dial `uri` and wait until it answers; SipCallError if it does not."""
        if self.ua is None or self.runtime is None:
            raise SipCallError("the SIP adapter is not started")
        early: list[baresip.StackEvent] = []
        # an answer or a refusal can arrive before ua.dial() returns the call: keep those and hand them on
        self.runtime.subscribe(early.append)
        try:
            sip = await self.ua.dial(uri, headers=dict(headers or {}))
        except (BaresipError, ValueError) as e:
            raise SipCallError(f"outbound call could not be placed ({type(e).__name__})") from e
        finally:
            self.runtime.unsubscribe(early.append)
        for event in early:
            if event.call == sip.handle:
                sip._on_stack_event(event)  # what baresip's own listener would have done
        try:
            await sip.wait_established(self.settings.dial_timeout_s)
        except CallFailed as e:
            raise SipCallError(f"outbound call not answered ({type(e).__name__}, status {e.status})") from e
        except (BaresipError, ValueError) as e:
            raise SipCallError(f"outbound call could not be placed ({type(e).__name__})") from e
        return sip

    def _on_incoming(self, sip: baresip.Call) -> None:
        task = asyncio.create_task(self._admit(sip))
        self._admits.add(task)
        task.add_done_callback(self._admits.discard)

    async def _admit(self, sip: baresip.Call) -> None:
        """Answer an INVITE as a new session's leg (bridged when forwarding) or a group's second leg; else refuse."""
        try:
            headers = parse_call_headers(sip.headers)
            forward = None if headers.group else self.forward
            target = fill_forward_uri(forward, sip.headers.get("To")) if forward else None
            self.engines.for_language(headers.language)
        except ProtocolError as e:
            log.warning("sip: refused an INVITE with unusable headers (%s)", type(e).__name__)
            return await self._refuse(sip)
        except LanguageNotServed as e:
            log.warning("sip: refused an INVITE (%s)", e)
            return await self._refuse(sip)
        group = self._groups.get(headers.group or "")
        if group is not None and not group.ending and headers.leg not in group.sip and not self.draining:
            if await self._answer(sip):
                group.attach(headers.leg, sip)
            return None
        legs = 2 if target else 1
        if self.draining or group is not None or self.live_calls + legs > self.settings.max_calls:
            return await self._refuse(sip)
        try:
            self.engines.admission.check("sip")
        except CallRefused:
            return await self._refuse(sip)
        self._pending += legs
        try:
            outbound = await self._place(target) if target else None
        except SipCallError as e:
            log.warning("sip: forward failed (%s); refusing the inbound call", e)
            return await self._refuse(sip)
        finally:
            self._pending -= legs
        if not await self._answer(sip):
            return await bye(outbound) if outbound is not None else None
        session = self._session(headers, bridged=outbound is not None)
        session.attach(headers.leg, sip)
        if outbound is not None:
            session.attach(other_leg(headers.leg), outbound)
        if headers.group:
            self._groups[headers.group] = session
        self._launch(session)
        return None

    @staticmethod
    async def _answer(sip: baresip.Call) -> bool:
        """Answer, then wait for the caller's ACK: an INVITE never ACKed is hung up and never takes a call slot."""
        # video=True: answering an audio-only offer without video makes the stack send a re-INVITE right after
        try:
            await sip.answer(video=True)
            await sip.wait_established(ACK_TIMEOUT_S)
        except CallFailed as e:
            log.warning("sip: an answered INVITE was never ACKed (%s); hung up", type(e).__name__)
            return False
        except BaresipError as e:
            log.info("sip: caller left before the answer (%s)", type(e).__name__)
            return False
        return True

    async def _refuse(self, sip: baresip.Call) -> None:
        """Decline with 486 Busy Here (the only refusal baresip-python sends)."""
        self.refused += 1
        with contextlib.suppress(BaresipError):
            await sip.reject()

    def _session(self, headers: CallHeaders, *, bridged: bool = False, mode: str | None = None) -> SipSession:
        clock = self.settings.clock
        mode = mode or ("tap" if headers.group else self.mode)
        info = CallInfo(adapter="sip", mode=mode, zones=headers.zones or self.zones, agent_id=headers.agent_id,
                        account_id=headers.account_id, verified=headers.verified, language=headers.language,
                        **({"started_at": clock()} if clock else {}))
        return SipSession(info, self.engines, self.board, bridged=bridged, grouped=headers.group is not None,
                          clock=clock)

    def _launch(self, session: SipSession) -> None:
        task = asyncio.create_task(session.run(), name=f"sip:{session.call.call_id[:8]}")
        self._runs[session] = task
        task.add_done_callback(lambda done: self._forget(session, done))

    def _forget(self, session: SipSession, task: asyncio.Task[None]) -> None:
        self._runs.pop(session, None)
        for key in [k for k, s in self._groups.items() if s is session]:
            del self._groups[key]
        if not task.cancelled() and task.exception() is not None:
            log.error("sip call %s: session failed (%s)", session.call.call_id, type(task.exception()).__name__)

    def _on_dead(self) -> None:
        log.critical("sip: the SIP stack died; ending its calls (restart the process to take calls again)")
        self.draining = True
        for session in list(self._runs):
            session.stop("sip stack died")
