"""Who a request comes from and whether it came over HTTPS; forwarding headers count only from trusted proxies."""

from __future__ import annotations

import ipaddress
from functools import cache

from aiohttp import web

from voicebot.web.keys import SERVE

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
MAX_FORWARDED_CHARS = 1024
"""Only this tail of X-Forwarded-For is read: the entries our proxies appended are the right-most ones."""
MAX_FORWARDED_HOPS = 16
MAX_PROTO_CHARS = 64


@cache
def _networks(values: tuple[str, ...]) -> tuple[Network, ...]:
    """The trusted proxies as networks (ServeConfig has checked each one parses)."""
    return tuple(ipaddress.ip_network(v.strip(), strict=False) for v in values)


def parse_ip(text: str) -> IpAddress | None:
    """An address, IPv4-mapped IPv6 read as IPv4, or None if the text is not one."""
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: IpAddress | None, networks: tuple[Network, ...]) -> bool:
    return address is not None and any(address in n for n in networks)


def _trusted_peer(request: web.Request) -> bool:
    """Whether the TCP peer is one of `--trusted-proxy`."""
    networks = _networks(request.app[SERVE].trusted_proxies)
    return bool(networks) and _trusted(parse_ip(request.remote or ""), networks)


def forwarded_client(header: str, networks: tuple[Network, ...]) -> IpAddress | None:
    """The right-most X-Forwarded-For address that is not a trusted proxy (the left-most read if all are).

    None when an entry read is not an IP address: that part was not written by a proxy we trust.
    """
    truncated = len(header) > MAX_FORWARDED_CHARS
    entries = header[-MAX_FORWARDED_CHARS:].split(",")
    if truncated:
        entries = entries[1:]  # the first piece may be cut mid-address
    found = None
    for entry in reversed(entries[-MAX_FORWARDED_HOPS:]):
        found = parse_ip(entry)
        if not _trusted(found, networks):
            return found
    return found


def client_ip(request: web.Request) -> str:
    """The client's address: the TCP peer's, or, behind a trusted proxy, the one it forwarded."""
    peer = request.remote or "unknown"
    if not _trusted_peer(request):
        return peer
    header = ",".join(request.headers.getall("X-Forwarded-For", []))
    forwarded = forwarded_client(header, _networks(request.app[SERVE].trusted_proxies)) if header else None
    return str(forwarded) if forwarded is not None else peer


def is_https(request: web.Request) -> bool:
    """Whether the browser reached us over HTTPS: `--https`, or a trusted proxy's X-Forwarded-Proto: https."""
    if request.app[SERVE].https or request.secure:
        return True
    proto = request.headers.get("X-Forwarded-Proto", "")
    if len(proto) > MAX_PROTO_CHARS or not _trusted_peer(request):
        return False
    return proto.rsplit(",", 1)[-1].strip().lower() == "https"
