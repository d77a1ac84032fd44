"""A campaign over SIP, as `voicebot campaign run` runs it: the SIP adapter, the SIP dialer and the runner together."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from compliance_rules.pack import RulePack
from voicebot.adapters.sip import SipAdapter, SipSettings
from voicebot.call import CallBoard, Engines
from voicebot.campaigns.dialer import MAX_CALL_S, Converse, DialPlan, SipDialer, hold_then_hang_up
from voicebot.campaigns.runner import AttemptReport, CampaignRunner, RetryPolicy
from voicebot.campaigns.store import CampaignStore
from voicebot.campaigns.strategy import Strategy
from voicebot.config import Config


async def run_sip_campaign(engines: Engines, store: CampaignStore, pack: RulePack, plan: DialPlan, *, listen: str,
                           campaign: str | None = None, policy: RetryPolicy | None = None, once: bool = False,
                           concurrency: int = 1, settings: SipSettings | None = None,
                           converse: Converse = hold_then_hang_up, max_call_s: float = MAX_CALL_S,
                           now: Callable[[], datetime] | None = None, bot: Config | None = None,
                           on_attempt: Callable[[AttemptReport], None] | None = None,
                           strategy: Strategy | None = None) -> list[AttemptReport]:
    """Start a SIP user agent on `listen`, dial the campaign's due accounts (one pass with `once`), stop the agent.

    With `bot` (the project's Config) the bot talks on answered calls; otherwise `converse` runs on them. With a
    `strategy` it is a collection run: accounts are worked until their debts stop, and it runs until stopped.
    """
    adapter = SipAdapter(engines, CallBoard(), listen=listen, mode="in-path", settings=settings)
    await adapter.start()
    try:
        dialer = SipDialer(adapter, plan, converse=converse, max_call_s=max_call_s, bot=bot)
        runner = CampaignRunner(store, dialer, pack, engines.audit, policy=policy, campaign=campaign,
                                concurrency=concurrency, on_attempt=on_attempt, strategy=strategy,
                                **({"now": now} if now else {}))
        try:
            return await (runner.run_once() if once else runner.run())
        finally:
            runner.close()
    finally:
        await adapter.close()
