"""A prompt's turns as keyed digests: the keys stored with its prompt, its answer and its
response id, and the gateway's history and previous response id keyed and matched against
the turns held (stored, or of the batch not yet committed). Used by `pipeline.py`."""

from __future__ import annotations

from collections.abc import Sequence

from appliance import history
from appliance.ingest import content_digest
from appliance.keys import Keyring
from appliance.records import GatewayContext, HeldTurn, Message, Prompt, Response
from appliance.store import Store
from appliance.store.turns import OWNER

NO_TEXT = content_digest("")  # the digest of a message without text


def turn_keys(keys: Keyring, tenant: str, user: str, response: Response | None,
              prompt_digest: str | None = None) -> list[tuple[str, str]]:
    """(kind, keyed digest) of a prompt's content, its answer and its response id."""
    out = []
    if prompt_digest is not None:
        out.append(("prompt", keys.turn_key(tenant, user, "message", prompt_digest)))
    if response is not None and response.digest not in (None, NO_TEXT):
        out.append(("answer", keys.turn_key(tenant, user, "message", response.digest)))
    if response is not None and response.response_id is not None:
        out.append(("response_id",
                    keys.turn_key(tenant, user, "response", response.response_id)))
        out.append((OWNER, keys.turn_key(tenant, "", "response", response.response_id)))
    return out


def gateway_context(keys: Keyring, store: Store, pending: Sequence[HeldTurn], p: Prompt,
                    user: str) -> GatewayContext:
    """The prompt's history and previous response id, keyed and matched against the store
    (and `pending`, this batch's records of the user not yet committed)."""
    if p.history is None and p.previous_response_id is None:
        return GatewayContext()
    msgs = tuple(Message(role=m.role, digest=keys.turn_key(p.tenant, user, "message", m.digest))
                 for m in p.history or ())
    # a message without text (an assistant's tool calls) is no turn's: every tool
    # call of any conversation has that digest
    wanted = {m.digest for m, given in zip(msgs, p.history or (), strict=True)
              if m.role in history.DIALOGUE and given.digest != NO_TEXT}
    prev = (keys.turn_key(p.tenant, user, "response", p.previous_response_id)
            if p.previous_response_id is not None else None)
    if prev is not None:
        wanted.add(prev)
    held = store.held_turns(p.tenant, user, sorted(wanted)) if wanted else []
    held += [h for h in pending if h.digest in wanted]
    previous = [h for h in held if h.kind == "response_id" and h.digest == prev]
    return GatewayContext(
        history=msgs if p.history is not None else None,
        held=tuple(h for h in held if h.kind != "response_id"),
        previous_response_id=prev is not None, previous=previous[-1] if previous else None)
