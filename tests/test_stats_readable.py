"""`semtrace stats` as a product person reads it: turns per thread named so, and a noisy
total too wide to read shown as its interval."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from test_stats import WINDOW, fill, stats_rows

from appliance.privacy import CI95, Figure


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

