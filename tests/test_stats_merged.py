"""`semtrace stats` after a refinement merged a topic into another during the day: today's
cached release still counts them under their ids of the morning; every view lists the
topic as it is now, once (the set-up of the TUI's topics screen test, test_tui.py)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import serving
from test_stats import stats_rows
from test_tui import CLOCK, build_fixed_store

from appliance import analytics
from appliance.config import RoleSettings
from appliance.keys import read_key_file
from appliance.releases import ReleaseCache
from appliance.runtime import open_runtime

LABEL = "trip museums spring"  # tp_travel's; tp_accounts reads it too once merged into it


@pytest.fixture(scope="module")
def fixed_store(tmp_path_factory: pytest.TempPathFactory, embedder: Any) -> Path:
    return build_fixed_store(tmp_path_factory.mktemp("fixed"), embedder)


@pytest.fixture
def store_today(fixed_store: Path, tmp_path: Path) -> Iterator[Any]:
    """A copy of the fixed store whose topic release (tp_travel 63 threads, tp_accounts 41,
    tp_sql 22) is today's, for the default window `stats topics` reads; opened."""
    copy = tmp_path / "fixed"
    shutil.copytree(fixed_store, copy)
    rt = open_runtime(copy / "data", read_key_file(copy / "key"))
    bound = rt.policies.pricing.thread_cost_bound
    cache = ReleaseCache(rt.store.db)
    start, end = analytics.default_window(CLOCK)
    rel = cache.get("acme", analytics.group_key("topics", start, end, cost_bound=bound),
                    f"{CLOCK:%Y-%m-%d}")
    assert rel is not None
    now = datetime.now(UTC)
    start, end = analytics.default_window(now)
    cache.put("acme", analytics.group_key("topics", start, end, cost_bound=bound),
              f"{now:%Y-%m-%d}", rel)
    try:
        yield rt
    finally:
        rt.close()


def merge(rt: Any) -> None:
    """The refinement of the afternoon: tp_accounts joins tp_travel."""
    with rt.store.db:
        rt.store.db.execute("UPDATE topics SET merged_into = 'tp_travel', label = NULL "
                            "WHERE topic_id = 'tp_accounts'")


def cli(*args: str) -> str:
    from appliance.cli import cli as group

    result = CliRunner().invoke(group, ["stats", *args, "--tenant", "acme"])
    assert result.exit_code == 0, result.output
    return result.output


def direct(rt: Any) -> list[str]:
    return ["--data-dir", str(rt.data_dir), "--key-file", str(rt.data_dir.parent / "key")]


def rows(out: str) -> dict[str, dict[str, Any]]:
    return {r["key"]: r for r in json.loads(out)["rows"]}


def test_a_topic_merged_since_todays_release_is_one_row_of_stats_topics_summing_its_parts(
        store_today: Any, redactor: Any, embedder: Any) -> None:
    """Before, `stats topics` listed 'trip museums spring' twice (63 threads under
    tp_travel, 41 under tp_accounts) for what is now one topic; now one row, as the TUI's
    topics screen: threads and every per-thread sum add, people the larger part, marked."""
    from appliance.index import VectorIndex
    from appliance.link import make_linker
    from appliance.pipeline import Pipeline

    rt = store_today
    before = rows(cli("topics", *direct(rt), "--json"))
    parts = [before["tp_travel"], before["tp_accounts"]]
    merge(rt)
    after = rows(cli("topics", *direct(rt), "--json"))
    assert "tp_accounts" not in after, after  # one row for the topic
    row = after["tp_travel"]
    assert row["label"] == LABEL and row["merged"] == ["tp_accounts"]
    threads = sum(p["threads"]["value"] for p in parts)
    assert row["threads"]["value"] == pytest.approx(threads)
    turns = sum(p["threads"]["value"] * p["mean_turns"]["value"] for p in parts) / threads
    assert row["mean_turns"]["value"] == pytest.approx(turns, rel=0.01)  # of all its threads
    refined = sum(p["threads"]["value"] * p["refinement_share"]["value"] for p in parts)
    assert row["refinement_share"]["value"] == pytest.approx(refined / threads, abs=0.01)
    people = max(p["users"]["value"] for p in parts)  # one person may be in both: a floor
    assert row["users"]["value"] == people
    assert after["tp_sql"] == {**before["tp_sql"], "trend": after["tp_sql"]["trend"]}

    text = cli("topics", *direct(rt))
    lines = [line for line in stats_rows(text) if LABEL in line]
    assert len(lines) == 1, text
    assert f"threads {threads:.0f}±" in lines[0] and f"people ≥{people:.0f}±" in lines[0]
    assert "with tp_accounts merged since" in lines[0]

    # the same over the service's query socket (a reader without the key)
    pipe = Pipeline(store=rt.store, index=VectorIndex(embedder.dims), keyring=rt.keyring,
                    redactor=redactor, embedder=embedder,
                    linker=make_linker(rt.policies.correlation), policies=rt.policies)
    role = {"analyst-acme": RoleSettings(permissions=["threads:read", "search", "aggregates"],
                                         uids=[os.getuid()], tenants=["acme"])}
    sockets = rt.data_dir.parent / "sockets"
    sockets.mkdir()
    with serving(pipe, role, sockets) as sock:
        over = ["--socket", str(sock), "--role", "analyst-acme"]
        assert rows(cli("topics", *over, "--json")) == after
        text = cli("topics", *over)
    lines = [line for line in stats_rows(text) if LABEL in line]
    assert len(lines) == 1 and f"people ≥{people:.0f}±" in lines[0], text


def _put_today(rt: Any, key: str, groups: dict[str, dict[str, float]]) -> None:
    """Today's release under `key`: per group its thread (or prompt) count and sums."""
    from appliance.privacy import Figure, GroupFigures, Release

    now = datetime.now(UTC)
    ReleaseCache(rt.store.db).put("acme", key, f"{now:%Y-%m-%d}", Release(
        groups=tuple(GroupFigures(g, Figure(f.pop("n"), 0.9, exact=False),
                                  {k: Figure(v, 1.0, exact=False) for k, v in f.items()},
                                  Figure(8.0, 2.5, exact=False))
                     for g, f in groups.items()),
        exact=False, epsilon=0.5, k_min_users=5, released_at=now.timestamp()))


def test_stats_blocks_and_incident_list_a_topic_merged_since_their_release_once(
        store_today: Any) -> None:
    """`stats blocks` and `stats incident` read today's releases too: after the merge they
    listed 'trip museums spring' twice (under tp_travel and tp_accounts); now one row whose
    counts are the sum of the two."""
    rt = store_today
    end = analytics.default_window(datetime.now(UTC))[1]
    start = end - timedelta(days=analytics.DEFAULT_DAYS)
    b_start, b_end = start - (end - start), start  # the default baseline
    _put_today(rt, analytics.release_key("blocks", start, end), {
        "tp_travel": {"n": 9, "before": 18, "first_turn": 3, "retried": 6, "repeated": 1},
        "tp_accounts": {"n": 6, "before": 6, "first_turn": 3, "retried": 0, "repeated": 2}})
    _put_today(rt, analytics.release_key("incident", start, end, b_start.isoformat(),
                                         b_end.isoformat()), {
        "w|topic|tp_travel": {"n": 30}, "w|topic|tp_accounts": {"n": 20},
        "b|topic|tp_travel": {"n": 10}, "b|topic|tp_accounts": {"n": 5},
        "w|topic|tp_sql": {"n": 8}, "b|topic|tp_sql": {"n": 8}})
    merge(rt)

    blocks = rows(cli("blocks", *direct(rt), "--json"))
    assert set(blocks) == {"tp_travel"}, blocks
    row = blocks["tp_travel"]
    assert row["label"] == LABEL and row["threads"]["value"] == 15
    assert row["mean_turns_before"]["value"] == pytest.approx(24 / 15, abs=0.01)
    assert row["first_turn_share"]["value"] == pytest.approx(6 / 15, abs=0.01)
    text = cli("blocks", *direct(rt))
    assert len([line for line in stats_rows(text) if LABEL in line]) == 1, text

    lifts = json.loads(cli("incident", *direct(rt), "--json"))["rows"]
    topics = {r["key"]: r for r in lifts if r["dimension"] == "topic"}
    assert set(topics) == {"tp_travel", "tp_sql"}, topics
    lift = topics["tp_travel"]
    assert lift["window"]["value"] == 50 and lift["baseline"]["value"] == 15
    assert lift["window_share"] == pytest.approx(50 / 58, abs=0.001)
    text = cli("incident", *direct(rt))
    assert len([line for line in stats_rows(text) if LABEL in line]) == 1, text
