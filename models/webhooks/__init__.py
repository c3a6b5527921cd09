"""Webhooks, one package for both processes: which targets are allowed (`targets`), the signed body
(`signing`), the durable outbox (`outbox`), one signed POST (`delivery`) and the sender that delivers the
outbox (`sender`; these two are imported on their own: they need httpx).

The API checks targets at submit; every job event is staged in the outbox by the lifecycle's after-transition
hook (`models.lifecycle`), in the transaction of the change, whichever process made it; the worker's sender
delivers it."""

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
