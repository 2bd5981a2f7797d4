"""Message history through the real socket: real model, real Presidio, real SQLCipher."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from conftest import scan_for
from test_service import Server, at
from test_spine import run_cli

from appliance.client import Client
from appliance.ingest import content_digest


def _as_history(turns: list[tuple[str, str]], *, digests: bool) -> list[dict[str, str]]:
    if digests:
        return [{"role": r, "sha256": content_digest(t)} for r, t in turns]
    return [{"role": r, "content": t} for r, t in turns]


class Chat:
    """One chat window of a user: each prompt is sent with the messages before it."""

    def __init__(self, client: Client, user: str, prefix: str, *, digests: bool = False,
                 system: str = "You are a helpful assistant.") -> None:
        self.client, self.user, self.prefix, self.digests = client, user, prefix, digests
        self.turns: list[tuple[str, str]] = [("system", system)]
        self.n = 0

    def ask(self, text: str, minute: int, *, answer: str | None = None,
            cut: int | None = None) -> dict[str, Any]:
        """Send `text`; `cut` keeps only the first `cut` messages (edit and resend)."""
        if cut is not None:
            self.turns = self.turns[:cut]
        self.n += 1
        reply = self.client.ingest(
            tenant="acme", user_id=self.user, text=text, request_id=f"{self.prefix}-{self.n}",
            ts=at(minute), history=_as_history(self.turns, digests=self.digests))
        assert reply["ok"], reply
        self.turns += [("user", text), ("assistant", answer or f"Answer {self.n}.")]
        return reply


def test_two_interleaved_windows_whose_texts_point_at_each_other_stay_apart(
        server: Server) -> None:
    with Client(server.sock) as c:
        rome, csv = Chat(c, "ivan", "rome"), Chat(c, "ivan", "csv")
        r1 = rome.ask("Plan a three-day trip to Rome for me.", 0)
        c1 = csv.ask("How do I read a CSV file with pandas in Python?", 1)
        r2 = rome.ask("Can you export that as a CSV file I can load with pandas?", 2)
        c2 = csv.ask("Use a sample dataset of Rome's museums and their opening hours.", 3)
        r3 = rome.ask("What about the Vatican museums?", 4)
        c3 = csv.ask("How do I filter the rows by opening hour?", 5)
    assert r1["position"] == c1["position"] == "new"
    assert {r["conversation_id"] for r in (r1, r2, r3)} == {r1["conversation_id"]}
    assert {r["conversation_id"] for r in (c1, c2, c3)} == {c1["conversation_id"]}
    assert r1["conversation_id"] != c1["conversation_id"]
    assert [r["parent_request_id"] for r in (r2, r3, c2, c3)] == ["rome-1", "rome-2",
                                                                   "csv-1", "csv-2"]
    assert all(r["link_source"] == "history" for r in (r1, r2, r3, c1, c2, c3))


def test_an_edit_and_resend_branches_from_the_turn_before_it(server: Server) -> None:
    with Client(server.sock) as c:
        chat = Chat(c, "judy", "bake")
        chat.ask("Suggest a name for my bakery.", 10)
        chat.ask("Make it sound more French.", 11)
        chat.ask("Shorter, please.", 12)
        # the user edits the second prompt: the history is cut back to the first exchange
        edited = chat.ask("Make it sound more Italian.", 13, cut=3)
        again = chat.ask("Shorter, please.", 14)
        lookup = c.request({"v": 1, "op": "lookup", "tenant": "acme", "request_id": "bake-4"})
    assert edited["parent_request_id"] == "bake-1" and edited["link_source"] == "history"
    assert again["parent_request_id"] == "bake-4"  # not bake-3, which has the same text
    assert edited["conversation_id"] == again["conversation_id"] == lookup["conversation_id"]
    assert lookup["link_source"] == "history"


def test_digests_and_content_give_the_same_threads(server: Server) -> None:
    script = [("window-a", "Explain how a heat pump works.", None),
              ("window-b", "Write a limerick about a lazy cat.", None),
              ("window-a", "Is it efficient below freezing?", None),
              ("window-b", "Now one about a heat pump.", None),
              ("window-a", "And the running cost per month?", 3)]

    def run(user: str, digests: bool) -> list[tuple[Any, ...]]:
        with Client(server.sock) as c:
            chats = {w: Chat(c, user, f"{user}-{w}", digests=digests) for w in ("window-a",
                                                                                 "window-b")}
            replies = [chats[w].ask(text, 20 + i, cut=cut)
                       for i, (w, text, cut) in enumerate(script)]
        threads = {r["conversation_id"]: k for k, r in enumerate(replies)}
        return [(threads[r["conversation_id"]], r["parent_request_id"] and
                 r["parent_request_id"].split("-", 1)[1], r["position"], r["link_source"])
                for r in replies]

    with_content, with_digests = run("kate", False), run("liam", True)
    assert with_content == with_digests
    assert with_content[4][1] == "window-a-1"  # the cut history branches from the first turn


def test_an_answer_without_text_never_ties_another_conversation_to_a_history(
        server: Server) -> None:
    """A gateway that reports an answer made of tool calls alone as empty text: its digest
    is the empty string's, which every tool-calling assistant message of any history has."""
    with Client(server.sock) as c:
        booked = c.ingest(tenant="acme", user_id="noor", text="Book a table for two at Chez "
                          "Lulu tonight.", request_id="tl-a", ts=at(20), history=[],
                          response={"text": "", "status": "ok"})  # the model called a tool
        peru = Chat(c, "noor", "peru")
        first = peru.ask("What's the capital of Peru?", 21, answer="Lima.")
        peru.ask("And how many people live there?", 22)
        # that answer was a tool call too (no text): the next history ends with it
        peru.turns[-1] = ("assistant", "")
        last = peru.ask("Thanks, and its altitude?", 23)
    assert booked["ok"] and first["position"] == "new"
    # the history's last message (no text) matches nothing; the user message before it does
    assert last["conversation_id"] == first["conversation_id"] != booked["conversation_id"]
    assert last["parent_request_id"] == "peru-2" and last["link_source"] == "history"


def test_an_empty_history_starts_a_new_conversation_unless_it_refers_back(
        server: Server) -> None:
    with Client(server.sock) as c:
        first = Chat(c, "mona", "first").ask("Compare the Paris in France with the Paris "
                                             "in Texas for a weekend trip.", 30)
        fresh = Chat(c, "mona", "fresh").ask("Which Paris museums open on Mondays?", 31)
        back = Chat(c, "mona", "back").ask("Going back to the one in Texas: how far is it "
                                           "from Dallas?", 32)
    assert fresh["position"] == "new" and fresh["conversation_id"] != first["conversation_id"]
    assert fresh["link_source"] == "history"
    assert back["conversation_id"] == first["conversation_id"]
    assert back["link_source"] == "content"


def test_update_records_the_answer_and_a_previous_response_id_continues_it(
        server: Server) -> None:
    with Client(server.sock) as c:
        p1 = c.ingest(tenant="acme", user_id="nick", text="Give me three ideas for a team "
                      "offsite.", request_id="up-1", ts=at(40))
        upd = {"v": 1, "op": "update", "tenant": "acme", "request_id": "up-1",
               "response": {"input_tokens": 12, "output_tokens": 90, "latency_ms": 812.5,
                            "status": "ok", "text": "Hiking, cooking class, escape room.",
                            "id": "resp_offsite_1"}, "model": "openai/gpt-4o"}
        first, second = c.request(upd), c.request(upd)
        unknown = c.request({**upd, "request_id": "up-nope"})
        via_answer = c.ingest(
            tenant="acme", user_id="nick", text="Tell me more about the cooking class.",
            request_id="up-2", ts=at(41),
            history=[{"role": "user", "content": "(reformatted by the client)"},
                     {"role": "assistant", "content": "Hiking,  cooking class, escape room."}])
        via_id = c.ingest(tenant="acme", user_id="nick", text="Which is cheapest?",
                          request_id="up-3", ts=at(42), previous_response_id="resp_offsite_1")
        # pipelined: an async ingest and its update on one connection, in that order
        replies = list(c.stream([
            {"v": 1, "op": "ingest", "mode": "async", "tenant": "acme", "user_id": "nick",
             "request_id": "up-4", "text": "Book the escape room for Friday.", "ts": at(43)},
            {"v": 1, "op": "update", "tenant": "acme", "request_id": "up-4",
             "response": {"output_tokens": 7, "status": "error"}}]))
    assert p1["ok"] and first == second == {"request_id": "up-1", "ok": True, "updated": True}
    assert unknown["error"]["code"] == "not_found"
    assert via_answer["parent_request_id"] == "up-1" and via_answer["link_source"] == "history"
    assert via_id["parent_request_id"] == "up-1"
    assert via_id["link_source"] == "previous_response_id"
    assert [r["ok"] for r in replies] == [True, True]
    shown = json.loads(run_cli("threads", "show", p1["conversation_id"], "--json",
                               *server.args).stdout)
    rec = {r["request_id"]: r for r in shown["records"]}
    assert (rec["up-1"]["input_tokens"], rec["up-1"]["output_tokens"]) == (12, 90)
    assert rec["up-1"]["status"] == "ok" and rec["up-1"]["latency_ms"] == 812.5
    assert shown["input_tokens"] == 12  # two identical updates counted once


CANARY = "Quasimodo-Zephyrine-4471"


def test_a_canary_in_history_never_reaches_disk_logs_or_replies(
        tmp_path: Path, passphrase_file: Path) -> None:
    from appliance.keys import read_passphrase_file
    from appliance.runtime import open_runtime

    srv = Server(tmp_path, passphrase_file).start()
    secret_turns = [("system", f"The operator's code word is {CANARY}."),
                    ("user", f"My colleague {CANARY} asked about the budget."),
                    ("assistant", f"I noted {CANARY} for the budget review."),
                    ("tool", json.dumps({"owner": CANARY}))]
    replies = []
    with Client(srv.sock) as c:
        replies.append(c.ingest(tenant="acme", user_id="olga", request_id="can-1", ts=at(50),
                                text="Summarise the budget review plan.",
                                history=_as_history(secret_turns, digests=False),
                                response={"text": f"Plan for {CANARY}", "status": "ok"}))
        replies.append(c.request({"v": 1, "op": "update", "tenant": "acme",
                                  "request_id": "can-1", "response": {"text": CANARY}}))
        for bad in ([{"role": "user", "content": CANARY, "name": CANARY}],
                    [{"role": CANARY, "content": CANARY}], [{"role": "user", "content": [CANARY]}],
                    [{"role": "user", "sha256": CANARY}], CANARY):
            replies.append(c.ingest(tenant="acme", user_id="olga", request_id="can-bad",
                                    ts=at(51), text="Next step?", history=bad))
    assert replies[0]["ok"] and replies[1]["ok"]
    assert [r["error"]["code"] for r in replies[2:]] == ["bad_request"] * 5
    assert srv.stop() == 0
    assert CANARY.lower() not in json.dumps(replies).lower()
    assert CANARY.lower() not in srv.log.read_text().lower()
    assert scan_for(tmp_path, [CANARY]) == []  # data dir (db, WAL, keys), logs, policies
    rt = open_runtime(srv.data, read_passphrase_file(passphrase_file))
    try:
        db = rt.store.db
        tables = [t for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        dump = "\n".join(repr(row) for t in tables for row in db.execute(f'SELECT * FROM "{t}"'))
        texts = [r.text or "" for r in rt.store.records("1=1", ())]
        digests = [d for (d,) in rt.store.db.execute("SELECT digest FROM turn_digests")]
    finally:
        rt.close()
    assert CANARY.lower() not in (dump + "\n".join(texts)).lower()
    # only keyed digests are kept: not even the plain SHA-256 of a history message
    plain = {content_digest(t) for _, t in secret_turns}
    # the prompt's and both answers' (the update's answer is added, m015)
    assert len(digests) == 3 and not plain & set(digests)
    assert not any(p in dump for p in plain)


def test_history_within_one_batch_and_shredding_removes_the_digests(pipeline) -> None:  # type: ignore[no-untyped-def]
    from dataclasses import replace

    from conftest import make_prompt

    from appliance.records import Message

    def hist(*texts: str) -> tuple[Message, ...]:
        return tuple(Message(role=("user", "assistant")[i % 2], digest=content_digest(t))
                     for i, t in enumerate(texts))

    a = make_prompt("Which vaccines do I need for Kenya?", user="pia", minutes=0)
    b = replace(make_prompt("Recommend a thriller novel.", user="pia", minutes=1), history=())
    c = replace(make_prompt("And for Tanzania?", user="pia", minutes=2),
                history=hist(a.text, "Yellow fever, typhoid."))
    out = pipeline.process([a, b, c])  # one batch: c's parent is not committed yet
    assert out[2].parent_id == out[0].record_id and out[2].link_source == "history"
    assert out[1].thread_id != out[0].thread_id
    db = pipeline.store.db
    assert db.execute("SELECT count(*) FROM turn_digests").fetchone()[0] == 3
    user = pipeline.keys.pseudonym("acme", "pia")
    pipeline.store.shred("acme", user, a.ts.strftime("%Y-%m-%d"))
    assert db.execute("SELECT count(*) FROM turn_digests").fetchone()[0] == 0


def test_the_turn_digests_migration_runs_on_a_store_of_the_previous_schema(
        tmp_path: Path) -> None:
    from appliance import migrations
    from appliance.keys import Keyring
    from appliance.store import connect

    db = connect(tmp_path / "old.db", Keyring.random())
    names = [m.__name__ for m in migrations.MIGRATIONS]
    migrations.migrate(db, migrations.MIGRATIONS[:names.index("m005_turn_digests")])
    with db:
        db.execute("INSERT INTO buckets (id, tenant, user, day, created_at) "
                   "VALUES (1, 't', 'u', '2026-01-01', 0)")
        db.execute("INSERT INTO records (id, tenant, request_id, user, bucket_id, ts, thread_id, "
                   "position, model_id) VALUES (7, 't', 'r', 'u', 1, 0, 'th', 'new', 'm')")
    assert "m005_turn_digests" in migrations.migrate(db)
    with db:
        db.execute("INSERT INTO turn_digests VALUES (7, 'prompt', 't', 'u', 'd')")
        db.execute("DELETE FROM records WHERE id = 7")
    assert db.execute("SELECT count(*) FROM turn_digests").fetchone()[0] == 0
    db.close()


def test_a_store_of_the_previous_schema_keeps_its_turn_digests_and_then_keeps_every_one(
        tmp_path: Path) -> None:
    """m015: a turn held one digest per kind, so its tool loop's response ids replaced each
    other; an upgraded store keeps what it held, then every response id of a turn."""
    from appliance import migrations
    from appliance.keys import Keyring
    from appliance.store import connect

    db = connect(tmp_path / "old.db", Keyring.random())
    names = [m.__name__ for m in migrations.MIGRATIONS]
    migrations.migrate(db, migrations.MIGRATIONS[:names.index("m015_turn_digests_per_value")])
    with db:
        db.execute("INSERT INTO buckets (id, tenant, user, day, created_at) "
                   "VALUES (1, 't', 'u', '2026-01-01', 0)")
        db.execute("INSERT INTO records (id, tenant, request_id, user, bucket_id, ts, thread_id, "
                   "position, model_id) VALUES (7, 't', 'r', 'u', 1, 0, 'th', 'new', 'm')")
        db.execute("INSERT INTO turn_digests VALUES (7, 'prompt', 't', 'u', 'p1')")
        db.execute("INSERT INTO turn_digests VALUES (7, 'response_id', 't', 'u', 'resp1')")
    assert migrations.migrate(db) == ["m015_turn_digests_per_value"]
    with db:  # the loop's next response id is added, not put in the first one's place
        db.execute("INSERT OR REPLACE INTO turn_digests VALUES (7, 'response_id', 't', 'u', "
                   "'resp2')")
    kept = db.execute("SELECT kind, digest FROM turn_digests WHERE tenant='t' AND user='u' "
                      "ORDER BY digest").fetchall()
    assert kept == [("prompt", "p1"), ("response_id", "resp1"), ("response_id", "resp2")]
    plan = " ".join(str(r) for r in db.execute(
        "EXPLAIN QUERY PLAN SELECT record_id FROM turn_digests "
        "WHERE tenant='t' AND user='u' AND digest='resp1'"))
    assert "turn_digests_lookup" in plan  # the lookup by digest still has its index
    with db:
        db.execute("DELETE FROM records WHERE id = 7")
    assert db.execute("SELECT count(*) FROM turn_digests").fetchone()[0] == 0
    db.close()
