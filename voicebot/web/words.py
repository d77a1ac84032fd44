"""The server-rendered pages' words in English and Simplified Chinese (the console's own are in static/i18n.js)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

LANGS = ("en", "zh")
WORDS: dict[str, tuple[str, str]] = {
    # signing in
    "console": ("voicebot console", "语音机器人控制台"), "sign_in_title": ("Sign in", "登录"),
    "user_name": ("User name", "用户名"), "password": ("Password", "密码"), "sign_in": ("Sign in", "登录"),
    # page furniture
    "live_calls": ("Live calls", "实时通话"), "reports": ("Reports", "报表"), "recordings": ("Recordings", "录音"),
    "month": ("Month", "月份"), "show": ("Show", "查看"),
    "qa_title": ("voicebot console · QA", "语音机器人控制台 · 质检"),
    "review_title": ("voicebot console · review", "语音机器人控制台 · 复核"),
    "report_title": ("voicebot console · QA report", "语音机器人控制台 · 质检报表"),
    "recordings_of": ("Recordings of {month}", "{month} 的录音"),
    # the month list
    "col_date": ("Date ({zone})", "日期（{zone}）"), "col_agent": ("Agent", "坐席"),
    "col_duration": ("Duration", "时长"),
    "col_flags": ("Flags", "违规"), "col_auto": ("Auto score", "自动评分"), "col_sample": ("Sample", "抽样"),
    "col_reviewed": ("Reviewed", "已复核"), "yes": ("yes", "是"), "no": ("no", "否"),
    "random": ("random", "随机"), "flagged": ("flagged", "有违规"), "sample_only": ("sample only", "仅抽样"),
    "not_reviewed": ("not reviewed", "未复核"), "agent": ("agent", "坐席"), "category": ("category", "类别"),
    "sort": ("sort", "排序"), "all": ("all", "全部"), "apply": ("Apply", "筛选"),
    "sort_sample": ("sample first", "抽样优先"), "sort_date": ("date", "日期"), "sort_agent": ("agent", "坐席"),
    "sort_score": ("auto score", "自动评分"), "sort_flags": ("most flags", "违规最多"),
    "no_match": ("No recordings match.", "没有符合条件的录音。"),
    "no_recordings": ("No recordings this month.", "本月没有录音。"),
    "no_sample": ("No sample drawn yet.", "尚未抽样。"),
    "sample_note": ("Sample of {n} recordings at rate {rate}, drawn {at} by {actor} (seed {seed}).",
                    "抽样 {n} 条录音，比例 {rate}，{at} 由 {actor} 抽取（种子 {seed}）。"),
    "progress_month": ("{done} of {n} recordings of the month reviewed.", "本月 {n} 条录音中已复核 {done} 条。"),
    "progress_sample": ("{done} of {n} sampled recordings reviewed; ", "抽样 {n} 条中已复核 {done} 条；"),
    "screening_note": ("Screened {done}, waiting {waiting}, failed {failed}.",
                       "已筛查 {done} 条，等待 {waiting} 条，失败 {failed} 条。"),
    "screening_running": (" Screening is running.", " 正在筛查。"),
    "draw_sample": ("Draw this month's sample (15% per agent, every flagged call)",
                    "抽取本月样本（每个坐席 15%，加上所有有违规的通话）"),
    "start_screening": ("Screen recordings not screened yet", "筛查尚未筛查的录音"),
    # the review page
    "recording": ("Recording", "录音"), "outcome": ("outcome", "结果"),
    "in_sample": ("in the sample ({reason})", "已抽样（{reason}）"), "not_in_sample": ("not in the sample", "未抽样"),
    "cut_short": ("The recording was cut short (the call's writer stopped early).", "录音不完整（写入提前停止）。"),
    "channels": ("Left channel: agent · right channel: customer. Click a time to jump there.",
                 "左声道：坐席 · 右声道：客户。点击时间可跳转。"),
    "flags": ("Flags", "违规与信号"), "transcript": ("Transcript", "转写"), "scorecard": ("Scorecard", "评分表"),
    "accept_auto": ("Accept the automatic marks", "采用自动评分"), "item": ("Item", "项目"),
    "automatic": ("Automatic", "自动"), "why": ("Why", "原因"), "your_mark": ("Your mark", "你的评分"),
    "note": ("Note", "备注"), "auto_score": ("Automatic score", "自动评分"), "verdict": ("Verdict", "结论"),
    "notes": ("Notes", "备注"), "save": ("Save review", "保存复核"),
    "save_next": ("Save & next in the sample", "保存并复核下一条"),
    "not_screened": ("not screened yet", "尚未筛查"), "saved": ("Review saved.", "复核已保存。"),
    "not_reviewed_yet": ("Not reviewed yet.", "尚未复核。"),
    "last_review": ("Last review by {who} at {at}: {verdict}, score {score}.",
                    "最近一次复核：{who}，{at}，结论 {verdict}，得分 {score}。"),
    "no_transcript": ("No transcript: the recording has not been screened yet.", "暂无转写：录音尚未筛查。"),
    "no_speech": ("Screened: no speech was heard on either leg.", "已筛查：双方都没有说话。"),
    "no_flags": ("No flags.", "没有违规。"), "agent_leg": ("agent", "坐席"), "customer_leg": ("customer", "客户"),
    "pass": ("pass", "通过"), "fail": ("fail", "不通过"), "n/a": ("n/a", "不适用"), "coaching": ("coaching", "需辅导"),
    "item_identity_before_disclosure": ("identity before disclosure", "先核实身份再披露"),
    "item_required_disclosures": ("required disclosures", "必要告知"),
    "item_no_prohibited_language": ("no prohibited language", "无违禁用语"),
    "item_dispute_handled": ("dispute handled", "异议处理"), "item_politeness": ("politeness", "礼貌"),
    "note_on": ("Note on {item}", "{item}的备注"),
    # collection analytics
    "collection_title": ("voicebot console · collection", "语音机器人控制台 · 催收分析"),
    "accounts": ("Accounts", "账户"), "dialled": ("dialled", "已拨打"), "rates": ("Rates", "比率"),
    "contact_rate": ("Contact rate (answered)", "接通率"), "right_party_contact_rate": (
        "Right-party contact rate", "本人接通率"), "promise_rate": ("Promise rate (of right-party contacts)",
                                                                  "承诺还款率（本人接通中）"),
    "kept_promise_rate": ("Kept-promise rate", "守约率"), "by_stage": ("By stage and script", "按阶段与话术"),
    "col_stage": ("Stage", "阶段"), "col_script": ("Script", "话术"), "promised": ("Promised", "承诺金额"),
    "collected": ("Collected", "回收金额"), "stage_early": ("early (1–30 days)", "前期（1–30 天）"),
    "stage_middle": ("middle (31–60 days)", "中期（31–60 天）"), "stage_late": ("late (61+ days)", "后期（61 天以上）"),
    "debts_by_state": ("Debts by state", "各状态债务数"),
    "minimum_contacts": ("Minimum contacts (first in 2 h, 3 in 7 days, 5 in 15): met, missed, still open",
                         "最低联系要求（2 小时内首次、7 天 3 次、15 天 5 次）：达成、未达成、进行中"),
    "disputes_cease": ("Disputes and cease requests per week", "每周异议与停止联系请求"), "week": ("Week", "周"),
    "disputed": ("Disputes", "异议"), "cease": ("Cease requests", "停止联系"), "download_csv": ("CSV", "导出 CSV"),
    "pauses": ("Paused work", "已暂停"), "pause": ("Pause", "暂停"), "resume": ("Resume", "恢复"),
    "scope": ("What", "范围"), "scope_account": ("Account (campaign/account id)", "账户（活动/账户号）"),
    "scope_campaign": ("Campaign", "活动"), "scope_pack": ("Rule pack", "规则包"), "pause_name": ("Name", "名称"),
    "paused_by": ("Paused by", "暂停人"), "since": ("Since", "开始时间"), "nothing_paused": (
        "Nothing is paused.", "没有暂停的工作。"),
    # the reports
    "per_agent_csv": ("Per-agent CSV", "按坐席导出 CSV"), "per_call_csv": ("Per-call CSV", "按通话导出 CSV"),
    "coverage": ("Coverage per agent, {month}", "{month} 各坐席抽检覆盖"),
    "below_rate": ("Agents with less than {rate} of their calls sampled are highlighted.",
                   "抽样比例低于 {rate} 的坐席已标出。"),
    "col_recordings": ("Recordings", "录音"), "col_sampled": ("Sampled", "已抽样"),
    "col_flagged_calls": ("Flagged calls", "有违规的通话"), "col_findings": ("Findings", "发现"),
    "col_mean": ("Mean review score", "平均复核得分"), "col_verdicts": ("Verdicts", "结论"),
    "by_category": ("Flags by category, {month}", "{month} 各类违规"), "col_category": ("Category", "类别"),
    "col_calls": ("Calls", "通话"), "n_calls": ("{n} calls", "{n} 通"),
    "flagged_calls_chart": ("Flagged calls by category, {month}", "{month} 各类别有违规的通话"),
    "trend_chart": ("Mean review score per agent, {first} to {month}", "{first} 至 {month} 各坐席平均复核得分"),
    "trend_title": ("Mean review score over {month} and the five months before", "{month} 及前五个月的平均复核得分"),
    "calls_chart_title": ("Flagged calls by category", "各类别有违规的通话"),
}


def browser_language(accept_language: str) -> str:
    """"zh" when an Accept-Language header's first language is Chinese, else "en"."""
    return "zh" if accept_language.split(",")[0].strip().lower().startswith("zh") else "en"


@dataclass(frozen=True, slots=True)
class Words:
    """One page's words in the user's language, and its times in the user's zone (UTC when they chose none)."""

    lang: str
    zone: str = ""

    def __call__(self, key: str, **values: object) -> str:
        """The words for `key`, with `values` filled in."""
        text = WORDS[key][LANGS.index(self.lang)]
        return text.format(**values) if values else text

    def template(self, *keys: str, **values: object) -> dict[str, str]:
        """`t_KEY` template values for the keys (filled with `values` where they need them)."""
        return {f"t_{k}": self(k, **values) for k in keys}

    def when(self, moment: datetime) -> str:
        """A time in the user's zone, to the minute."""
        return moment.astimezone(ZoneInfo(self.zone_name)).strftime("%Y-%m-%d %H:%M")

    @property
    def zone_name(self) -> str:
        """The user's zone, UTC when none was chosen."""
        return self.zone or "UTC"

    def mark(self, value: str) -> str:
        """A scorecard mark or verdict in the user's language."""
        return self(value) if value in WORDS else value

