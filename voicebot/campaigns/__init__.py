"""Outbound reminder campaigns: import accounts from CSV, dial them within the rules, retry, store outcomes."""

from voicebot.campaigns.accounts import Account, CampaignError
from voicebot.campaigns.crypto import PiiCipher, PiiKeyError
from voicebot.campaigns.dialer import (
    CallResult,
    Converse,
    DebtorCall,
    Dialer,
    DialPlan,
    DialPlanError,
    SipDialer,
    hold_then_hang_up,
)
from voicebot.campaigns.importer import (
    CampaignFileError,
    DebtRow,
    ParsedFile,
    RowProblem,
    Stage,
    read_campaign_file,
    stage_for,
)
from voicebot.campaigns.live import run_sip_campaign
from voicebot.campaigns.report import campaign_report, format_report
from voicebot.campaigns.runner import AttemptReport, CampaignRunner, RetryPolicy
from voicebot.campaigns.store import CampaignStore

__all__ = [
    "Account",
    "AttemptReport",
    "CallResult",
    "CampaignError",
    "CampaignFileError",
    "CampaignRunner",
    "CampaignStore",
    "Converse",
    "DebtRow",
    "DebtorCall",
    "DialPlan",
    "DialPlanError",
    "Dialer",
    "ParsedFile",
    "PiiCipher",
    "PiiKeyError",
    "RetryPolicy",
    "RowProblem",
    "SipDialer",
    "Stage",
    "campaign_report",
    "format_report",
    "hold_then_hang_up",
    "read_campaign_file",
    "run_sip_campaign",
    "stage_for",
]
