"""What a node reads from a partition's message before the service sees it: its fields, the
check that it belongs to its subject's tenant and partition, and the reply book's key of
one refused unopened."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from appliance.cluster import partition as part
from appliance.protocol import ProtocolError, echo_id


def refused_key(tenant: str, data: bytes) -> tuple[str, str]:
    """The reply book's key of a message refused unopened: its digest stands for its id."""
    return tenant, "refused:" + hashlib.sha256(data).hexdigest()[:32]


def fields(data: bytes) -> dict[str, Any]:
    """A request frame's fields ({} when it is not a JSON object: the service refuses it)."""
    try:
        obj = json.loads(data)
    except ValueError:
        return {}
    return obj if isinstance(obj, dict) else {}


def checked(tenant: str, p: int, partitions: int) -> Any:
    """The check that a message's body names the tenant of its subject, published to that
    tenant's partition: one published straight to another partition's subject (a client
    allowed `semtrace.part.*.<tenant>`) would be stored where that tenant's owner, its
    reads and its erasures never see it."""

    def check(obj: dict[str, Any]) -> None:
        rid = echo_id(obj.get("request_id"))
        if obj.get("tenant") != tenant:
            raise ProtocolError("bad_request", "The request's tenant differs from its subject's "
                                "tenant.", rid)
        if part.partition_of(tenant, partitions) != p:
            raise ProtocolError("bad_request", f"The message was published to partition {p}, "
                                "not to its tenant's; publish to semtrace.ingest.<tenant>.", rid)

    return check
