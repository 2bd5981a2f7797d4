"""Sentences a user reads that say a count: the noun and verb agree with it (1 or many),
with no "(s)" for the reader to resolve. Pure logic, no service: each builds the text
the command or log prints from a report or count it is given."""

from __future__ import annotations

from appliance.cluster.status import ClusterStatus, PartitionState, status_lines


def _state(p: int, owner: str | None) -> PartitionState:
    return PartitionState(partition=p, owner=owner, owner_seen_s=1.0 if owner else None,
                          consumer=f"c{p}", pending=0, ack_pending=0, redelivered=0, lag=0,
                          owner_late=owner == "b")


def test_cluster_status_says_partitions_replicas_and_messages_as_words() -> None:
    """Before: 'node b: partitions 3' for a node of one partition, and 'its claims expire
    ... its partitions then queue' of a late node that held one."""
    report = ClusterStatus(stream="semtrace", partitions=4, replicas=1, messages=1,
                           bytes=1234, nodes={"a": [0, 1], "b": [3]},
                           states=[_state(0, "a"), _state(1, "a"), _state(2, None),
                                   _state(3, "b")],
                           versions={"a": "1.0", "b": "1.0"}, owner_ttl_s=15.0,
                           late={"b": 12.0})
    lines = status_lines(report)
    assert lines[:3] == [
        "stream semtrace: 4 partitions, 1 replica, 1 message queued, 1,234 bytes",
        "node a: partitions 0-1, semtrace 1.0",
        "node b: partition 3, semtrace 1.0, LATE"]
    assert lines[3] == (
        "Node b has not refreshed its claim for 12 s (it does every 5 s while it runs): it "
        "is stopped, killed, hung or cut off from NATS; its claim expires in 3 s "
        "(owner_ttl_s 15), and its partition then queues until a node takes it.")
    many = status_lines(ClusterStatus(
        stream="semtrace", partitions=1, replicas=3, messages=0, bytes=1, nodes={"b": [0, 1]},
        states=[_state(0, "b")], versions={"b": "1.0"}, late={"b": 12.0}))
    assert many[0] == "stream semtrace: 1 partition, 3 replicas, 0 messages queued, 1 byte"
    assert "its claims expire in 3 s (owner_ttl_s 15), and its partitions then queue " \
           "until a node takes them." in many[2]

