"""When a node's tenant note is written from the local socket while NATS refuses it: one
write in flight per tenant, not one per prompt (pure logic; NATS stands in as a bus that
refuses every write)."""

from __future__ import annotations

import asyncio

from appliance.cluster.tenants_note import TenantsNote


class _DownBus:
    """JetStream while NATS is down: every bucket lookup fails (after a pause, as a
    timeout would)."""

    def __init__(self) -> None:
        self.tries = 0

    async def key_value(self, name: str) -> object:
        self.tries += 1
        await asyncio.sleep(0.05)
        raise ConnectionError("nats: no servers available")


async def _known() -> list[str]:
    return []


def test_socket_prompts_of_a_new_tenant_while_nats_is_down_start_one_write_not_one_each() -> None:
    """Each local-socket prompt of a tenant not yet noted started its own background write,
    so while NATS was down a busy tenant sent NATS one note write per prompt. Now one is
    in flight per tenant, and the tenant waits for the retry each second (`catch_up`)."""
    bus = _DownBus()

    async def run() -> tuple[bool, set[str]]:
        note = TenantsNote(bus, "n1", replicas=1, known=_known)
        answers = [await note.ahead("acme", wait=False) for _ in range(50)]
        await asyncio.sleep(0.3)
        await note.stop()
        return all(answers), set(note.behind)

    all_true, behind = asyncio.run(run())
    assert all_true  # a socket prompt is never held up by NATS
    assert bus.tries == 1
    assert behind == {"acme"}  # still to be noted by the retry
