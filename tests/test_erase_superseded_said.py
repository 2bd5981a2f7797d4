"""What `erase` says of the earlier request its own replaced: the earlier one's audit entry
is on the node that asked it. Run on node b after node a had asked (the owner down), it
said "both are in this node's audit log", and b's audit log holds only its own entry (seen
walking scale-out with real nodes, h185). Pure sentence logic."""

from __future__ import annotations

from appliance.cli.erasure_said import Asked, superseded_sentence
from appliance.cluster.erasures import Superseded
from appliance.cluster.locate import Home


def _asked(requested_on: str) -> Asked:
    home = Home("hooli", 6, "c", live=False, here=False)
    return Asked(home, "u_2cab", None, Superseded("r-1", requested_on, 1_796_000_000.0, None))


def test_an_earlier_request_of_another_node_is_said_to_be_in_that_nodes_audit_log() -> None:
    said = superseded_sentence(_asked("a"), "b")
    assert "both are in this node's audit log" not in said
    assert said.endswith("which was not applied: no node had tried to apply it yet; this "
                         "node's audit log names it in this request's entry (erase_forwarded, "
                         "superseded), and node 'a''s audit log has its own."), said


def test_an_earlier_request_of_this_node_is_said_to_be_beside_it() -> None:
    said = superseded_sentence(_asked("b"), "b")
    assert said.endswith("; both are in this node's audit log (erase_forwarded)."), said
