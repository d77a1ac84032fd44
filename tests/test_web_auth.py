"""Console sign-in, sessions, CSRF, roles, throttling and headers, against the real app and a real SQLite file."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from voicebot.adapters.replay import ReplayControl
from voicebot.call import Call, CallInfo
from voicebot.cli import main
from voicebot.config import ServeConfig
from voicebot.web.app import create_app
from voicebot.web.auth import AuthSettings, hash_password, verify_password
from voicebot.web.console import CONSOLE_ACTIONS, parse_action
from voicebot.web.keys import AUTH, BOARD, ENGINES
from voicebot.web.login import ApiError

pytestmark = pytest.mark.model

PASSWORD = "correct horse battery"
USERS = {"sup": "supervisor", "quinn": "qa", "root": "admin"}


class FakeClock:
    """A wall clock the test moves by hand."""

    def __init__(self) -> None:
        self.t = 1_800_000_000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def client(aiohttp_client, engines, config, clock) -> TestClient:
    serve = ServeConfig(db=engines.audit.path, media_token="m" * 24)
    app = create_app(config, serve, engines, auth=AuthSettings(now=clock, ws_check_s=0.2))
    client = await aiohttp_client(app)
    for name, role in USERS.items():
        app[AUTH].store.add_user(name, role, PASSWORD)
    return client


async def login_form(client: TestClient) -> str:
    page = await client.get("/login")
    assert page.status == 200
    return re.search(r'name="csrf" value="([^"]+)"', await page.text()).group(1)


async def sign_in(client: TestClient, username: str, password: str = PASSWORD, next_path: str = "/"):
    csrf = await login_form(client)
    return await client.post("/login", data={"username": username, "password": password, "csrf": csrf,
                                             "next": next_path}, allow_redirects=False)


async def console_csrf(client: TestClient) -> str:
    page = await client.get("/")
    assert page.status == 200
    return re.search(r'name="csrf-token" content="([^"]+)"', await page.text()).group(1)


def login_records(engines) -> list:
    return [r for r in engines.audit.records() if r.kind == "login"]


async def start_silent_call(app) -> Call:
    """A real call with no audio yet, inside the calling window."""
    info = CallInfo(adapter="test", zones=("Asia/Shanghai",),
                    started_at=datetime(2025, 3, 3, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai")))
    control = ReplayControl()
    call = Call(info, app[ENGINES], control, app[BOARD])
    control.call = call
    await call.start()
    return call


async def test_sign_in_sets_a_strict_httponly_cookie_and_is_audited(client, engines):
    response = await sign_in(client, "sup")
    assert response.status == 303
    assert response.headers["Location"] == "/"
    cookie = next(c for c in response.headers.getall("Set-Cookie") if c.startswith("vb_session="))
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert "Secure" not in cookie  # served on 127.0.0.1
    page = await client.get("/")
    assert page.status == 200
    assert "sup" in await page.text()
    [record] = login_records(engines)
    assert (record.actor, record.data["event"], record.data["role"]) == ("sup", "sign_in", "supervisor")


async def test_secure_cookie_when_configured(aiohttp_client, engines, config):
    serve = ServeConfig(db=engines.audit.path, media_token="m" * 24)
    app = create_app(config, serve, engines, auth=AuthSettings(secure_cookies=True))
    client = await aiohttp_client(app)
    app[AUTH].store.add_user("sup", "supervisor", PASSWORD)
    page = await client.get("/login")
    assert "Strict-Transport-Security" in page.headers
    login_cookie = next(c for c in page.headers.getall("Set-Cookie") if c.startswith("vb_login_csrf="))
    assert "Secure" in login_cookie
    csrf = re.search(r'name="csrf" value="([^"]+)"', await page.text()).group(1)
    response = await client.post("/login", data={"username": "sup", "password": PASSWORD, "csrf": csrf},
                                 headers={"Cookie": f"vb_login_csrf={csrf}"}, allow_redirects=False)
    assert response.status == 303
    cookie = next(c for c in response.headers.getall("Set-Cookie") if c.startswith("vb_session="))
    assert "Secure" in cookie


@pytest.mark.parametrize(("username", "password", "actor", "reason"), [
    ("sup", "wrong password!", "sup", "bad_password"),
    ("nobody", PASSWORD, None, "unknown_user"),
])
async def test_failed_sign_in_is_refused_and_audited_without_secrets(client, engines, username, password, actor,
                                                                      reason):
    response = await sign_in(client, username, password)
    assert response.status == 401
    assert "Wrong user name or password" in await response.text()
    assert not any(c.startswith("vb_session=") for c in response.headers.getall("Set-Cookie", []))
    assert (await client.get("/api/calls")).status == 401
    [record] = login_records(engines)
    assert (record.actor, record.data["event"], record.data["reason"]) == (actor, "sign_in_failed", reason)
    text = json.dumps(record.data)
    assert password not in text
    assert "nobody" not in text


async def test_disabled_user_cannot_sign_in_and_loses_open_sessions(client, engines):
    assert (await sign_in(client, "sup")).status == 303
    client.app[AUTH].store.set_disabled("sup", True)
    assert (await client.get("/api/calls")).status == 401
    response = await sign_in(client, "sup")
    assert response.status == 401
    assert login_records(engines)[-1].data["reason"] == "disabled"


async def test_login_form_without_its_csrf_token_is_refused(client):
    await login_form(client)
    response = await client.post("/login", data={"username": "sup", "password": PASSWORD, "csrf": "forged"},
                                 allow_redirects=False)
    assert response.status == 403
    client.session.cookie_jar.clear()
    response = await client.post("/login", data={"username": "sup", "password": PASSWORD, "csrf": "x"},
                                 allow_redirects=False)
    assert response.status == 403
    assert (await client.get("/api/calls")).status == 401


async def test_actions_need_the_csrf_header(client):
    await sign_in(client, "sup")
    call = await start_silent_call(client.app)
    url = f"/api/calls/{call.call_id}/actions"
    assert (await client.post(url, json={"action": "warn"})).status == 403
    response = await client.post(url, json={"action": "warn"}, headers={"X-CSRF-Token": "forged"})
    assert response.status == 403
    assert "X-CSRF-Token" in (await response.json())["error"]
    csrf = await console_csrf(client)
    cross = await client.post(url, json={"action": "warn"},
                              headers={"X-CSRF-Token": csrf, "Origin": "http://evil.example"})
    assert cross.status == 403
    await call.end("test over")


async def test_supervisor_action_reaches_the_call_and_is_audited_with_the_user(client, engines):
    await sign_in(client, "sup")
    csrf = await console_csrf(client)
    call = await start_silent_call(client.app)
    response = await client.post(f"/api/calls/{call.call_id}/actions", json={"action": "mute", "leg": "agent"},
                                 headers={"X-CSRF-Token": csrf})
    assert response.status == 202
    assert await response.json() == {"ok": True, "call_id": call.call_id, "action": "mute", "leg": "agent"}
    await call.end("test over")
    assert call.muted == {"agent"}
    actions = [r for r in engines.audit.records() if r.kind == "action"]
    assert [(r.actor, r.data["action"], r.data["leg"], r.data["reason"]) for r in actions] == [
        ("sup", "mute", "agent", "supervisor")]


async def test_qa_sees_calls_but_cannot_act(client):
    await sign_in(client, "quinn")
    csrf = await console_csrf(client)
    call = await start_silent_call(client.app)
    listed = await client.get("/api/calls")
    assert [c["call_id"] for c in (await listed.json())["calls"]] == [call.call_id]
    response = await client.post(f"/api/calls/{call.call_id}/actions", json={"action": "hangup"},
                                 headers={"X-CSRF-Token": csrf})
    assert response.status == 403
    assert "qa" in (await response.json())["error"]
    page = await client.get("/")
    assert 'name="can-act" content="no"' in await page.text()
    await call.end("test over")


@pytest.mark.parametrize(("body", "status"), [
    ({"action": "explode"}, 400),
    ({"action": "mute", "leg": "bot"}, 400),
    (["warn"], 400),
    ("not json", 400),
])
async def test_bad_action_requests_get_json_400(client, body, status):
    await sign_in(client, "sup")
    csrf = await console_csrf(client)
    call = await start_silent_call(client.app)
    kwargs = {"data": body} if isinstance(body, str) else {"json": body}
    response = await client.post(f"/api/calls/{call.call_id}/actions", headers={"X-CSRF-Token": csrf}, **kwargs)
    assert response.status == status
    assert response.content_type == "application/json"
    assert (await response.json())["status"] == status
    await call.end("test over")


async def test_unknown_call_is_a_json_404(client):
    await sign_in(client, "sup")
    csrf = await console_csrf(client)
    response = await client.post("/api/calls/nope/actions", json={"action": "warn"}, headers={"X-CSRF-Token": csrf})
    assert response.status == 404
    assert (await response.json())["error"] == "no live call with this id"
    assert (await client.get("/api/calls/nope")).status == 404


async def test_unauthenticated_api_is_401_and_pages_redirect_to_login(client):
    for path in ("/api/calls", "/api/users", "/ws/events"):
        response = await client.get(path)
        assert response.status == 401, path
        assert (await response.json())["error"] == "sign in first"
    for path in ("/", "/admin/users"):
        response = await client.get(path, allow_redirects=False)
        assert response.status == 303
        assert response.headers["Location"] == f"/login?next={path}"
    assert (await client.get("/healthz")).status == 200


async def test_sign_in_returns_only_to_same_site_paths(client):
    assert (await sign_in(client, "sup", next_path="//evil.example/x")).headers["Location"] == "/"
    client.session.cookie_jar.clear()
    assert (await sign_in(client, "sup", next_path="/admin/users")).headers["Location"] == "/admin/users"


def test_password_hashes_are_salted_scrypt_and_never_plain(engines, tmp_path):
    first, second = hash_password(PASSWORD), hash_password(PASSWORD)
    assert first != second
    assert first.startswith("scrypt$16384$8$1$")
    assert PASSWORD not in first
    assert verify_password(PASSWORD, first)
    assert not verify_password("correct horse batterY", first)
    assert not verify_password(PASSWORD, "md5$abc")
    assert not verify_password(PASSWORD, "scrypt$x$y$z$!!$!!")


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=10),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                    max_leaves=8)
ACTION_BODIES = st.fixed_dictionaries({}, optional={"action": st.sampled_from([*CONSOLE_ACTIONS, "alert", 1]) | JSON,
                                                    "leg": st.sampled_from(["agent", "customer", None, 2]) | JSON})


@given(ACTION_BODIES | JSON)
def test_parse_action_accepts_only_console_actions_and_raises_only_api_errors(body):
    try:
        action, leg = parse_action(body)
    except ApiError as e:
        assert e.status == 400
        return
    assert action in CONSOLE_ACTIONS
    assert leg in (("agent", "customer") if action in ("mute", "unmute") else ("agent", "customer", None))


@given(st.text(max_size=40), st.text(max_size=80))
def test_verify_password_never_raises_on_malformed_hashes(password, stored):
    assert verify_password(password, stored) is False or stored.startswith("scrypt$")


async def test_signing_in_again_ends_the_previous_session(client, engines):
    first = (await sign_in(client, "sup")).cookies["vb_session"].value
    client.session.cookie_jar.clear()
    csrf = await login_form(client)
    client.session.cookie_jar.update_cookies({"vb_session": first})
    again = await client.post("/login", data={"username": "sup", "password": PASSWORD, "csrf": csrf},
                              allow_redirects=False)
    assert again.status == 303
    assert again.cookies["vb_session"].value != first
    with sqlite3.connect(engines.audit.path) as db:
        assert db.execute("SELECT count(*) FROM sessions").fetchone()[0] == 1


async def test_stored_users_and_sessions_hold_no_secrets(client, engines):
    response = await sign_in(client, "sup")
    token = next(c for c in response.cookies.values() if c.key == "vb_session").value
    with sqlite3.connect(engines.audit.path) as db:
        hashes = [row[0] for row in db.execute("SELECT password_hash FROM users")]
        sessions = [row[0] for row in db.execute("SELECT token_hash FROM sessions")]
    assert all(h.startswith("scrypt$") and PASSWORD not in h for h in hashes)
    assert len(set(hashes)) == len(USERS)
    assert sessions and token not in sessions


async def test_sessions_expire_when_idle_and_at_their_lifetime(client, clock):
    await sign_in(client, "sup")
    clock.t += 29 * 60
    assert (await client.get("/api/calls")).status == 200
    clock.t += 31 * 60
    assert (await client.get("/api/calls")).status == 401
    await sign_in(client, "sup")
    for _ in range(12 * 3):
        clock.t += 20 * 60
        last = await client.get("/api/calls")
        if last.status != 200:
            break
    assert last.status == 401
    assert (await client.get("/", allow_redirects=False)).status == 303


async def test_repeated_failures_throttle_sign_in_for_that_user(client, clock, engines):
    for _ in range(5):
        assert (await sign_in(client, "sup", "wrong password!")).status == 401
    blocked = await sign_in(client, "sup")
    assert blocked.status == 429
    assert int(blocked.headers["Retry-After"]) > 0
    assert login_records(engines)[-1].data["reason"] == "throttled"
    assert (await sign_in(client, "quinn")).status == 303  # another user from the same address is not blocked
    client.session.cookie_jar.clear()
    clock.t += 15 * 60 + 1
    assert (await sign_in(client, "sup")).status == 303


async def test_security_headers_on_pages_apis_and_static(client):
    await sign_in(client, "sup")
    for path in ("/", "/api/calls", "/static/console.js", "/login"):
        response = await client.get(path, allow_redirects=False)
        h = response.headers
        assert h["Content-Security-Policy"].startswith("default-src 'self'"), path
        assert "script-src 'self'" in h["Content-Security-Policy"]
        assert h["X-Frame-Options"] == "DENY"
        assert h["X-Content-Type-Options"] == "nosniff"
        assert h["Cache-Control"] == ("no-cache" if path.startswith("/static/") else "no-store")
    page = await (await client.get("/")).text()
    assert "<script>" not in page  # scripts only from static files
    assert (await client.get("/static/console.js")).content_type.endswith("javascript")


async def test_logout_needs_csrf_ends_the_session_and_is_audited(client, engines):
    await sign_in(client, "sup")
    assert (await client.post("/logout", data={"csrf": "forged"}, allow_redirects=False)).status == 403
    csrf = await console_csrf(client)
    response = await client.post("/logout", data={"csrf": csrf}, allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"] == "/login"
    assert (await client.get("/api/calls")).status == 401
    assert [r.data["event"] for r in login_records(engines)] == ["sign_in", "sign_out"]


async def test_event_stream_checks_origin_sends_a_snapshot_and_closes_on_sign_out(client):
    await sign_in(client, "sup")
    call = await start_silent_call(client.app)
    origin = str(client.make_url("/")).rstrip("/")
    with pytest.raises(Exception, match="403"):
        await client.ws_connect("/ws/events", origin="http://evil.example")
    ws = await client.ws_connect("/ws/events", origin=origin)
    first = await ws.receive_json(timeout=10)
    assert first["type"] == "snapshot"
    [entry] = first["calls"]
    assert entry["call_id"] == call.call_id
    assert entry["events"][0]["type"] == "call_start"
    client.app[BOARD].publish({"call_id": call.call_id, "type": "final", "leg": "agent", "text": "你好"})
    assert (await ws.receive_json(timeout=10))["text"] == "你好"
    csrf = await console_csrf(client)
    await client.post("/logout", data={"csrf": csrf}, allow_redirects=False)
    msg = await ws.receive(timeout=10)
    assert msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING)
    assert ws.close_code == 4401
    await call.end("test over")


async def test_event_stream_closes_when_its_session_expires(client, clock):
    await sign_in(client, "sup")
    ws = await client.ws_connect("/ws/events", origin=str(client.make_url("/")).rstrip("/"))
    assert (await ws.receive_json(timeout=10))["type"] == "snapshot"
    clock.t += 13 * 3600
    msg = await ws.receive(timeout=10)
    assert msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING)
    assert ws.close_code == 4401


async def test_only_admins_manage_users(client, engines):
    await sign_in(client, "sup")
    csrf = await console_csrf(client)
    assert (await client.get("/api/users")).status == 403
    assert (await client.get("/admin/users")).status == 403
    client.session.cookie_jar.clear()
    await sign_in(client, "root")
    csrf = await console_csrf(client)
    assert (await client.get("/admin/users")).status == 200
    added = await client.post("/api/users", json={"username": "Dana", "role": "qa", "password": PASSWORD},
                              headers={"X-CSRF-Token": csrf})
    assert added.status == 201
    assert await added.json() == {"username": "dana", "role": "qa", "disabled": False,
                                  "created_at": client.app[AUTH].settings.now(), "display_name": "",
                                  "language": "", "zone": ""}
    short = await client.post("/api/users", json={"username": "eve", "role": "qa", "password": "short"},
                              headers={"X-CSRF-Token": csrf})
    assert short.status == 400
    disabled = await client.post("/api/users/dana", json={"disabled": True}, headers={"X-CSRF-Token": csrf})
    assert (await disabled.json())["disabled"] is True
    assert (await client.post("/api/users/root", json={"disabled": True},
                              headers={"X-CSRF-Token": csrf})).status == 400
    listed = await (await client.get("/api/users")).json()
    assert {u["username"] for u in listed["users"]} == {*USERS, "dana"}
    assert all("password_hash" not in u for u in listed["users"])
    user_records = [(r.actor, r.data) for r in engines.audit.records() if r.kind == "user"]
    assert user_records == [("root", {"event": "add", "username": "dana", "role": "qa"}),
                            ("root", {"event": "disable", "username": "dana"})]


async def test_users_cli_adds_a_user_who_can_then_sign_in(client, engines):
    runner = CliRunner()
    db = str(engines.audit.path)
    added = runner.invoke(main, ["users", "add", "Casey", "--role", "supervisor", "--password-stdin", "--db", db],
                          input=PASSWORD + "\n")
    assert added.exit_code == 0, added.output
    assert PASSWORD not in added.output
    short = runner.invoke(main, ["users", "add", "x", "--role", "qa", "--password-stdin", "--db", db],
                          input="short\n")
    assert short.exit_code == 1
    listed = runner.invoke(main, ["users", "list", "--db", db])
    assert "casey\tsupervisor\tactive" in listed.output
    assert (await sign_in(client, "casey")).status == 303
    assert runner.invoke(main, ["users", "disable", "casey", "--db", db]).exit_code == 0
    assert (await client.get("/api/calls")).status == 401
    assert [r.data["event"] for r in engines.audit.records() if r.kind == "user"] == ["add", "disable"]


async def test_shutdown_closes_open_event_streams(aiohttp_client, engines, config):
    serve = ServeConfig(db=engines.audit.path, media_token="m" * 24)
    app = create_app(config, serve, engines)
    client = await aiohttp_client(app)
    app[AUTH].store.add_user("sup", "supervisor", PASSWORD)
    await sign_in(client, "sup")
    ws = await client.ws_connect("/ws/events", origin=str(client.make_url("/")).rstrip("/"))
    assert (await ws.receive_json(timeout=10))["type"] == "snapshot"
    await asyncio.wait_for(client.server.runner.shutdown(), 10)
    msg = await ws.receive(timeout=10)
    assert msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING)


async def test_alerts_are_acknowledged_once_by_supervisors_and_audited_with_their_name(client, engines):
    await sign_in(client, "quinn")
    qa_csrf = await console_csrf(client)
    call = await start_silent_call(client.app)
    client.app[BOARD].publish({"call_id": call.call_id, "type": "flag", "leg": "customer", "rule": "cn.signal.dispute",
                               "category": "signal", "severity": "medium", "matched": "金额不对", "signal": True,
                               "action": "alert"})
    alerts = (await (await client.get("/api/alerts")).json())["alerts"]
    assert [(a["kind"], a["call_id"], a["acked_by"]) for a in alerts] == [("signal", call.call_id, None)]
    url = f"/api/alerts/{alerts[0]['id']}/ack"
    assert (await client.post(url, headers={"X-CSRF-Token": qa_csrf})).status == 403
    client.session.cookie_jar.clear()
    await sign_in(client, "sup")
    csrf = await console_csrf(client)
    assert (await client.post(url)).status == 403  # no CSRF header
    assert (await client.post("/api/alerts/77/ack", headers={"X-CSRF-Token": csrf})).status == 404
    assert (await client.post("/api/alerts/x/ack", headers={"X-CSRF-Token": csrf})).status == 404
    for _ in range(2):
        acked = await client.post(url, headers={"X-CSRF-Token": csrf})
        assert acked.status == 200 and (await acked.json())["acked_by"] == "sup"
    records = [r for r in engines.audit.records() if r.kind == "alert_ack"]
    assert [(r.actor, r.call_id, r.data["kind"], r.data["rule"]) for r in records] == [
        ("sup", call.call_id, "signal", "cn.signal.dispute")]
    await call.end("test over")


async def test_an_ended_call_stays_readable_today_but_takes_no_actions(client):
    await sign_in(client, "sup")
    csrf = await console_csrf(client)
    call = await start_silent_call(client.app)
    await call.end("test over")
    listed = (await (await client.get("/api/calls")).json())["calls"]
    assert [(c["call_id"], c["ended"]) for c in listed] == [(call.call_id, "test over")]
    one = await (await client.get(f"/api/calls/{call.call_id}")).json()
    assert one["ended"] == "test over" and [e["type"] for e in one["events"]][-1] == "call_end"
    late = await client.post(f"/api/calls/{call.call_id}/actions", json={"action": "warn"},
                             headers={"X-CSRF-Token": csrf})
    assert late.status == 409 and (await late.json())["error"] == "the call has already ended"
    assert (await client.get("/api/pack")).status == 200


@pytest.mark.parametrize(("form", "status", "where"), [
    ({"language": "zh", "zone": "Asia/Shanghai", "next": "/qa?month=2025-03"}, 303, "/qa?month=2025-03"),
    ({"language": "", "zone": "", "next": "//evil.example/"}, 303, "/"),
    ({"language": "fr", "zone": "", "next": "/"}, 400, None),
    ({"language": "en", "zone": "Mars/Olympus", "next": "/"}, 400, None),
])
async def test_settings_are_checked_and_go_back_only_to_same_site_pages(client, form, status, where):
    await sign_in(client, "sup")
    csrf = await console_csrf(client)
    assert (await client.post("/settings", data=form, allow_redirects=False)).status == 403  # no CSRF token
    response = await client.post("/settings", data={**form, "csrf": csrf}, allow_redirects=False)
    assert response.status == status
    user = client.app[AUTH].store.user("sup")
    if where is not None:
        assert response.headers["Location"] == where
        assert (user.language, user.zone) == (form["language"], form["zone"])
    else:
        assert (user.language, user.zone) == ("", "")
