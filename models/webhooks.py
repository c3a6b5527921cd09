"""Webhooks: which targets are allowed, the payload and its signature (the spec field is `contract.webhook`).

Delivery (HTTP, retries, the background thread) lives in `worker/webhooks.py`; this module has no I/O
except the DNS lookup of `resolve_target`.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import re
import socket
import uuid
from datetime import datetime
from typing import Any

SIGNATURE_HEADER = "X-Plateau-Signature"
TIMESTAMP_HEADER = "X-Plateau-Timestamp"
EVENT_HEADER = "X-Plateau-Event"
DELIVERY_HEADER = "X-Plateau-Delivery"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NUMERIC_HOST = re.compile(r"^[0-9a-fA-FxX.]+$")


class TargetRefused(ValueError):
    """A webhook URL whose host is, or resolves to, an address webhooks may not reach."""


# --- which targets are allowed -------------------------------------------------------------------


def address_refusal(ip: IPAddress) -> str | None:
    """Why a webhook may not go to `ip`, or None when it is a public address."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            why = address_refusal(embedded)
            if why:
                return why
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_unspecified:
        return "the unspecified address"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_private:
        return "a private address"
    if ip.is_reserved or not ip.is_global:
        return "not a public address"
    return None


def literal_address(host: str) -> IPAddress | None:
    """The address `host` spells, including the forms only the C resolver reads (`127.1`, `2130706433`, `0x7f.1`)."""
    host = host.strip("[]").split("%", 1)[0]
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if _NUMERIC_HOST.match(host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def host_refusal(host: str) -> str | None:
    """Why the literal `host` of a URL is refused, without any DNS lookup; None when it may be public."""
    name = host.lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return "a loopback name"
    ip = literal_address(name)
    return address_refusal(ip) if ip is not None else None


def resolve_target(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to (socket.gaierror when it does not resolve)."""
    seen: list[IPAddress] = []
    for *_, sockaddr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if ip not in seen:
            seen.append(ip)
    return seen


def check_resolved(host: str, addresses: list[IPAddress]) -> None:
    """Raise TargetRefused when any address of `host` is not public (a name with one private address is refused)."""
    for ip in addresses:
        why = address_refusal(ip)
        if why:
            raise TargetRefused(f"{host} resolves to {ip}, {why}")


# --- payload and signature -------------------------------------------------------------------------


def payload(event: str, job_id: uuid.UUID | str, status: str | None, at: datetime, data: dict[str, Any] | None) -> dict:
    return {"event": event, "job_id": str(job_id), "status": status, "at": at.isoformat(), "data": data or {}}


def encode(body: dict) -> bytes:
    return json.dumps(body, separators=(",", ":"), sort_keys=True, default=str).encode()


def sign(secret: str, body: bytes) -> str:
    """The X-Plateau-Signature value: HMAC-SHA256 of the raw body, hex."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str | None) -> bool:
    """What a receiver does: recompute over the raw body and compare in constant time."""
    return header is not None and hmac.compare_digest(sign(secret, body), header)
