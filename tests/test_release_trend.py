"""Each topic's 14-day trend is read from the stored daily releases: `stats topics --json`
and the topics screen show it, directly and over the query socket, and reading it spends
nothing. Releases are made by the service's own daily job (`daily.make_daily`) on several
past days (its injected clock), with days left out: those are gaps, not zeros."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import T0, make_prompt, serving
from test_query_reads import READ, cli
from test_stats import stats_rows
from test_tui import run, settle, table_keys

from appliance.config import RoleSettings

USERS = [f"traveller{i}" for i in range(6)]
RELEASED = (5, 4, 2, 0)  # days before today with a daily release; the others have none


def _prompts(today: datetime) -> list[Any]:
    """Six people: a weather thread five days ago, a password thread yesterday."""
    return shared_subjects(today, USERS, weather_days_back=5)


def shared_subjects(today: datetime, users: list[str], *, weather_days_back: int) -> list[Any]:
    """Each of `users`: a two-turn weather thread `weather_days_back` days ago, a two-turn
    password thread yesterday, each person's half an hour after the previous one's."""
    out = []
    for i, user in enumerate(users):
        for back, texts in ((weather_days_back, ("What's the weather forecast for tomorrow?",
                                                 "Will it rain in the afternoon too?")),
                            (1, ("How do I reset my account password?",
                                 "The reset link in the mail has expired, what now?"))):
            base = today - timedelta(days=back) + timedelta(hours=9, minutes=30 * i)
            for n, text in enumerate(texts):
                minutes = (base - T0).total_seconds() / 60 + n
                out.append(make_prompt(text, user=user, minutes=minutes,
                                       request_id=f"{user}-{back}-{n}"))
    return out


def _ledger(store: Any) -> list[tuple[Any, ...]]:
    return store.db.execute(
        "SELECT tenant, day, spent, queries FROM privacy_budget ORDER BY 1, 2").fetchall()


def _stored(store: Any, policies: Any, day: date) -> dict[str, float]:
    """The noisy thread count per topic in the stored release of `day` (if any)."""
    from appliance import analytics
    from appliance.releases import ReleaseCache

    start, end = analytics.default_window(datetime(day.year, day.month, day.day, tzinfo=UTC))
    key = analytics.group_key("topics", start, end,
                              cost_bound=policies.pricing.thread_cost_bound)
    rel = ReleaseCache(store.db).get("acme", key, day.isoformat())
    return {} if rel is None else {g.group: g.count.value for g in rel.groups}


@contextmanager
def analyst_socket(pipeline: Any, data_dir: Path, monkeypatch: Any) -> Iterator[Path]:
    """The real service on the pipeline; its query socket, with role analyst-acme for us,
    and no store credential in our environment (a reader's CLI has only the socket)."""
    with serving(pipeline, {"analyst-acme": RoleSettings(
            permissions=READ, uids=[os.getuid()], tenants=["acme"])}, data_dir) as qsock:
        for var in ("SEMTRACE_PASSPHRASE_FILE", "SEMTRACE_KEY_FILE", "CREDENTIALS_DIRECTORY"):
            monkeypatch.delenv(var, raising=False)
        yield qsock


def _trend_cells(app: Any) -> dict[str, str]:
    """Per topics-table row, the sparkline of the trend line shown when it is highlighted."""
    table = app.screen.query_one("#topics")
    out = {}
    for i, key in enumerate(table_keys(app, "#topics")):
        table.move_cursor(row=i)
        text = str(app.screen.query_one("#trend").render())
        out[key.split("\0")[1]] = text.split("│")[1]
    return out


def test_the_trend_is_read_from_stored_daily_releases_and_spends_nothing(
        pipeline: Any, runtime: Any, data_dir: Path, passphrase_file: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from appliance.daily import make_daily
    from appliance.tui.app import make_app, make_remote_app

    now = datetime.now(UTC)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    pipeline.process(_prompts(today))
    # the service's daily job, run on past days by its clock; six people per topic pass
    # the noisy k-suppression (k = 2) at this generous epsilon (people-count noise scale
    # 0.03 on a margin of 4: at epsilon 40 one day in 25 hid the topic, at 100 one run in 1.6
    # million)
    privacy = pipeline.policies.privacy.model_copy(
        update={"epsilon_per_release": 1000.0, "release_epsilon": {},
                "epsilon_per_day": 10000.0, "k_min_users": 2})
    policies = pipeline.policies.model_copy(update={"privacy": privacy})
    for back in RELEASED:
        when = now if back == 0 else today - timedelta(days=back) + timedelta(hours=12)
        made = make_daily(runtime.store, policies, now=when, kinds=("topics",))
        assert [o.outcome for o in made] == ["released"]
    spent = _ledger(runtime.store)
    assert len(spent) == len(RELEASED)

    days = [(today - timedelta(days=n)).date() for n in range(13, -1, -1)]
    stored = {d: _stored(runtime.store, policies, d) for d in days}
    assert {d for d in days if stored[d]} == {(today - timedelta(days=n)).date()
                                              for n in RELEASED}

    def check(out: dict[str, Any]) -> dict[str, list[Any]]:
        assert out["cached"] is True and out["epsilon"] == 0  # today's release, read
        trends = {}
        for row in out["rows"]:
            trend = row["trend"]
            assert [p["day"] for p in trend] == [d.isoformat() for d in days]
            for d, p in zip(days, trend, strict=True):
                assert p["released"] == bool(stored[d])
                if row["key"] in stored[d]:
                    assert p["threads"] == pytest.approx(stored[d][row["key"]], abs=0.05)
                    assert p["ci"] > 0
                else:  # no release that day (or not shown in it): never a zero
                    assert p["threads"] is None and p["ci"] is None
            assert trend[-1]["threads"] == pytest.approx(row["threads"]["value"], abs=0.05)
            trends[row["key"]] = [p["threads"] for p in trend]
        # the weather threads are in every release: one point per released day, gaps between
        assert any(sum(v is not None for v in t) == len(RELEASED) for t in trends.values())
        return trends

    direct = cli("stats", "topics", "--data-dir", str(data_dir), "--passphrase-file",
                 str(passphrase_file), "--tenant", "acme", "--json")
    assert direct.exit_code == 0, direct.output
    trends = check(json.loads(direct.output))
    assert _ledger(runtime.store) == spent

    async def screen(pilot: Any) -> None:
        await pilot.press("o")
        await settle(pilot)
        cells = _trend_cells(pilot.app)
        assert cells.keys() == trends.keys()
        for key, cell in cells.items():
            assert len(cell) == 14
            # a bar where the day's release shows the topic, `·` where it does not, blank
            # where that day has no release
            assert [c not in " ·" for c in cell] == [v is not None for v in trends[key]]
            assert [c != " " for c in cell] == [bool(stored[d]) for d in days]
        shown.update(cells)

    shown: dict[str, str] = {}
    run(make_app(runtime, role="analyst", clock=lambda: now, refresh_seconds=3600), screen)
    direct_cells = dict(shown)
    text = cli("stats", "topics", "--data-dir", str(data_dir), "--passphrase-file",
               str(passphrase_file), "--tenant", "acme")
    assert text.exit_code == 0, text.output
    for cell in direct_cells.values():  # the text output draws the same marks
        assert f"14 days │{cell}│" in text.output
    assert _ledger(runtime.store) == spent

    with analyst_socket(pipeline, data_dir, monkeypatch) as sock:
        remote = cli("stats", "topics", "--socket", str(sock), "--role", "analyst-acme",
                     "--tenant", "acme", "--json")
        assert remote.exit_code == 0, remote.output
        assert check(json.loads(remote.output)) == trends
        shown.clear()
        run(make_remote_app(sock, role="analyst-acme", clock=lambda: now,
                            refresh_seconds=3600), screen)
        assert shown == direct_cells
    assert _ledger(runtime.store) == spent



def test_an_idle_week_reads_as_released_with_nothing_shown_not_as_missing_days(
        pipeline: Any, runtime: Any, data_dir: Path, passphrase_file: Path) -> None:
    """The daily job ran on each of the last 14 days but one (the service was down);
    the tenant's first traffic is five days ago, so the eight days before that release
    an empty week. Those days read `released` and draw `·` in the trend, in JSON, text
    and on the topics screen; only the day without a job is blank. Before, the job
    skipped the idle tenant: eight blank days, indistinguishable from a service that
    was down, and a ledger that told the idle week apart."""
    from appliance.daily import make_daily
    from appliance.tui.app import make_app

    now = datetime.now(UTC)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    pipeline.process(_prompts(today))
    # people-count noise of scale 0.03: the weather topic's six people are shown in each of
    # its six releases (at epsilon 100, one run in a million hid it once)
    privacy = pipeline.policies.privacy.model_copy(
        update={"epsilon_per_release": 1000.0, "release_epsilon": {},
                "epsilon_per_day": 10000.0, "k_min_users": 2})
    policies = pipeline.policies.model_copy(update={"privacy": privacy})
    down = 10  # days back: the service was not running, no job that day
    ran = [back for back in range(13, -1, -1) if back != down]
    for back in ran:
        when = now if back == 0 else today - timedelta(days=back) + timedelta(hours=12)
        made = make_daily(runtime.store, policies, now=when, kinds=("topics",))
        assert [o.outcome for o in made] == ["released"], (back, made)
    # an idle day is charged as a busy one: the ledger does not tell them apart
    ledger = _ledger(runtime.store)
    assert len(ledger) == len(ran)
    assert len({spent for _, _, spent, _ in ledger}) == 1

    days = [(today - timedelta(days=n)).date() for n in range(13, -1, -1)]
    idle = {(today - timedelta(days=n)).date() for n in ran if n > 5}
    assert len(idle) == 7

    out = cli("stats", "topics", "--data-dir", str(data_dir), "--passphrase-file",
              str(passphrase_file), "--tenant", "acme", "--json")
    assert out.exit_code == 0, out.output
    rows = json.loads(out.output)["rows"]
    assert rows
    weather = max(rows, key=lambda r: sum(p["threads"] is not None for p in r["trend"]))
    marks = {}
    for d, point in zip(days, weather["trend"], strict=True):
        if d in idle:  # released, nobody in the window: no count, but not missing
            assert point["released"] is True and point["threads"] is None
        elif d == days[13 - down]:
            assert point["released"] is False and point["threads"] is None
        else:  # the weather threads of five days ago are in the windows since
            assert point["released"] is True and point["threads"] is not None
        marks[d] = point

    text = cli("stats", "topics", "--data-dir", str(data_dir), "--passphrase-file",
               str(passphrase_file), "--tenant", "acme")
    assert text.exit_code == 0, text.output
    line = next(x for x in stats_rows(text.output) if weather["key"] in x)
    cell = line.split("│")[1]
    assert [c == "·" for c in cell] == [d in idle for d in days]
    assert [c == " " for c in cell] == [d == days[13 - down] for d in days]
    assert ("· the topic not shown that day (its noisy count of people under 2: none, or "
            "withheld)") in " ".join(text.output.split())

    async def screen(pilot: Any) -> None:
        await pilot.press("o")
        await settle(pilot)
        assert _trend_cells(pilot.app)[weather["key"]] == cell

    run(make_app(runtime, role="analyst", clock=lambda: now, refresh_seconds=3600), screen)


def test_a_topics_trend_counts_the_topics_merged_into_it_since(runtime: Any) -> None:
    """Three days ago the release counted a subject as two topics (tp_a 10, tp_b 5); a
    refinement has merged tp_b into tp_a since. tp_a's point of that day is the 15 threads
    of both (the half-widths in quadrature), not 10; a row still under tp_b (a release made
    before the merge) reads the same trend. Before, each id kept only its own points."""
    from appliance import analytics
    from appliance.privacy import CI95, Figure, GroupFigures, Release
    from appliance.query import topic_aliases
    from appliance.releases import ReleaseCache
    from appliance.topics import tables
    from appliance.trend import topic_trends

    db = runtime.store.db
    bound = runtime.policies.pricing.thread_cost_bound
    today = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)

    def put(back: int, groups: dict[str, float]) -> None:
        day = today - timedelta(days=back)
        start, end = analytics.default_window(day)
        ReleaseCache(db, clock=day.timestamp).put(
            "acme", analytics.group_key("topics", start, end, cost_bound=bound),
            f"{day:%Y-%m-%d}", Release(groups=tuple(
                GroupFigures(g, Figure(n, 4.0 / CI95, exact=False)) for g, n in groups.items()),
                exact=False, epsilon=1.0, k_min_users=5, released_at=day.timestamp()))

    put(3, {"tp_a": 10, "tp_b": 5})
    put(0, {"tp_a": 21})
    rows = [tables.TopicRow(t, "", 1, 1, None, (), 0.0) for t in ("tp_a", "tp_b")]
    tables.publish(db, "acme", rows, {}, [])
    tables.publish(db, "acme", rows[:1], {"tp_b": "tp_a"}, [])
    trends = topic_trends(db, "acme", ["tp_a", "tp_b"], today.date(), cost_bound=bound,
                          aliases=topic_aliases(runtime.store))
    point = trends["tp_a"][-4]
    assert point.threads == 15 and point.ci == pytest.approx((2 * 4.0 ** 2) ** 0.5, abs=0.1)
    assert trends["tp_a"][-1].threads == 21
    assert trends["tp_b"] == trends["tp_a"]


def test_releases_are_kept_fourteen_days_or_aggregates_days_if_shorter(runtime: Any) -> None:
    from appliance.config import RetentionClass
    from appliance.privacy import PrivacyGate, Unit
    from appliance.releases import TREND_DAYS
    from appliance.retention import expire_releases

    db = runtime.store.db
    now = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    privacy = runtime.policies.privacy.model_copy(update={"k_min_users": 1})
    units = [Unit(f"u{i}", "tp_x") for i in range(3)]

    def days(tenant: str) -> list[str]:
        return [r[0] for r in db.execute(
            "SELECT day FROM dp_releases WHERE tenant=? ORDER BY day", (tenant,))]

    # a release a day, through the privacy gate on its own day's clock; beta stopped at -20
    for back in range(20, -1, -1):
        t = (now - timedelta(days=back)).timestamp()
        gate = PrivacyGate(db, privacy, clock=lambda t=t: t)
        gate.release("acme", units, key="topics|w")
        if back == 20:
            gate.release("beta", units, key="topics|w")
    want = [(now - timedelta(days=n)).date().isoformat() for n in range(TREND_DAYS - 1, -1, -1)]
    assert days("acme") == want  # writing a release dropped the older ones
    assert len(days("beta")) == 1

    settings = runtime.policies.retention
    assert expire_releases(runtime.store, settings, now) == 1
    assert days("acme") == want and days("beta") == []  # however idle the tenant

    short = settings.model_copy(update={"tenants": {"acme": RetentionClass(aggregates_days=3)}})
    expire_releases(runtime.store, short, now)
    assert days("acme") == want[-4:]  # released at noon on the last four days: within 3 days
