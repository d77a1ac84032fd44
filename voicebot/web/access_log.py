"""Access-log lines without secrets: the token in a media path (`/media/twilio/<token>`) and `token=` values."""

from __future__ import annotations

import logging
import re

ACCESS_LOGGER = "aiohttp.access"
REDACTED = "[redacted]"
MEDIA_PATH_TOKEN = re.compile(r"(/media/[^/\s?#\"]+/)[^\s?#\"]+")
"""A media endpoint's path segments after its adapter's name, which may be the media token."""
QUERY_TOKEN = re.compile(r"(token=)[^&;#\s\"]+", re.IGNORECASE)
"""The value of `token=`, `access_token=` and the like, in a query string."""
REQUEST_FIELDS = ("first_request_line", "request_header")
"""The fields aiohttp adds to an access-log record (for structured handlers) that can carry the request's URL."""


def redact(text: str) -> str:
    """The text with media path tokens and `token=` values replaced by [redacted]."""
    return QUERY_TOKEN.sub(rf"\1{REDACTED}", MEDIA_PATH_TOKEN.sub(rf"\1{REDACTED}", text))


class RedactTokens(logging.Filter):
    """Rewrites each access-log record, its message and its request fields, without tokens."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact the record in place; never drop it."""
        record.msg, record.args = redact(record.getMessage()), ()
        for field in REQUEST_FIELDS:
            value = getattr(record, field, None)
            if isinstance(value, str):
                setattr(record, field, redact(value))
            elif isinstance(value, dict):
                setattr(record, field, {k: redact(v) if isinstance(v, str) else v for k, v in value.items()})
        return True


def redact_access_log() -> None:
    """Put `RedactTokens` on aiohttp's access logger, once per process."""
    logger = logging.getLogger(ACCESS_LOGGER)
    if not any(isinstance(f, RedactTokens) for f in logger.filters):
        logger.addFilter(RedactTokens())
