"""Topics, positions and models over-represented in an incident window (`stats incident`)."""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping
from datetime import datetime

from appliance.analytics.merges import merge_topics
from appliance.analytics.reports import Lift, Report, _report
from appliance.analytics.small_topics import (
    OTHER_TOPICS,
    other_label,
    release_topic,
    small_topics,
)
from appliance.analytics.threads import NO_MODEL, NO_MODEL_LABEL, ThreadRow
from appliance.analytics.windows import release_key
from appliance.privacy import Figure, PrivacyGate, Unit


def incident_lifts(window: Iterable[ThreadRow], baseline: Iterable[ThreadRow],
                   gate: PrivacyGate, *, tenant: str, start: datetime, end: datetime,
                   labels: dict[str, str], single_user: str | None = None,
                   baseline_window: tuple[datetime, datetime] | None = None,
                   aliases: Mapping[str, str] | None = None,
                   shared: Collection[str] | None = None) -> Report[Lift]:
    """Topics, positions and models over-represented among prompts of the window.

    One release covers both windows (one charge); a user's prompts count once per
    dimension, so the contribution bound covers all of them. `aliases` (merged topic id ->
    the live id): a release made before a refinement merged some of its topics counts
    them in the topic they joined, one row. `shared`: the topics of at least
    `k_min_users` people (`threads.shared_topics`); the prompts of every other topic are
    one topic row in each window (`small_topics`, as `stats topics`), in the lift order.
    None, and one user's own view (exact): a row per topic.
    """
    fold = shared if single_user is None else None
    units = []
    for side, threads in (("w", window), ("b", baseline)):
        for t in threads:
            topic = t.topic if fold is None else release_topic(t.topic, fold)
            for x in t.turns:
                units += [Unit(t.user, f"{side}|topic|{topic}"),
                          Unit(t.user, f"{side}|position|{x.position}"),
                          Unit(t.user, f"{side}|model|{x.model or NO_MODEL}")]
    key = release_key("incident", start, end, *(
        x.isoformat() for x in baseline_window or ()))
    rel = gate.release(tenant, units, single_user=single_user, key=key, kind="incident")
    live = {f"{side}|topic|{old}": f"{side}|topic|{new}"
            for old, new in (aliases or {}).items() for side in "wb"}
    merged = merge_topics(rel, live)
    if fold is not None:  # a release made before: its small topics summed into one row
        labels = {**labels, OTHER_TOPICS: other_label(gate.settings.k_min_users)}
        topics = [(side, t) for side, dim, t in (g.group.split("|", 2) for g in merged.groups)
                  if dim == "topic"]
        small = small_topics({t for _, t in topics}, fold)
        merged = merge_topics(merged, {f"{side}|topic|{t}": f"{side}|topic|{OTHER_TOPICS}"
                                       for side, t in topics if t in small})
    figs = {g.group: g.count for g in merged.groups}
    totals: dict[tuple[str, str], float] = {}
    for key, fig in figs.items():
        side, dim, _ = key.split("|", 2)
        totals[(side, dim)] = totals.get((side, dim), 0.0) + fig.value
    rows = []
    for key, fig in figs.items():
        side, dim, value = key.split("|", 2)
        if side != "w":
            continue
        # Absent from the baseline (no prompt, or withheld by the k-suppression): zero, with
        # the noise every count of the release has; ±0 read as an exact zero, and the
        # significance test left the baseline's noise out.
        base = figs.get(f"b|{dim}|{value}", Figure(0.0, fig.noise_scale, rel.exact))
        w_total = max(totals.get(("w", dim), 0.0), 1.0)
        b_total = max(totals.get(("b", dim), 0.0), 1.0)
        ws, bs = fig.value / w_total, base.value / b_total
        # a Laplace(b) count has standard deviation b * sqrt(2)
        sd = math.hypot(fig.noise_scale / w_total, base.noise_scale / b_total) * math.sqrt(2)
        label = (labels.get(value) if dim == "topic" else
                 NO_MODEL_LABEL if (dim, value) == ("model", NO_MODEL) else None)
        rows.append(Lift(dim, value, label, fig, base, round(ws, 4), round(bs, 4),
                         round(ws / bs, 3) if bs > 0 else None, significant=ws - bs > 2 * sd))
    rows.sort(key=lambda r: (not r.significant, r.lift is not None, -(r.lift or 0.0),
                             -r.window.value))
    return _report("incident", tenant, start, end, rel, rows)
