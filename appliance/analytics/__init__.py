"""Conversation analytics: per topic, per model, position mix, guardrail blocks, incidents.

`load_threads` reads thread metadata (never text) from the store; the other
functions are pure: they turn those rows into report dataclasses, and every
figure that spans users comes out of `privacy.PrivacyGate` (exact only when the
view is scoped to one user).

`threads` reads a thread's turns, `reports` holds the rows of every report,
`windows` the default window and release keys; one module a report family:
`groups` (topics, models, cost), `positions`, `blocks`, `incidents`; `merges` sums
the topics a refinement merged since a release was made, `small_topics` counts
the topics of fewer than `k_min_users` people as one row. Import
from here.
"""

from appliance.analytics.blocks import BLOCK_MEASURES, block_stats
from appliance.analytics.groups import (
    GROUP_MEASURES,
    LENGTHS,
    cost_measures,
    cost_outcomes,
    group_key,
    group_rows,
    group_stats,
    length_group,
    model_stats,
    topic_stats,
)
from appliance.analytics.incidents import incident_lifts
from appliance.analytics.merges import merge_topics, topic_parts
from appliance.analytics.positions import period_of, position_mix
from appliance.analytics.reports import (
    BlockStats,
    GroupStats,
    Lift,
    PositionShare,
    Report,
    TrendPoint,
)
from appliance.analytics.small_topics import (
    OTHER_TOPICS,
    fold_small,
    other_label,
    other_last,
    release_topic,
)
from appliance.analytics.threads import (
    FAILED,
    IDLE_END,
    NO_MODEL,
    NO_MODEL_LABEL,
    NO_TOPIC,
    REFINEMENT_INTENTS,
    ThreadRow,
    Turn,
    has_threads,
    load_threads,
    shared_topics,
    topic_labels,
)
from appliance.analytics.windows import (
    DEFAULT_DAYS,
    default_window,
    release_key,
    window_before,
)

__all__ = [
    "BLOCK_MEASURES",
    "DEFAULT_DAYS",
    "FAILED",
    "GROUP_MEASURES",
    "IDLE_END",
    "LENGTHS",
    "NO_MODEL",
    "NO_MODEL_LABEL",
    "NO_TOPIC",
    "OTHER_TOPICS",
    "REFINEMENT_INTENTS",
    "BlockStats",
    "GroupStats",
    "Lift",
    "PositionShare",
    "Report",
    "ThreadRow",
    "TrendPoint",
    "Turn",
    "block_stats",
    "cost_measures",
    "cost_outcomes",
    "default_window",
    "fold_small",
    "group_key",
    "group_rows",
    "group_stats",
    "has_threads",
    "incident_lifts",
    "length_group",
    "load_threads",
    "merge_topics",
    "model_stats",
    "other_label",
    "other_last",
    "period_of",
    "position_mix",
    "release_key",
    "window_before",
    "release_topic",
    "shared_topics",
    "topic_labels",
    "topic_parts",
    "topic_stats",
]
