"""`semtrace stats ...`'s text output: a report's header, notes and rows, each row wrapped
to fit a terminal `WIDTH` columns wide."""

from __future__ import annotations

import textwrap
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from appliance import analytics
    from appliance.privacy import Figure


GROUP_KINDS = ("topics", "models", "cost")  # reports of `analytics.GroupStats` rows
KEY_WIDTH = 16  # a topic id (tp_ and 12 hex digits) and a space
LABEL_WIDTH = 36  # labels are padded to this (a longer one is shown whole)
LIFT_LABEL_WIDTH = 30  # an incident row's labels, at least (as wide as its longest)
WIDTH = 100  # the text output fits a terminal this wide (a row wraps between its figures)
INDENT = "      "  # a row's continuation lines
# what a report's rows are, for the line that says why it has none
_GROUP_NAMES = {"topics": "topic", "models": "model", "blocks": "topic", "incident": "topic"}


def _wrap(head: str, *groups: list[str], width: int = WIDTH) -> str:
    """A row as lines of at most `width` columns with the two leading spaces it is printed
    with: its head followed by its first group of figures (`name value` chunks, never
    split), each further group on a line of its own (so that rows line up), a group
    continued on the next line where it does not fit."""
    lines = [head]
    for n, group in enumerate(groups):
        if n and group:
            lines.append(INDENT)
        for chunk in group:
            gap = "" if lines[-1] == INDENT else "  "
            if len(lines[-1]) + len(gap) + len(chunk) <= width - 2:
                lines[-1] += gap + chunk
            else:
                lines.append(INDENT + chunk)
    return "\n  ".join(line.rstrip() for line in lines)


def _note(text: str, first: str = "  ") -> None:
    """Print a sentence wrapped to `WIDTH` columns, continued two spaces further in."""
    click.echo(textwrap.fill(text, WIDTH, initial_indent=first,
                             subsequent_indent=first + "  ", break_on_hyphens=False))


def _fmt(f: Figure, pct: bool = False) -> str:
    if pct:
        return f"{100 * f.value:.0f}%" + ("" if f.exact else f"±{100 * f.ci95:.0f}")
    return f"{f.value:.1f}" + ("" if f.exact else f"±{f.ci95:.0f}")


def _count(f: Figure, *, floor: bool = False) -> str:
    """A count of threads, people or prompts: whole numbers (`41±3`, not `41.0±3`), `<N`
    where its interval reaches zero, `~L–H` where it is ± half the value or wider
    (`tui.format.count_text`, as on the TUI's screens)."""
    from appliance.tui.format import figure_count

    return figure_count(f, floor=floor)


def _sum(f: Figure) -> str:
    """A noisy sum (tokens): `noisy` where its interval cannot tell it from zero, `~L–H`
    where it is ± half the value or wider."""
    from appliance.tui.format import TOO_NOISY, says_nothing

    return TOO_NOISY if says_nothing(f) else _count(f)


def _ratio(f: Figure, pct: bool = False) -> str:
    """A share or a mean per thread: `noisy` where its interval says nothing (JSON keeps it)."""
    from appliance.tui.format import TOO_NOISY, says_nothing

    return TOO_NOISY if says_nothing(f, share=pct) else _fmt(f, pct)


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


def _print(report: analytics.Report[Any], currency: str, *, user: str | None = None) -> None:
    from appliance import analytics
    from appliance.privacy import released_people_scale, shown_odds
    from appliance.trend import NOT_SHOWN
    from appliance.tui.format import NO_COST, TOO_NOISY, cost_shown, unlabelled_note

    on = (f" on topic {report.topic}" + (f" ({report.topic_label})" if report.topic_label
                                          else "")) if report.topic else ""
    # the header in clauses of their own, each within WIDTH (it was one line of 250-330)
    _note(f"{report.kind}{on} for {report.tenant}, {report.start:%Y-%m-%d %H:%M} to "
          f"{report.end:%Y-%m-%d %H:%M} UTC", first="")
    if report.baseline_start and report.baseline_end:
        _note(f"against {report.baseline_start:%Y-%m-%d %H:%M} to "
              f"{report.baseline_end:%Y-%m-%d %H:%M} UTC (the baseline)")
    if report.empty:
        _note(_nothing_held(report))
        return
    if report.exact:
        _note("exact (one user's own data)")
    else:
        _note(f"differentially private: {_spent(report)}")
        _note(f"{report.budget_remaining:g} left today; ± is a 95% interval, <N a count "
              "whose interval reaches 0 (N its top), ~L–H a count or total too noisy to "
              "read as one number (its interval is ± half its value or more)")
        # "groups under 5 users (noisy count) withheld" read as "5 people or more are
        # shown": the noisy count decides, and shows one person's group in 40% of releases
        scale = released_people_scale(getattr(r, "users", None) for r in report.rows)
        _note(shown_odds(report.k_min_users, scale,
                         what=_GROUP_NAMES.get(report.kind, "group")))
        what = ("a lift between two counts that both reach 0, which says nothing"
                if report.kind == "incident" else
                "a share, mean or sum too noisy to read at this size")
        _note(f"{TOO_NOISY}: {what} (--json has it)")
        if report.kind in GROUP_KINDS:
            _note(f"cost {TOO_NOISY} also where the release cannot tell whether any "
                  "thread has a known cost (a few, or none): `threads list` shows each "
                  f"thread's cost, {NO_COST} where none is known")
    if report.kind == "positions" and not report.exact:
        # `2026-12-01  continuation  share 100%±37` with the day's new prompts withheld
        # (under k people) read as "no new conversations that day"
        _note("share: of the prompts shown for that period; a position withheld that "
              f"period (its noisy count of people under {report.k_min_users}) is in no share")
    if report.kind == "incident":
        # `continuation x1.39  window 147±64  baseline 171±64` read as a contradiction
        # one user's exact view has no noise: "beyond the noise", "its noisy count" misread
        _note("x: a row's share of its dimension (topics, positions or models) in the "
              "window over its share in the baseline; * marks a rise"
              + ("" if report.exact else " beyond the noise"))
        if any(getattr(r, "lift", 0.0) is None for r in report.rows):
            # `position continuation  –  window <87  baseline <64` said nothing of what `–`
            # (or `new`) is: the baseline's noisy count is at or under 0, so no ratio
            _note("new: none in the baseline, some in the window" if report.exact else
                  "new: none in the baseline (its noisy count at or under 0), some in the "
                  "window; –: none in the baseline, and the window's count cannot be told "
                  "from 0 either")
    if report.per_user_topics:
        _note(f"{report.tenant}'s topics are per user (cross_user_topics is off for it "
              "in privacy.toml): each holds one person's threads, so they are all "
              "counted in the other-topics row")
    # as wide as the longest key: a model named "anthropic/claude-3-5-sonnet-20241022"
    # pushed its row's columns out of line with the others
    width = max([KEY_WIDTH, *(len(str(getattr(r, "key", ""))) for r in report.rows)])
    # an incident's labels likewise: 'environmental impact, bullet point' pushed its
    # row's lift and figures out of line with the other rows
    named = [_named(r, report.kind) for r in report.rows]
    labels = max([LIFT_LABEL_WIDTH, *(len(r.label or "") for r in named
                                      if isinstance(r, analytics.Lift))])
    for r in named:
        click.echo("  " + _line(r, currency, floor=bool(report.uncounted), key_width=width,
                                label_width=labels))
    if not report.rows and report.exact and user is not None:
        _note(_no_threads_of(report))
    elif not report.rows and report.exact:
        click.echo("  (nothing to show)")
    elif not report.rows:
        # a bare "(nothing to show)" after "epsilon 2 spent" read as a fault; the release
        # cannot say whether nobody was active or everyone was withheld, but it can say so
        _note(f"(nothing to show: no {_GROUP_NAMES.get(report.kind, 'group')} reached "
              f"{report.k_min_users} people (noisy count) in this window: there may be "
              "none, or too few people to show)")
    elif any(getattr(r, "trend", ()) for r in report.rows):
        _note(f"trend: each day's release (the 7 days up to it); {NOT_SHOWN} the topic "
              f"not shown that day (its noisy count of people under {report.k_min_users}: "
              "none, or withheld); blank: no release that day")
    if report.exact and any(isinstance(r, analytics.GroupStats) and cost_shown(
            r.costed, r.cost, r.mean_cost) == NO_COST for r in report.rows):
        _note(f"cost {NO_COST}: none of these threads has a known cost (the gateway "
              "reported none and pricing.toml prices none of their models)")
    if any(_unlabelled(r, report.kind) for r in report.rows):
        _note(unlabelled_note(None if report.exact else report.k_min_users))
    if any(getattr(r, "merged", ()) for r in report.rows):
        _note("merged since: the release counted these topics apart, under their ids "
              "of then; the row sums them (threads and everything per thread), its "
              "people ≥ the larger part (one person may be in both)")
    if report.uncounted:
        _note(f"not counted: {', '.join(report.uncounted)}, merged into this topic "
              "since today's release of it and with no release of its own today: its "
              "threads are in none of these figures (threads ≥); tomorrow's release "
              "counts them")


def _nothing_held(report: analytics.Report[Any]) -> str:
    """A cross-user query of a window with no thread, answered without a release (`reads.
    run_stats`: the role may list the tenant's threads, which say it exactly)."""
    where = "in this window or in its baseline" if report.kind == "incident" else \
        "in this window"
    return (f"nothing to show: tenant {report.tenant} has no threads {where}, so no "
            f"release was made and nothing was spent ({report.budget_remaining:g} left "
            "today); `threads list --since --until` lists the same threads")


def _no_threads_of(report: analytics.Report[Any]) -> str:
    """Why one user's view is empty (the id typed is not repeated: a raw user id stays out
    of what may be saved)."""
    what = ("no thread that hit a guardrail block" if report.kind == "blocks" else
            f"no threads on topic {report.topic}" if report.topic else "no threads")
    return f"(nothing to show: this user has {what} in {report.tenant} in this window)"


def _is_topic(r: object, kind: str) -> bool:
    """Whether a row is a topic's (topics, blocks, an incident's topic rows)."""
    from appliance import analytics

    return ((isinstance(r, analytics.GroupStats) and kind == "topics")
            or isinstance(r, analytics.BlockStats)
            or (isinstance(r, analytics.Lift) and r.dimension == "topic"))


def _unlabelled(r: object, kind: str) -> bool:
    from appliance import analytics

    return (_is_topic(r, kind) and not getattr(r, "label", None)
            and getattr(r, "key", None) != analytics.NO_TOPIC)


def _named(r: object, kind: str) -> object:
    """A topic row with the name the TUI gives it where it has no label: `· unlabelled`
    beside its id (it printed blank), `(no topic yet)` for threads without one."""
    from appliance import analytics
    from appliance.tui.format import topic_title

    if (not isinstance(r, analytics.GroupStats | analytics.BlockStats | analytics.Lift)
            or not _is_topic(r, kind) or r.label):
        return r
    name = topic_title(r.key, None, no_topic=analytics.NO_TOPIC)
    return replace(r, label=name.removeprefix(f"{r.key} "))


def _zero(f: Figure) -> bool:
    """Whether a count's 95% interval reaches zero (never for an exact count)."""
    from appliance.tui.format import reaches_zero

    return reaches_zero(f.value, None if f.exact else f.ci95)


def _money(f: Figure, *, total: bool = False) -> str:
    """A cost (total or per thread): `noisy` where its interval cannot tell it from zero;
    a total whose interval is ± half its value or more as that interval (`~L–H`)."""
    from appliance.tui.format import TOO_NOISY, interval, says_nothing, too_wide

    if says_nothing(f):
        return TOO_NOISY
    if total and not f.exact and too_wide(f.value, f.ci95):
        return f"~{interval(f.value, f.ci95, '.4f')}"
    return f"{f.value:.4f}" + ("" if f.exact else f"±{f.ci95:.4f}")


def _cost(r: analytics.GroupStats, currency: str) -> str:
    """Cost and cost per thread; `–` where no thread's cost is known (one user's view:
    unlisted models have no cost, never a guess, and `0.0000` read as free), `noisy` where
    a release cannot tell it (`tui.format.cost_shown`, as on the topics screen)."""
    from appliance.tui.format import TOO_NOISY, cost_shown

    hidden = cost_shown(r.costed, r.cost, r.mean_cost)
    if hidden is not None:
        return f"cost {hidden}"
    total, per = _money(r.cost, total=True), _money(r.mean_cost)
    return f"cost {total}{'' if total == TOO_NOISY else ' ' + currency} (per thread {per})"


def _trend(r: analytics.GroupStats) -> list[str]:
    """A topic's 14 daily releases as `│··▂▃ ▅ █│` (`·`: not shown that day, blank: no
    release that day)."""
    from appliance.trend import sparkline

    return [f"{len(r.trend)} days │{sparkline(r.trend)}│"] if r.trend else []


def _line(r: object, currency: str = "", *, floor: bool = False,
          key_width: int = KEY_WIDTH, label_width: int = LIFT_LABEL_WIDTH) -> str:
    """One row, on as many lines as it needs to stay within `WIDTH` columns (continued
    lines indented; every figure kept, the label whole); `floor`: topics merged since are
    uncounted, so its counts are floors; `key_width`: the report's longest key and
    `label_width` its longest incident label (its rows' columns line up)."""
    from appliance import analytics
    from appliance.tui.format import TOO_NOISY

    k = key_width
    if isinstance(r, analytics.GroupStats):
        # a topic others were merged into since the release: people is the larger part's
        # count, a floor (one person may be in both parts)
        least = "≥" if r.merged or floor else ""
        people = ([f"people {least}{_count(r.users, floor=bool(least))}"]
                  if r.users is not None else [])
        joined = [f"· with {', '.join(r.merged)} merged since"] if r.merged else []
        threads = f"{'≥' if floor else ''}{_count(r.threads, floor=floor)}"
        return _wrap(f"{r.key:<{k}} {r.label or '':<{LABEL_WIDTH}}",
                     [f"threads {threads}", *people],
                     # per thread, a mean: "turns 3.2" was read as the group's total turns
                     [f"turns/thread {_ratio(r.mean_turns)}",
                      f"refine {_ratio(r.refinement_share, True)}",
                      f"abandon {_ratio(r.abandonment_share, True)}",
                      f"errors {_ratio(r.error_share, True)}",
                      f"blocked {_ratio(r.blocked_share, True)}"],
                     [f"tokens {_sum(r.tokens)}", _cost(r, currency), *_trend(r)], joined)
    if isinstance(r, analytics.PositionShare):
        # each figure named, as every other report's are (`130±127  noisy` said neither
        # what was counted nor that the second figure is the share of the period)
        return (f"{r.period}  {r.position:<14} prompts {_count(r.prompts)}  "
                f"share {_ratio(r.share, True)}")
    if isinstance(r, analytics.BlockStats):
        return _wrap(f"{r.key:<{k}} {r.label or '':<30}", [
            f"threads {_count(r.threads)}", f"turns before {_ratio(r.mean_turns_before)}",
            f"first-turn {_ratio(r.first_turn_share, True)}",
            f"retried {_ratio(r.retried_share, True)}",
            f"repeated {_ratio(r.repeated_share, True)}"], list(r.thread_ids))
    if isinstance(r, analytics.Lift):
        # "new": in the window and not in the baseline; nothing in either is no news
        # "new" only where the window's count can be told from zero (a noisy `<65` is not)
        # a ratio of two counts neither of which can be told from zero says nothing:
        # `x0.00  window <64  baseline <113` read as "new threads dropped to none"
        lift = (TOO_NOISY if r.lift is not None and _zero(r.window) and _zero(r.baseline)
                else f"x{r.lift:.2f}" if r.lift is not None else "new"
                if r.window.value > 0 and not _zero(r.window) else "–"
                ) + ("*" if r.significant else "")
        return _wrap(f"{r.dimension:<8} {r.key:<{k}} {r.label or '':<{label_width}} "
                     f"{lift:>8}",
                     [f"window {_count(r.window)}", f"baseline {_count(r.baseline)}"])
    return str(r)
