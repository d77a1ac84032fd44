"""Each user's language and time zone: chosen in every page's header, used by every page and the CSV."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from voicebot.web.auth import AuthError, User
from voicebot.web.keys import AUTH, SESSION
from voicebot.web.login import ApiError, Html, render, require_csrf, run_db, safe_next, tag
from voicebot.web.words import Words, browser_language

COMMON_ZONES = ("Asia/Shanghai", "Asia/Urumqi", "Asia/Hong_Kong", "America/New_York", "America/Chicago",
                "America/Denver", "America/Los_Angeles", "America/Anchorage", "Pacific/Honolulu", "UTC")
WORDS = {
    "en": {"settings": "Settings", "language": "Language", "browser": "As the browser", "zone": "Time zone",
           "zone_hint": "empty: the browser's", "save": "Save", "signed_in": "signed in as", "sign_out": "Sign out",
           "refused": "Settings not saved"},
    "zh": {"settings": "设置", "language": "语言", "browser": "跟随浏览器", "zone": "时区",
           "zone_hint": "留空：跟随浏览器", "save": "保存", "signed_in": "已登录：", "sign_out": "退出登录",
           "refused": "设置未保存"},
}
ROLE_NAMES = {"zh": {"supervisor": "主管", "qa": "质检", "admin": "管理员", "collector": "催收员"}}


@dataclass(frozen=True, slots=True)
class PageSettings:
    """What a signed-in page needs of its user: language, zone, and the header's settings and sign-out parts."""

    lang: str
    zone: str
    header: Html

    @property
    def say(self) -> Words:
        """The page's words in the user's language, its times in the user's zone."""
        return Words(self.lang, self.zone)


async def page_settings(request: web.Request) -> PageSettings:
    """The signed-in user's language (their choice, else the browser's) and zone, with the header's forms."""
    session = request[SESSION]
    user: User | None = await run_db(request.app[AUTH].store.user, session.username)
    lang = (user.language if user else "") or browser_language(request.headers.get("Accept-Language", ""))
    zone = user.zone if user else ""
    words = WORDS[lang]
    choices = [tag("option", label, value=value, selected=user is not None and user.language == value)
               for value, label in (("", words["browser"]), ("en", "English"), ("zh", "简体中文"))]
    form = tag(
        "details", tag("summary", words["settings"]),
        tag("form", tag("input", type="hidden", name="csrf", value=session.csrf),
            tag("input", type="hidden", name="next", value=request.path_qs),
            tag("label", words["language"], tag("select", *choices, name="language", id="pref-language")),
            tag("label", words["zone"], tag("input", name="zone", id="pref-zone", value=zone, list="zones",
                                            placeholder=words["zone_hint"], maxlength=64)),
            tag("datalist", *(tag("option", value=z) for z in COMMON_ZONES), id="zones"),
            tag("button", words["save"], type="submit"), method="post", action="/settings", class_="stack"),
        class_="prefs")
    name = (user.display_name if user else "") or session.username
    role = ROLE_NAMES.get(lang, {}).get(session.role, session.role)
    who = tag("span", words["signed_in"], " ", tag("strong", name, id="whoami"), f" ({role})", class_="who")
    sign_out = tag("form", tag("input", type="hidden", name="csrf", value=session.csrf),
                   tag("button", words["sign_out"], type="submit", id="sign-out"),
                   method="post", action="/logout", class_="inline")
    return PageSettings(lang, zone, Html(form + who + sign_out))


async def post_settings(request: web.Request) -> web.Response:
    """POST /settings (form): save the user's language and zone, then go back to the (same-site) page."""
    form = await request.post()
    session = request[SESSION]
    title = WORDS[browser_language(request.headers.get("Accept-Language", ""))]["refused"]
    try:
        require_csrf(request, str(form.get("csrf", "")))
    except ApiError as e:
        return render("message.html", 403, title=title, message=e.message)
    values = {k: str(form.get(k, ""))[:64] for k in ("language", "zone")}
    try:
        await run_db(lambda: request.app[AUTH].store.set_settings(session.username, **values))
    except AuthError as e:
        return render("message.html", 400, title=title, message=str(e))
    raise web.HTTPSeeOther(safe_next(str(form.get("next", "/"))))


def setup_prefs(app: web.Application) -> None:
    """Add POST /settings."""
    app.router.add_post("/settings", post_settings)
