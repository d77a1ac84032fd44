"""A recording as a WAV body, served whole or by one byte range (so players can seek), never cached."""

from __future__ import annotations

import io
import re
import wave

from aiohttp import web

from recordings.sealed import Opened

RANGE = re.compile(r"bytes=(\d*)-(\d*)", re.ASCII)
MAX_RANGE_CHARS = 200
MAX_OFFSET_DIGITS = 15
"""Byte offsets up to about a petabyte; a longer number is no real player's range."""


class RangeNotSatisfiable(ValueError):
    """A byte range that starts past the end of the body, or an absurdly long Range header."""


def wav_bytes(opened: Opened) -> bytes:
    """The recording as a 16-bit stereo WAV: the agent on the left, the customer on the right."""
    legs = opened.header.legs
    stereo = opened.frames[:, [legs.index("agent"), legs.index("customer")]]
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(opened.header.sample_rate)
        w.writeframes(stereo.astype("<i2").tobytes())
    return out.getvalue()


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) byte of a single `bytes=` range; None to send the whole body (no, many or malformed ranges).

    RangeNotSatisfiable when the range starts at or past the end, or the header or an offset is absurdly long.
    """
    if header is not None and len(header) > MAX_RANGE_CHARS:
        raise RangeNotSatisfiable(f"a Range header of {len(header)} characters")
    match = RANGE.fullmatch((header or "").strip())
    if match is None:
        return None
    first, last = match.groups()
    if max(len(first), len(last)) > MAX_OFFSET_DIGITS:
        raise RangeNotSatisfiable(f"a byte offset of more than {MAX_OFFSET_DIGITS} digits")
    if not first and not last:
        return None
    if not first:
        if int(last) == 0 or size == 0:
            raise RangeNotSatisfiable(header)
        return max(0, size - int(last)), size - 1
    if last and int(last) < int(first):
        return None
    if int(first) >= size:
        raise RangeNotSatisfiable(header)
    return int(first), min(int(last), size - 1) if last else size - 1


def ranged_response(request: web.Request, body: bytes, content_type: str) -> web.Response:
    """200 with the whole body, 206 with the requested range, or 416; an If-Range (we send no validators) gets 200."""
    headers = {"Accept-Ranges": "bytes", "Cache-Control": "no-store", "Content-Type": content_type}
    try:
        wanted = None if "If-Range" in request.headers else byte_range(request.headers.get("Range"), len(body))
    except RangeNotSatisfiable:
        return web.Response(status=416, headers={**headers, "Content-Range": f"bytes */{len(body)}"})
    if wanted is None:
        return web.Response(body=body, headers=headers)
    first, last = wanted
    return web.Response(status=206, body=body[first:last + 1],
                        headers={**headers, "Content-Range": f"bytes {first}-{last}/{len(body)}"})
