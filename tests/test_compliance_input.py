"""What a compliance officer or an operator notices at the command line: reveals need a
reason, a damaged or altered audit log is reported (never a traceback), policies out of
range are refused by name, the compliance passphrase stays apart from the master one,
and every command that prints data has --json."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import init_store, write_stream
from test_spine import run_cli

CANARY = "canary-7f3a@example.com"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    """A data dir with a compliance key and two replayed prompts, one holding the canary."""
    tmp = tmp_path_factory.mktemp("officer")
    args, pw, cpw = init_store(tmp)
    src = write_stream(tmp / "in.jsonl", [
        {"tenant": "acme", "user_id": "alice", "ts": "2026-03-02T09:00:00Z",
         "text": f"Please write to me at {CANARY} about the invoice."},
        {"tenant": "acme", "user_id": "alice", "ts": "2026-03-02T09:01:00Z",
         "text": "And send a copy to my manager."}])
    assert run_cli("replay", str(src), "--out", str(tmp / "o.jsonl"), *args).returncode == 0
    thread = json.loads(run_cli("threads", "list", "--json", *args).stdout)[0]["thread_id"]
    records = json.loads(run_cli("threads", "show", thread, "--json", *args).stdout)["records"]
    yield {"tmp": tmp, "args": args, "pw": pw, "cpw": cpw,
           "record": str(records[0]["record_id"])}


def test_erasing_a_user_with_no_records_says_so_and_is_audited(
        store: dict[str, object]) -> None:
    args = list(store["args"])  # type: ignore[call-overload]
    out = run_cli("erase", "--tenant", "acme", "--user", CANARY, "--reason", "ticket 9", *args)
    assert out.returncode == 0 and CANARY not in out.stdout + out.stderr
    assert out.stdout.startswith("No records of u_") and "nothing was erased" in out.stdout
    log = json.loads(run_cli("audit", "log", "--json", "--all", *args).stdout)
    assert log[-1]["event"] == "erase" and log[-1]["details"]["records"] == 0
    assert CANARY not in json.dumps(log)


@pytest.mark.parametrize("tenant,user,option", [("", "alice", "--tenant"),
                                                ("acme", " ", "--user")])
def test_an_erasure_naming_no_tenant_or_no_user_is_refused_and_not_audited(
        store: dict[str, object], tenant: str, user: str, option: str) -> None:
    args = list(store["args"])  # type: ignore[call-overload]
    before = len(json.loads(run_cli("audit", "log", "--json", "--all", *args).stdout))
    out = run_cli("erase", "--tenant", tenant, "--user", user, "--reason", "ticket 9", *args)
    assert out.returncode == 2 and f"{option} must not be empty" in _one_sentence(out)
    assert len(json.loads(run_cli("audit", "log", "--json", "--all", *args).stdout)) == before


@pytest.mark.parametrize("command,reason", [
    ("erase", f"request from {CANARY}"), ("erase", "Bart-Q17 asked by phone"),
    ("reveal", f"DSAR of {CANARY}"), ("reveal", "DSAR of alice, ticket 3"),
    # its user in another case: erase and access refused it, reveal let it into the log
    ("reveal", "DSAR of ALICE, ticket 3"), ("reveal", "Alice asked, ticket 3"),
    ("erase", "Dear team, I am Bart Quagmire of 12 Elm Road, 555-0199. " * 8),
    ("reveal", "x" * 201)])
def test_a_reason_naming_the_user_or_an_address_is_refused_before_it_is_audited(
        store: dict[str, object], command: str, reason: str) -> None:
    args = list(store["args"])  # type: ignore[call-overload]
    before = len(json.loads(run_cli("audit", "log", "--json", "--all", *args).stdout))
    what = (["--tenant", "acme", "--user", "bart-q17"] if command == "erase" else
            [str(store["record"]), "--role", "compliance", "--compliance-passphrase-file",
             str(store["cpw"])])
    out = run_cli(command, *what, "--reason", reason, *args)
    assert out.returncode == 2 and CANARY not in out.stdout + out.stderr
    assert "Elm Road" not in out.stdout + out.stderr
    assert ("must not hold the user id or an e-mail address" if len(reason) <= 200
            else "give a ticket number and a few words (at most 200)") in _one_sentence(out)
    log = run_cli("audit", "log", "--json", "--all", *args).stdout
    assert len(json.loads(log)) == before and CANARY not in log and "Bart" not in log


def test_the_signed_report_names_a_held_user_by_pseudonym_as_the_audit_log_does(
        store: dict[str, object], tmp_path: Path) -> None:
    from appliance.config import policy_dir

    pdir = tmp_path / "policies"
    shutil.copytree(policy_dir(), pdir)
    text = (pdir / "retention.toml").read_text()
    (pdir / "retention.toml").write_text(text.replace("legal_holds = []", (
        f'legal_holds = [{{ tenant = "acme", user_id = "{CANARY}", reason = "case 4" }}]')))
    env = {"SEMTRACE_POLICY_DIR": str(pdir)}
    args = list(store["args"])  # type: ignore[call-overload]
    held = run_cli("erase", "--tenant", "acme", "--user", CANARY, "--reason", "ticket 4",
                   "--json", *args, env=env)
    assert held.returncode == 5
    pseudonym = json.loads(held.stdout)["user"]
    for fmt in ("json", "md", "html"):
        out = tmp_path / f"report.{fmt}"
        assert run_cli("audit", "retention", "--format", fmt, "--out", str(out), *args,
                       env=env).returncode == 0
        body = out.read_text()
        assert CANARY not in body and pseudonym in body
        assert run_cli("audit", "check-report", str(out), *args).returncode == 0
    report = json.loads((tmp_path / "report.json").read_text())["report"]
    assert report["legal_holds"] == [{"tenant": "acme", "user": pseudonym, "reason": "case 4"}]
    assert report["policy"]["legal_holds"] == report["legal_holds"]


def _copy(store: dict[str, object], tmp_path: Path) -> list[str]:
    """A copy of the module's data dir (tests that damage it work on their own)."""
    shutil.copytree(Path(str(store["tmp"])) / "data", tmp_path / "data")
    return ["--data-dir", str(tmp_path / "data"), "--passphrase-file", str(store["pw"])]


def _one_sentence(out: object) -> str:
    err = str(getattr(out, "stderr", ""))
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


# ---------------------------------------------------------------- reveal


@pytest.mark.parametrize("reason", ["", "   "])
def test_a_reveal_without_a_reason_reveals_nothing_and_audits_nothing(
        store: dict[str, object], reason: str) -> None:
    args = list(store["args"])  # type: ignore[call-overload]
    before = len(json.loads(run_cli("audit", "log", "--json", "--all", *args).stdout))
    out = run_cli("reveal", str(store["record"]), "--role", "compliance", "--reason", reason,
                  "--compliance-passphrase-file", str(store["cpw"]), *args)
    assert out.returncode == 2 and CANARY not in out.stdout
    assert "--reason must not be empty" in _one_sentence(out)
    assert len(json.loads(run_cli("audit", "log", "--json", "--all", *args).stdout)) == before


def _reveal(store: dict[str, object], record: str, args: list[str]) -> object:
    return run_cli("reveal", record, "--role", "compliance", "--reason", "ticket 9",
                   "--compliance-passphrase-file", str(store["cpw"]), *args)


def test_a_reveal_that_finds_nothing_says_why_in_one_sentence(
        store: dict[str, object], tmp_path: Path) -> None:
    """An id out of SQLite's range, an id no record has, a record redaction left alone and
    one whose originals vault retention shredded: four different answers, none a
    traceback, and the out-of-range id is refused before anything is audited."""
    args = _copy(store, tmp_path)
    log = lambda: json.loads(run_cli("audit", "log", "--json", "--all", *args).stdout)  # noqa: E731
    before = len(log())
    huge = _reveal(store, str(2**70), args)
    assert huge.returncode == 2 and "RECORD_ID" in _one_sentence(huge)  # type: ignore[attr-defined]
    assert len(log()) == before
    thread = json.loads(run_cli("threads", "list", "--json", *args).stdout)[0]["thread_id"]
    ids = [str(r["record_id"]) for r in json.loads(
        run_cli("threads", "show", thread, "--json", *args).stdout)["records"]]
    plain = next(i for i in ids if i != str(store["record"]))  # "And send a copy ..."
    unknown = str(max(int(i) for i in ids) + 1000)
    for record, words in ((unknown, f"No record {unknown} in this store"),
                          (plain, "holds no personal data")):
        out = _reveal(store, record, args)
        assert out.returncode == 1 and words in _one_sentence(out)  # type: ignore[attr-defined]
    assert len(log()) == before + 2  # each attempt is audited
    # the prompts are kept 30 days, their originals 7: past the vault's days only
    assert run_cli("retention", "run", "--as-of", "2026-03-12T00:00:00Z",
                   *args).returncode == 0
    gone = _reveal(store, str(store["record"]), args)
    assert gone.returncode == 1 and CANARY not in gone.stdout  # type: ignore[attr-defined]
    # said as it happened (a shred with its date), not 'no longer kept' with two causes
    assert "were shredded on " in _one_sentence(gone)  # type: ignore[arg-type]
    assert "vault_days" in gone.stderr  # type: ignore[attr-defined]
    # the days in words (was "kept 7 day(s) after their day, vault_days")
    assert "(they are kept 7 days after the day they were recorded: vault_days in " \
           "retention.toml); nothing was revealed." in _one_sentence(gone)  # type: ignore[arg-type]


def test_a_reveal_that_finds_nothing_says_so_in_json_too(store: dict[str, object]) -> None:
    """`reveal --json` of a record with nothing to reveal printed no JSON at all (only the
    sentence on stderr): a script parsing stdout failed on an empty document. It prints an
    object saying nothing was revealed and why; the sentence and exit 1 stay."""
    args = list(store["args"])  # type: ignore[call-overload]
    unknown = str(int(str(store["record"])) + 1000)
    out = run_cli("reveal", unknown, "--role", "compliance", "--reason", "ticket 9", "--json",
                  "--compliance-passphrase-file", str(store["cpw"]), *args)
    assert out.returncode == 1 and f"No record {unknown} in this store" in _one_sentence(out)
    assert json.loads(out.stdout) == {"record": int(unknown), "revealed": False,
                                      "why": "no_record", "originals": []}


def test_a_reveal_on_a_cluster_node_that_lacks_the_record_says_where_to_look(
        store: dict[str, object], tmp_path: Path) -> None:
    """On a node of a cluster (cluster.toml names a NATS URL) a record of a tenant another
    node owns was 'never written, or shredded': the officer, told so, gave up on a record
    that exists on the owner. The sentence now says where records live."""
    from appliance.config import policy_dir

    args = _copy(store, tmp_path)
    pdir = tmp_path / "policies"
    shutil.copytree(policy_dir(), pdir)
    cluster = (pdir / "cluster.toml").read_text()
    (pdir / "cluster.toml").write_text(cluster.replace('url = ""',
                                                       'url = "nats://127.0.0.1:4222"', 1))
    env = {"SEMTRACE_POLICY_DIR": str(pdir)}
    unknown = str(int(str(store["record"])) + 1000)
    out = run_cli("reveal", unknown, "--role", "compliance", "--reason", "ticket 9",
                  "--compliance-passphrase-file", str(store["cpw"]), *args, env=env)
    said = _one_sentence(out)
    assert out.returncode == 1 and f"No record {unknown} in this store" in said
    assert "the node that owns its tenant (`semtrace cluster status --tenant T`" in said
    single = _reveal(store, unknown, args)  # a single host: no word of a cluster
    assert "cluster" not in _one_sentence(single)  # type: ignore[attr-defined]


@pytest.mark.parametrize("damage", [b'{"x": 1}', b"[1, 2]", b"\xff\xfe not json",
                                    b'{"kdf": {"salt": "!!", "iterations": 1, "lanes": 1, '
                                    b'"memory_cost": 8}, "nonce": "AA==", "ct": "AA=="}'])
def test_a_damaged_compliance_key_file_is_named_and_the_attempt_audited(
        store: dict[str, object], tmp_path: Path, damage: bytes) -> None:
    args = _copy(store, tmp_path)
    (tmp_path / "data" / "reveal-key.json").write_bytes(damage)
    out = _reveal(store, str(store["record"]), args)
    # exit 2, as a damaged database file (docs/compliance.md's table): it was 1, 'another error'
    assert out.returncode == 2 and "reveal-key.json is damaged" in _one_sentence(out)  # type: ignore[attr-defined]
    assert "Restore it from a backup" in out.stderr  # type: ignore[attr-defined]
    assert CANARY not in out.stdout  # type: ignore[attr-defined]
    log = json.loads(run_cli("audit", "log", "--json", "--all", *args).stdout)
    assert log[-1]["event"] == "reveal_denied"


@pytest.mark.parametrize("damage", [
    b'{"x": 1}', b"[1, 2]", b"\xff\xfe not json", b'{"version": 1, "kind": "passphrase"}',
    b'{"version": 1, "kind": "passphrase", "kdf": {"salt": "!!", "iterations": 1, '
    b'"lanes": 1, "memory_cost": 8}, "verifier": "x"}',
    b'{"version": 1, "kind": "passphrase", "kdf": {"salt": "AAAAAAAAAAAAAAAAAAAAAA==", '
    b'"iterations": "3", "lanes": 4, "memory_cost": 65536}, "verifier": "x"}'])
def test_a_damaged_keyring_file_is_named_in_one_sentence_exit_2_and_nothing_changes(
        store: dict[str, object], tmp_path: Path, damage: bytes) -> None:
    """keyring.json cut short or altered: a KeyError/ValueError traceback, 'opened with a
    None', or 'unreadable or damaged' exit 1 before; now one sentence naming the file and
    what to do, exit 2 (a damaged store, as a damaged semtrace.db), nothing changed."""
    args = _copy(store, tmp_path)
    data = tmp_path / "data"
    (data / "keyring.json").write_bytes(damage)
    before = {p.name: p.read_bytes() for p in data.iterdir() if p.is_file()}
    for command in (["audit", "verify"], ["erase", "--tenant", "acme", "--user", "alice",
                                          "--reason", "ticket 9"]):
        out = run_cli(*command, *args)
        said = _one_sentence(out)
        assert out.returncode == 2, said
        assert "keyring.json is damaged" in said and "restore it from a backup" in said
    assert {p.name: p.read_bytes() for p in data.iterdir() if p.is_file()} == before


def test_a_record_id_is_taken_as_threads_show_prints_it(store: dict[str, object]) -> None:
    args = list(store["args"])  # type: ignore[call-overload]
    shown = _reveal(store, f"#{store['record']}", args)  # '#123', as listed
    assert shown.returncode == 0, shown.stderr  # type: ignore[attr-defined]
    assert CANARY in shown.stdout  # type: ignore[attr-defined]


def test_a_compliance_role_limited_to_other_tenants_can_neither_reveal_nor_erase_here(
        store: dict[str, object], tmp_path: Path) -> None:
    from appliance.config import policy_dir

    pdir = tmp_path / "policies"
    shutil.copytree(policy_dir(), pdir)
    access = (pdir / "access.toml").read_text()
    assert "[roles.compliance]\n" in access
    (pdir / "access.toml").write_text(access.replace(
        "[roles.compliance]\n", '[roles.compliance]\ntenants = ["globex"]\n'))
    env = {"SEMTRACE_POLICY_DIR": str(pdir)}
    args = list(store["args"])  # type: ignore[call-overload]
    shown = run_cli("reveal", str(store["record"]), "--role", "compliance", "--reason",
                    "ticket 9", "--compliance-passphrase-file", str(store["cpw"]), *args,
                    env=env)
    assert shown.returncode == 4 and CANARY not in shown.stdout
    assert "in its tenant globex" in _one_sentence(shown)
    log = json.loads(run_cli("audit", "log", "--json", "--all", *args).stdout)
    assert log[-1]["event"] == "reveal_denied"
    erased = run_cli("erase", "--tenant", "acme", "--user", "alice", "--reason", "ticket 9",
                     *args, env=env)
    assert erased.returncode == 4 and "limited to tenant globex" in _one_sentence(erased)
    assert len(json.loads(run_cli("threads", "list", "--json", *args).stdout)) == 1
    # the store-wide jobs: the report would show every tenant's holdings, the run shred them
    before = len(json.loads(run_cli("audit", "log", "--json", "--all", *args).stdout))
    for job, words in ((("audit", "retention"), "the retention report covers every tenant"),
                       (("retention", "run", "--as-of", "2099-01-01T00:00:00Z", "--yes-future"),
                        "the retention run covers every tenant")):
        refused = run_cli(*job, "--role", "compliance", *args, env=env)
        assert refused.returncode == 4 and words in _one_sentence(refused), refused.stderr
        assert refused.stdout == ""
    assert len(json.loads(run_cli("audit", "log", "--json", "--all", *args).stdout)) == before
    assert len(json.loads(run_cli("threads", "list", "--json", *args).stdout)) == 1


def test_a_refused_erasure_is_on_the_audit_log_as_a_refused_reveal_is(
        store: dict[str, object], tmp_path: Path) -> None:
    """An erasure refused for its role (no 'erase' permission) or for a tenant outside the
    role's wrote no audit entry, while a refused reveal writes `reveal_denied`: an officer
    reading the signed log saw no trace of the attempt. Each is `erase_denied` now (tenant,
    role, why; never the user id or the reason), and `audit log --event` offers it."""
    from appliance.config import policy_dir

    pdir = tmp_path / "policies"
    shutil.copytree(policy_dir(), pdir)
    with (pdir / "access.toml").open("a") as fh:
        fh.write('\n[roles.dpo-globex]\npermissions = ["erase"]\ntenants = ["globex"]\n')
    env = {"SEMTRACE_POLICY_DIR": str(pdir)}
    args = list(store["args"])  # type: ignore[call-overload]
    for role, said in (("analyst", "does not have the 'erase' permission"),
                       ("dpo-globex", "limited to tenant globex")):
        out = run_cli("erase", "--tenant", "acme", "--user", "alice", "--reason", "DSAR 31",
                      "--role", role, *args, env=env)
        assert out.returncode == 4 and said in _one_sentence(out)
    shown = run_cli("audit", "log", "--json", "--event", "erase_denied", *args, env=env)
    assert shown.returncode == 0, shown.stderr
    log = json.loads(shown.stdout)
    assert [e["details"] for e in log[-2:]] == [
        {"tenant": "acme", "role": "analyst", "why": "AccessDenied"},
        {"tenant": "acme", "role": "dpo-globex", "why": "AccessDenied"}]
    assert len(json.loads(run_cli("threads", "list", "--json", *args).stdout)) == 1


def test_a_role_limited_to_other_tenants_cannot_tell_a_foreign_record_from_none(
        store: dict[str, object], tmp_path: Path) -> None:
    """Revealing acme's record as a globex-bound role, and revealing an id no record has,
    are refused alike: one sentence, exit code and audit entry shape; the store-wide log
    still names the tenant that was probed."""
    from appliance.config import policy_dir

    pdir = tmp_path / "policies"
    shutil.copytree(policy_dir(), pdir)
    access = (pdir / "access.toml").read_text()
    (pdir / "access.toml").write_text(access.replace(
        "[roles.compliance]\n", '[roles.compliance]\ntenants = ["globex"]\n'))
    env = {"SEMTRACE_POLICY_DIR": str(pdir)}
    args = list(store["args"])  # type: ignore[call-overload]
    foreign = int(str(store["record"]))
    missing = foreign + 10**6
    out = {}
    for rid in (foreign, missing):
        r = run_cli("reveal", str(rid), "--role", "compliance", "--reason", "ticket 9",
                    "--compliance-passphrase-file", str(store["cpw"]), *args, env=env)
        out[rid] = (r.returncode, _one_sentence(r).replace(str(rid), "N"), r.stdout)
    assert out[foreign] == out[missing]
    assert out[foreign][0] == 4 and out[foreign][2] == "" and "nothing was revealed" in \
        out[foreign][1]
    log = json.loads(run_cli("audit", "log", "--json", "--all", *args).stdout)
    a, b = log[-2], log[-1]
    assert a["event"] == b["event"] == "reveal_denied"
    assert sorted(a["details"]) == sorted(b["details"])
    assert {k: v for k, v in a["details"].items() if k not in ("record", "tenant")} == \
        {k: v for k, v in b["details"].items() if k not in ("record", "tenant")}
    assert (a["details"]["tenant"], b["details"]["tenant"]) == ("acme", None)


# ---------------------------------------------------------------- audit verify


def _tamper(data: Path, pw: Path, sql: str, *, keys: bool = False) -> None:
    from appliance.keys import read_passphrase_file
    from appliance.runtime import open_runtime

    rt = open_runtime(data, read_passphrase_file(pw))
    db = rt.store.keys_db if keys else rt.store.db
    with db:
        db.execute(sql)
    rt.close()


def test_the_json_export_of_the_audit_log_says_whether_it_verified_and_carries_signatures(
        store: dict[str, object], tmp_path: Path) -> None:
    from appliance.keys.signing import verify_signature

    args = _copy(store, tmp_path)
    key = json.loads(run_cli("audit", "public-key", "--json", *args).stdout)
    out = run_cli("audit", "log", "--json", "--all", *args)
    assert out.returncode == 0, out.stderr
    entries = json.loads(out.stdout)
    assert entries and all(e["verified"] is True for e in entries)
    by_seq = {e["seq"]: e for e in entries}
    for e in entries:  # each names the signed checkpoint the chain links it to
        cp = e["checkpoint"]
        assert cp["seq"] >= e["seq"] and cp["key_id"] == key["key_id"]
        assert verify_signature(key["public_key"],
                                f"semtrace-audit|{cp['seq']}|{by_seq[cp['seq']]['hash']}"
                                .encode(), cp["signature"])
    _tamper(tmp_path / "data", Path(str(store["pw"])),
            "UPDATE audit SET actor = 'nobody' WHERE seq = 1")
    broken = run_cli("audit", "log", "--json", "--all", *args)
    assert broken.returncode == 6 and "entry 1 was altered" in broken.stderr
    after = json.loads(broken.stdout)  # the document stays whole
    assert len(after) == len(entries) and not any(e["verified"] for e in after)


@pytest.mark.parametrize("sql,keys,problem", [
    ("UPDATE audit SET ts = 'yesterday' WHERE seq = 1", False, "entry 1 is damaged"),
    ("UPDATE audit SET actor = 7 WHERE seq = 1", False, "entry 1 was altered"),
    ("DELETE FROM audit_checkpoints", False, "no entry is signed"),
    ("UPDATE audit_checkpoints SET signature = 'not base64!' WHERE seq = 1", False,
     "the signature over entry 1 does not verify"),
    ("UPDATE audit_head SET seq = 'last'", True, "head recorded in the key store is damaged"),
])
def test_audit_verify_names_altered_values_of_any_type(
        store: dict[str, object], tmp_path: Path, sql: str, keys: bool, problem: str) -> None:
    args = _copy(store, tmp_path)
    _tamper(tmp_path / "data", Path(str(store["pw"])), sql, keys=keys)
    out = run_cli("audit", "verify", *args)
    assert out.returncode == 6 and "Traceback" not in out.stderr, out.stderr
    assert out.stdout.startswith("Audit log BROKEN") and problem in out.stdout
    as_json = json.loads(run_cli("audit", "verify", "--json", *args).stdout)
    assert as_json["ok"] is False and problem in as_json["problem"]


def _damage_audit_page(store: dict[str, object], tmp_path: Path) -> list[str]:
    """A copy of the data dir with one byte flipped in the audit table's first page."""
    from appliance.keys import read_passphrase_file
    from appliance.runtime import open_runtime

    args = _copy(store, tmp_path)
    rt = open_runtime(tmp_path / "data", read_passphrase_file(Path(str(store["pw"]))))
    page_size = int(rt.store.db.execute("PRAGMA page_size").fetchone()[0])
    root = int(rt.store.db.execute("SELECT rootpage FROM sqlite_master WHERE name = 'audit'"
                                   ).fetchone()[0])
    rt.close()
    db = tmp_path / "data" / "semtrace.db"
    data = bytearray(db.read_bytes())
    data[(root - 1) * page_size + 100] ^= 0x01
    db.write_bytes(bytes(data))
    return args


def test_a_flipped_byte_in_the_audit_logs_pages_is_reported_not_a_traceback(
        store: dict[str, object], tmp_path: Path) -> None:
    args = _damage_audit_page(store, tmp_path)
    out = run_cli("audit", "verify", *args)
    assert out.returncode == 6 and "Traceback" not in out.stderr, out.stderr
    assert out.stdout.startswith("Audit log BROKEN") and "damaged" in out.stdout
    as_json = json.loads(run_cli("audit", "verify", "--json", *args).stdout)
    assert as_json["ok"] is False and "damaged" in as_json["problem"]
    listing = run_cli("audit", "log", *args)  # any other command: one sentence, exit 2
    assert listing.returncode == 2 and "a database file is damaged" in _one_sentence(listing)


def test_a_damaged_first_page_is_not_called_a_wrong_passphrase(
        store: dict[str, object], tmp_path: Path) -> None:
    args = _copy(store, tmp_path)
    db = tmp_path / "data" / "semtrace.db"
    data = bytearray(db.read_bytes())
    data[100] ^= 0x01
    db.write_bytes(bytes(data))
    out = run_cli("audit", "verify", *args)
    assert out.returncode == 2
    assert "semtrace.db" in _one_sentence(out) and "damaged" in out.stderr


# ---------------------------------------------------------------- policies


@pytest.mark.parametrize("old,new,key", [
    ("prompts_days = 30", "prompts_days = inf", "default.prompts_days"),
    ("prompts_days = 30", "prompts_days = 1e9", "default.prompts_days"),
    ("aggregates_days = 400", "aggregates_days = 1e12", "default.aggregates_days"),
    ("vault_days = 7", "vault_days = inf", "default.vault_days"),
    ("legal_holds = []", 'legal_holds = [{ tenant = "", user_id = "u-17" }]',
     "legal_holds.0.tenant"),
    ("legal_holds = []", 'legal_holds = [{ tenant = "acme", user_id = " " }]',
     "legal_holds.0.user_id"),
    ('schedule_cron = "17 * * * *"', 'schedule_cron = "every hour"', "schedule_cron"),
])
def test_out_of_range_retention_policies_are_refused_by_name(
        store: dict[str, object], tmp_path: Path, old: str, new: str, key: str) -> None:
    from appliance.config import policy_dir

    pdir = tmp_path / "policies"
    shutil.copytree(policy_dir(), pdir)
    text = (pdir / "retention.toml").read_text()
    assert old in text
    (pdir / "retention.toml").write_text(text.replace(old, new))
    args = list(store["args"])  # type: ignore[call-overload]
    out = run_cli("retention", "run", "--as-of", "2027-06-01T00:00:00Z", "--yes-future", *args,
                  env={"SEMTRACE_POLICY_DIR": str(pdir)})
    assert out.returncode == 2
    err = _one_sentence(out)
    assert f"retention.toml: key '{key}'" in err and "Value error" not in err
    assert json.loads(run_cli("audit", "verify", "--json", *args).stdout)["ok"]
    assert len(json.loads(run_cli("threads", "list", "--json", *args).stdout)) == 1  # kept


# ---------------------------------------------------------------- the compliance secret


def test_the_compliance_passphrase_cannot_be_the_master_one(
        store: dict[str, object], tmp_path: Path) -> None:
    pw, cpw = Path(str(store["pw"])), Path(str(store["cpw"]))
    fresh = ["--data-dir", str(tmp_path / "fresh"), "--passphrase-file", str(pw)]
    same = run_cli("init", *fresh, "--compliance-passphrase-file", str(pw))
    assert same.returncode == 2 and "must differ" in _one_sentence(same)
    assert not (tmp_path / "fresh").exists()  # nothing was written

    assert run_cli("init", *fresh).returncode == 0
    enrol = run_cli("compliance", "enroll", *fresh, "--compliance-passphrase-file", str(pw))
    assert enrol.returncode == 2 and "must differ" in _one_sentence(enrol)
    assert not (tmp_path / "fresh" / "reveal-key.json").exists()

    args = _copy(store, tmp_path)
    to_officer = run_cli("keys", "rotate", *args, "--new-passphrase-file", str(cpw))
    assert to_officer.returncode == 2 and "compliance passphrase" in _one_sentence(to_officer)
    to_same = run_cli("keys", "rotate", *args, "--new-passphrase-file", str(pw))
    assert to_same.returncode == 2 and "the one in use" in _one_sentence(to_same)
    assert run_cli("audit", "verify", *args).returncode == 0  # still opens with pw


# ---------------------------------------------------------------- --json, doctor, options


def test_audit_public_key_and_compliance_enroll_have_json(store: dict[str, object],
                                                          tmp_path: Path) -> None:
    args = list(store["args"])  # type: ignore[call-overload]
    text = run_cli("audit", "public-key", *args)
    as_json = json.loads(run_cli("audit", "public-key", "--json", *args).stdout)
    assert as_json["public_key"] == text.stdout.strip() and as_json["algorithm"] == "Ed25519"
    key_file = tmp_path / "pub"
    key_file.write_text(text.stdout)
    report = tmp_path / "r.json"
    assert run_cli("audit", "retention", "--format", "json", "--out", str(report),
                   *args).returncode == 0
    checked = json.loads(run_cli("audit", "check-report", str(report), "--public-key",
                                 str(key_file), "--json").stdout)
    assert checked["ok"] and checked["key_id"] == as_json["key_id"]

    fresh = ["--data-dir", str(tmp_path / "fresh"), "--passphrase-file", str(store["pw"])]
    assert run_cli("init", *fresh).returncode == 0
    enrolled = run_cli("compliance", "enroll", *fresh, "--compliance-passphrase-file",
                       str(store["cpw"]), "--json")
    assert enrolled.returncode == 0 and json.loads(enrolled.stdout) == {"enrolled": True}
    again = run_cli("compliance", "enroll", *fresh, "--compliance-passphrase-file",
                    str(store["cpw"]), "--json")
    assert again.returncode == 2 and "already exists" in _one_sentence(again)


def test_doctor_names_a_compliance_key_file_others_can_read(store: dict[str, object],
                                                            tmp_path: Path) -> None:
    args = _copy(store, tmp_path)
    (tmp_path / "data" / "reveal-key.json").chmod(0o644)
    out = run_cli("doctor", "--json", "--data-dir", args[1])
    assert out.returncode == 1
    assert any("reveal-key.json is readable by others" in p
               for p in json.loads(out.stdout)["problems"])


def test_a_retag_with_the_wrong_compliance_passphrase_says_nothing_changed(
        store: dict[str, object]) -> None:
    args = list(store["args"])  # type: ignore[call-overload]
    out = run_cli("compliance", "retag", *args, "--compliance-passphrase-file", str(store["pw"]))
    assert out.returncode == 2
    assert _one_sentence(out).strip() == ("semtrace: The compliance credential is wrong; "
                                          "nothing was changed.")


def test_a_bad_since_names_since(store: dict[str, object]) -> None:
    args = list(store["args"])  # type: ignore[call-overload]
    out = run_cli("audit", "retention", "--since", "last tuesday", *args)
    assert out.returncode == 2 and "--since 'last tuesday' is not" in _one_sentence(out)


def test_a_report_to_a_missing_folder_is_refused_before_its_issue_is_audited(
        store: dict[str, object], tmp_path: Path) -> None:
    args = list(store["args"])  # type: ignore[call-overload]
    log = lambda: json.loads(run_cli("audit", "log", "--json", "--all", *args).stdout)  # noqa: E731
    before = log()
    out = run_cli("audit", "retention", "--out", str(tmp_path / "no-such" / "r.md"), *args)
    assert out.returncode == 2 and "does not exist" in _one_sentence(out)
    assert log() == before  # no 'report' entry for a report nobody received
    assert not (tmp_path / "no-such").exists()


def test_audit_log_of_a_tenant_bound_role_shows_only_its_tenants_entries(
        store: dict[str, object], tmp_path: Path) -> None:
    from appliance.config import policy_dir

    pdir = tmp_path / "policies"
    shutil.copytree(policy_dir(), pdir)
    with (pdir / "access.toml").open("a") as fh:
        fh.write('\n[roles.compliance-globex]\npermissions = ["audit", "erase"]\n'
                 'tenants = ["globex"]\n')
    env = {"SEMTRACE_POLICY_DIR": str(pdir)}
    args = _copy(store, tmp_path)
    assert run_cli("erase", "--tenant", "globex", "--user", "gus", "--reason", "ticket 12",
                   "--role", "compliance-globex", *args, env=env).returncode == 0
    everyone = json.loads(run_cli("audit", "log", "--json", *args, env=env).stdout)
    assert {e["details"].get("tenant") for e in everyone} >= {"acme", "globex"}
    for extra in ([], ["--tenant", "globex"]):
        out = run_cli("audit", "log", "--json", "--role", "compliance-globex", *extra, *args,
                      env=env)
        assert out.returncode == 0, out.stderr
        shown = json.loads(out.stdout)
        assert [e["event"] for e in shown] == ["erase"]
        assert shown[0]["details"]["tenant"] == "globex"
    other = run_cli("audit", "log", "--role", "compliance-globex", "--tenant", "acme", *args,
                    env=env)
    assert other.returncode == 4 and "limited to tenant globex" in _one_sentence(other)
    assert other.stdout == ""


def test_audit_log_says_when_older_entries_are_left_out_and_all_exports_them(
        store: dict[str, object], tmp_path: Path) -> None:
    from appliance.audit import AuditLog
    from appliance.keys import read_passphrase_file
    from appliance.runtime import open_runtime

    args = _copy(store, tmp_path)
    rt = open_runtime(tmp_path / "data", read_passphrase_file(Path(str(store["pw"]))))
    log = AuditLog(rt.store.db, rt.keyring.audit_signer(), anchor=rt.store.keys_db)
    log.append_many([("shred", {"bucket": 1000 + i, "tenant": "acme", "records": 1})
                     for i in range(60)])
    total = len(log.entries())
    rt.close()
    recent = run_cli("audit", "log", "--json", *args)
    assert len(json.loads(recent.stdout)) == 50  # stdout stays the JSON document
    assert "Showing the last 50 entries; older ones were left out" in _one_sentence(recent)
    assert "--all" in recent.stderr  # not 'older ones are held', read as a legal hold
    last = run_cli("audit", "log", "--limit", "1", *args)  # it said 'the last 1 entries'
    assert "Showing the last entry; older ones were left out" in _one_sentence(last)
    every = run_cli("audit", "log", "--json", "--all", *args)
    assert every.returncode == 0 and every.stderr == ""
    assert [e["seq"] for e in json.loads(every.stdout)] == list(range(1, total + 1))
    shreds = json.loads(run_cli("audit", "log", "--json", "--all", "--event", "shred",
                                *args).stdout)
    assert len(shreds) >= 60 and {e["event"] for e in shreds} == {"shred"}
    # --limit with --all asked for two answers: refused in one sentence, nothing printed
    both = run_cli("audit", "log", "--json", "--all", "--limit", "10", *args)
    assert both.returncode == 2 and both.stdout == ""
    assert "--limit 10 and --all contradict each other" in _one_sentence(both)


def test_a_report_checks_against_the_public_key_saved_plain_or_as_json(
        store: dict[str, object], tmp_path: Path) -> None:
    """The officer keeps `audit public-key` (or its --json) and checks reports with it
    later; a file that holds no key is named, not read as 'signed by another key'."""
    args = list(store["args"])  # type: ignore[call-overload]
    report = tmp_path / "r.md"
    assert run_cli("audit", "retention", "--out", str(report), *args).returncode == 0
    for name, extra in (("key.txt", []), ("key.json", ["--json"])):
        (tmp_path / name).write_text(run_cli("audit", "public-key", *extra, *args).stdout)
        ok = run_cli("audit", "check-report", str(report), "--public-key", str(tmp_path / name))
        assert ok.returncode == 0 and "intact" in ok.stdout, (name, ok.stdout, ok.stderr)
    wrong = run_cli("audit", "check-report", str(report), "--public-key", str(store["pw"]))
    assert wrong.returncode == 2 and "holds no Ed25519 public key" in _one_sentence(wrong)
    assert "operator pass phrase" not in wrong.stdout + wrong.stderr


def test_a_dry_run_says_what_retention_would_shred_and_changes_nothing(
        store: dict[str, object], tmp_path: Path) -> None:
    """--as-of shreds for real: an officer previews with --dry-run first."""
    args = _copy(store, tmp_path)
    log = run_cli("audit", "log", "--json", "--all", *args).stdout
    threads = run_cli("threads", "list", "--json", *args).stdout
    as_of = ["--as-of", "2026-04-15T00:00:00Z"]
    preview = run_cli("retention", "run", "--dry-run", "--json", *as_of, *args)
    assert preview.returncode == 0, preview.stderr
    due = json.loads(preview.stdout)["due"]
    assert {d["tenant"] for d in due} == {"acme"} and sum(d["records"] for d in due) == 2
    text = run_cli("retention", "run", "--dry-run", *as_of, *args)
    assert "would shred" in text.stdout and "Nothing was shredded" in text.stdout
    assert run_cli("audit", "log", "--json", "--all", *args).stdout == log
    assert run_cli("threads", "list", "--json", *args).stdout == threads
    done = json.loads(run_cli("retention", "run", "--json", *as_of, *args).stdout)
    assert done["records"] == 2 and done["shredded"] == len(due)


def test_a_dry_run_as_of_an_early_year_prints_its_date_as_iso(
        store: dict[str, object]) -> None:
    """A preview --as-of 0001-01-01 (a past time: nothing is due, as a user expects) said
    'As of 1-01-01 00:00 UTC': the year was not written with four digits."""
    args = list(store["args"])  # type: ignore[call-overload]
    out = run_cli("retention", "run", "--dry-run", "--as-of", "0001-01-01", *args)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("As of 0001-01-01 00:00 UTC a run would shred 0 buckets")


def test_a_retention_run_as_of_a_future_year_is_refused_without_yes_future(
        store: dict[str, object], tmp_path: Path) -> None:
    """A mistyped year in --as-of would shred data early and for good: the run refuses in
    one sentence (exit 2, nothing shredded or audited) unless --yes-future confirms it; a
    --dry-run of it, and an --as-of within a day (a time zone apart), need no flag."""
    from datetime import UTC, datetime, timedelta

    args = _copy(store, tmp_path)
    log = run_cli("audit", "log", "--json", "--all", *args).stdout
    threads = run_cli("threads", "list", "--json", *args).stdout
    later = (datetime.now(UTC) + timedelta(days=400)).strftime("%Y-%m-%dT%H:%M:%SZ")
    refused = run_cli("retention", "run", "--as-of", later, *args)
    assert refused.returncode == 2 and refused.stdout == ""
    err = _one_sentence(refused)
    assert f"--as-of {later} is more than a day in the future" in err and "--yes-future" in err
    assert run_cli("audit", "log", "--json", "--all", *args).stdout == log
    assert run_cli("threads", "list", "--json", *args).stdout == threads
    preview = run_cli("retention", "run", "--dry-run", "--json", "--as-of", later, *args)
    assert preview.returncode == 0 and json.loads(preview.stdout)["due"], preview.stderr
    assert run_cli("threads", "list", "--json", *args).stdout == threads
    done = run_cli("retention", "run", "--json", "--as-of", later, "--yes-future", *args)
    assert done.returncode == 0 and json.loads(done.stdout)["records"] == 2, done.stderr
    assert json.loads(run_cli("threads", "list", "--json", *args).stdout) == []
    soon = (datetime.now(UTC) + timedelta(hours=12)).strftime("%Y-%m-%dT%H:%M:%SZ")
    near = run_cli("retention", "run", "--json", "--as-of", soon, *args)
    assert near.returncode == 0, near.stderr


@pytest.mark.parametrize("command", [["erase"], ["retention", "run"], ["audit", "log"],
                                     ["audit", "retention"], ["compliance", "access"]])
def test_the_help_of_a_compliance_command_names_the_role_it_acts_as(command: list[str]) -> None:
    """They act as `compliance` when no --role is given, not as the policy's default role
    (analyst), which their help said."""
    text = " ".join(run_cli(*command, "--help").stdout.split())
    assert "(default: compliance)" in text, text


def test_audit_log_of_a_tampered_chain_says_it_is_broken_and_exits_6(
        store: dict[str, object], tmp_path: Path) -> None:
    """An officer reading (or exporting) the log of an altered chain is told, not shown
    forged entries as if they were the record."""
    args = _copy(store, tmp_path)
    _tamper(tmp_path / "data", Path(str(store["pw"])),
            "UPDATE audit SET details = replace(details, 'true', 'false') WHERE seq = 1")
    out = run_cli("audit", "log", "--json", "--all", *args)
    assert out.returncode == 6
    assert json.loads(out.stdout)[0]["seq"] == 1  # the listing itself stays readable
    assert "Audit log BROKEN: entry 1 was altered" in _one_sentence(out)
    assert run_cli("audit", "log", *args[:2], "--passphrase-file", str(store["pw"]),
                   "--limit", "1").returncode == 6


def test_a_signed_report_of_a_tampered_chain_exits_6_naming_the_problem(
        store: dict[str, object], tmp_path: Path) -> None:
    """The report is issued (it is evidence, and says BROKEN), but the officer's script is
    told: it exited 0 with only 'Signed report written', as for an intact log."""
    args = _copy(store, tmp_path)
    fine = run_cli("audit", "retention", "--json", *args)
    assert fine.returncode == 0 and fine.stderr == "", fine.stderr
    _tamper(tmp_path / "data", Path(str(store["pw"])),
            "UPDATE audit SET actor = 'nobody' WHERE seq = 1")
    out = run_cli("audit", "retention", "--out", str(tmp_path / "r.md"), *args)
    assert out.returncode == 6, out.stderr
    assert "audit log does not verify (entry 1 was altered)" in out.stderr, out.stderr
    assert "Audit chain: **BROKEN**" in (tmp_path / "r.md").read_text()
    assert "Traceback" not in out.stderr


def test_audit_log_text_shows_each_entrys_details_as_json(store: dict[str, object]) -> None:
    args = list(store["args"])  # type: ignore[call-overload]
    listing = run_cli("audit", "log", "--event", "init", *args)
    assert listing.returncode == 0, listing.stderr
    head, first = listing.stdout.splitlines()[:2]
    # headed: the columns were left to guess (an actor's name read as a user's)
    assert head.split() == ["seq", "time", "(UTC)", "event", "by", "details"]
    assert first.split()[3] == "init"
    details = first.split(None, 5)[5]
    assert json.loads(details)["compliance_key"] is True  # was {'compliance_key': True}


def test_a_reveal_on_a_store_without_a_compliance_key_says_how_to_enrol_one(
        tmp_path: Path) -> None:
    args, _, cpw = init_store(tmp_path, compliance=False)  # as `semtrace demo --keep` leaves it
    out = run_cli("reveal", "1", "--role", "compliance", "--reason", "ticket 9",
                  "--compliance-passphrase-file", str(cpw), *args)
    assert out.returncode == 1
    assert "`semtrace compliance enroll` keeps those of the prompts stored from then on" in \
        _one_sentence(out)
    # audited as what it was: 'why' said 'SemtraceError', which told an auditor nothing
    entry = json.loads(run_cli("audit", "log", "--json", "--limit", "1", *args).stdout)[0]
    assert (entry["event"], entry["details"]["why"]) == ("reveal_denied", "NoComplianceKey")


def test_audit_log_says_when_nothing_matches_and_refuses_a_tenant_never_held(
        store: dict[str, object], tmp_path: Path) -> None:
    """An officer asking for the legal-hold skips printed nothing at all (exit 0): an
    empty answer read like a command that failed; 'Acme' for 'acme' read as "no events"."""
    from appliance.audit import EVENTS

    args = _copy(store, tmp_path)
    held = {e["event"] for e in json.loads(run_cli("audit", "log", "--all", "--json",
                                                   *args).stdout)}
    absent = next(e for e in EVENTS if e not in held)
    none = run_cli("audit", "log", "--event", absent, *args)
    assert none.returncode == 0 and none.stdout.strip() == f"(no {absent} entries)"
    assert json.loads(run_cli("audit", "log", "--event", absent, "--json", *args).stdout) == []
    typo = run_cli("audit", "log", "--tenant", "Acme", *args)
    assert typo.returncode == 2 and "never held data of tenant 'Acme'" in _one_sentence(typo)
    assert typo.stdout == ""


@pytest.mark.parametrize("command", [
    ["erase", "--tenant", "acme", "--user", "canary-7f3a\udcff", "--reason", "ticket 9"],
    ["compliance", "access", "--tenant", "acme", "--user", "canary-7f3a\udcff", "--reason",
     "ticket 9", "--out", "canary-access.json"],
    ["search", "canary-7f3a\udcff invoice", "--tenant", "acme"],
    ["threads", "list", "--tenant", "acme", "--user", "canary-7f3a\udcff"]])
def test_an_argument_from_a_latin1_terminal_is_one_sentence_and_changes_nothing(
        store: dict[str, object], command: list[str]) -> None:
    """A user id or a search typed in a Latin-1 terminal reaches Python as lone surrogates;
    every command failed on it with a traceback (UnicodeEncodeError in the pseudonym or
    the embedding)."""
    args = list(store["args"])  # type: ignore[call-overload]
    before = len(json.loads(run_cli("audit", "log", "--json", "--all", *args).stdout))
    raw = [os.fsencode(a) for a in [*command, *args]]  # the bytes the terminal sent
    out = subprocess.run([sys.executable, "-m", "appliance", *raw], capture_output=True,
                         text=True, timeout=600, errors="replace")
    assert out.returncode == 2 and "canary-7f3a" not in out.stdout + out.stderr
    assert "is not UTF-8 text" in _one_sentence(out)
    assert len(json.loads(run_cli("audit", "log", "--json", "--all", *args).stdout)) == before


@pytest.mark.parametrize("command", [["erase", "--tenant", "acme", "--user", "x", "--reason",
                                      "DSAR 1", "--wait"], ["tui", "--refresh"]])
def test_a_nan_seconds_option_is_refused_as_a_number_out_of_range_is(
        tmp_path: Path, command: list[str]) -> None:
    """click's FloatRange let 'nan' through both bounds (a NaN compares false with each):
    `erase --wait nan` ran the erasure with a wait of NaN seconds."""
    out = run_cli(*command, "nan", "--data-dir", str(tmp_path / "none"))
    assert out.returncode == 2 and "'nan' is not a number" in _one_sentence(out), out.stderr

