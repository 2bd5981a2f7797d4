"""The tenants each node of a cluster knows, for `erase --all-tenants` on any node.

A user id is pseudonymised per tenant, so an erasure that names only the person has to
search every tenant; on a cluster a node's data dir knows only its own tenants (and those
its policies name). So every running node notes, in the JetStream key-value bucket
`semtrace_tenants` under its node name, the tenant names its store and policies know (at
start, then each minute when they changed: `ErasureInbox`), and `erase --all-tenants`
adds the tenants of every node's note to its own before it asks each tenant's owner. Only
tenant names go there (they are in the bus's subjects already): never a user id or a
pseudonym. A node that has not run since this version knows its tenants is not in the
bucket: keep the policies the same on every node for those.
"""

from __future__ import annotations

import contextlib
import json
import re
from typing import Any

from appliance.cluster.bus import connect
from appliance.config import ClusterSettings

TENANTS_BUCKET = "semtrace_tenants"
_KEY = re.compile(r"^[-/_=.a-zA-Z0-9]+$")  # what a KV key may hold


async def tenants_bucket(js: Any, *, replicas: int, create: bool = True) -> Any:
    """The bucket of node -> tenant names (BucketNotFoundError when absent and not `create`)."""
    from nats.js.errors import BucketNotFoundError

    try:
        return await js.key_value(TENANTS_BUCKET)
    except BucketNotFoundError:
        if not create:
            raise
        from nats.js.api import KeyValueConfig

        return await js.create_key_value(KeyValueConfig(
            bucket=TENANTS_BUCKET, history=1, replicas=replicas,
            description="semtrace: the tenant names each node knows (erase --all-tenants)"))


async def note_tenants(kv: Any, node: str, tenants: list[str]) -> bool:
    """Note this node's tenants; False when its name cannot be a key (nothing noted)."""
    if not _KEY.match(node):
        return False
    await kv.put(node, json.dumps(sorted(set(tenants))).encode())
    return True


def tenants_of(values: list[bytes]) -> set[str]:
    """Pure: the tenant names of the nodes' notes (a note this version cannot read is
    left out)."""
    names: set[str] = set()
    for value in values:
        with contextlib.suppress(ValueError, TypeError):
            listed = json.loads(value)
            if isinstance(listed, list):
                names |= {t for t in listed if isinstance(t, str) and t}
    return names


async def cluster_tenants(settings: ClusterSettings) -> set[str]:
    """Every tenant a node of the cluster noted; SemtraceError when NATS does not answer."""
    from nats.js.errors import BucketNotFoundError

    nc = await connect(settings.url, settings.security, name="semtrace-erase", reconnect=False)
    try:
        try:
            kv = await tenants_bucket(nc.jetstream(), replicas=settings.replicas, create=False)
        except BucketNotFoundError:
            return set()
        watcher = await kv.watchall()
        values = []
        try:
            while (entry := await watcher.updates(timeout=30)) is not None:
                if entry.operation is None and entry.value:
                    values.append(entry.value)
        finally:
            await watcher.stop()
        return tenants_of(values)
    finally:
        with contextlib.suppress(Exception):
            await nc.close()
