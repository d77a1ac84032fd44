from pathlib import Path

import pytest

from compliance_rules.engine import CallMonitor, CallState, RuleEngine, TimedWord, strongest
from compliance_rules.pack import RulePackError, load_pack


@pytest.fixture(scope="module")
def cn() -> RuleEngine:
    return RuleEngine.from_pack("cn-collection")


def categories(engine: RuleEngine, text: str, state: CallState | None = None, leg: str = "agent") -> set[str]:
    return {f.category for f in engine.check(leg, text, state)}


@pytest.mark.parametrize(("text", "category"), [
    ("你他妈的到底还不还", "obscene"),
    ("没钱就出去卖身还债啊", "obscene"),
    ("你这种人真不要脸", "insult"),
    ("有本事你就一直别还", "provocation"),
    ("出门注意安全，别怪我没提醒你", "threat"),
    ("再不还钱打断你的腿", "threat"),
    ("我找几个兄弟去你家坐坐", "gang"),
    ("我们有的是办法让你还", "gang"),
    ("明天法院就来抓你坐牢", "false_legal_threat"),
    ("警察马上上门，你等着被拘留吧", "false_legal_threat"),
    ("我是公安局经侦大队的", "impersonation"),
    ("我们是银行总行风控部的工作人员", "impersonation"),
    ("我现在就打电话告诉你老婆你欠钱不还", "third_party_disclosure"),
    ("不还就把你的事发到你们公司群里", "third_party_disclosure"),
    ("先交两百手续费才能给你减免", "fee_demand"),
    ("钱直接转到我个人微信上", "fee_demand"),
    ("不还钱我就天天给你打，打爆你电话", "harassment"),
    ("半夜也给你打，让你睡不着", "harassment"),
])
def test_each_violation_category_is_flagged(cn: RuleEngine, text: str, category: str):
    assert category in categories(cn, text)


@pytest.mark.parametrize("text", [
    "如果您持续不还款，银行可能会依法向法院提起诉讼",
    "请您警惕冒充公安的诈骗电话",
    "我们是受银行委托的贷后服务机构，本次通话将全程录音",
    "逾期可能会影响您的征信记录，请您重视",
    "请通过官方App还款，不要向任何个人账户转账",
    "我们不会联系您的家人和单位，请您放心",
    "法律规定我们只能在早上八点到晚上九点之间联系您",
    "分期手续费按照合同约定的标准收取",
    "后果由您自己承担，希望您尽快处理",
    "天冷了，出门注意安全",
    "请您注意保护个人信息安全",
    "这个事情不能再拖了，最晚月底前要还上",
])
def test_lawful_look_alikes_are_not_flagged(cn: RuleEngine, text: str):
    assert cn.check("agent", text) == []


@pytest.mark.parametrize(("text", "category"), [
    ("你就是个老来", "insult"),          # ASR wrote 老来 for 老赖
    ("再不还你就等着做牢吧", "false_legal_threat"),  # 做牢 for 坐牢
    ("法院來抓你", "false_legal_threat"),  # Traditional characters
    ("我 是 公 安 局 的", "impersonation"),  # ASR spacing
    ("先交２００手续费", "fee_demand"),     # full-width digits
])
def test_asr_errors_still_match(cn: RuleEngine, text: str, category: str):
    assert category in categories(cn, text)


def test_short_homophones_do_not_match_everything(cn: RuleEngine):
    assert cn.check("agent", "麻烦您报一下出生年月日") == []   # 出生 sounds like 畜生
    assert cn.check("agent", "喂你好，请问是李娜女士吗") == []  # 喂你 sounds like 围你


def test_state_rules_need_their_state(cn: RuleEngine):
    text = "您的信用卡已经逾期三个月，欠款五千元"
    assert cn.check("agent", text) == []
    assert "disclosure_before_verification" in categories(cn, text, CallState(verified=False))
    assert "third_party_disclosure" in categories(cn, text, CallState(verified=False, third_party=True))
    press = "那你今天什么时候还款"
    assert cn.check("agent", press) == []
    assert "pressing_after_dispute" in categories(cn, press, CallState(disputed=True))
    logged = cn.check("agent", "好的，您的异议已经记录，我们会暂停催收并提交复核", CallState(disputed=True))
    assert {(f.category, f.sets) for f in logged} == {("signal", "disputed")}  # the agent's own words log the dispute


def test_state_rules_fire_on_what_is_disclosed_or_pressed_not_on_any_debt_word(cn: RuleEngine):
    unverified, third_party = CallState(verified=False), CallState(verified=False, third_party=True)
    disputed = CallState(disputed=True)
    for lawful in ("您好，请问是李娜女士吗？我们这边是华信资产", "千万注意保管好您的信用卡，谨防诈骗",
                   "麻烦您让他方便的时候回个电话"):
        assert categories(cn, lawful, unverified) == set()
        assert categories(cn, lawful, third_party) == set()
    assert categories(cn, "不过我这边不能跟您确认任何账户信息，包括有没有欠款", third_party) == set()
    assert categories(cn, "他那张卡欠了我们八千多，你让他赶紧还", third_party) == {"third_party_disclosure"}
    assert categories(cn, "您尾号2288的卡逾期63天了", unverified) == {"disclosure_before_verification"}
    for lawful in ("好的，您说昨天已经全额还款，我先给您登记，这笔账暂停跟进",
                   "核实结果出来之前不会有人就这笔款联系您还款"):
        assert categories(cn, lawful, disputed) - {"signal"} == set()
    assert categories(cn, "不管是不是你借的，今天必须先还一部分", disputed) == {"pressing_after_dispute"}


def test_customer_insults_are_not_agent_violations(cn: RuleEngine):
    assert categories(cn, "你们这些骗子，滚蛋", leg="customer") == set()
    assert categories(cn, "我要投诉你们", leg="customer") == {"signal"}


def test_flag_span_points_at_the_words_and_their_times(cn: RuleEngine):
    words = [TimedWord("明天", 10.0, 10.4), TimedWord("法院", 10.4, 10.8), TimedWord("就", 10.8, 10.9),
             TimedWord("来", 10.9, 11.0), TimedWord("抓", 11.0, 11.2), TimedWord("你", 11.2, 11.3)]
    [flag] = cn.check("agent", "明天法院就来抓你", words=words)
    assert flag.matched == "明天法院就来抓你"[flag.span[0]: flag.span[1]]
    assert "法院" in flag.matched
    assert flag.start_s is not None and 10.0 <= flag.start_s <= 10.4
    assert flag.end_s == pytest.approx(11.2)  # the hit ends at 抓
    assert flag.action == "end_call"
    assert strongest(cn.check("agent", "你这个废物，明天法院就来抓你")).severity == "critical"


def test_partials_then_final_flag_once(cn: RuleEngine):
    monitor = CallMonitor(cn, state=CallState())
    assert monitor.check("agent", "明天法院", final=False) == []
    first = monitor.check("agent", "明天法院就来抓你", final=False)
    assert [f.category for f in first] == ["false_legal_threat"]
    assert monitor.check("agent", "明天法院就来抓你坐", final=False) == []
    later = monitor.check("agent", "明天法院就来抓你坐牢", final=True)
    assert [f.category for f in later] == ["false_legal_threat"]  # a second, distinct hit (坐牢)
    again = monitor.check("agent", "明天法院就来抓你", final=True)
    assert [f.category for f in again] == ["false_legal_threat"]  # a new utterance flags anew


def test_customer_signals_drive_the_call_state(cn: RuleEngine):
    monitor = CallMonitor(cn)
    assert monitor.check("agent", "您的信用卡逾期了", final=True)[0].category == "disclosure_before_verification"
    monitor.check("customer", "对，我是本人", final=True)
    assert monitor.state.verified
    assert monitor.check("agent", "您的信用卡逾期了", final=True) == []
    monitor.check("customer", "这张卡不是我办的，我有异议", final=True)
    assert monitor.state.disputed
    assert monitor.check("agent", "那你什么时候还款", final=True)[0].category == "pressing_after_dispute"


def test_third_party_signal_blocks_any_disclosure(cn: RuleEngine):
    monitor = CallMonitor(cn)
    monitor.check("customer", "我是她老公，她不在", final=True)
    assert monitor.state.third_party and not monitor.state.verified
    assert monitor.check("agent", "麻烦您转告她给我们回个电话", final=True) == []
    assert monitor.check("agent", "她欠了我们五千块", final=True)[0].category == "third_party_disclosure"


def write_pack(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "pack.yaml"
    path.write_text(body, encoding="utf-8")
    return path


GOOD_HEAD = """pack: test
language: zh
window: {start: "08:00", end: "21:00", fallback_zones: [Asia/Shanghai]}
actions: {info: log, low: log, medium: alert, high: warn, critical: end_call}
rules:
"""


@pytest.mark.parametrize(("rules", "line", "message"), [
    ("  - id: r1\n    category: threat\n    severity: severe\n    leg: agent\n    phrases: [打死你]\n", 8,
     "severity must be one of"),
    ("  - id: r1\n    category: threat\n    severity: high\n    leg: agent\n    patterns: ['(unclosed']\n", 10,
     "bad regular expression"),
    ("  - id: r1\n    category: threat\n    severity: high\n    leg: agent\n    phrase: [打死你]\n", 10,
     "unknown field 'phrase'"),
    ("  - id: r1\n    category: threat\n    severity: high\n    leg: agent\n", 6,
     "needs at least one of phrases"),
    ("  - id: r1\n    category: threat\n    severity: high\n    leg: bot\n    phrases: [x]\n", 9,
     "leg must be one of"),
    ("  - id: r1\n    category: t\n    severity: high\n    leg: agent\n    phrases: [x]\n"
     "  - id: r1\n    category: t\n    severity: high\n    leg: agent\n    phrases: [y]\n", 11, "duplicate rule id"),
    ("  - id: r1\n    category: t\n    severity: high\n    leg: agent\n    when: [angry]\n    phrases: [x]\n", 10,
     "when must be one of"),
])
def test_bad_packs_name_the_line_and_field(tmp_path: Path, rules: str, line: int, message: str):
    path = write_pack(tmp_path, GOOD_HEAD + rules)
    with pytest.raises(RulePackError, match=message) as info:
        load_pack(path)
    assert info.value.line == line
    assert str(info.value).startswith(f"{path}:{line}:")


def test_invalid_yaml_names_the_line(tmp_path: Path):
    path = write_pack(tmp_path, GOOD_HEAD + "  - id: [unclosed\n")
    with pytest.raises(RulePackError, match="invalid YAML") as info:
        load_pack(path)
    assert info.value.line == 7


@pytest.mark.parametrize(("window", "message"), [
    ('window: {start: "21:00", end: "08:00", fallback_zones: [Asia/Shanghai]}', "start must be before"),
    ('window: {start: "8am", end: "21:00", fallback_zones: [Asia/Shanghai]}', "quoted HH:MM"),
    ('window: {start: "08:00", end: "21:00", fallback_zones: [Mars/Base]}', "unknown time zone"),
])
def test_bad_windows_are_refused(tmp_path: Path, window: str, message: str):
    body = GOOD_HEAD.replace(GOOD_HEAD.splitlines()[2], window)
    path = write_pack(tmp_path, body + "  - id: r1\n    category: t\n    severity: high\n    leg: agent\n"
                                       "    phrases: [x]\n")
    with pytest.raises(RulePackError, match=message):
        load_pack(path)


def test_unknown_pack_name_lists_the_bundled_ones():
    with pytest.raises(RulePackError, match=r"bundled packs: .*cn-collection"):
        load_pack("no-such-pack")


@pytest.mark.parametrize(("text", "state", "category"), [
    ("我们有一件私人事务需要与张伟本人沟通。张伟在示例银行欠款未还。", CallState(verified=False, third_party=True),
     "third_party_disclosure"),
    ("您的异议我们已经记录。不管怎样您都得先还钱。", CallState(disputed=True), "pressing_after_dispute"),
])
def test_an_earlier_sentence_does_not_excuse_a_later_violation(cn_rules, text: str, state: CallState,
                                                                category: str) -> None:
    assert category in {f.category for f in cn_rules.check("agent", text, state)}


def test_a_quoted_question_is_excused_by_the_answer_after_it(cn_rules) -> None:
    text = "您问他是不是欠钱了？不好意思，具体情况只能跟本人沟通"
    assert not cn_rules.check("agent", text, CallState(third_party=True))
