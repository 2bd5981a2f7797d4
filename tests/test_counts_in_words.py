"""Sentences a user reads that say a count: the noun and verb agree with it (1 or many),
with no "(s)" for the reader to resolve. Pure logic, no service: each builds the text
the command or log prints from a report or count it is given."""

from __future__ import annotations

import json
import socketserver
import threading
from pathlib import Path

import pytest

from appliance.cluster.status import ClusterStatus, PartitionState, status_lines
from appliance.errors import SemtraceError


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


class _Service(socketserver.StreamRequestHandler):
    """A stand-in for `semtrace serve`: answers a ping, refuses two of the prompts (a full
    disk, as the service says it), records the rest."""

    def handle(self) -> None:
        for line in self.rfile:
            req = json.loads(line)
            rid = req.get("request_id")
            reply: dict[str, object] = {"v": 1, "ok": True, "request_id": rid}
            if rid in ("demo-3", "demo-5"):
                reply = {"v": 1, "ok": False, "request_id": rid, "error": {
                    "code": "disk_full", "message": "The appliance's disk is full; nothing "
                    "was recorded. Retry once space is freed."}}
            self.wfile.write(json.dumps(reply).encode() + b"\n")


class _Started:
    """What `semtrace demo` starts, as subprocess.Popen: the stand-in above on the data
    dir's socket (`listens`), or a service that stopped at once (exit status 1)."""

    listens = True

    def __init__(self, args: list[str], **_: object) -> None:
        self.returncode: int | None = None if self.listens else 1
        self._server: socketserver.ThreadingUnixStreamServer | None = None
        if self.listens:
            sock = Path(args[args.index("--data-dir") + 1]) / "semtrace.sock"
            self._server = socketserver.ThreadingUnixStreamServer(str(sock), _Service)
            threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def poll(self) -> int | None:
        return self.returncode

    def send_signal(self, _: int) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        self.returncode = 0 if self.returncode is None else self.returncode

    def wait(self, timeout: float | None = None) -> int:
        return self.returncode or 0


def test_demo_says_how_many_prompts_were_refused_and_the_services_own_reason(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: 'The demo service refused 2 prompts.', with no cause and nothing to do; and
    'The demo service did not start.' when it stopped at once."""
    import subprocess

    from appliance.cli.demo import DEMO_STREAM, _demo_through_service

    sent = sum(1 for line in DEMO_STREAM.read_text().splitlines() if line.strip())
    (tmp_path / "d").mkdir()
    monkeypatch.setattr(subprocess, "Popen", _Started)
    with pytest.raises(SemtraceError) as refused:
        _demo_through_service(tmp_path / "d", tmp_path / "pw")
    assert str(refused.value) == (
        f"The demo service refused 2 of the demo stream's {sent} prompts, so the demo stops "
        "here; the first refusal (disk_full) said: The appliance's disk is full; nothing was "
        "recorded. Retry once space is freed.")
    monkeypatch.setattr(_Started, "listens", False)
    with pytest.raises(SemtraceError) as stopped:
        _demo_through_service(tmp_path / "d", tmp_path / "pw")
    assert str(stopped.value) == (
        "The demo service stopped before it listened (exit status 1; its own message, if it "
        "printed one, is above): fix that, then run `semtrace demo` again.")


def test_the_log_says_how_many_queued_requests_a_stop_on_a_failing_disk_gave_up() -> None:
    """Before: 'gave up 1 queued request, none of them recorded', and nothing of what to
    do; the event's `requests` field keeps the count for machines."""
    from appliance.service.lifecycle import gave_up_sentence

    assert gave_up_sentence(1) == (
        "stopped with the disk failing: gave up 1 queued request, not recorded (its sender "
        "was refused and told to retry); every request recorded before is kept: free space "
        "on the data dir's disk, or repair it, before starting again")
    assert gave_up_sentence(1200).startswith(
        "stopped with the disk failing: gave up 1,200 queued requests, none of them recorded "
        "(their senders were refused and told to retry); ")


def test_reveal_says_the_vaults_days_in_words() -> None:
    """vault_days may be 1 or a fraction: '1 day', '0.5 days' (was '1 day(s)')."""
    from appliance.cli.compliance import _days

    assert [_days(d) for d in (1, 1.0, 0.5, 7, 36_500)] == [
        "1 day", "1 day", "0.5 days", "7 days", "36,500 days"]


REPORTS = Path(__file__).parent / "reports"


def test_the_signed_report_says_erasure_counts_in_words_and_older_reports_still_check(
        ) -> None:
    """A report's erasure lines said 'erased 1 record(s) in 1 bucket(s)'; since version 4
    they say 'erased 1 record in 1 bucket'. A check re-renders the signed body and
    compares it byte for byte, so a version-3 report (rendered by the code before this
    change: tests/reports/retention-v3.*) must keep its '(s)' and still check intact."""
    from appliance.keys import AuditSigner
    from appliance.report import check_report, render, sign_report

    for fmt in ("md", "html"):
        old = (REPORTS / f"retention-v3.{fmt}").read_text()
        assert "erased 8 record(s) in 2 bucket(s); NOT complete: 1 bucket(s) written" in old
        assert check_report(old).ok, check_report(old).reason
    signed = json.loads((REPORTS / "retention-v3.md").read_text().split(
        "<!-- SEMTRACE-SIGNED-REPORT ")[1].split(" END-SEMTRACE-SIGNED-REPORT -->")[0])
    body = {**signed["report"], "version": 4}
    new = render(sign_report(body, AuditSigner(bytes(32))), "md")
    lines = new.split("## Erasure requests (3)\n\n")[1].split("\n\n")[0].splitlines()
    assert [line.split(": ", 2)[2].split(" (reason ")[0] for line in lines] == [
        "erased 1 record in 1 bucket",
        "erased 8 records in 2 buckets; NOT complete: 1 bucket written before a key rotation "
        "could not be attributed",
        "0 records (none stored, or all already shredded)"]
    assert check_report(new).ok


def test_a_report_issued_with_a_failed_self_check_says_how_many_buckets_in_words() -> None:
    """`audit retention`'s exit-6 sentence said 'found 1 shredded bucket(s) still
    decryptable'."""
    from appliance.report import _found_wrong

    chain = {"ok": True, "entries": 3, "checkpoints": 0, "problem": None}
    said = [_found_wrong({"audit_chain": chain, "self_check": {
        "passed": False, "sampled_buckets": 3, "still_decryptable": ids}})
        for ids in ([7], [7, 9])]
    assert said == [
        "its self-check found 1 shredded bucket still decryptable: the report says FAILED",
        "its self-check found 2 shredded buckets still decryptable: the report says FAILED"]
