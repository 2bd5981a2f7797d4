"""`semtrace stats topics|models|cost|positions|blocks|incident`: conversation analytics.

Cross-user figures are differentially private (see privacy.py): the first time
a command runs on a UTC day for a window, it spends its kind's epsilon
(`release_epsilon`, else `epsilon_per_release`) of the tenant's daily budget on a
release that is cached for the day; running it again
reads that release, spends nothing and says how old it is. Groups whose noisy
count of people is under `k_min_users` are withheld (the true count never decides: one
person's group is still shown in 40 % of the shipped topics releases; the header says
so, `privacy.shown_odds`). The default window is the
7 UTC days ending tonight, so that every default query of a day shares one
release. With `--user` the view is that one user's own data: exact, free, and
read-only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import click

from appliance.cli import not_blank
from appliance.cli.stats.query import DEFAULT_DAYS, _when, stats_command
from appliance.cli.stats.text import (
    GROUP_KINDS,
    INDENT,
    KEY_WIDTH,
    LABEL_WIDTH,
    LIFT_LABEL_WIDTH,
    WIDTH,
    _line,
    _print,
)
from appliance.errors import InputError

__all__ = ["COMMANDS", "DEFAULT_DAYS", "GROUP_KINDS", "INDENT", "KEY_WIDTH", "LABEL_WIDTH",
           "LIFT_LABEL_WIDTH", "WIDTH", "_line", "_print", "stats", "stats_blocks", "stats_command",
           "stats_cost", "stats_incident", "stats_models", "stats_positions", "stats_topics"]


@click.group()
def stats() -> None:
    """Conversation analytics (differentially private across users)."""


@stats.command("topics")
@stats_command("topics")
def stats_topics(start: datetime, end: datetime) -> dict[str, Any]:
    """Per topic: threads, people, turns per thread, refined/abandoned/blocked shares,
    tokens, cost and a 14-day trend (a day's first run spends the topics epsilon)."""
    return {}


@stats.command("models")
@click.option("--topic", default=None,
              help="Compare models on this topic only (its id, its label, or one phrase "
                   "of its label).")
@stats_command("models")
def stats_models(start: datetime, end: datetime, topic: str | None) -> dict[str, Any]:
    """Per model: the same figures as `stats topics` (optionally on one topic)."""
    not_blank(topic=topic)
    return {"topic": topic and topic.strip()}  # an id pasted with the spaces around it


@stats.command("cost")
@stats_command("cost")
def stats_cost(start: datetime, end: datetime) -> dict[str, Any]:
    """Cost beside outcomes: per conversation length, refined or not, abandoned or not."""
    return {}


@stats.command("positions")
@click.option("--bucket", type=click.Choice(["day", "hour"]), default="day", show_default=True,
              help="Count the positions per day or per hour.")
@stats_command("positions")
def stats_positions(start: datetime, end: datetime, bucket: str) -> dict[str, Any]:
    """Conversation-position mix over time (new, continuation, topic shift, orphaned)."""
    return {"bucket": bucket}


@stats.command("blocks")
@stats_command("blocks")
def stats_blocks(start: datetime, end: datetime) -> dict[str, Any]:
    """Threads that led into guardrail blocks, per topic (thread ids in one-user views)."""
    return {}


@stats.command("incident")
@click.option("--baseline-from", default=None,
              help="Baseline start (default: the window of the same length before --from).")
@click.option("--baseline-to", default=None, help="Baseline end (default --from).")
@stats_command("incident")
def stats_incident(start: datetime, end: datetime, baseline_from: str | None,
                   baseline_to: str | None) -> dict[str, Any]:
    """Topics, positions and models over-represented in a window vs a baseline window."""
    b_end = _when(baseline_to, start, "baseline-to")
    b_start = _when(baseline_from, b_end - (end - start), "baseline-from")
    if b_start >= b_end:
        ends = ("--baseline-to" if baseline_to is not None else "the baseline's end "
                f"(--baseline-to, by default --from: {b_end:%Y-%m-%d %H:%M} UTC)")
        raise InputError(f"--baseline-from must be earlier than {ends}; nothing was spent.")
    return {"baseline": (b_start, b_end)}


COMMANDS = [stats]
