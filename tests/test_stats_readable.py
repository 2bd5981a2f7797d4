"""`semtrace stats` as a product person reads it: turns per thread named so, a noisy total
too wide to read shown as its interval, and a window with no thread answered without
spending the day's privacy budget (to a role that may list the threads anyway)."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import serving
from test_stats import WINDOW, fill, stats_rows

from appliance.config import RoleSettings
from appliance.privacy import CI95, Figure

EMPTY = ["--from", "2020-01-01", "--to", "2020-01-08"]  # before anything `filled` holds


@pytest.fixture
def filled(runtime: Any, embedder: Any, redactor: Any) -> Any:
    """Six users' weather and password threads through the real pipeline (test_stats)."""
    return fill(runtime, embedder, redactor)


def noisy(value: float, half_width: float) -> Figure:
    """A released figure whose 95% interval is value ± half_width."""
    return Figure(value, half_width / CI95, exact=False)


def run(cli_runner: Any, data_dir: Path, passphrase_file: Path, *args: str) -> Any:
    from appliance.cli import cli

    result = cli_runner.invoke(cli, ["stats", *args, "--data-dir", str(data_dir),
                                     "--passphrase-file", str(passphrase_file),
                                     "--tenant", "acme"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output) if "--json" in args else result.output


def test_totals_too_noisy_to_read_show_their_interval_and_turns_say_per_thread(
        filled: Any, cli_runner: Any, data_dir: Path, passphrase_file: Path) -> None:
    """Today's models release of the real store, as the gate stored it (the figures set,
    so that nothing rests on the noise): `people 49±48` was read as "49 people", `tokens
    3000±2900` and `cost 12.0000±11.9000 USD` as facts, `turns 3.0±0.5` as the model's
    total turns. --json keeps every number and its 95% half-width, under the same keys."""
    from appliance import analytics
    from appliance.privacy import GroupFigures, Release
    from appliance.releases import ReleaseCache

    rt, now = filled, datetime.now(UTC)
    start, end = datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 5, tzinfo=UTC)  # WINDOW
    key = analytics.group_key("models", start, end,
                              cost_bound=rt.policies.pricing.thread_cost_bound)
    threads = noisy(80.0, 37.0)  # readable: its interval is under half its value
    sums = {"turns": noisy(240.0, 40.0), "refinement": noisy(40.0, 10.0),
            "abandoned": noisy(8.0, 3.0), "blocked": noisy(4.0, 2.0), "errors": noisy(4.0, 2.0),
            "tokens": noisy(3000.0, 2900.0), "cost": noisy(12.0, 11.9),
            "costed": noisy(80.0, 10.0)}
    ReleaseCache(rt.store.db).put("acme", key, f"{now:%Y-%m-%d}", Release(groups=(
        GroupFigures("model-a", threads, sums, noisy(49.0, 48.0)),), exact=False, epsilon=1.0,
        k_min_users=5, released_at=now.timestamp()))

    text = run(cli_runner, data_dir, passphrase_file, "models", *WINDOW)
    row = " ".join(next(r for r in stats_rows(text) if "model-a" in r).split())
    assert "threads 80±37" in row and "people ~1–97" in row, row
    assert "tokens ~100–5900" in row and "cost ~0.1000–23.9000 USD" in row, row
    assert "49±48" not in row and "3000±2900" not in row and "12.0000±" not in row, row
    assert "turns/thread 3.0±" in row and " turns 3.0" not in row, row
    flat = " ".join(text.split())
    assert "~L–H a count or total too noisy to read as one number (its interval is ± half " \
           "its value or more)" in flat, flat

    out = run(cli_runner, data_dir, passphrase_file, "models", *WINDOW, "--json")
    got = out["rows"][0]
    assert out["cached"] is True and out["epsilon"] == 0  # read, nothing spent
    assert got["users"]["value"] == 49.0 and got["users"]["ci95"] == pytest.approx(48.0)
    assert got["tokens"]["value"] == 3000.0 and got["tokens"]["ci95"] == pytest.approx(2900)
    assert got["mean_turns"]["value"] == pytest.approx(3.0)  # the key JSON readers know


def test_a_stats_query_of_an_empty_window_says_so_and_spends_nothing(
        filled: Any, cli_runner: Any, data_dir: Path, passphrase_file: Path,
        redactor: Any, embedder: Any) -> None:
    """`stats topics --from 2020-01-01 --to 2020-01-08` on a tenant active only in 2026
    spent the topics epsilon (2 of the day's 4) on a release of nothing and printed
    "epsilon 2 spent ... there may be none, or too few people to show". The analyst may
    list those threads (`threads list --since --until`): that none exist is no news to
    them, so each kind says so, makes no release and leaves the budget as it was."""
    rt = filled
    day = rt.store.db.execute("SELECT count(*), coalesce(sum(spent), 0) FROM privacy_budget")
    assert day.fetchone() == (0, 0)
    for kind in ("topics", "models", "cost", "positions", "blocks", "incident"):
        text = run(cli_runner, data_dir, passphrase_file, kind, *EMPTY)
        flat = " ".join(text.split())
        where = "in this window or in its baseline" if kind == "incident" else "in this window"
        assert f"nothing to show: tenant acme has no threads {where}, so no release was " \
               "made and nothing was spent (4 left today)" in flat, flat
        assert "epsilon" not in flat and "spent now" not in flat, flat
        out = run(cli_runner, data_dir, passphrase_file, kind, *EMPTY, "--json")
        assert out["empty"] is True and out["rows"] == [] and out["epsilon"] == 0
        assert out["budget_remaining"] == 4.0 and out["cached"] is False
    assert rt.store.db.execute("SELECT count(*) FROM privacy_budget").fetchone() == (0,)
    assert rt.store.db.execute("SELECT count(*) FROM dp_releases").fetchone() == (0,)

    # a window that holds threads still makes its release and spends, as before
    spent = run(cli_runner, data_dir, passphrase_file, "topics", *WINDOW, "--json")
    assert spent["empty"] is False and spent["epsilon"] == 2.0
    assert spent["budget_remaining"] == 2.0

    # over the service's query socket: the same for a role that may list acme's threads;
    # a role of figures only is not told (that would say exactly that nobody was active)
    from appliance.index import VectorIndex
    from appliance.link import make_linker
    from appliance.pipeline import Pipeline

    pipe = Pipeline(store=rt.store, index=VectorIndex(embedder.dims), keyring=rt.keyring,
                    redactor=redactor, embedder=embedder,
                    linker=make_linker(rt.policies.correlation), policies=rt.policies)
    roles = {"reader-acme": RoleSettings(permissions=["threads:read", "aggregates"],
                                         uids=[os.getuid()], tenants=["acme"]),
             "figures-acme": RoleSettings(permissions=["aggregates"], uids=[os.getuid()],
                                          tenants=["acme"])}
    sockets = data_dir.parent / "sockets"
    sockets.mkdir()
    with serving(pipe, roles, sockets) as sock:
        over = ["--socket", str(sock), "--role"]
        told = run(cli_runner, data_dir, passphrase_file, "models", *EMPTY, "--json",
                   *over, "reader-acme")
        assert told["empty"] is True and told["epsilon"] == 0
        assert told["budget_remaining"] == 2.0
        said = run(cli_runner, data_dir, passphrase_file, "models", *EMPTY, *over,
                   "reader-acme")
        assert "nothing to show: tenant acme has no threads in this window" in " ".join(
            said.split())
        released = run(cli_runner, data_dir, passphrase_file, "models", *EMPTY, "--json",
                       *over, "figures-acme")
        assert released["empty"] is False and released["epsilon"] == 1.0
        assert released["budget_remaining"] == 1.0
