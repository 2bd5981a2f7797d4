"""Topics of fewer than `k_min_users` people are one row of `stats topics`, of the topics
screen, of `stats blocks` and of `stats incident`, `other topics (each under 5 people)`;
never a row each.

On an 80-person tenant `stats topics` listed 104 topics of one or two threads that the noise
on their count of people had let through, three of them above a topic of 28 people
(docs/topics.md). A release now counts the threads of every topic the refinement found
fewer than `k_min_users` people in as one group (`analytics.small_topics`), and a release
made before (one group each) has them summed into that row when it is read.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import T0, make_prompt
from test_query_reads import cli
from test_release_trend import analyst_socket, shared_subjects
from test_stats import stats_rows
from test_tui import run, settle, table_keys

OTHER = "(other topics)"
LABEL = "other topics (each under 5 people)"
SHARED = [f"traveller{i}" for i in range(6)]
# eight people, each asking about a subject nobody else does
LONE = ["How long should I boil an egg for a soft yolk?",
        "Translate 'good morning' into Portuguese.",
        "My bicycle chain keeps slipping on the big gear, how do I fix it?",
        "Which houseplants survive in a dark bathroom?",
        "Explain the offside rule in football.",
        "Write a haiku about a lighthouse.",
        "What is the capital of Mongolia?",
        "How do I remove a red wine stain from a carpet?"]


def _prompts(today: datetime) -> list[Any]:
    """Six people share a weather subject and a password subject; eight ask one-offs."""
    out = shared_subjects(today, SHARED, weather_days_back=3)
    for i, text in enumerate(LONE):
        base = today - timedelta(days=2) + timedelta(hours=8, minutes=40 * i)
        out.append(make_prompt(text, user=f"visitor{i}",
                               minutes=(base - T0).total_seconds() / 60,
                               request_id=f"visitor{i}"))
    return out


def _people(store: Any) -> dict[str, int]:
    """Each live topic's count of people as the refinement published it."""
    return dict(store.db.execute("SELECT topic_id, contributors FROM topics WHERE "
                                 "tenant='acme' AND merged_into IS NULL").fetchall())


def _screen_rows(runtime: Any, now: datetime, *, sock: Path | None = None
                 ) -> tuple[list[str], str]:
    """The topics screen's row keys, top to bottom, and the other-topics row's name (the
    app on the store, or over the query socket `sock`)."""
    from appliance.tui.app import make_app, make_remote_app

    seen: dict[str, Any] = {}

    async def scenario(pilot: Any) -> None:
        await pilot.press("o")
        await settle(pilot)
        keys = table_keys(pilot.app, "#topics")
        seen["keys"] = [k.split("\0")[1] for k in keys]
        table = pilot.app.screen.query_one("#topics")
        seen["name"] = (str(table.get_cell(f"acme\0{OTHER}", "topic"))
                        if f"acme\0{OTHER}" in keys else "")

    app = (make_app(runtime, role="analyst", clock=lambda: now, refresh_seconds=3600)
           if sock is None else
           make_remote_app(sock, role="analyst-acme", clock=lambda: now, refresh_seconds=3600))
    run(app, scenario)
    return seen["keys"], seen["name"]


def test_topics_of_fewer_than_five_people_are_one_other_topics_row_last(
        runtime: Any, embedder: Any, redactor: Any, data_dir: Path, passphrase_file: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The service's daily release (real pipeline, SQLCipher, OpenDP) of a tenant whose
    one-off questions are topics of one person each: `stats topics` (text and `--json`)
    and the topics screen list the two shared subjects and one `other topics` row, last,
    holding the one-offs' threads; no row of a topic of fewer than 5 people. Before, each
    one-off was a group of its own, withheld or shown by the noise alone, and nothing
    counted their threads together. Over the query socket, the same rows."""
    from appliance.daily import make_daily
    from appliance.index import VectorIndex
    from appliance.link import make_linker
    from appliance.pipeline import Pipeline
    from appliance.topics import TopicAssigner

    topics = TopicAssigner(runtime.store, runtime.policies.privacy)
    pipeline = Pipeline(store=runtime.store, index=VectorIndex(embedder.dims),
                        keyring=runtime.keyring, redactor=redactor, embedder=embedder,
                        linker=make_linker(runtime.policies.correlation),
                        policies=runtime.policies, topics=topics)
    now = datetime.now(UTC)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    pipeline.process(_prompts(today))
    topics.refine("acme")  # as the service's background refinement does
    people = _people(runtime.store)
    shared = {t for t, n in people.items() if n >= 5}
    assert len(shared) >= 1 and any(n < 5 for n in people.values()), people
    # a generous epsilon, so that which groups pass the k-suppression is not left to chance:
    # people-count noise of scale 0.03 (at 100, scale 0.3, the other-topics row of seven
    # people was withheld in one release in 12,000)
    privacy = pipeline.policies.privacy.model_copy(
        update={"epsilon_per_release": 1000.0, "release_epsilon": {},
                "epsilon_per_day": 10000.0})
    policies = pipeline.policies.model_copy(update={"privacy": privacy})
    assert [o.outcome for o in make_daily(runtime.store, policies, now=now,
                                          kinds=("topics",))] == ["released"]

    out = cli("stats", "topics", "--data-dir", str(data_dir), "--passphrase-file",
              str(passphrase_file), "--tenant", "acme", "--json")
    assert out.exit_code == 0, out.output
    rows = json.loads(out.output)["rows"]
    keys = [r["key"] for r in rows]
    assert keys[-1] == OTHER and set(keys[:-1]) <= shared, (keys, people)
    other = rows[-1]
    assert other["label"] == LABEL
    # the one-offs' threads (eight, unless the refinement put one in a shared subject)
    assert 5 <= other["threads"]["value"] <= 11 and other["users"]["value"] >= 5, other
    assert other["trend"][-1]["threads"] == pytest.approx(other["threads"]["value"], abs=0.05)

    text = cli("stats", "topics", "--data-dir", str(data_dir), "--passphrase-file",
               str(passphrase_file), "--tenant", "acme")
    assert text.exit_code == 0, text.output
    printed = [" ".join(r.split()) for r in stats_rows(text.output) if "threads " in r]
    assert printed[-1].startswith(f"{OTHER} {LABEL}"), text.output
    assert not any(t in text.output for t, n in people.items() if n < 5), text.output

    keys_shown, name = _screen_rows(runtime, now)
    assert keys_shown == keys and name == LABEL

    with analyst_socket(pipeline, data_dir, monkeypatch) as sock:
        remote = cli("stats", "topics", "--socket", str(sock), "--role", "analyst-acme",
                     "--tenant", "acme", "--json")
        assert remote.exit_code == 0, remote.output
        assert [(r["key"], r["label"]) for r in json.loads(remote.output)["rows"]] == [
            (r["key"], r["label"]) for r in rows]
        assert _screen_rows(runtime, now, sock=sock) == (keys, LABEL)


def test_a_lone_topic_drawn_high_is_not_ranked_above_a_topic_of_28_people(
        pipeline: Any, runtime: Any, data_dir: Path, passphrase_file: Path) -> None:
    """Today's release made one group per topic (as before this change): a topic of one
    person drawn at 64±37 threads and 9 people, above `flight weather`, 28 people at 40.
    `stats topics` and the topics screen listed it first, `tp_lone · unlabelled`; now its
    figures are the other-topics row's, last, and `flight weather` leads."""
    from appliance import analytics
    from appliance.privacy import Figure, GroupFigures, Release
    from appliance.releases import ReleaseCache
    from appliance.topics import tables

    now = datetime.now(UTC)
    pipeline.process([make_prompt("Is it going to be windy at the airport?",
                                  minutes=(now - T0).total_seconds() / 60 - 60)])
    tables.publish(runtime.store.db, "acme", [
        tables.TopicRow("tp_big", "", 60, 28, "flight weather", (), 0.0),
        tables.TopicRow("tp_lone", "", 2, 1, None, (), 0.0)], {}, [])
    start, end = analytics.default_window(now)
    key = analytics.group_key("topics", start, end,
                              cost_bound=runtime.policies.pricing.thread_cost_bound)
    scale = 37 / 3.0  # a 95% half-width of about 37 threads, as shipped
    ReleaseCache(runtime.store.db).put("acme", key, f"{now:%Y-%m-%d}", Release(groups=(
        GroupFigures("tp_big", Figure(40.0, scale, False), {}, Figure(28.0, 16.0, False)),
        GroupFigures("tp_lone", Figure(64.0, scale, False), {}, Figure(9.0, 16.0, False))),
        exact=False, epsilon=2.0, k_min_users=5, released_at=now.timestamp()))

    out = cli("stats", "topics", "--data-dir", str(data_dir), "--passphrase-file",
              str(passphrase_file), "--tenant", "acme", "--json")
    assert out.exit_code == 0, out.output
    rows = json.loads(out.output)["rows"]
    assert [(r["key"], r["label"]) for r in rows] == [("tp_big", "flight weather"),
                                                      (OTHER, LABEL)]
    assert rows[1]["threads"]["value"] == 64.0
    text = cli("stats", "topics", "--data-dir", str(data_dir), "--passphrase-file",
               str(passphrase_file), "--tenant", "acme")
    assert "tp_lone" not in text.output and "unlabelled" not in text.output, text.output
    assert _screen_rows(runtime, now) == (["tp_big", OTHER], LABEL)


def _lone_and_shared(store: Any) -> None:
    """The refinement's count of people: `tp_big` 28 (`flight weather`), `tp_lone` 1."""
    from appliance.topics import tables

    tables.publish(store.db, "acme", [
        tables.TopicRow("tp_big", "", 60, 28, "flight weather", (), 0.0),
        tables.TopicRow("tp_lone", "", 2, 1, None, (), 0.0)], {}, [])


def test_blocks_and_incident_releases_count_the_small_topics_as_one_group(
        runtime: Any) -> None:
    """A blocks and an incident release (real gate, OpenDP) of six people blocked on a
    shared topic and eight on one-offs of their own: the one-offs are one group, `other
    topics`, of eight threads (prompts), and no row of a topic of one person. Before,
    each one-off was a group of its own, withheld or shown by the noise alone."""
    import numpy as np
    from test_stats import turn

    from appliance import analytics
    from appliance.privacy import PrivacyGate, PrivacySettings

    end = T0 + timedelta(days=1)
    # OpenDP's noise has no seed (the rng only samples contributions): an epsilon at which
    # it is a fraction of a thread and person. At 200, a count was off by a thread (8 read
    # 7 or 9) in one run in 1,200, and tp_big's 6 people fell under 5 in one in 270,000.
    gate = PrivacyGate(runtime.store.db, PrivacySettings(
        k_min_users=5, epsilon_per_day=10000,
        release_epsilon={"blocks": 2000, "incident": 2000}), rng=np.random.default_rng(5))
    shared = frozenset({"tp_big"})
    big = [analytics.ThreadRow(f"b{i}", f"u{i}", (turn(i, topic_id="tp_big"),
                                                 turn(i + 1, topic_id="tp_big",
                                                      status="blocked")))
           for i in range(6)]
    lone = [analytics.ThreadRow(f"l{i}", f"v{i}", (turn(100 + i, topic_id=f"tp_lone{i}",
                                                       status="blocked"),))
            for i in range(8)]

    blocks = analytics.block_stats(big + lone, gate, tenant="acme", start=T0, end=end,
                                   labels={"tp_big": "flight weather"}, shared=shared)
    assert [(r.key, r.label) for r in blocks.rows] == [("tp_big", "flight weather"),
                                                      (OTHER, LABEL)]
    assert blocks.rows[1].threads.value == pytest.approx(8, abs=0.5)

    lifts = analytics.incident_lifts(lone + big[:3], big[3:], gate, tenant="acme",
                                     start=T0, end=end, labels={}, shared=shared)
    topics = {r.key: r for r in lifts.rows if r.dimension == "topic"}
    assert set(topics) == {OTHER}, topics  # tp_big: 3 people each side, withheld
    assert topics[OTHER].label == LABEL
    assert topics[OTHER].window.value == pytest.approx(8, abs=0.5)


def test_blocks_and_incident_show_a_lone_topic_drawn_high_in_the_other_topics_row(
        pipeline: Any, runtime: Any, data_dir: Path, passphrase_file: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Today's blocks and incident releases made one group per topic (as before this
    change): a topic of one person drawn at 64 threads, above `flight weather` (28 people)
    at 40. `stats blocks` listed it first and `stats incident` as a topic of its own,
    `tp_lone · unlabelled`; now its figures are the other-topics row's (text, `--json`,
    and over the query socket), and the blocks row is last."""
    from appliance import analytics
    from appliance.privacy import Figure, GroupFigures, Release
    from appliance.releases import ReleaseCache

    now = datetime.now(UTC)
    pipeline.process([make_prompt("Is it going to be windy at the airport?",
                                  minutes=(now - T0).total_seconds() / 60 - 60)])
    _lone_and_shared(runtime.store)
    start, end = analytics.default_window(now)
    b_start, b_end = start - (end - start), start  # the default baseline
    scale = 37 / 3.0

    def group(name: str, n: float, people: float) -> GroupFigures:
        sums = ({} if "|" in name else {k: Figure(n / 2, 1.0, False) for k in
                                        ("before", "first_turn", "retried", "repeated")})
        return GroupFigures(name, Figure(n, scale, False), sums, Figure(people, 16.0, False))

    cache = ReleaseCache(runtime.store.db)
    for key, groups in (
            (analytics.release_key("blocks", start, end),
             (group("tp_big", 40, 28), group("tp_lone", 64, 9))),
            (analytics.release_key("incident", start, end, b_start.isoformat(),
                                   b_end.isoformat()),
             (group("w|topic|tp_big", 40, 28), group("b|topic|tp_big", 40, 28),
              group("w|topic|tp_lone", 64, 9), group("b|topic|tp_lone", 6, 7)))):
        cache.put("acme", key, f"{now:%Y-%m-%d}", Release(
            groups=groups, exact=False, epsilon=2.0, k_min_users=5,
            released_at=now.timestamp()))

    def stats(kind: str, *args: str) -> Any:
        out = cli("stats", kind, "--tenant", "acme", *args)
        assert out.exit_code == 0, out.output
        return out.output

    direct = ("--data-dir", str(data_dir), "--passphrase-file", str(passphrase_file))
    blocks = json.loads(stats("blocks", *direct, "--json"))["rows"]
    assert [(r["key"], r["label"]) for r in blocks] == [("tp_big", "flight weather"),
                                                        (OTHER, LABEL)]
    assert blocks[1]["threads"]["value"] == 64.0
    lifts = json.loads(stats("incident", *direct, "--json"))["rows"]
    topics = {r["key"]: r for r in lifts if r["dimension"] == "topic"}
    assert set(topics) == {"tp_big", OTHER}, topics
    assert topics[OTHER]["label"] == LABEL and topics[OTHER]["window"]["value"] == 64.0
    assert topics[OTHER]["baseline"]["value"] == 6.0
    for kind in ("blocks", "incident"):
        text = stats(kind, *direct)
        assert "tp_lone" not in text and "unlabelled" not in text, text
        assert any(LABEL in r for r in stats_rows(text)), text

    with analyst_socket(pipeline, data_dir, monkeypatch) as sock:
        remote = ("--socket", str(sock), "--role", "analyst-acme")
        assert json.loads(stats("blocks", *remote, "--json"))["rows"] == blocks
        assert [r for r in json.loads(stats("incident", *remote, "--json"))["rows"]
                if r["dimension"] == "topic"] == list(topics.values())
        assert "tp_lone" not in stats("blocks", *remote)


NOTE = "acme's topics are per user (cross_user_topics is off"


def test_blocks_and_incident_say_why_a_per_user_tenant_has_only_the_other_topics_row(
        runtime: Any, embedder: Any, redactor: Any, data_dir: Path, passphrase_file: Path,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A tenant whose topics are per user (cross_user_topics off): seven people each blocked
    on a password subject of their own topic (real pipeline, SQLCipher, OpenDP). `stats
    blocks` and `stats incident` count every topic in the other-topics row, and now say
    why, in the line `stats topics` prints (text) and `per_user_topics: true` (--json),
    directly and over the query socket. Before, both showed only that row with no reason
    (`per_user_topics: false`). One user's exact view (--user) has a row per topic: no note."""
    from test_stats import WINDOW, policies_with, session_linker

    from appliance.config import load_policies
    from appliance.index import VectorIndex
    from appliance.pipeline import Pipeline
    from appliance.records import Response
    from appliance.topics import TopicAssigner

    # a generous epsilon, so that the row of seven people is not withheld by chance
    policies_with(tmp_path, monkeypatch, epsilon_per_day=10000.0,
                  epsilon_per_release=1000.0, blocks=1000.0)
    toml = tmp_path / "policies" / "privacy.toml"
    toml.write_text(toml.read_text().replace("[cross_user_topics]\nacme = true",
                                             "[cross_user_topics]\nacme = false"))
    policies = load_policies(tmp_path / "policies")
    assert not policies.privacy.cross_user_topics.get("acme")
    topics = TopicAssigner(runtime.store, policies.privacy)
    pipeline = Pipeline(store=runtime.store, index=VectorIndex(embedder.dims),
                        keyring=runtime.keyring, redactor=redactor, embedder=embedder,
                        linker=session_linker, policies=policies, topics=topics)
    ok = Response(input_tokens=100, output_tokens=50, status="ok")
    blocked = Response(input_tokens=20, output_tokens=0, status="blocked")
    prompts = []
    for i in range(7):
        prompts += [
            make_prompt("How do I reset my account password?", user=f"user{i}",
                        minutes=60 * i, session_id=f"p{i}", response=ok),
            make_prompt("Show me how to bypass the password check", user=f"user{i}",
                        minutes=60 * i + 1, session_id=f"p{i}", response=blocked)]
    pipeline.process(prompts)
    topics.refine("acme")

    def stats(kind: str, *args: str) -> str:
        out = cli("stats", kind, "--tenant", "acme", *WINDOW, *args)
        assert out.exit_code == 0, out.output
        return out.output

    def topic_keys(kind: str, rows: list[dict[str, Any]]) -> list[str]:
        return [r["key"] for r in rows if kind == "blocks" or r["dimension"] == "topic"]

    direct = ("--data-dir", str(data_dir), "--passphrase-file", str(passphrase_file))
    seen = {}
    for kind in ("blocks", "incident"):
        data = json.loads(stats(kind, *direct, "--json"))
        assert data["per_user_topics"] is True, data
        seen[kind] = data["rows"]
        assert topic_keys(kind, data["rows"]) == [OTHER], data["rows"]
        text = stats(kind, *direct)
        assert NOTE in " ".join(text.split()), text
        assert any(LABEL in r for r in stats_rows(text)), text
    assert seen["blocks"][0]["threads"]["value"] == pytest.approx(7, abs=0.5)
    one = stats("blocks", *direct, "--user", "user0", "--role", "compliance")
    assert NOTE not in " ".join(one.split()) and OTHER not in one, one

    with analyst_socket(pipeline, data_dir, monkeypatch) as sock:
        remote = ("--socket", str(sock), "--role", "analyst-acme")
        for kind in ("blocks", "incident"):
            data = json.loads(stats(kind, *remote, "--json"))
            assert data["per_user_topics"] is True and data["rows"] == seen[kind], data
            assert NOTE in " ".join(stats(kind, *remote).split())
