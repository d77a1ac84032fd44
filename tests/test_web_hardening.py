"""The console against a red team's findings: throttle races, open redirects, header injection, absurd ranges,
self-demotion, tokens in the access log, database file modes and the first-user hint; real app, real SQLite."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import re
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from aiohttp.test_utils import TestClient
from test_web_auth import PASSWORD, USERS, FakeClock, console_csrf, login_form, login_records, sign_in

from voicebot.audit import AuditLog
from voicebot.config import ConfigError, ServeConfig
from voicebot.web.app import create_app
from voicebot.web.auth import AuthSettings, UserStore
from voicebot.web.keys import AUTH
from voicebot.web.login import FIRST_USER_HINT, safe_next
from voicebot.web.proxy import MAX_FORWARDED_CHARS, forwarded_client

pytestmark = pytest.mark.model

MEDIA_TOKEN = "m" * 24


async def console(aiohttp_client, engines, config, *, db: Path | None = None, users: dict[str, str] = USERS,
                  auth: AuthSettings | None = None, trusted_proxies: tuple[str, ...] = (),
                  https: bool = False) -> TestClient:
    """The real app on 127.0.0.1 with `users`, its users and sessions in `db` (default: the audit log's file)."""
    serve = ServeConfig(db=db or engines.audit.path, media_token=MEDIA_TOKEN, trusted_proxies=trusted_proxies,
                        https=https)
    app = create_app(config, serve, engines, auth=auth or AuthSettings(now=FakeClock()))
    client = await aiohttp_client(app)
    for name, role in users.items():
        app[AUTH].store.add_user(name, role, PASSWORD)
    return client


@pytest.fixture
async def client(aiohttp_client, engines, config) -> TestClient:
    return await console(aiohttp_client, engines, config)


# --- 1. the sign-in throttle counts an attempt before checking its password ---------------------------------------


async def test_concurrent_wrong_passwords_cannot_exceed_the_throttle(client):
    csrf = await login_form(client)
    form = {"username": "sup", "password": "wrong password!", "csrf": csrf, "next": "/"}
    responses = await asyncio.gather(*(client.post("/login", data=form, allow_redirects=False) for _ in range(60)))
    statuses = [r.status for r in responses]
    assert statuses.count(401) == 5  # max_failures_user: only five passwords were ever checked
    assert statuses.count(429) == 55
    assert (await sign_in(client, "sup")).status == 429


async def test_successful_sign_ins_do_not_use_up_the_address_budget(aiohttp_client, engines, config):
    client = await console(aiohttp_client, engines, config, auth=AuthSettings(now=FakeClock(), max_failures_ip=3))
    for _ in range(5):
        client.session.cookie_jar.clear()
        assert (await sign_in(client, "sup")).status == 303


# --- 2, 3. `next` goes only to a same-site path, and never breaks the response ------------------------------------


@pytest.mark.parametrize("target", [
    "/\t/other-host/x", "/\n/other-host", "/\r/..", "\t//other-host", " //other-host", "/\\other-host",
    "\\\\other-host", "\\/other-host", "//other-host", "https://other-host/x", "javascript:alert(1)",
    "/\x00/other-host", "/\x7f/other-host", "", "other-host",
])
def test_next_outside_the_site_becomes_the_home_page(target):
    assert safe_next(target) == "/"


@pytest.mark.parametrize(("target", "expected"), [
    ("/admin/users", "/admin/users"),
    ("/qa?month=2026-03#review", "/qa?month=2026-03#review"),
    ("/qa\\x", "/qa/x"),
    ("/q\ta", "/qa"),
    ("/通话", "/%E9%80%9A%E8%AF%9D"),
])
def test_next_inside_the_site_is_kept_normalised(target, expected):
    assert safe_next(target) == expected


@pytest.mark.parametrize(("query", "location"), [
    ("/%09/other-host/x", "/"), ("/%0d/..", "/"), ("/%5C%5Cother-host", "/"), ("%5C%5Cother-host", "/"),
    ("https://other-host/", "/"), ("/%00", "/"), ("/%0d%0aSet-Cookie:%20x=1", "/Set-Cookie:%20x=1"),
    ("/%E2%80%A8x", "/%E2%80%A8x"),
])
async def test_signed_in_login_with_a_hostile_next_redirects_to_a_same_site_path(client, query, location):
    await sign_in(client, "sup")
    response = await client.get(f"/login?next={query}", allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"] == location
    assert "Set-Cookie" not in response.headers


@pytest.mark.parametrize(("target", "location"), [
    ("/\r/..", "/"), ("/\t/other-host/x", "/"), ("/\\other-host", "/"), ("/\r\nSet-Cookie: x=1", "/Set-Cookie:%20x=1"),
])
async def test_sign_in_with_a_hostile_next_redirects_to_a_same_site_path(client, target, location):
    response = await sign_in(client, "sup", next_path=target)
    assert response.status == 303
    assert response.headers["Location"] == location
    assert [c for c in response.headers.getall("Set-Cookie") if "x=1" in c] == []


# --- 4. absurd byte ranges on the QA audio -------------------------------------------------------------------------


def record_silence(store, rid: str) -> None:
    """A one-second silent two-leg recording, written in 20 ms packets as a live call does."""
    started = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    store.register(rid, started_at=started, agent_id="a-07", adapter="test")
    writer = store.writer(rid, started)
    for _ in range(50):
        writer.write("agent", np.zeros(160, dtype=np.int16), 8000)
        writer.write("customer", np.zeros(160, dtype=np.int16), 8000)
    writer.close()
    store.finish(rid, ended_at=started + timedelta(seconds=writer.duration_s), duration_s=writer.duration_s,
                 sample_rate=writer.sample_rate, outcome="refused", flags=[])


@pytest.mark.parametrize("header", ["bytes=" + "9" * 5000 + "-", "bytes=0-" + "9" * 5000, "bytes=-" + "9" * 5000,
                                    "bytes=0-99999999999999999999", "bytes=" + "0" * 300 + "1-2"])
async def test_absurd_audio_ranges_are_refused_with_416(client, engines, header):
    record_silence(engines.recordings, "rec-1")
    await sign_in(client, "quinn")
    response = await client.get("/qa/recordings/rec-1/audio", headers={"Range": header})
    assert response.status == 416
    size = len(await (await client.get("/qa/recordings/rec-1/audio")).read())
    assert response.headers["Content-Range"] == f"bytes */{size}"
    part = await client.get("/qa/recordings/rec-1/audio", headers={"Range": "bytes=0-99"})
    assert (part.status, len(await part.read())) == (206, 100)


# --- 5. user changes are typed strictly, and an admin cannot lock themselves out ----------------------------------


@pytest.mark.parametrize("path", ["/api/users/root", "/api/users/%20root", "/api/users/ROOT", "/api/users/root%20"])
@pytest.mark.parametrize("body", [{"disabled": True}, {"role": "qa"}, {"role": "supervisor", "disabled": False}])
async def test_admin_cannot_demote_or_disable_themselves(client, path, body):
    await sign_in(client, "root")
    csrf = await console_csrf(client)
    response = await client.post(path, json=body, headers={"X-CSRF-Token": csrf})
    assert response.status == 400
    assert "your own account" in (await response.json())["error"]
    me = client.app[AUTH].store.user("root")
    assert (me.role, me.disabled) == ("admin", False)


@pytest.mark.parametrize("body", [{"disabled": "false"}, {"disabled": "true"}, {"disabled": 0}, {"disabled": None},
                                  {"role": ["qa"]}, {"role": "Admin"}, {"role": 1}, {"password": 1234567890123},
                                  {"password": None}, {"nickname": "x"}, {}])
async def test_user_changes_must_be_well_typed(client, body):
    await sign_in(client, "root")
    csrf = await console_csrf(client)
    response = await client.post("/api/users/sup", json=body, headers={"X-CSRF-Token": csrf})
    assert response.status == 400
    assert response.content_type == "application/json"
    sup = client.app[AUTH].store.user("sup")
    assert (sup.role, sup.disabled) == ("supervisor", False)


@pytest.mark.parametrize("body", [{"username": ["x"], "role": "qa", "password": PASSWORD},
                                  {"username": "dana", "role": None, "password": PASSWORD},
                                  {"username": "dana", "role": "qa", "password": 12345678901}])
async def test_new_users_must_be_well_typed(client, body):
    await sign_in(client, "root")
    csrf = await console_csrf(client)
    response = await client.post("/api/users", json=body, headers={"X-CSRF-Token": csrf})
    assert response.status == 400
    assert {u.username for u in client.app[AUTH].store.users()} == set(USERS)


async def test_admin_changes_another_user_by_normalised_name(client, engines):
    await sign_in(client, "root")
    csrf = await console_csrf(client)
    response = await client.post("/api/users/%20SUP", json={"disabled": True, "role": "qa"},
                                 headers={"X-CSRF-Token": csrf})
    assert response.status == 200
    assert await response.json() == {"username": "sup", "role": "qa", "disabled": True,
                                     "created_at": client.app[AUTH].settings.now(), "display_name": "",
                                     "language": "", "zone": ""}
    assert (await client.post("/api/users/bad%20name", json={"disabled": True},
                              headers={"X-CSRF-Token": csrf})).status == 400
    assert (await client.post("/api/users/nobody", json={"disabled": True},
                              headers={"X-CSRF-Token": csrf})).status == 404


# --- 6. no media token in the access log ----------------------------------------------------------------------------


async def test_access_log_lines_carry_no_tokens(client, caplog):
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    secret = "s3cretT0ken_abc"
    for path in (f"/media/twilio/{MEDIA_TOKEN}", f"/media/twilio/{secret}", f"/media/twilio?token={secret}",
                 f"/media/twilio?x=1&token={MEDIA_TOKEN}", f"/login?next=/&access_token={secret}"):
        await client.get(path, headers={"Referer": f"http://x/media/twilio/{secret}"}, allow_redirects=False)
    async with asyncio.timeout(10):  # the server writes each line just after its response
        while len(access_lines := [r for r in caplog.records if r.name == "aiohttp.access"]) < 5:
            await asyncio.sleep(0.01)
    for record in access_lines:
        seen = f"{record.getMessage()} {getattr(record, 'first_request_line', '')} " \
               f"{getattr(record, 'request_header', '')}"
        assert secret not in seen
        assert MEDIA_TOKEN not in seen
    messages = " ".join(r.getMessage() for r in access_lines)
    assert "GET /media/twilio/[redacted] " in messages
    assert "/media/twilio?x=1&token=[redacted] " in messages


# --- 7. database files are private to their owner ---------------------------------------------------------------


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """The common 022 umask, under which files are created world-readable unless asked otherwise."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def assert_private(db: Path) -> None:
    for path in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        assert path.exists(), path
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_audit_log_and_user_store_files_are_created_0600(tmp_path, loose_umask):
    audit_db, users_db = tmp_path / "audit" / "voicebot.db", tmp_path / "users" / "voicebot.db"
    with AuditLog.open(audit_db) as log, UserStore.open(users_db) as store:
        log.append("test", {"n": 1})
        store.add_user("root", "admin", PASSWORD)
        assert_private(audit_db)
        assert_private(users_db)


def test_existing_loose_database_files_are_tightened(tmp_path, loose_umask):
    db = tmp_path / "voicebot.db"
    AuditLog.open(db).close()
    for path in db.parent.glob("voicebot.db*"):
        path.chmod(0o644)
    with UserStore.open(db) as store:
        store.add_user("root", "admin", PASSWORD)
        assert_private(db)


async def test_console_database_is_created_0600(aiohttp_client, engines, config, tmp_path, loose_umask):
    db = tmp_path / "console" / "voicebot.db"
    client = await console(aiohttp_client, engines, config, db=db)
    assert (await sign_in(client, "sup")).status == 303
    assert_private(db)


# --- 8. an empty user database says how to create the first account -----------------------------------------------


async def test_empty_user_database_shows_how_to_add_the_first_user(aiohttp_client, engines, config, tmp_path,
                                                                   caplog):
    caplog.set_level(logging.INFO, logger="voicebot.web.login")
    client = await console(aiohttp_client, engines, config, db=tmp_path / "empty.db", users={})
    assert "voicebot users add NAME --role admin" in FIRST_USER_HINT
    assert [r.getMessage() for r in caplog.records if r.name == "voicebot.web.login"] == [FIRST_USER_HINT]
    page = await (await client.get("/login")).text()
    assert FIRST_USER_HINT in page
    refused = await sign_in(client, "root")
    assert (refused.status, FIRST_USER_HINT in await refused.text()) == (401, True)
    client.app[AUTH].store.add_user("root", "admin", PASSWORD)
    assert "voicebot users add" not in await (await client.get("/login")).text()
    assert (await sign_in(client, "root")).status == 303


# --- 9. behind a reverse proxy: the client's address for the throttle, Secure cookies and HSTS over HTTPS ----------


async def attempt_from(client: TestClient, forwarded_for: str, username: str = "nobody",
                       password: str = "wrong password!") -> int:
    """One sign-in attempt carrying X-Forwarded-For; its status."""
    csrf = await login_form(client)
    form = {"username": username, "password": password, "csrf": csrf, "next": "/"}
    response = await client.post("/login", data=form, headers={"X-Forwarded-For": forwarded_for},
                                 allow_redirects=False)
    return response.status


async def test_untrusted_peers_forwarded_for_cannot_escape_a_lock_out(aiohttp_client, engines, config):
    client = await console(aiohttp_client, engines, config, auth=AuthSettings(now=FakeClock(), max_failures_ip=3))
    statuses = [await attempt_from(client, f"203.0.113.{i}", username=f"user{i}") for i in range(5)]
    assert statuses == [401, 401, 401, 429, 429]
    assert {r.data["ip"] for r in login_records(engines)} == {"127.0.0.1"}


async def test_trusted_proxy_gives_each_forwarded_client_its_own_throttle(aiohttp_client, engines, config):
    client = await console(aiohttp_client, engines, config, auth=AuthSettings(now=FakeClock(), max_failures_ip=3),
                           trusted_proxies=("127.0.0.1",))
    locked = [await attempt_from(client, "203.0.113.7", username=f"user{i}") for i in range(4)]
    assert locked == [401, 401, 401, 429]
    assert await attempt_from(client, "198.51.100.1, 203.0.113.7", username="spoofed") == 429  # left part: spoofable
    assert await attempt_from(client, "203.0.113.7, 127.0.0.1", username="hop") == 429  # trusted hops are skipped
    assert await attempt_from(client, "203.0.113.8", username="other") == 401
    assert await attempt_from(client, "203.0.113.8", username="sup", password=PASSWORD) == 303
    ips = [r.data["ip"] for r in login_records(engines)]
    assert ips[:3] == ["203.0.113.7"] * 3 and ips[-2:] == ["203.0.113.8"] * 2


@pytest.mark.parametrize("header", ["not-an-ip", "203.0.113.7, ", "x" * 5000, "203.0.113.7:80"])
async def test_trusted_proxys_malformed_forwarded_for_falls_back_to_the_peer(aiohttp_client, engines, config,
                                                                               header):
    client = await console(aiohttp_client, engines, config, trusted_proxies=("127.0.0.1",))
    assert await attempt_from(client, header) == 401
    assert [r.data["ip"] for r in login_records(engines)] == ["127.0.0.1"]


@pytest.mark.parametrize(("header", "expected"), [
    ("203.0.113.7", "203.0.113.7"),
    ("::ffff:203.0.113.7", "203.0.113.7"),
    ("2001:db8::1 , 10.0.0.2", "2001:db8::1"),
    ("10.0.0.3, 10.0.0.2", "10.0.0.3"),  # all trusted: the left-most read
    ("1.1.1.1," * 500 + "203.0.113.7", "203.0.113.7"),  # only the tail is read
    ("203.0.113.7, bogus, 10.0.0.2", None),
    ("", None),
])
def test_forwarded_client_is_the_right_most_untrusted_address(header, expected):
    networks = (ipaddress.ip_network("10.0.0.0/8"),)
    found = forwarded_client(header, networks)
    assert (str(found) if found else None) == expected
    assert len(header[-MAX_FORWARDED_CHARS:]) <= MAX_FORWARDED_CHARS


def test_serve_config_refuses_a_malformed_trusted_proxy():
    with pytest.raises(ConfigError, match="not an IP address"):
        ServeConfig(db=Path("x.db"), media_token=MEDIA_TOKEN, trusted_proxies=("proxy.local",))


@pytest.mark.parametrize(("trusted", "https", "proto", "secure"), [
    ((), False, None, False),
    ((), False, "https", False),  # an untrusted peer's header is ignored
    ((), True, None, True),
    (("127.0.0.1",), False, "https", True),
    (("127.0.0.0/8",), False, "http", False),
    (("127.0.0.1",), False, None, False),
    (("10.0.0.1",), False, "https", False),
])
async def test_secure_cookies_and_hsts_only_over_https(aiohttp_client, engines, config, trusted, https, proto,
                                                       secure):
    client = await console(aiohttp_client, engines, config, trusted_proxies=trusted, https=https)
    headers = {"X-Forwarded-Proto": proto} if proto else {}
    page = await client.get("/login", headers=headers)
    assert ("Strict-Transport-Security" in page.headers) == secure
    if secure:
        assert page.headers["Strict-Transport-Security"] == "max-age=31536000"
    login_cookie = next(c for c in page.headers.getall("Set-Cookie") if c.startswith("vb_login_csrf="))
    assert ("Secure" in login_cookie) == secure
    csrf = re.search(r'name="csrf" value="([^"]+)"', await page.text()).group(1)
    response = await client.post("/login", data={"username": "sup", "password": PASSWORD, "csrf": csrf},
                                 headers={**headers, "Cookie": f"vb_login_csrf={csrf}"}, allow_redirects=False)
    assert response.status == 303
    session_cookie = next(c for c in response.headers.getall("Set-Cookie") if c.startswith("vb_session="))
    assert ("Secure" in session_cookie) == secure
    assert ("Strict-Transport-Security" in response.headers) == secure
