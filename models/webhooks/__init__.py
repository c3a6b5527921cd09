"""Webhooks, one package for both processes: which targets are allowed (`targets`), the signed body
(`signing`), and delivery from a background thread (`delivery`, imported on its own: it needs httpx).

The API checks targets at submit; every job event reaches `delivery.notify` through the lifecycle's
after-transition hook (`models.lifecycle`), whichever process made the change."""

from models.webhooks.signing import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    encode,
    payload,
    sign,
    verify,
)
from models.webhooks.targets import (
    IPAddress,
    TargetRefused,
    address_refusal,
    check_resolved,
    host_refusal,
    literal_address,
    resolve_target,
)

__all__ = [
    "DELIVERY_HEADER",
    "EVENT_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "IPAddress",
    "TargetRefused",
    "address_refusal",
    "check_resolved",
    "encode",
    "host_refusal",
    "literal_address",
    "payload",
    "resolve_target",
    "sign",
    "verify",
]
