"""Sign-in for the console: security headers, the session gate in front of every page and API, login and logout."""

from __future__ import annotations

import asyncio
import hmac
import html
import logging
import re
import secrets
import string
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from aiohttp import web

from voicebot.sql import is_url, open_db
from voicebot.web.auth import AuthSettings, AuthState, Session, UserStore, token_hash
from voicebot.web.keys import AUTH, ENGINES, SERVE, SESSION, SOCKETS
from voicebot.web.proxy import client_ip, is_https
from voicebot.web.throttle import LoginThrottle, SharedLoginThrottle
from voicebot.web.words import Words, browser_language

log = logging.getLogger(__name__)


class ApiError(Exception):
    """A request the console refuses; the session gate turns it into a JSON 4xx."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


TEMPLATES = Path(__file__).with_name("templates")
SESSION_COOKIE = "vb_session"
LOGIN_CSRF_COOKIE = "vb_login_csrf"
CSRF_HEADER = "X-CSRF-Token"
PUBLIC_PATHS = frozenset({"/login", "/healthz"})
PUBLIC_PREFIXES = ("/static/", "/media/")
"""Adapters' media endpoints check their own token; static files hold no call data."""
API_PREFIXES = ("/api/", "/ws/")
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
WS_CLOSE_SIGNED_OUT = 4401
LOGIN_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")
CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
URL_CHARS = "/?#[]@!$&'()*+,;=:%-._~"
"""What `safe_next` leaves as it is: the reserved and unreserved URL characters, and existing %-escapes."""
FIRST_USER_HINT = "No console user exists yet: `voicebot users add NAME --role admin` creates the first account."

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def auth_ctx(settings: AuthSettings) -> Callable[[web.Application], AsyncIterator[None]]:
    """Open the users and sessions tables in the serve database for the app's lifetime."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        serve = app[SERVE]
        store = await asyncio.get_running_loop().run_in_executor(None, UserStore.open, serve.db, settings.now)
        secure = settings.secure_cookies
        if secure is None:
            secure = serve.host not in LOOPBACK_HOSTS
        shared = await run_db(open_db, serve.db) if is_url(serve.db) else None  # nodes count failures together
        throttle = SharedLoginThrottle(shared, settings) if shared else LoginThrottle(settings)
        app[AUTH] = AuthState(store=store, settings=settings, throttle=throttle, secure_cookies=secure)
        if not await run_db(store.has_users):
            log.warning(FIRST_USER_HINT)
        yield
        store.close()
        if shared:
            shared.close()

    return ctx


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: CSP, no framing, no sniffing, same-origin referrers only, no-store outside /static/."""
    h = response.headers
    h.setdefault("Content-Security-Policy", CSP)
    h["X-Frame-Options"] = "DENY"
    h["X-Content-Type-Options"] = "nosniff"
    h["Referrer-Policy"] = "same-origin"
    h["Cross-Origin-Opener-Policy"] = "same-origin"
    h["Cache-Control"] = "no-cache" if request.path.startswith("/static/") else "no-store"
    if secure_request(request):
        h["Strict-Transport-Security"] = "max-age=31536000"


def secure_request(request: web.Request) -> bool:
    """Whether cookies get `Secure` and responses HSTS: always when so configured, else when reached over HTTPS."""
    auth = request.app.get(AUTH)
    return (auth is not None and auth.secure_cookies) or is_https(request)


def api_error(status: int, message: str) -> web.Response:
    """A JSON error body with its status."""
    return web.json_response({"error": message, "status": status}, status=status)


def redirect(location: str) -> web.Response:
    """A 303 to a same-site path, as a plain response (so cookies can be set on it)."""
    return web.Response(status=303, headers={"Location": location})


def is_api(path: str) -> bool:
    """Whether a path answers in JSON (APIs and the event stream) rather than HTML."""
    return path.startswith(API_PREFIXES)


@web.middleware
async def session_gate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every page and API but the public few needs a live session: APIs answer 401, pages redirect to /login."""
    path = request.path
    if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
        return await handler(request)
    session = await current_session(request)
    if session is None:
        if is_api(path):
            return api_error(401, "sign in first")
        return redirect(f"/login?next={quote(request.rel_url.path_qs, safe='/')}")
    request[SESSION] = session
    try:
        return await handler(request)
    except ApiError as e:
        return api_error(e.status, e.message)
    except web.HTTPException as e:
        if e.status_code < 400 or not is_api(path):
            raise
        return api_error(e.status_code, e.reason)


async def current_session(request: web.Request) -> Session | None:
    """The request's signed-in session, if its cookie names a live one."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token or len(token) > 200:
        return None
    auth = request.app[AUTH]
    return await run_db(auth.store.session, token, auth.settings.idle_timeout_s)


async def run_db(fn: Callable[..., Any], *args: Any) -> Any:
    """Run a blocking store call off the event loop."""
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


def origin_ok(request: web.Request, *, required: bool = False) -> bool:
    """Whether the Origin header, if any (or `required`), names this very host."""
    origin = request.headers.get("Origin")
    if origin is None:
        return not required
    return urlsplit(origin).netloc == request.host


def require_csrf(request: web.Request, form_token: str | None = None) -> Session:
    """The session, if the request carries its CSRF token (header or form) and a same-site Origin; else 403."""
    session = request[SESSION]
    given = form_token if form_token is not None else request.headers.get(CSRF_HEADER, "")
    if not origin_ok(request) or not hmac.compare_digest(given.encode(), session.csrf.encode()):
        raise ApiError(403, f"missing or wrong {CSRF_HEADER}; reload the page")
    return session


async def json_body(request: web.Request) -> dict[str, Any]:
    """A request's JSON object body; ApiError 400 when it is not JSON or not an object."""
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "the body is not JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "send a JSON object")
    return body


def json_text(body: dict[str, Any], key: str) -> str:
    """The body's string field `key`; ApiError 400 when it is missing or not a JSON string."""
    value = body.get(key)
    if not isinstance(value, str):
        raise ApiError(400, f'"{key}" must be a JSON string')
    return value


def require_role(session: Session, roles: Collection[str]) -> Session:
    """The session, if its user's role is one of `roles`; else 403."""
    if session.role not in roles:
        raise ApiError(403, f"the {session.role} role may not do this")
    return session


@cache
def _template(name: str) -> string.Template:
    return string.Template((TEMPLATES / name).read_text(encoding="utf-8"))


class Html(str):
    """Markup our code built from escaped parts; `render` inserts it as it is."""


def render(name: str, status: int = 200, **values: str) -> web.Response:
    """An HTML page from templates/, every value HTML-escaped but `Html` ones."""
    body = _template(name).substitute({k: v if isinstance(v, Html) else html.escape(v) for k, v in values.items()})
    return web.Response(text=body, status=status, content_type="text/html", charset="utf-8")


VOID_ELEMENTS = frozenset({"br", "input", "meta", "link", "img", "hr"})


def tag(element: str, /, *content: str, **attrs: str | float | bool | None) -> Html:
    """One element: text and attribute values HTML-escaped, `Html` content kept; `class_` is `class`, `a_b` is `a-b`.

    An attribute that is True is written bare, one that is None or False is left out.
    """
    parts = [element]
    for key, value in attrs.items():
        if value is None or value is False:
            continue
        attr = key.rstrip("_").replace("_", "-")
        parts.append(attr if value is True else f'{attr}="{html.escape(str(value))}"')
    opening = f"<{' '.join(parts)}>"
    if element in VOID_ELEMENTS:
        return Html(opening)
    inner = "".join(c if isinstance(c, Html) else html.escape(c) for c in content)
    return Html(f"{opening}{inner}</{element}>")


def safe_next(target: str | None) -> str:
    """A same-site path to go to after sign-in, percent-encoded to ASCII; anything else becomes /.

    Checked as a browser reads it: control characters dropped (browsers drop tabs and newlines), backslashes as slashes.
    """
    path = CONTROL_CHARS.sub("", target or "").replace("\\", "/")
    if not path.startswith("/") or path.startswith("//"):
        return "/"
    parts = urlsplit(path)
    if parts.scheme or parts.netloc:
        return "/"
    return quote(path, safe=URL_CHARS)


async def login_page(request: web.Request, *, status: int = 200, message: str = "",
                     next_path: str = "/") -> web.Response:
    """The sign-in form with a double-submit CSRF token (cookie and hidden field), kept across reloads and tabs.

    While no user exists, it says how to create the first one.
    """
    token = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not LOGIN_TOKEN.fullmatch(token):
        token = secrets.token_urlsafe(32)
    has_users = await run_db(request.app[AUTH].store.has_users)
    first_user = Html("") if has_users else tag("p", FIRST_USER_HINT, class_="muted", id="first-user")
    say = Words(browser_language(request.headers.get("Accept-Language", "")))
    response = render("login.html", status, csrf=token, next=safe_next(next_path), message=message, lang=say.lang,
                      **say.template("console", "sign_in_title", "user_name", "password", "sign_in"),
                      first_user=first_user)
    response.set_cookie(LOGIN_CSRF_COOKIE, token, path="/login", max_age=3600, httponly=True, samesite="Strict",
                        secure=secure_request(request))
    return response


async def get_login(request: web.Request) -> web.Response:
    """GET /login: the form, or straight to the console when already signed in."""
    if await current_session(request) is not None:
        return redirect(safe_next(request.query.get("next")))
    return await login_page(request, next_path=request.query.get("next", "/"))


async def post_login(request: web.Request) -> web.Response:
    """POST /login: check the form's CSRF token, then count the attempt with the throttle, then the password."""
    form = await request.post()
    username, password = str(form.get("username", ""))[:64], str(form.get("password", ""))
    next_path = safe_next(str(form.get("next", "/")))
    cookie, field = request.cookies.get(LOGIN_CSRF_COOKIE, ""), str(form.get("csrf", ""))
    if not origin_ok(request) or not cookie or not hmac.compare_digest(cookie.encode(), field.encode()):
        return await login_page(request, status=403, message="The sign-in form expired; please try again.",
                                next_path=next_path)
    auth = request.app[AUTH]
    attempt = await run_db(auth.throttle.reserve, username, client_ip(request))
    if attempt.wait_s > 0:
        return await throttled(request, attempt.wait_s, next_path)
    user, why = await run_db(auth.store.authenticate, username, password)
    if why != "ok":
        await audit_login(request, "sign_in_failed", user.username if user else None, reason=why)
        return await login_page(request, status=401, message="Wrong user name or password.", next_path=next_path)
    await run_db(auth.throttle.succeeded, attempt)
    if previous := request.cookies.get(SESSION_COOKIE):
        await run_db(auth.store.end_session, token_hash(previous))
    token, session = await run_db(auth.store.create_session, user.username, auth.settings.session_lifetime_s)
    await audit_login(request, "sign_in", session.username, role=session.role)
    response = redirect(next_path)
    response.set_cookie(SESSION_COOKIE, token, path="/", httponly=True, samesite="Strict",
                        secure=secure_request(request), max_age=int(auth.settings.session_lifetime_s))
    response.del_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


async def throttled(request: web.Request, wait_s: float, next_path: str) -> web.Response:
    """The 429 sign-in page for an attempt the throttle refused, audited, with Retry-After."""
    await audit_login(request, "sign_in_failed", None, reason="throttled")
    response = await login_page(request, status=429, next_path=next_path,
                                message=f"Too many failed sign-ins; try again in {int(wait_s // 60) + 1} min.")
    response.headers["Retry-After"] = str(int(wait_s) + 1)
    return response


async def post_logout(request: web.Request) -> web.Response:
    """POST /logout (form field or header CSRF token): end the session and close its event streams."""
    form = await request.post()
    session = request[SESSION]
    try:
        require_csrf(request, str(form["csrf"]) if "csrf" in form else None)
    except ApiError:
        return render("message.html", 403, title="Sign-out refused", message="Reload the page and try again.")
    await run_db(request.app[AUTH].store.end_session, session.token_hash)
    await audit_login(request, "sign_out", session.username)
    await close_sockets(request.app, session.token_hash, WS_CLOSE_SIGNED_OUT, b"signed out")
    response = redirect("/login")
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


async def close_sockets(app: web.Application, token_hash: str | None, code: int, message: bytes) -> None:
    """Close the open event streams of one session (or all of them when `token_hash` is None)."""
    sockets = app[SOCKETS]
    for ws, owner in list(sockets.items()):
        if token_hash is None or owner == token_hash:
            await ws.close(code=code, message=message)


async def audit_login(request: web.Request, event: str, actor: str | None, **data: str) -> None:
    """Write a sign-in, sign-out or failed sign-in to the audit log (never the password or an unknown name)."""
    record = {"event": event, "ip": client_ip(request), **data}
    engines = request.app[ENGINES]
    append = lambda: engines.audit.append("login", record, actor=actor)  # noqa: E731
    await asyncio.get_running_loop().run_in_executor(engines.disk, append)
    log.info("console %s", event)


def setup_login(app: web.Application, settings: AuthSettings) -> None:
    """Add the sign-in machinery: store, headers, gate, /login and /logout."""
    app.cleanup_ctx.append(auth_ctx(settings))
    app.on_response_prepare.append(security_headers)
    app.middlewares.append(session_gate)
    app.router.add_get("/login", get_login)
    app.router.add_post("/login", post_login)
    app.router.add_post("/logout", post_logout)
