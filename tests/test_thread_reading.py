"""What an engineer reads of one conversation, on prompts through the real pipeline
(Presidio, llama.cpp, SQLCipher): each turn's position, intent, similarity, the signal
that linked it and its parent, in the CLI and in the TUI."""

from __future__ import annotations

import json
import shlex
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from conftest import make_prompt

from appliance.ingest import content_digest
from appliance.records import Message


def _history(*texts: str) -> tuple[Message, ...]:
    return tuple(Message(role=("user", "assistant")[i % 2], digest=content_digest(t))
                 for i, t in enumerate(texts))


@pytest.fixture
def linked(pipeline: Any) -> list[Any]:
    """One user's thread whose turns were linked by history, then by content."""
    a = make_prompt("Which vaccines do I need for a trip to Kenya?", user="pia", minutes=0)
    b = replace(make_prompt("And for Tanzania?", user="pia", minutes=2),
                history=_history(a.text, "Yellow fever and typhoid."))
    c = make_prompt("Are those vaccines also needed for children travelling to Kenya?",
                    user="pia", minutes=4)
    return list(pipeline.process([a, b, c]))


def test_threads_show_prints_each_turns_intent_signal_and_parent(
        runtime: Any, linked: list[Any], data_dir: Path, passphrase_file: Path) -> None:
    from click.testing import CliRunner

    from appliance.cli import cli

    args = ["--data-dir", str(data_dir), "--passphrase-file", str(passphrase_file)]
    thread_id = linked[1].thread_id
    shown = CliRunner().invoke(cli, ["threads", "show", thread_id, *args, "--json"])
    assert shown.exit_code == 0, shown.output
    records = json.loads(shown.output)["records"]
    sources = {r["link_source"] for r in records if r["parent_id"] is not None}
    assert "history" in sources  # the thread has a turn the message history linked
    text = CliRunner().invoke(cli, ["threads", "show", thread_id, *args])
    assert text.exit_code == 0, text.output
    lines = {int(line.split("#")[1].split()[0]): line for line in text.output.splitlines()
             if line.startswith("  20")}
    assert set(lines) == {r["record_id"] for r in records}
    for r in records:
        line = lines[r["record_id"]]
        assert r["position"] in line and r["intent"] in line, line
        assert f"signal={r['link_source']}" in line, line
        if r["parent_id"] is not None:
            assert f"parent=#{r['parent_id']}" in line, line
        else:
            assert "parent=" not in line, line


def test_the_why_panel_names_the_signal_that_decided_each_turn(runtime: Any,
                                                               linked: list[Any]) -> None:
    from test_tui import app_for, open_thread, run, settle

    from appliance.query import get_thread

    thread = get_thread(runtime.store, linked[1].thread_id)
    assert thread is not None
    names = {"history": "history", "previous_response_id": "previous_response_id",
             "session_id": "session id", "content": "content"}
    seen: list[str] = []

    async def scenario(pilot: Any) -> None:
        app = pilot.app
        await open_thread(pilot, thread.thread_id)
        for i, r in enumerate(thread.records):
            if i:
                await pilot.press("j")
                await settle(pilot)
            panel = str(app.screen.query_one("#why-text").render())
            seen.append(r.link_source or "")
            assert f"decided by {names[r.link_source or 'content']}" in panel, (r, panel)

    run(app_for(runtime), scenario)
    assert {"history", "content"} <= set(seen) and len(seen) == len(thread.records)


def test_a_thread_opened_after_the_service_stopped_says_so_not_that_it_is_absent(
        linked: list[Any], pipeline: Any, tmp_path: Path) -> None:
    import os
    from contextlib import ExitStack

    from conftest import serving
    from test_tui import run, settle, table_keys

    from appliance.config import RoleSettings
    from appliance.tui.app import make_remote_app

    roles = {"reader": RoleSettings(permissions=["threads:read"], uids=[os.getuid()])}
    heads: list[str] = []
    with ExitStack() as service:
        qsock = service.enter_context(serving(pipeline, roles, tmp_path))
        app = make_remote_app(qsock, role="reader", refresh_seconds=3600)

        async def scenario(pilot: Any) -> None:
            assert linked[0].thread_id in table_keys(pilot.app, "#threads")
            service.close()  # the service stops while the list is on screen
            await pilot.press("enter")
            await settle(pilot)
            heads.append(str(pilot.app.screen.query_one("#thread-head").render()))

        run(app, scenario)
    assert heads and "No semtrace service is listening" in heads[0], heads
    assert "not in this store" not in heads[0]


def test_a_long_thread_is_walked_by_page_and_jumped_to_either_end_from_the_keyboard(
        runtime: Any, pipeline: Any) -> None:
    from test_tui import app_for, card_ids, run, settle

    from appliance.query import get_thread

    asked: list[str] = []
    prompts = []
    for k in range(24):  # one conversation: each request carries the ones before it
        text = f"Question {k} about the quarterly sales report for region {k % 5}?"
        prompts.append(replace(make_prompt(text, user="lee", minutes=k),
                               history=_history(*(t for q in asked for t in (q, "ok")))))
        asked.append(text)
    out = pipeline.process(prompts)
    thread = get_thread(runtime.store, out[-1].thread_id)
    assert thread is not None and thread.turns == 24
    focused: list[int] = []

    async def scenario(pilot: Any) -> None:
        app = pilot.app
        await pilot.press("enter")  # the most recent thread: this one
        await settle(pilot)
        order = card_ids(app)
        assert len(order) == 24
        for key in ("end", "home", "pagedown", "pagedown", "pageup", "G", "g"):
            await pilot.press(key)
            await settle(pilot)
            focused.append(order.index(app.focused.turn.record.record_id))

    run(app_for(runtime), scenario)
    assert focused == [23, 0, 10, 20, 10, 23, 0]


def test_the_threads_filter_finds_a_user_by_the_id_the_gateway_sends(
        runtime: Any, pipeline: Any, tmp_path: Path) -> None:
    """An engineer asked about alice@example.com's conversation types her id, not her
    pseudonym, directly and over the query socket; an id in two tenants asks for one."""
    import os

    from conftest import serving
    from test_tui import app_for, run, settle, table_keys

    from appliance.config import RoleSettings
    from appliance.tui.app import make_remote_app

    out = pipeline.process([
        make_prompt("How do I export my invoices as CSV?", user="alice@example.com"),
        make_prompt("What is the capital of Portugal?", user="bob@example.com", minutes=1),
        make_prompt("Plan a weekend in Lisbon.", user="alice@example.com", tenant="globex",
                    minutes=2)])
    alice_acme, bob = out[0].thread_id, out[1].thread_id
    found: dict[str, tuple[list[str], str]] = {}

    def typing(line: str, into: str) -> Any:
        async def scenario(pilot: Any) -> None:
            app = pilot.app
            await pilot.press("f")
            app.screen.query_one("#filter").value = line
            await pilot.press("enter")
            await settle(pilot)
            found[into] = (table_keys(app, "#threads"),
                           str(app.screen.query_one("#status").render()))
        return scenario

    run(app_for(runtime), typing("tenant:acme user:alice@example.com", "direct"))
    run(app_for(runtime), typing("user:bob@example.com", "direct, no tenant"))
    run(app_for(runtime), typing("user:alice@example.com", "direct, two tenants"))
    roles = {"reader": RoleSettings(permissions=["threads:read"], uids=[os.getuid()])}
    with serving(pipeline, roles, tmp_path) as qsock:
        run(make_remote_app(qsock, role="reader", refresh_seconds=3600),
            typing("tenant:acme user:alice@example.com", "socket"))
    assert found["direct"][0] == [alice_acme], found
    assert found["direct, no tenant"][0] == [bob], found
    said = found["direct, two tenants"][1]
    assert "That user id is a user of 2 tenants (acme, globex): add tenant:" in said
    assert "alice@example.com" not in said.split("✖", 1)[1]  # never put in an error
    assert found["socket"][0] == [alice_acme], found


def test_an_empty_threads_table_says_whether_the_filter_or_the_store_is_empty(
        runtime: Any) -> None:
    from test_tui import app_for, run, settle

    status: list[str] = []

    async def scenario(pilot: Any) -> None:
        app = pilot.app
        status.append(str(app.screen.query_one("#status").render()))
        await pilot.press("f")
        app.screen.query_one("#filter").value = "position:topic_shift"
        await pilot.press("enter")
        await settle(pilot)
        status.append(str(app.screen.query_one("#status").render()))

    run(app_for(runtime), scenario)  # a store just made by `semtrace init`
    assert status[0].startswith("No threads: nothing ingested yet"), status
    assert status[1].startswith("No threads match the filter (f to change it"), status


def test_the_why_panel_scrolls_from_the_keyboard_when_its_evidence_runs_past_the_screen(
        runtime: Any, linked: list[Any]) -> None:
    from test_tui import app_for, open_thread, run, settle

    from appliance.query import get_thread
    from appliance.tui.tree import flatten, layout
    from appliance.tui.widgets.evidence import EvidencePanel, explain

    thread = get_thread(runtime.store, linked[2].thread_id)
    assert thread is not None
    turns = flatten(layout(thread.records))
    longest = max(range(len(turns)), key=lambda i: len(explain(turns[i]).plain.splitlines()))
    seen: list[float] = []

    async def scenario(pilot: Any) -> None:
        app = pilot.app
        await open_thread(pilot, thread.thread_id)
        await pilot.press(*["j"] * longest)
        await settle(pilot)
        panel = app.screen.query_one(EvidencePanel)
        assert panel.max_scroll_y > 0  # the evidence is longer than the screen is high
        await pilot.press("J", "J")
        await settle(pilot)
        seen.append(panel.scroll_y)
        await pilot.press("K")
        await settle(pilot)
        seen.append(panel.scroll_y)
        assert app.focused.turn.record.record_id == turns[longest].record.record_id

    run(app_for(runtime), scenario, size=(100, 24))
    assert seen[0] > 0 and seen[1] < seen[0], seen


def test_a_compliance_officer_reveals_a_turn_seen_in_the_tui_by_the_id_its_panel_gives(
        tmp_path: Path) -> None:
    """The thread view numbers turns #1, #2 …; `semtrace reveal` takes the store-wide
    record id, which the TUI showed nowhere: the officer had to leave for the CLI's
    `threads show` to find it. The why panel now gives it (and, to a role that may
    reveal, the command for a turn with placeholders)."""
    from conftest import init_store, write_stream
    from test_spine import run_cli
    from test_tui import app_for, run, settle

    from appliance.keys import read_passphrase_file
    from appliance.runtime import open_runtime

    args, pw, cpw = init_store(tmp_path)
    src = write_stream(tmp_path / "in.jsonl", [
        {"tenant": "acme", "user_id": "dora", "ts": "2026-03-02T09:00:00Z",
         "text": "My name is Dora Whitfield and my order has not arrived."}])
    assert run_cli("replay", str(src), "--out", str(tmp_path / "o.jsonl"), *args).returncode == 0
    panels: dict[str, str] = {}
    rt = open_runtime(tmp_path / "data", read_passphrase_file(pw), readonly=True)
    try:
        for role in ("compliance", "analyst"):
            async def scenario(pilot: Any, role: str = role) -> None:
                await pilot.press("enter")
                await settle(pilot)
                panels[role] = str(pilot.app.screen.query_one("#why-text").render())

            run(app_for(rt, role=role), scenario)
    finally:
        rt.close()
    lines = panels["compliance"].splitlines()
    record = next(line.split()[1] for line in lines if line.startswith("record "))
    assert f"record {record}" in panels["analyst"] and "reveal:" not in panels["analyst"]
    # the command as the panel gives it, its two '…' filled in, reveals: it lacked --role
    # and the compliance credential, and as copied was refused (exit 4, audited as denied)
    given = next(line for line in lines if line.startswith("reveal: "))
    words = shlex.split(given.removeprefix("reveal: ").split(" (and this session's")[0])
    assert words[:3] == ["semtrace", "reveal", record] and words.count("…") == 2, given
    filled = words[1:]
    filled[filled.index("…")] = "ticket 12"
    filled[filled.index("…")] = str(cpw)
    shown = run_cli(*filled, *args)
    assert shown.returncode == 0 and "Dora Whitfield" in shown.stdout, shown.stderr


def test_the_tui_refuses_a_tenant_the_store_never_held_directly_and_over_the_socket(
        linked: list[Any], pipeline: Any, data_dir: Path, passphrase_file: Path,
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`semtrace tui --tenant Acme` (the gateway sends 'acme') opened on an empty table
    that now reads 'No threads in tenant Acme: nothing ingested yet, or ...'."""
    import os

    from conftest import serving

    from appliance.cli import main
    from appliance.config import RoleSettings
    from appliance.errors import InputError
    from appliance.tui.app import make_remote_app

    with pytest.raises(SystemExit) as exc:
        main(["tui", "--data-dir", str(data_dir), "--passphrase-file", str(passphrase_file),
              "--tenant", "Acme"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "never held data of tenant 'Acme'" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    roles = {"reader": RoleSettings(permissions=["threads:read"], uids=[os.getuid()])}
    with serving(pipeline, roles, tmp_path) as qsock:
        with pytest.raises(InputError, match="never held data of tenant 'Acme'"):
            make_remote_app(qsock, role="reader", tenant="Acme")
        assert make_remote_app(qsock, role="reader", tenant="acme").ctx.reader.tenant == "acme"


def test_an_analyst_searches_one_users_prompts_by_the_id_the_gateway_sends(
        runtime: Any, pipeline: Any, embedder: Any) -> None:
    """In a tenant without cross-user search an analyst must name the user: the status
    said 'add user:<pseudonym>', a value no analyst has; the search line now takes the id."""
    from test_tui import app_for, run, settle, table_keys

    out = pipeline.process([
        make_prompt("How do I rotate the API key of the billing service?", user="gail",
                    tenant="globex"),
        make_prompt("How do I rotate the API key of the payments service?", user="hugo",
                    tenant="globex", minutes=1)])
    seen: dict[str, Any] = {}

    async def scenario(pilot: Any) -> None:
        app = pilot.app
        await pilot.press("slash")
        for label, line in (("all", "rotate the api key tenant:globex"),
                            ("gail", "rotate the api key tenant:globex user:gail")):
            app.screen.query_one("#query").focus()
            app.screen.query_one("#query").value = line
            await pilot.press("enter")
            await settle(pilot)
            seen[label] = (table_keys(app, "#hits"), str(app.screen.query_one("#status").render()))

    run(app_for(runtime, embedder, role="analyst"), scenario)
    assert seen["all"][0] == [] and "add user: (the user's id" in seen["all"][1], seen
    assert [k.split("#")[0] for k in seen["gail"][0]] == [out[0].thread_id], seen


def test_threads_list_shows_the_last_activity_it_is_ordered_by(
        runtime: Any, pipeline: Any, data_dir: Path, passphrase_file: Path) -> None:
    """Listed by last activity but showing only the start, the list read as unsorted: a
    thread started at 09:00 and still going stood above one started at 09:30."""
    from click.testing import CliRunner

    from appliance.cli import cli

    pipeline.process([
        make_prompt("Which vaccines do I need for a trip to Kenya?", user="pia", minutes=0),
        make_prompt("Recommend a thriller novel set in Iceland.", user="ole", minutes=30),
        make_prompt("Are those vaccines also needed for children?", user="pia", minutes=60)])
    args = ["threads", "list", "--data-dir", str(data_dir), "--passphrase-file",
            str(passphrase_file)]
    listed = json.loads(CliRunner().invoke(cli, [*args, "--json"]).output)
    text = CliRunner().invoke(cli, args).output.splitlines()
    assert "last seen" in text[0]
    for t, line in zip(listed, text[1:], strict=True):
        last = t["last_ts"].replace("T", " ")[:16]
        assert line.startswith(t["thread_id"]) and last in line, (t, line)


def test_a_reader_whose_service_is_down_is_told_so_not_only_that_no_passphrase_was_given(
        tmp_path: Path) -> None:
    """An analyst (no passphrase: readers ask the service) ran `semtrace tui` while the
    service was stopped and read 'No passphrase given', which sent them looking for one."""
    from conftest import init_store
    from test_spine import run_cli

    init_store(tmp_path, compliance=False)
    data = str(tmp_path / "data")
    for args in (["tui", "--data-dir", data], ["threads", "list", "--data-dir", data],
                 ["search", "invoice", "--data-dir", data]):
        out = run_cli(*args, stdin="")  # not a terminal: nothing to prompt on
        err = out.stderr.strip()
        assert out.returncode != 0 and "Traceback" not in err and len(err.splitlines()) == 1
        assert f"No service is listening on {data}/query.sock" in err, (args, err)
        assert "semtrace serve" in err and "--passphrase-file" in err


def test_comparing_models_on_a_topic_without_a_topic_release_says_where_topics_come_from(
        runtime: Any, linked: list[Any]) -> None:
    from test_tui import app_for, run, settle

    said: list[str] = []

    async def scenario(pilot: Any) -> None:
        await pilot.press("c")
        await settle(pilot)
        await pilot.press("p")
        await settle(pilot)
        said.append(str(pilot.app.screen.query_one("#status").render()))

    run(app_for(runtime, role="analyst"), scenario)
    assert said[0].startswith("No topic to compare on: the topics come from today's topic "
                              "release"), said


def _retention_screen(runtime: Any) -> str:
    """What the retention screen (`R`) of a compliance officer shows, its texts joined."""
    from test_tui import app_for, run, settle
    from textual.widgets import Static

    heads: list[str] = []

    async def scenario(pilot: Any) -> None:
        await pilot.press("R")
        await settle(pilot)
        heads.append(" ".join(str(w.render()) for w in pilot.app.screen.query(Static)))

    run(app_for(runtime, role="compliance"), scenario)
    return heads[0]


def test_the_retention_screen_of_an_empty_store_says_nothing_is_held(runtime: Any) -> None:
    shown = _retention_screen(runtime)  # a store just made by `init`
    assert "nothing held yet: no prompt has been stored in scope" in shown, shown


def test_the_retention_screen_claims_no_shred_check_before_anything_was_shredded(
        runtime: Any) -> None:
    """With no bucket shredded yet it showed "✔ Shredded buckets undecryptable (0
    sampled)": a check mark for a check that had nothing to check."""
    shown = _retention_screen(runtime)  # a store just made by `init`
    assert "Shredded buckets: none yet, nothing to check" in shown, shown
    assert "✔ Shredded buckets undecryptable" not in shown


def test_stepping_through_a_thread_does_not_rebuild_the_footer_for_every_turn(
        runtime: Any, pipeline: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each footer rebuild lays the whole screen out again, every turn's card included:
    on a 400-turn thread (bench/tui_real.py) ten steps took 2.1 s of work with a rebuild
    per step and 0.75 s without. The turns share the screen's keys: nothing to rebuild."""
    from test_tui import app_for, card_ids, run, settle
    from textual.widgets import Footer

    asked: list[str] = []
    prompts = []
    for k in range(12):
        text = f"Question {k} about the quarterly sales report for region {k % 5}?"
        prompts.append(replace(make_prompt(text, user="lee", minutes=k),
                               history=_history(*(t for q in asked for t in (q, "ok")))))
        asked.append(text)
    pipeline.process(prompts)
    rebuilt = [0]
    recompose = Footer.recompose

    async def counted(self: Footer) -> None:
        rebuilt[0] += 1
        await recompose(self)

    monkeypatch.setattr(Footer, "recompose", counted)
    footer: list[str] = []

    async def scenario(pilot: Any) -> None:
        app = pilot.app
        await pilot.press("enter")
        await settle(pilot)
        assert len(card_ids(app)) == 12
        rebuilt[0] = 0
        for _ in range(10):
            await pilot.press("j")
        await settle(pilot)
        footer.append(" ".join(str(k.render()) for k in app.screen.query("FooterKey")))

    run(app_for(runtime), scenario)
    assert rebuilt[0] == 0, rebuilt
    assert "Next turn" in footer[0] and "Why panel" in footer[0]  # still the view's keys



def test_the_why_panel_says_when_no_other_thread_was_scored_and_what_a_new_turns_figure_is(
        ) -> None:
    """The panel printed `runner-up 0.00` where no other thread was a candidate (a user's
    second turn, or their first), read as "another thread scored nothing", and gave a new
    thread's similarity to the closest turn it did not take as `similarity`, which the
    turn's card and `threads show` call `best`."""
    from conftest import T0

    from appliance.records import Record
    from appliance.tui.tree import Turn
    from appliance.tui.widgets.evidence import explain

    def panel(parent: int | None, runner_up: float, similarity: float | None) -> str:
        ev = {"link_source": "content", "score": 0.99 if parent else 0.17, "threshold": 0.45,
              "scored": 3, "runner_up": runner_up, "threshold_source": "policy", "cues": []}
        r = Record(record_id=2, request_id="r2", tenant="t", user="u", ts=T0, thread_id="th",
                   parent_id=parent, parent_request_id=None,
                   position="continuation" if parent else "new", intent=None,
                   similarity=similarity, topic_id=None, text="x", evidence=ev)
        return explain(Turn(r, None, 60.0, number=2, parent_number=parent)).plain

    alone = panel(1, 0.0, 0.04)
    assert "runner-up none (no other thread was scored)" in alone and "0.00" not in alone
    assert "runner-up 0.31 (the next thread)" in panel(1, 0.31, 0.04)
    assert "\nsimilarity " in alone and "best (not taken)" not in alone
    new = panel(None, 0.0, -0.01)
    assert "best (not taken) " in new and "-0.01" in new and "\nsimilarity " not in new
