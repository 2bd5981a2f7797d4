"""`semtrace stats topics|models|cost|positions|blocks|incident`: conversation analytics.

Cross-user figures are differentially private (see privacy.py): the first time
a command runs on a UTC day for a window, it spends `epsilon_per_release` of the
tenant's daily budget on a release that is cached for the day; running it again
reads that release, spends nothing and says how old it is. Groups whose noisy
count of people is under `k_min_users` are withheld. The default window is the
7 UTC days ending tonight, so that every default query of a day shares one
release. With `--user` the view is that one user's own data: exact, free, and
read-only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import wraps
from pathlib import Path
from typing import Any

import click

from appliance import analytics
from appliance.cli import credential_options, data_dir_option, emit_json, open_dir, role_option
from appliance.errors import SemtraceError
from appliance.ingest import parse_ts
from appliance.privacy import Figure, PrivacyGate
from appliance.roles import require
from appliance.runtime import Runtime

DEFAULT_DAYS = analytics.DEFAULT_DAYS


@dataclass(frozen=True)
class Scope:
    """What one stats command runs over."""

    rt: Runtime
    tenant: str
    user: str | None  # pseudonym of a single-user view
    start: datetime
    end: datetime
    gate: PrivacyGate

    def threads(self, start: datetime | None = None,
                end: datetime | None = None) -> list[analytics.ThreadRow]:
        return analytics.load_threads(self.rt.store, self.tenant, start or self.start,
                                      end or self.end, user=self.user)

    def labels(self) -> dict[str, str]:
        return analytics.topic_labels(self.rt.store, self.tenant)

    @property
    def cost_bound(self) -> float:
        return self.rt.policies.pricing.thread_cost_bound


def _when(value: str | None, default: datetime, name: str) -> datetime:
    if value is None:
        return default
    try:
        return parse_ts(value)
    except SemtraceError:
        raise SemtraceError(f"--{name} must be an ISO-8601 date or time, "
                            "e.g. 2024-03-04 or 2024-03-04T09:00:00Z.") from None


def _window(since: str | None, until: str | None) -> tuple[datetime, datetime]:
    end = _when(until, analytics.default_window(datetime.now(UTC))[1], "to")
    start = _when(since, end - timedelta(days=DEFAULT_DAYS), "from")
    if start >= end:
        raise SemtraceError("--from must be earlier than --to.")
    return start, end


def stats_command(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Common options; opens the store, checks the role and hands the command a Scope."""

    @wraps(fn)
    def run(data_dir: Path | None, passphrase_file: Path | None, key_file: Path | None,
            role: str | None, tenant: str, user: str | None, since: str | None,
            until: str | None, as_json: bool, **kw: Any) -> None:
        start, end = _window(since, until)
        rt = open_dir(data_dir, passphrase_file, key_file, readonly=user is not None)
        try:
            # one user's figures are exact and spend no budget: not an analyst's to ask for
            require(rt.policies.access, role, "user_stats" if user else "aggregates",
                     tenant=tenant)
            pseudo = rt.keyring.pseudonym(tenant, user) if user is not None else None
            scope = Scope(rt, tenant, pseudo, start, end,
                          PrivacyGate(rt.store.db, rt.policies.privacy))
            report = fn(scope, **kw)
            currency = rt.policies.pricing.currency
        finally:
            rt.close()
        if as_json:
            data = _with_ci(report)
            if report.released_at is not None:
                data["release_age_s"] = round(
                    (datetime.now(UTC) - report.released_at).total_seconds(), 1)
            emit_json({**data, "currency": currency})
        else:
            _print(report, currency)

    cmd: Callable[..., Any] = run
    for option in (
        click.option("--json", "as_json", is_flag=True, help="Print JSON."),
        click.option("--to", "until", default=None,
                     help="Window end (default the end of today, UTC)."),
        click.option("--from", "since", default=None,
                     help=f"Window start (default {DEFAULT_DAYS} days before --to)."),
        click.option("--user", default=None,
                     help="One user's own view (exact, costs no privacy budget)."),
        click.option("--tenant", required=True, help="The tenant (budgets are per tenant)."),
        role_option, credential_options, data_dir_option,
    ):
        cmd = option(cmd)
    return cmd


def _with_ci(obj: Any) -> Any:
    """JSON values, with each figure's 95 % half-width beside its noise scale."""
    from appliance.cli import to_jsonable

    data = to_jsonable(obj)

    def walk(x: Any) -> Any:
        if isinstance(x, dict):
            out = {k: walk(v) for k, v in x.items()}
            if set(out) == {"value", "noise_scale", "exact"}:
                out["value"] = round(out["value"], 4)
                out["ci95"] = round(Figure(**x).ci95, 4)
            return out
        if isinstance(x, list):
            return [walk(v) for v in x]
        return x

    return walk(data)


def _fmt(f: Figure, pct: bool = False) -> str:
    if pct:
        return f"{100 * f.value:.0f}%" + ("" if f.exact else f"±{100 * f.ci95:.0f}")
    return f"{f.value:.1f}" + ("" if f.exact else f"±{f.ci95:.0f}")


def _age(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _spent(report: analytics.Report[Any]) -> str:
    if report.released_at is None:
        return f"epsilon {report.epsilon:g} spent"
    age = _age((datetime.now(UTC) - report.released_at).total_seconds())
    if report.cached:
        return (f"today's release from {report.released_at:%H:%M} UTC ({age} old), "
                "nothing spent now")
    return f"new release, epsilon {report.epsilon:g} spent"


def _print(report: analytics.Report[Any], currency: str) -> None:
    how = ("exact (one user's own data)" if report.exact else
           f"differentially private: {_spent(report)}, "
           f"{report.budget_remaining:g} left today; groups under {report.k_min_users} users "
           "(noisy count) withheld; ± is a 95% interval; * marks a rise beyond the noise")
    click.echo(f"{report.kind} for {report.tenant}, {report.start:%Y-%m-%d %H:%M} to "
               f"{report.end:%Y-%m-%d %H:%M} UTC — {how}")
    for r in report.rows:
        click.echo("  " + _line(r, currency))
    if not report.rows:
        click.echo("  (nothing to show)")


def _money(f: Figure) -> str:
    return f"{f.value:.4f}" + ("" if f.exact else f"±{f.ci95:.4f}")


def _line(r: object, currency: str = "") -> str:
    if isinstance(r, analytics.GroupStats):
        people = f"  people {_fmt(r.users)}" if r.users is not None else ""
        return (f"{r.key:<16} {r.label or '':<36.36} threads {_fmt(r.threads)}{people}  turns "
                f"{_fmt(r.mean_turns)}  refine {_fmt(r.refinement_share, True)}  abandon "
                f"{_fmt(r.abandonment_share, True)}  errors {_fmt(r.error_share, True)}  blocked "
                f"{_fmt(r.blocked_share, True)}  tokens "
                f"{_fmt(r.tokens)}  cost {_money(r.cost)} {currency} (per thread "
                f"{_money(r.mean_cost)})")
    if isinstance(r, analytics.PositionShare):
        return f"{r.period}  {r.position:<14} {_fmt(r.prompts)}  {_fmt(r.share, True)}"
    if isinstance(r, analytics.BlockStats):
        ids = f"  {' '.join(r.thread_ids)}" if r.thread_ids else ""
        return (f"{r.key:<16} {r.label or '':<30.30} threads {_fmt(r.threads)}  turns before "
                f"{_fmt(r.mean_turns_before)}  first-turn {_fmt(r.first_turn_share, True)}  "
                f"retried {_fmt(r.retried_share, True)}  repeated "
                f"{_fmt(r.repeated_share, True)}{ids}")
    if isinstance(r, analytics.Lift):
        lift = ("new" if r.lift is None else f"x{r.lift:.2f}") + ("*" if r.significant else "")
        return (f"{r.dimension:<8} {r.key:<16} {r.label or '':<30.30} {lift:>8}  window "
                f"{_fmt(r.window)}  baseline {_fmt(r.baseline)}")
    return str(r)


@click.group()
def stats() -> None:
    """Conversation analytics (differentially private across users)."""


@stats.command("topics")
@stats_command
def stats_topics(scope: Scope) -> analytics.Report[Any]:
    """Per topic: threads, mean turns, refinement/abandonment/blocked shares, tokens."""
    return analytics.topic_stats(scope.threads(), scope.gate, tenant=scope.tenant,
                                 start=scope.start, end=scope.end, labels=scope.labels(),
                                 single_user=scope.user, cost_bound=scope.cost_bound)


@stats.command("models")
@click.option("--topic", default=None, help="Compare models on this topic only.")
@stats_command
def stats_models(scope: Scope, topic: str | None) -> analytics.Report[Any]:
    """Per model: the same figures as `stats topics` (optionally on one topic)."""
    return analytics.model_stats(scope.threads(), scope.gate, tenant=scope.tenant,
                                 start=scope.start, end=scope.end, labels={}, topic=topic,
                                 single_user=scope.user, cost_bound=scope.cost_bound)


@stats.command("cost")
@stats_command
def stats_cost(scope: Scope) -> analytics.Report[Any]:
    """Cost beside outcomes: per conversation length, refined or not, abandoned or not."""
    return analytics.cost_outcomes(scope.threads(), scope.gate, tenant=scope.tenant,
                                   start=scope.start, end=scope.end, single_user=scope.user,
                                   cost_bound=scope.cost_bound)


@stats.command("positions")
@click.option("--bucket", type=click.Choice(["day", "hour"]), default="day", show_default=True)
@stats_command
def stats_positions(scope: Scope, bucket: str) -> analytics.Report[Any]:
    """Conversation-position mix over time (new, continuation, topic shift, orphaned)."""
    return analytics.position_mix(scope.threads(), scope.gate, tenant=scope.tenant,
                                  start=scope.start, end=scope.end, bucket=bucket,
                                  single_user=scope.user)


@stats.command("blocks")
@stats_command
def stats_blocks(scope: Scope) -> analytics.Report[Any]:
    """Threads that led into guardrail blocks, per topic (thread ids in one-user views)."""
    return analytics.block_stats(scope.threads(), scope.gate, tenant=scope.tenant,
                                 start=scope.start, end=scope.end, labels=scope.labels(),
                                 single_user=scope.user)


@stats.command("incident")
@click.option("--baseline-from", default=None,
              help="Baseline start (default: the window of the same length before --from).")
@click.option("--baseline-to", default=None, help="Baseline end (default --from).")
@stats_command
def stats_incident(scope: Scope, baseline_from: str | None,
                   baseline_to: str | None) -> analytics.Report[Any]:
    """Topics, positions and models over-represented in a window vs a baseline window."""
    b_end = _when(baseline_to, scope.start, "baseline-to")
    b_start = _when(baseline_from, b_end - (scope.end - scope.start), "baseline-from")
    if b_start >= b_end:
        raise SemtraceError("--baseline-from must be earlier than --baseline-to.")
    return analytics.incident_lifts(scope.threads(), scope.threads(b_start, b_end), scope.gate,
                                    tenant=scope.tenant, start=scope.start, end=scope.end,
                                    labels=scope.labels(), single_user=scope.user,
                                    baseline_window=(b_start, b_end))


COMMANDS = [stats]
