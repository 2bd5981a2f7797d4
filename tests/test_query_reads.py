"""Every read over the query socket: search, every stats query and the TUI's screens run
under the role the caller's OS identity may take (access.toml maps this test's own uid),
inside its tenants, with no passphrase on the reader's side."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import make_prompt, serving
from test_spine import run_cli
from test_tui import run, settle, shown_turns, table_keys

from appliance.client import Client
from appliance.config import RoleSettings

READ = ["threads:read", "search", "aggregates"]
WINDOW = ["--from", "2026-03-01", "--to", "2026-03-04"]
EMAIL = "ann.smith7731@example.org"
GLOBEX_ONLY = "zebra procurement ledger"
RAW_USERS = ("u-ann-7731", "u-bob-9912", "u-cy-4410")


@pytest.fixture
def served(pipeline: Any, data_dir: Path, monkeypatch: pytest.MonkeyPatch
           ) -> Iterator[dict[str, Any]]:
    """The real service on a real pipeline, its query socket at DATA_DIR/query.sock."""
    prompts = []
    for t in ("acme", "globex"):
        for i, u in enumerate(RAW_USERS):
            topic = GLOBEX_ONLY if t == "globex" else "the VPN guide"
            prompts.append(make_prompt(f"Where is {topic}? Mail me at {EMAIL}", tenant=t,
                                       user=u, minutes=i, request_id=f"{t}-{u}"))
    out = pipeline.process(prompts)
    me = os.getuid()
    roles = {"analyst-acme": RoleSettings(permissions=READ, uids=[me], tenants=["acme"]),
             "reader": RoleSettings(permissions=["threads:read"], uids=[me]),
             "watcher": RoleSettings(permissions=["metrics"], uids=[me]),
             "auditor": RoleSettings(permissions=[*READ, "user_stats"], uids=[me]),
             "analyst": RoleSettings(permissions=READ, uids=[me + 4242])}
    with serving(pipeline, roles, data_dir) as qsock:
        for var in ("SEMTRACE_PASSPHRASE_FILE", "SEMTRACE_KEY_FILE", "CREDENTIALS_DIRECTORY"):
            monkeypatch.delenv(var, raising=False)  # the reader holds no key
        yield {"sock": qsock, "outcomes": out, "store": pipeline.store,
               "ingest": data_dir / "s.sock"}


def cli(*args: str) -> Any:
    from click.testing import CliRunner

    from appliance.cli import cli as group

    return CliRunner().invoke(group, list(args))


def raw(sock: Path, **req: Any) -> tuple[bytes, dict[str, Any]]:
    """One request; the reply's bytes as sent, and parsed."""
    with Client(sock) as c:
        reply = c.request({"v": 1, **req})
    return json.dumps(reply, ensure_ascii=False).encode(), reply


def assert_no_plaintext(data: bytes, *, other_tenant: bool = True) -> None:
    """Nothing the role may not see: no e-mail, no raw user id, no other tenant's text."""
    assert EMAIL.encode() not in data and b"example.org" not in data
    assert not any(u.encode() in data for u in RAW_USERS)
    if other_tenant:
        assert GLOBEX_ONLY.encode() not in data and b"globex" not in data


def refused(result: Any, words: str) -> None:
    """One sentence on stderr, a non-zero exit, no traceback."""
    err = result.stderr
    assert result.returncode != 0 and words in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err


# ---------------------------------------------------------------- search


def test_search_over_the_socket_stays_inside_the_roles_tenant(served: dict[str, Any]) -> None:
    sock = str(served["sock"])
    ok = cli("search", "VPN guide", "--socket", sock, "--role", "analyst-acme", "--json")
    assert ok.exit_code == 0, ok.output
    hits = json.loads(ok.output)
    assert len(hits) == 3 and {h["tenant"] for h in hits} == {"acme"}
    assert all("<EMAIL_ADDRESS" in h["text"] for h in hits)
    assert_no_plaintext(ok.output.encode())
    # an age, as the TUI's since: takes one, is sent as the time it names
    for age, want in (("9999d", hits), ("1d", [])):
        aged = cli("search", "VPN guide", "--socket", sock, "--role", "analyst-acme", "--json",
                   "--since", age)
        assert aged.exit_code == 0 and json.loads(aged.output) == want, aged.output
    one = cli("search", "VPN guide", "--socket", sock, "--role", "analyst-acme",
              "--tenant", "acme", "--user", RAW_USERS[1], "--json")
    assert {h["user"] for h in json.loads(one.output)} == {
        served["store"].db.execute("SELECT user FROM records WHERE request_id=?",
                                   (f"acme-{RAW_USERS[1]}",)).fetchone()[0]}
    data, reply = raw(served["sock"], op="search", role="analyst-acme", text=GLOBEX_ONLY)
    assert reply["ok"] and {h["tenant"] for h in reply["hits"]} == {"acme"}
    assert_no_plaintext(data)
    refused(run_cli("search", "VPN guide", "--socket", sock, "--role", "analyst-acme",
                    "--tenant", "globex"), "limited to tenant acme")
    # globex has no cross_user_search in privacy.toml: a role that sees it is still refused
    refused(run_cli("search", "zebra", "--socket", sock, "--role", "auditor", "--tenant",
                    "globex"), "cross_user_search")


def test_a_search_after_erase_returns_none_of_the_erased_users_prompts(
        served: dict[str, Any], data_dir: Path, passphrase_file: Path) -> None:
    """The service keeps its search index between queries: a prompt ingested after the
    first search is found, and once a user is erased no search returns their prompts."""
    store = served["store"]
    pseudo = {u: store.db.execute("SELECT user FROM records WHERE request_id=?",
                                  (f"acme-{u}",)).fetchone()[0] for u in RAW_USERS}

    def hits() -> list[dict[str, Any]]:
        data, reply = raw(served["sock"], op="search", role="analyst-acme", tenant="acme",
                          text="Where is the VPN guide for my laptop?", limit=50)
        assert reply["ok"], reply
        assert_no_plaintext(data)
        return list(reply["hits"])

    assert {h["user"] for h in hits()} == set(pseudo.values())
    with Client(served["ingest"]) as c:
        assert c.ingest(tenant="acme", user_id=RAW_USERS[0], request_id="late",
                        text="Where is the VPN guide for the new laptop?",
                        ts="2026-03-02T09:10:00Z")["ok"]
    assert any("new laptop" in h["text"] for h in hits())

    erased = run_cli("erase", "--tenant", "acme", "--user", RAW_USERS[0], "--reason", "GDPR",
                     "--json", "--data-dir", str(data_dir), "--passphrase-file",
                     str(passphrase_file))
    assert erased.returncode == 0, erased.stderr
    assert json.loads(erased.stdout)["records"] == 2
    left = hits()
    assert {h["user"] for h in left} == {pseudo[RAW_USERS[1]], pseudo[RAW_USERS[2]]}
    assert not any("new laptop" in h["text"] for h in left)


# ---------------------------------------------------------------- stats


def test_stats_over_the_socket_spend_once_and_the_direct_command_reads_that_release(
        served: dict[str, Any], data_dir: Path, passphrase_file: Path) -> None:
    sock = str(served["sock"])
    first = cli("stats", "topics", "--socket", sock, "--role", "analyst-acme", "--tenant",
                "acme", *WINDOW, "--json")
    assert first.exit_code == 0, first.output
    out = json.loads(first.output)
    assert out["kind"] == "topics" and out["exact"] is False and out["cached"] is False
    # the shipped policy's topics release spends 2 (release_epsilon.topics)
    assert out["epsilon"] == pytest.approx(2.0) and out["currency"]
    again = json.loads(cli("stats", "topics", "--socket", sock, "--role", "analyst-acme",
                           "--tenant", "acme", *WINDOW, "--json").output)
    assert again["cached"] is True and again["epsilon"] == 0
    # the operator's direct command, with the key, reads the release the socket made
    direct = cli("stats", "topics", "--data-dir", str(data_dir), "--passphrase-file",
                 str(passphrase_file), "--tenant", "acme", *WINDOW, "--json")
    assert direct.exit_code == 0, direct.output
    d = json.loads(direct.output)
    assert set(d) == set(out) and d["cached"] is True
    assert d["released_at"] == out["released_at"] and d["rows"] == out["rows"]
    ledger = served["store"].db.execute("SELECT tenant, spent, queries FROM privacy_budget")
    assert ledger.fetchall() == [("acme", pytest.approx(2.0), 1)]
    text = cli("stats", "topics", "--socket", sock, "--role", "analyst-acme", "--tenant",
               "acme", *WINDOW)
    assert "differentially private: today's release from" in text.output


def test_a_spent_budget_exits_5_over_the_socket_as_directly(
        served: dict[str, Any], data_dir: Path, passphrase_file: Path) -> None:
    sock = str(served["sock"])
    for kind in ("topics", "models", "cost"):  # 2 + 1 + 1: the shipped day's 4
        done = cli("stats", kind, "--socket", sock, "--role", "analyst-acme", "--tenant",
                   "acme", *WINDOW, "--json")
        assert done.exit_code == 0, done.output
    over = cli("stats", "positions", "--socket", sock, "--role", "analyst-acme", "--tenant",
               "acme", *WINDOW, "--json")
    direct = cli("stats", "positions", "--data-dir", str(data_dir), "--passphrase-file",
                 str(passphrase_file), "--tenant", "acme", *WINDOW, "--json")
    for refused in (over, direct):  # a script tells "try tomorrow" from a typo (exit 2)
        assert "privacy budget" in str(refused.exception), refused.output
        assert refused.exception.exit_code == 5  # type: ignore[union-attr]


@pytest.mark.parametrize("kind", ["models", "cost", "positions", "blocks", "incident"])
def test_every_stats_query_is_served_under_the_same_check(served: dict[str, Any],
                                                           kind: str) -> None:
    sock = str(served["sock"])
    ok = cli("stats", kind, "--socket", sock, "--role", "analyst-acme", "--tenant", "acme",
             *WINDOW, "--json")
    assert ok.exit_code == 0, ok.output
    out = json.loads(ok.output)
    assert out["kind"] == kind and out["tenant"] == "acme" and out["exact"] is False
    assert_no_plaintext(ok.output.encode())
    refused(run_cli("stats", kind, "--socket", sock, "--role", "analyst-acme", "--tenant",
                    "globex", *WINDOW), "limited to tenant acme")
    refused(run_cli("stats", kind, "--socket", sock, "--role", "reader", "--tenant", "acme",
                    *WINDOW), "have the 'aggregates' permission")


def test_one_users_exact_figures_need_user_stats(served: dict[str, Any]) -> None:
    sock = str(served["sock"])
    refused(run_cli("stats", "topics", "--socket", sock, "--role", "analyst-acme",
                    "--tenant", "acme", "--user", RAW_USERS[0], *WINDOW),
            "have the 'user_stats' permission")
    ok = cli("stats", "topics", "--socket", sock, "--role", "auditor", "--tenant", "acme",
             "--user", RAW_USERS[0], *WINDOW, "--json")
    out = json.loads(ok.output)
    assert out["exact"] is True and sum(r["threads"]["value"] for r in out["rows"]) == 1
    assert served["store"].db.execute("SELECT count(*) FROM privacy_budget").fetchone() == (0,)


# ---------------------------------------------------------------- one check per command


def test_each_command_refuses_a_role_without_its_permission(served: dict[str, Any]) -> None:
    sock = str(served["sock"])
    for args, words in [(("threads", "list"), "have the 'threads:read' permission"),
                        (("threads", "show", served["outcomes"][0].thread_id),
                         "have the 'threads:read' permission"),
                        (("search", "VPN"), "have the 'search' permission"),
                        (("stats", "topics", "--tenant", "acme", *WINDOW),
                         "have the 'aggregates' permission"),
                        (("tui",), "have the 'threads:read' permission")]:
        refused(run_cli(*args, "--socket", sock, "--role", "watcher"), words)
    refused(run_cli("search", "VPN", "--socket", sock, "--role", "analyst"),
            "bound to other users")


def test_without_a_passphrase_the_cli_asks_the_data_dirs_query_socket(
        served: dict[str, Any], data_dir: Path, passphrase_file: Path) -> None:
    ok = cli("threads", "list", "--data-dir", str(data_dir), "--role", "analyst-acme",
             "--json")
    assert ok.exit_code == 0, ok.output
    assert {t["tenant"] for t in json.loads(ok.output)} == {"acme"}
    # a list reads no turns: no "records" field, which was always [] beside turns >= 1
    assert all("records" not in t and t["turns"] >= 1 for t in json.loads(ok.output))
    assert_no_plaintext(ok.output.encode())
    # the same table as the operator's, who opens the store with the key
    text = cli("threads", "list", "--data-dir", str(data_dir), "--role", "analyst-acme")
    direct = cli("threads", "list", "--data-dir", str(data_dir), "--passphrase-file",
                 str(passphrase_file), "--tenant", "acme")
    assert text.output == direct.output and "cost" in text.output.splitlines()[0]
    thread_id = json.loads(ok.output)[0]["thread_id"]
    shown = cli("threads", "show", thread_id, "--data-dir", str(data_dir), "--role",
                "analyst-acme")
    assert shown.output == cli("threads", "show", thread_id, "--data-dir", str(data_dir),
                               "--passphrase-file", str(passphrase_file)).output
    assert "<EMAIL_ADDRESS" in shown.output and EMAIL not in shown.output


def test_a_reader_on_a_service_host_asks_the_services_query_socket_by_itself(
        served: dict[str, Any], data_dir: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """An engineer on the host where install.sh put the service typed `semtrace threads
    list` and was told 'The data dir ~/.local/share/semtrace does not exist (run `semtrace
    init`)': the command looked in their own default folder. With the install's record in
    the venv, a reader with no data dir of their own asks the service's query socket."""
    from appliance.cli import main
    from appliance.config import paths

    record = tmp_path / "service.conf"
    record.write_text(f"# Written by install.sh: this install's service.\n"
                      f"data_dir={data_dir}\nquery_socket={served['sock']}\n")
    monkeypatch.setattr(paths, "SERVICE_RECORD", record)
    ok = cli("threads", "list", "--role", "analyst-acme", "--json")
    assert ok.exit_code == 0, ok.output
    assert {t["tenant"] for t in json.loads(ok.output)} == {"acme"}
    hits = cli("search", "VPN guide", "--role", "analyst-acme", "--json")
    assert hits.exit_code == 0 and {h["tenant"] for h in json.loads(hits.output)} == {"acme"}
    # the service stopped: that, in one sentence, not `semtrace init`
    down = tmp_path / "run" / "query.sock"
    record.write_text(f"data_dir={data_dir}\nquery_socket={down}\n")
    with pytest.raises(SystemExit) as exit_:
        main(["threads", "list", "--role", "analyst-acme"])
    err = capsys.readouterr().err
    assert exit_.value.code != 0 and "semtrace init" not in err
    assert f"No service is listening on {down}, this host's service's query socket" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    # without the install's record (a source tree, an evaluation venv): as before
    monkeypatch.setattr(paths, "SERVICE_RECORD", tmp_path / "no-record")
    with pytest.raises(SystemExit):
        main(["threads", "list"])
    assert "does not exist (run `semtrace init`)" in capsys.readouterr().err


def test_send_on_a_service_host_uses_the_services_socket_by_itself(
        served: dict[str, Any], tmp_path: Path, data_dir: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's `semtrace send < requests.jsonl`, run by the gateway's user on the
    service's host, said 'No semtrace service is listening on
    ~/.local/share/semtrace/semtrace.sock': it looked in that user's own default folder. With
    the install's record in the venv it sends to the service's socket."""
    from click.testing import CliRunner

    from appliance.cli import cli as group
    from appliance.config import paths

    record = tmp_path / "service.conf"
    record.write_text(f"data_dir={data_dir}\nsocket={served['ingest']}\n")
    monkeypatch.setattr(paths, "SERVICE_RECORD", record)
    line = json.dumps({"op": "ingest", "request_id": "send-host-1", "tenant": "acme",
                       "user_id": "u-dee-1", "text": "Which VPN client do we use?"})
    r = CliRunner().invoke(group, ["send"], input=line + "\n")
    assert r.exit_code == 0, r.output
    reply = json.loads(r.output)
    assert reply["ok"] is True and reply["request_id"] == "send-host-1"
    assert reply["conversation_id"].startswith("th_")


def test_threads_list_by_topic_over_the_socket_and_directly(
        served: dict[str, Any], data_dir: Path, passphrase_file: Path) -> None:
    """From `stats topics` to the topic's threads in the CLI: `threads list --topic`
    (there was no way but the TUI); an unknown or out-of-scope topic is one sentence."""
    from appliance.topics import tables

    listed = json.loads(cli("threads", "list", "--data-dir", str(data_dir), "--role",
                            "analyst-acme", "--json").output)
    # two of acme's threads in one topic, as a refinement publishes it; the topic they
    # were in before (tp_vpn_old) merged into it
    want = sorted(t["thread_id"] for t in listed)[:2]
    db = served["store"].db
    row = tables.TopicRow("tp_vpn", "", 2, 2, "vpn guide", (), 0.0)
    old = tables.TopicRow("tp_vpn_old", "", 2, 2, None, (), 0.0)
    twins = [tables.TopicRow(t, "", 1, 1, "printer", (), 0.0) for t in ("tp_p1", "tp_p2")]
    tables.publish(db, "acme", [row, old, *twins], {}, [(t, "tp_vpn_old") for t in want])
    tables.publish(db, "acme", [row, *twins], {"tp_vpn_old": "tp_vpn"},
                   [(t, "tp_vpn") for t in want])
    tables.publish(db, "globex", [tables.TopicRow("tp_globex", "", 1, 1, None, (), 0.0)],
                   {}, [])
    for topic in ("tp_vpn", "tp_vpn_old", "VPN guide"):  # an id, one merged since, a label
        over = cli("threads", "list", "--data-dir", str(data_dir), "--role", "analyst-acme",
                   "--topic", topic, "--json")
        assert over.exit_code == 0, over.output
        assert sorted(t["thread_id"] for t in json.loads(over.output)) == want
    topic = "tp_vpn_old"
    direct = cli("threads", "list", "--data-dir", str(data_dir), "--passphrase-file",
                 str(passphrase_file), "--tenant", "acme", "--topic", topic, "--json")
    assert direct.exit_code == 0, direct.output
    assert sorted(t["thread_id"] for t in json.loads(direct.output)) == want
    for bad in ("tp_nope", "tp_globex"):  # a typo; another tenant's topic
        out = run_cli("threads", "list", "--data-dir", str(data_dir), "--role",
                      "analyst-acme", "--topic", bad)
        refused(out, f"No topic '{bad}' in scope")
    out = run_cli("threads", "list", "--data-dir", str(data_dir), "--passphrase-file",
                  str(passphrase_file), "--tenant", "acme", "--topic", "tp_nope")
    refused(out, "No topic 'tp_nope' in scope")
    refused(run_cli("threads", "list", "--data-dir", str(data_dir), "--role", "analyst-acme",
                    "--topic", "printer"), "'printer' is the label of 2 topics (tp_p1, tp_p2)")
    # the models compared on a topic named by its label: the same release as by its id
    by_label = cli("stats", "models", "--data-dir", str(data_dir), "--role", "analyst-acme",
                   "--tenant", "acme", "--topic", "vpn guide", *WINDOW, "--json")
    assert by_label.exit_code == 0, by_label.output
    by_id = cli("stats", "models", "--data-dir", str(data_dir), "--role", "analyst-acme",
                "--tenant", "acme", "--topic", "tp_vpn", *WINDOW, "--json")
    assert json.loads(by_id.output)["cached"] is True  # read, not spent again


def test_the_query_socket_can_come_from_the_environment(served: dict[str, Any],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEMTRACE_QUERY_SOCKET", str(served["sock"]))
    ok = cli("search", "VPN guide", "--role", "analyst-acme", "--json")
    assert ok.exit_code == 0, ok.output
    assert {h["tenant"] for h in json.loads(ok.output)} == {"acme"}
    refused(run_cli("stats", "topics", "--role", "analyst-acme", "--tenant", "globex",
                    *WINDOW), "limited to tenant acme")


def test_the_tuis_reads_are_checked_and_carry_only_the_roles_tenant(
        served: dict[str, Any]) -> None:
    sock = served["sock"]
    for op, fields in [("session", {}), ("page", {}), ("version", {}),
                       ("screen_search", {"text": "where is it"}),
                       ("released", {"kind": "topics", "now": "2026-03-03T12:00:00Z"})]:
        data, reply = raw(sock, op=op, role="analyst-acme", **fields)
        assert reply["ok"], reply
        assert_no_plaintext(data)
        denied = raw(sock, op=op, role="analyst-acme", tenant="globex", **fields)[1]
        assert denied["error"]["code"] == "forbidden", (op, denied)
        assert "limited to tenant acme" in denied["error"]["message"]
    page = raw(sock, op="page", role="analyst-acme")[1]
    assert page["total"] == 3 and {r["thread"]["tenant"] for r in page["rows"]} == {"acme"}
    assert raw(sock, op="screen_search", role="reader", text="x")[1]["error"]["code"] == \
        "forbidden"
    assert raw(sock, op="released", role="reader", kind="topics",
               now="2026-03-03T12:00:00Z")[1]["error"]["code"] == "forbidden"
    bad = raw(sock, op="page", role="analyst-acme", filters={"colour": "blue"})[1]
    assert bad["error"]["code"] == "bad_request"
    # an ingest committed by the service changes the version the TUI refreshes on
    before = raw(sock, op="version", role="analyst-acme")[1]["version"]
    with Client(served["ingest"]) as c:
        assert c.ingest(tenant="acme", user_id="u-dee-5150", text="Where do I file receipts?",
                        request_id="acme-late")["ok"]
    assert raw(sock, op="version", role="analyst-acme")[1]["version"] != before
    assert raw(sock, op="page", role="analyst-acme")[1]["total"] == 4


# ---------------------------------------------------------------- the TUI


CLOCK = datetime(2026, 3, 3, 12, 0, tzinfo=UTC)


def remote_app(served: dict[str, Any], role: str, **kw: Any) -> Any:
    from appliance.tui.app import make_remote_app

    return make_remote_app(served["sock"], role=role, refresh_seconds=3600, **kw)


def test_the_tui_reads_threads_through_the_socket_without_a_passphrase(
        served: dict[str, Any]) -> None:
    from appliance.tui.screens.thread import ThreadScreen
    from appliance.tui.screens.threads import ThreadsScreen

    assert not any(os.environ.get(v) for v in ("SEMTRACE_PASSPHRASE_FILE",
                                               "SEMTRACE_KEY_FILE"))
    acme = {o.thread_id for o in served["outcomes"] if o.request_id.startswith("acme")}

    async def scenario(pilot: Any) -> None:
        app = pilot.app
        assert isinstance(app.screen, ThreadsScreen)
        assert "tenant acme" in app.sub_title
        keys = table_keys(app, "#threads")
        assert set(keys) == acme
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, ThreadScreen) and app.screen.thread_id == keys[0]
        text = " ".join(shown_turns(app))
        assert "<EMAIL_ADDRESS" in text and EMAIL not in text
        await pilot.press("escape")
        await pilot.press("f")
        app.screen.query_one("#filter").value = "tenant:globex"
        await pilot.press("enter")
        await settle(pilot)
        assert "limited to tenant 'acme'" in str(app.screen.query_one("#status").render())

    run(remote_app(served, "analyst-acme", clock=lambda: CLOCK), scenario)


def test_the_tui_searches_and_reads_releases_through_the_socket(
        served: dict[str, Any]) -> None:
    from appliance.tui.screens.models import ModelsScreen
    from appliance.tui.screens.search import SearchScreen
    from appliance.tui.screens.topics import TopicsScreen

    async def scenario(pilot: Any) -> None:
        app = pilot.app
        await pilot.press("slash")
        await settle(pilot)
        assert isinstance(app.screen, SearchScreen)
        app.screen.query_one("#query").value = "where is the guide"
        await pilot.press("enter")
        await settle(pilot)
        hits = table_keys(app, "#hits")
        acme = {o.thread_id for o in served["outcomes"] if o.request_id.startswith("acme")}
        assert hits and {h.split("#")[0] for h in hits} <= acme
        # a prompt of today: the default window holds a thread (one that holds none is said
        # so, with nothing to release: test_tui.py)
        with Client(served["ingest"]) as c:
            assert c.ingest(tenant="acme", user_id=RAW_USERS[0], request_id="acme-today",
                            text="How do I book a meeting room for Friday?")["ok"]
        await pilot.press("o")
        await settle(pilot)
        assert isinstance(app.screen, TopicsScreen)
        status = str(app.screen.query_one("#status").render())
        assert "No release today for acme: n makes it" in status and "globex" not in status
        assert "spends epsilon 2 once a day" in status  # the service's topics epsilon
        await pilot.press("n")
        await settle(pilot)
        await pilot.click("#release")  # the service spends it, through the privacy gate
        for _ in range(20):
            await settle(pilot)
            if "released" in str(app.screen.query_one("#topics-head").render()):
                break
        assert "released" in str(app.screen.query_one("#topics-head").render())
        ledger = served["store"].db.execute("SELECT tenant, spent FROM privacy_budget")
        assert ledger.fetchall() == [("acme", pytest.approx(2.0))]
        await pilot.press("c")
        await settle(pilot)
        assert isinstance(app.screen, ModelsScreen)
        assert "No release today for acme" in str(app.screen.query_one("#status").render())

    run(remote_app(served, "analyst-acme"), scenario)


def test_the_tui_over_the_socket_offers_only_the_roles_screens(served: dict[str, Any]) -> None:
    from appliance.errors import AccessDenied

    app = remote_app(served, "reader")
    assert app.ctx.modes == ("threads",) and app.ctx.searcher is None
    # the retention screen reads the store itself: not offered over the socket
    assert remote_app(served, "analyst-acme").ctx.modes == ("threads", "search", "topics",
                                                            "models")
    with pytest.raises(AccessDenied, match="limited to tenant"):
        remote_app(served, "analyst-acme", tenant="globex")
    with pytest.raises(AccessDenied, match="bound to other users"):
        remote_app(served, "analyst")


def test_a_tenant_the_store_never_held_is_refused_not_listed_as_empty(
        served: dict[str, Any], data_dir: Path, passphrase_file: Path) -> None:
    """`--tenant Acme` (the gateway sends 'acme') listed '(no threads in scope)', exit 0:
    an engineer read it as "this tenant has no threads". Over the socket and directly."""
    sock = str(served["sock"])
    direct = ["--data-dir", str(data_dir), "--passphrase-file", str(passphrase_file)]
    for args in (["threads", "list", "--tenant", "Acme", "--socket", sock, "--role", "reader"],
                 ["threads", "list", "--tenant", "Acme", *direct],
                 ["search", "VPN guide", "--tenant", "Acme", "--socket", sock,
                  "--role", "auditor"],
                 ["search", "VPN guide", "--tenant", "Acme", *direct]):
        result = run_cli(*args)
        refused(result, "never held data of tenant 'Acme'")
        assert result.returncode == 2 and not result.stdout, args
    ok = run_cli("threads", "list", "--tenant", "acme", "--socket", sock, "--role", "reader",
                 "--json")
    assert ok.returncode == 0 and {t["tenant"] for t in json.loads(ok.stdout)} == {"acme"}
