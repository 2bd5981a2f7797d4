"""`semtrace erase --tenant T --user <whole pseudonym>` run on a cluster node that does not
own T: the officer holds only the user as Semtrace shows them (threads list on the owner, the
audit log, the signed report). The forwarded request carries a pseudonym; this node took the
pseudonym for a user id and pseudonymised it again, so the owner erased nobody, said 'No
records of u_<another>' and the command exited 0 while the user's records stayed. A real
nats-server and two real `semtrace serve` nodes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from cluster_nodes import running_pair
from test_cluster import Node
from test_erase_cluster import TENANT, _row  # a tenant of node a's partitions (0-1)
from test_erasure_inflight import users_records
from test_spine import run_cli

from appliance.keys.bus import BusKeys

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def two(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Node, Node, BusKeys]]:
    with running_pair(tmp_path_factory.mktemp("erase-pseudonym")) as pair:
        yield pair


def _forwarded(node: Node) -> list[dict[str, Any]]:
    r = run_cli("audit", "log", "--json", "--all", "--event", "erase_forwarded", *node.args(),
                env=node.env)
    assert r.returncode == 0, r.stderr
    return [e["details"] for e in json.loads(r.stdout)]


def _events(node: Node, event: str) -> int:
    r = run_cli("audit", "log", "--json", "--all", "--event", event, *node.args(), env=node.env)
    assert r.returncode == 0, r.stderr
    return len(json.loads(r.stdout))


def _refused(node: Node, *args: str) -> str:
    """The one sentence `erase ... args` says on `node`, exit 2, having asked and audited
    nothing."""
    before = [_events(node, e) for e in ("erase_forwarded", "erase")]
    out = run_cli("erase", *node.args(), *args, "--reason", "DSAR 2026-80", "--wait", "120",
                  env=node.env)
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stdout == "" and "Traceback" not in out.stderr, out.stdout + out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert [_events(node, e) for e in ("erase_forwarded", "erase")] == before
    return out.stderr.strip()


def test_the_start_of_a_pseudonym_or_one_for_all_tenants_is_refused_where_not_owned(
        two: tuple[Node, Node, BusKeys]) -> None:
    """The owner refuses the start of a pseudonym (the TUI's u_ and 8 hex digits), and
    `--all-tenants` given a pseudonym of one of its tenants. On b, which holds none of a's
    users, both were taken for a user id: pseudonymised again and sent to a, which erased
    nobody, and the command said 'No records' with exit 0 while the user's records stayed."""
    from appliance.cluster.client import NatsClient
    from appliance.keys import open_keyring, read_key_file

    a, b, keys = two
    with NatsClient(a.url, timeout=60, bus_keys=keys) as gateway:  # a notes TENANT first
        assert gateway.request(_row("rosa", "r-0", "Move my dentist visit to Friday."))["ok"]
    rosa = open_keyring(a.data, read_key_file(a.key)).pseudonym(TENANT, "rosa")

    said = _refused(b, "--tenant", TENANT, "--user", rosa[:10])
    assert said == (
        "semtrace: That --user is spelt as the start of a pseudonym (u_ and 8 to 19 hex "
        "digits, as the TUI shows users), which only node 'a', holding the users of "
        f"{TENANT}, can look up: give the whole pseudonym (u_ and 20 hex digits, as `semtrace "
        "threads list` prints it), or erase on that node's data dir, where a user id spelt "
        "so is taken for one; nothing was asked or erased."), said
    for user in (rosa, rosa[:10]):
        said = _refused(b, "--all-tenants", "--user", user)
        assert said.startswith("semtrace: That --user is spelt as a pseudonym (u_ and hex "
                               "digits, as Semtrace shows users), which names a user of one "
                               "tenant only, and the users of the 1 tenant other nodes own "
                               "cannot be looked up here: erase with --tenant T"), said


def test_erase_by_pseudonym_on_a_node_that_does_not_own_the_tenant_erases_that_user(
        two: tuple[Node, Node, BusKeys]) -> None:
    from appliance.cluster.client import NatsClient
    from appliance.keys import open_keyring, read_key_file

    a, b, keys = two
    with NatsClient(a.url, timeout=60, bus_keys=keys) as gateway:
        for rid, user, text in (("p-0", "pia.kovac", "Renew the lease of the Harbour Lane unit."),
                                ("p-1", "pia.kovac", "Is the Harbour Lane deposit refundable?"),
                                ("q-0", "quinn", "Draft the quarterly board agenda.")):
            assert gateway.request(_row(user, rid, text))["ok"]
    ring = open_keyring(a.data, read_key_file(a.key))  # as threads list on a prints them
    pia, quinn = (ring.pseudonym(TENANT, u) for u in ("pia.kovac", "quinn"))

    out = run_cli("erase", *b.args(), "--tenant", TENANT, "--user", pia, "--reason",
                  "DSAR 2026-79", "--wait", "120", "--json", env=b.env)
    assert out.returncode == 0, out.stdout + out.stderr
    done = json.loads(out.stdout)
    # the old code forwarded u_<pseudonym of the pseudonym>: 0 records, exit 0
    assert (done["user"], done["records"], done["node"], done["applied"]) == (pia, 2, "a", True)
    assert [(e["user"], e["outcome"]) for e in _forwarded(b)] == [(pia, "applied")]

    # given the pseudonym, a reason holding the raw user id (in any case) is refused here,
    # before anything is asked of the owner or audited
    refused = run_cli("erase", *b.args(), "--tenant", TENANT, "--user", quinn, "--reason",
                      "DSAR of QUINN", "--wait", "120", env=b.env)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "must not hold the user id" in refused.stderr and "Traceback" not in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and refused.stdout == ""
    assert len(_forwarded(b)) == 1

    assert a.stop() == 0
    count, texts = users_records(a.data, read_key_file(a.key), TENANT, "pia.kovac")
    assert count == 0 and not [t for t in texts if "Harbour Lane" in t]
    for kept in ("quinn", "rosa"):
        assert users_records(a.data, read_key_file(a.key), TENANT, kept)[0] > 0, kept
