"""A recording as a WAV body, served whole or by one byte range (so players can seek), never cached, decrypting only
the chunks a range needs."""

from __future__ import annotations

import asyncio
import logging
import re
import struct
from collections.abc import Iterator

from aiohttp import web

from recordings.keys import KeyRing
from recordings.sealed import RecordingTamperedError, SealedIndex, read_frames

RANGE = re.compile(r"bytes=(\d*)-(\d*)", re.ASCII)
log = logging.getLogger(__name__)
HEADER_BYTES = 44
FRAME_BYTES = 4
"""A stereo frame of two 16-bit samples."""
BLOCK_BYTES = 1 << 20
"""About this much audio is decrypted and sent at a time."""
MAX_RANGE_CHARS = 200
MAX_OFFSET_DIGITS = 15
"""Byte offsets up to about a petabyte; a longer number is no real player's range."""


class RangeNotSatisfiable(ValueError):
    """A byte range that starts past the end of the body, or an absurdly long Range header."""


def wav_header(sample_rate: int, frames: int) -> bytes:
    """The 44-byte header of a 16-bit stereo PCM WAV of `frames` frames."""
    data = frames * FRAME_BYTES
    return (b"RIFF" + struct.pack("<I", 36 + data) + b"WAVEfmt "
            + struct.pack("<IHHIIHH", 16, 1, 2, sample_rate, sample_rate * FRAME_BYTES, FRAME_BYTES, 16)
            + b"data" + struct.pack("<I", data))


def wav_size(index: SealedIndex) -> int:
    """The WAV body's length in bytes."""
    return HEADER_BYTES + index.frames * FRAME_BYTES


def wav_pieces(index: SealedIndex, ring: KeyRing, first: int, last: int) -> Iterator[bytes]:
    """Bytes first..last of the recording as a stereo WAV (the agent left, the customer right), decrypting only the
    chunks that hold them, one at a time."""
    if first < HEADER_BYTES:
        yield wav_header(index.header.sample_rate, index.frames)[first:last + 1]
    lo, hi = max(first, HEADER_BYTES) - HEADER_BYTES, last + 1 - HEADER_BYTES  # within the PCM data
    if hi <= lo:
        return
    legs = index.header.legs
    order = [legs.index("agent"), legs.index("customer")]
    at = lo // FRAME_BYTES * FRAME_BYTES
    for frames in read_frames(index, ring, lo // FRAME_BYTES, -(-hi // FRAME_BYTES)):
        raw = frames[:, order].astype("<i2").tobytes()
        yield raw[max(0, lo - at):hi - at]
        at += len(raw)


def next_block(pieces: Iterator[bytes]) -> bytes:
    """The next BLOCK_BYTES or so of `pieces` (b"" at the end): one write to the client, one hop off the loop."""
    block = bytearray()
    for piece in pieces:
        block += piece
        if len(block) >= BLOCK_BYTES:
            break
    return bytes(block)


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


async def wav_response(request: web.Request, index: SealedIndex, ring: KeyRing) -> web.StreamResponse:
    """200 with the whole WAV, 206 with the requested range, or 416, streamed a block at a time off the event loop
    (memory stays bounded whatever the recording's length); an If-Range (we send no validators) gets 200. A chunk
    that fails its integrity check gives 409 before the first byte is sent, and cuts the stream after."""
    size = wav_size(index)
    headers = {"Accept-Ranges": "bytes", "Cache-Control": "no-store", "Content-Type": "audio/wav"}
    try:
        wanted = None if "If-Range" in request.headers else byte_range(request.headers.get("Range"), size)
    except RangeNotSatisfiable:
        return web.Response(status=416, headers={**headers, "Content-Range": f"bytes */{size}"})
    first, last = wanted or (0, size - 1)
    pieces = wav_pieces(index, ring, first, last)
    loop = asyncio.get_running_loop()
    try:
        block = await loop.run_in_executor(None, next_block, pieces)
    except RecordingTamperedError:
        return web.Response(status=409, text="The recording failed its integrity check: it was altered or damaged, "
                            "so it is not played. Report it to an admin.")
    if wanted is not None:
        headers["Content-Range"] = f"bytes {first}-{last}/{size}"
    response = web.StreamResponse(status=206 if wanted else 200, headers=headers)
    response.content_length = last - first + 1
    await response.prepare(request)
    try:
        while block:
            await response.write(block)
            block = await loop.run_in_executor(None, next_block, pieces)
    except RecordingTamperedError:
        log.warning("recording %s failed its integrity check while it was played; the stream was cut",
                    index.header.call_id)
        if request.transport is not None:
            request.transport.close()
        return response
    await response.write_eof()
    return response
