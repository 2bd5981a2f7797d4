"""Cluster settings, partition arithmetic and reply routing: no NATS server needed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from test_spine import run_cli

from appliance.cluster.partition import (
    format_ranges,
    parse_own,
    partition_of,
    server_mappings,
    split_part_subject,
)
from appliance.cluster.replies import ReplyBook


def test_tenants_land_where_nats_server_partition_mapping_puts_them() -> None:
    # Observed on nats-server 2.9.10 with "semtrace.ingest.*" ->
    # "semtrace.part.{{partition(4,1)}}.{{wildcard(1)}}" (the cluster tests check it live).
    observed = {"acme": 3, "t1": 2, "t2": 3, "t3": 0, "t4": 1, "t5": 2, "t6": 3, "t7": 0,
                "t8": 1}
    assert {t: partition_of(t, 4) for t in observed} == observed
    assert split_part_subject("semtrace.part.3.acme") == (3, "acme")
    assert split_part_subject("semtrace.ingest.acme") is None
    assert "partition(16,1)" in server_mappings(16)


def test_partition_ranges_parse_and_refuse_with_one_sentence() -> None:
    assert parse_own("0-3,8", 16) == [0, 1, 2, 3, 8]
    assert format_ranges([0, 1, 2, 5, 7, 8]) == "0-2,5,7-8"
    with pytest.raises(ValueError, match="does not exist: there are 4"):
        parse_own("2-5", 4)
    with pytest.raises(ValueError, match="runs backwards"):
        parse_own("3-1", 4)
    with pytest.raises(ValueError, match="not a partition range"):
        parse_own("first half", 4)


def test_an_answer_goes_to_the_requester_or_else_to_the_enriched_subject() -> None:
    now = [0.0]
    book = ReplyBook(hold_s=30, clock=lambda: now[0])
    assert book.asked(("acme", "r1"), "_INBOX.1") is None
    assert book.answered(("acme", "r1"), b"{}") == "_INBOX.1"  # asked before the commit
    assert book.answered(("acme", "r2"), b'{"late":1}') is None  # nobody asked (yet)
    assert book.asked(("acme", "r2"), "_INBOX.2") == b'{"late":1}'  # asked just after
    book.asked(("acme", "r3"), "_INBOX.3")
    now[0] = 31.0
    assert book.answered(("acme", "r3"), b"{}") is None  # the requester gave up long ago


def _policies(tmp: Path, cluster: str) -> dict[str, str]:
    from appliance.config import policy_dir

    target = tmp / "policies"
    shutil.copytree(policy_dir(), target)
    (target / "cluster.toml").write_text(cluster)
    return {"SEMTRACE_POLICY_DIR": str(target)}


@pytest.mark.parametrize(("toml", "key"), [
    ('url = "http://nats:4222"\n', "url"),
    ('url = "nats://node:secret@127.0.0.1:4222"\n', "url"),
    ('partitions = 4\nown = "3-6"\n', "own"),
    ('[security]\ncreds_file = "relative.creds"\n', "security.creds_file"),
    ("replicas = 9\n", "replicas"),
    ('[security]\nplain_bus = true\nbus_key_file = "/etc/s/bus.key"\n', "security"),
    ("[security]\naccept_plain = true\n", "security"),
])
def test_a_bad_cluster_policy_is_refused_naming_file_and_key(tmp_path: Path, toml: str,
                                                             key: str) -> None:
    r = run_cli("serve", "--data-dir", str(tmp_path / "d"), "--check",
                env=_policies(tmp_path, toml))
    assert r.returncode == 2
    assert "cluster.toml" in r.stderr and f"key '{key}'" in r.stderr
    assert "Traceback" not in r.stderr


def test_serve_refuses_a_partition_range_outside_the_partitions(tmp_path: Path) -> None:
    r = run_cli("serve", "--data-dir", str(tmp_path / "d"), "--nats", "nats://127.0.0.1:1",
                "--partitions", "4", "--own", "2-7")
    assert r.returncode == 2 and "--own" in r.stderr and "there are 4" in r.stderr
    assert "Traceback" not in r.stderr


def test_a_node_without_a_bus_key_or_the_plain_bus_opt_out_does_not_start(
        tmp_path: Path) -> None:
    env = _policies(tmp_path, "")  # the shipped default: no key, no opt-out
    for extra in ((), ("--check",)):
        r = run_cli("serve", "--data-dir", str(tmp_path / "d"), "--nats",
                    "nats://127.0.0.1:1", "--partitions", "4", *extra, env=env)
        assert r.returncode == 2, r.stderr
        sentence = r.stderr.strip()  # one sentence, no traceback, nothing else
        assert sentence.startswith("semtrace: This node would take prompts from NATS in "
                                   "plain text") and "\n" not in sentence
        assert "`semtrace cluster bus-key new FILE`" in r.stderr
        assert "bus_key_file" in r.stderr and "plain_bus = true" in r.stderr
        assert not (tmp_path / "d").exists()  # refused before anything was opened


def test_cluster_commands_explain_what_is_missing(tmp_path: Path) -> None:
    r = run_cli("cluster", "status", "--json", env=_policies(tmp_path, ""))
    assert r.returncode == 2 and "No NATS URL" in r.stderr
    r = run_cli("cluster", "status", "--nats", "nats://127.0.0.1:1")
    assert r.returncode == 1 and r.stderr.strip() == (  # and what to do about it
        "semtrace: No NATS server answers at nats://127.0.0.1:1 (start nats-server there, or "
        "check `url` in cluster.toml and this host's and the semtrace service's network to "
        "it).")
    r = run_cli("cluster", "forget", "--partitions", "1", "--data-dir", str(tmp_path))
    assert r.returncode == 2 and "--yes" in r.stderr
    r = run_cli("cluster", "nats-config", "--partitions", "8", "--json")
    assert r.returncode == 0 and "partition(8,1)" in r.stdout


def test_serve_check_names_accept_plain_among_its_warnings(tmp_path: Path) -> None:
    assert run_cli("cluster", "bus-key", "new", str(tmp_path / "bus.key")).returncode == 0
    assert run_cli("init", "--data-dir", str(tmp_path / "d"), "--new-key-file",
                   str(tmp_path / "k")).returncode == 0
    env = _policies(tmp_path, 'url = "nats://127.0.0.1:1"\npartitions = 4\n[security]\n'
                    f'bus_key_file = "{tmp_path / "bus.key"}"\naccept_plain = true\n')
    r = run_cli("serve", "--data-dir", str(tmp_path / "d"), "--key-file", str(tmp_path / "k"),
                "--check", "--json", env=env)
    assert r.returncode == 0, r.stderr
    warnings = json.loads(r.stdout)["warnings"]
    assert any(w.startswith("accept_plain = true: messages that gateways send in plain text")
               for w in warnings), warnings
    assert '"event": "accept_plain"' in r.stderr
