"""Which webhook targets are allowed: public addresses only, checked on the literal host at submit and on every
resolved address before each delivery. No I/O except the DNS lookup of `resolve_target`."""

from __future__ import annotations

import ipaddress
import re
import socket

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NUMERIC_HOST = re.compile(r"^[0-9a-fA-FxX.]+$")


class TargetRefused(ValueError):
    """A webhook URL whose host is, or resolves to, an address webhooks may not reach."""


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
