"""Topics as readers name them: ids (through merges), labels and phrases, the sentence
for a topic that is not there."""

from __future__ import annotations

import re

from appliance.analytics.small_topics import OTHER_TOPICS
from appliance.errors import InputError
from appliance.query.store_facts import has_table
from appliance.store import Store


def has_topic(store: Store, tenant: str, topic_id: str) -> bool:
    """Whether `topic_id` is (or was, before a merge) a topic of `tenant`.

    Turns get their topic online, before a refinement publishes it to `topics`; the
    scan of the turns is reached only by an id found nowhere else (a typo).
    """
    args = (tenant, topic_id)
    if has_table(store, "topics") and store.db.execute(
            "SELECT 1 FROM topics WHERE tenant=? AND topic_id=?", args).fetchone():
        return True
    return any(store.db.execute(f"SELECT 1 FROM {table} WHERE tenant=? AND topic_id=? LIMIT 1",
                                args).fetchone() for table in ("threads", "records"))


def live_topic(store: Store, topic_id: str, tenants: list[str]) -> str | None:
    """The topic `topic_id` names now, or None when none of `tenants` has or had it.

    An id is itself, or the topic it was merged into (its threads moved there); else a
    label (any case) of exactly one live topic of `tenants`, or one phrase of its label
    ("weather" of "weather, umbrella"), names that topic: product people think "password
    reset", not `tp_3fa9`. InputError when the label or phrase is several topics'.
    """
    if any(has_topic(store, t, topic_id) for t in tenants):
        return topic_aliases(store).get(topic_id, topic_id)
    if not tenants or not has_table(store, "topics"):
        return None
    wanted = topic_id.strip().lower()
    labelled = store.db.execute(
        "SELECT topic_id, label FROM topics WHERE merged_into IS NULL AND label IS NOT NULL "
        f"AND tenant IN ({','.join('?' * len(tenants))}) ORDER BY topic_id",
        tuple(tenants)).fetchall()
    found = [tid for tid, label in labelled if label.lower() == wanted]
    if len(found) > 1:
        raise InputError(f"'{topic_id}' is the label of {len(found)} topics "
                            f"({', '.join(found)}); name one by its id.")
    if found:
        return str(found[0])
    # one phrase of a two-phrase label ("weather" of "weather, umbrella"), as stats shows it
    found = [tid for tid, label in labelled
             if wanted in (p.strip() for p in label.lower().split(","))]
    if len(found) > 1:
        raise InputError(f"'{topic_id}' is in the labels of {len(found)} topics "
                         f"({', '.join(found)}); name one by its id or whole label.")
    return str(found[0]) if found else None


def no_topic(store: Store, topic: str, tenants: list[str], lists: str) -> str:
    """The sentence for a `--topic` (or `topic:`) that names no topic of `tenants`.

    A word of a label is not a phrase of it (`weather` of "weather forecast, umbrella"),
    so it names nothing; the labels that hold every word given are named, so that the
    reader sees what to type instead of only "no topic" beside a topic about it.
    `lists`: where the topics are listed (`stats topics`, the TUI's `o`).
    """
    if topic.strip() == OTHER_TOPICS:
        # `stats topics` prints this key beside its last row, so it gets typed
        return (f"'{OTHER_TOPICS}' is the row of all the topics of too few people to show "
                f"apart, not one topic: give one topic's id, label or phrase ({lists}).")
    words = set(re.findall(r"\w+", topic.lower()))
    near: list[tuple[str, str]] = []
    if words and tenants and has_table(store, "topics"):
        near = [(tid, label) for tid, label in store.db.execute(
            "SELECT topic_id, label FROM topics WHERE merged_into IS NULL AND label IS NOT "
            f"NULL AND tenant IN ({','.join('?' * len(tenants))}) ORDER BY topic_id",
            tuple(tenants)) if words <= set(re.findall(r"\w+", label.lower()))]
    if not near:
        return f"No topic '{topic}' in scope ({lists})."
    named = ", ".join(f"'{label}' ({tid})" for tid, label in near[:5])
    more = f" and {len(near) - 5} more" if len(near) > 5 else ""
    return (f"No topic '{topic}' in scope: {named}{more} "
            f"{'has' if len(near) == 1 else 'have'} that word; give a whole label, one of "
            "its phrases (between commas) or its id.")


def topic_aliases(store: Store) -> dict[str, str]:
    """Merged topic id -> the id it now resolves to (empty without a topics table)."""
    if not has_table(store, "topics"):
        return {}
    merged = dict(store.db.execute(
        "SELECT topic_id, merged_into FROM topics WHERE merged_into IS NOT NULL"))
    out = {}
    for tid in merged:
        seen, cur = {tid}, merged[tid]
        while cur in merged and merged[cur] not in seen:
            seen.add(cur)
            cur = merged[cur]
        out[tid] = cur
    return out


def topic_labels(store: Store, topic_ids: list[str] | None = None) -> dict[str, str]:
    """Readable labels ("hotel booking") by topic id; the stable read API of topic labels.

    Any id ever handed out (live, or merged into another topic) maps to the label
    of the live topic it resolves to. Ids without a label are absent: a topic is
    labelled only once it has `k_min_users` users, and its label goes when it
    expires or its members are shredded. `topic_ids=None`: every labelled id.
    """
    if not has_table(store, "topics"):
        return {}
    alias = topic_aliases(store)
    live = dict(store.db.execute("SELECT topic_id, label FROM topics WHERE label IS NOT NULL"))
    wanted = list(live) + list(alias) if topic_ids is None else topic_ids
    out = {}
    for tid in wanted:
        label = live.get(alias.get(tid, tid))
        if label:
            out[tid] = label
    return out


def topic_label(store: Store, topic_id: str | None) -> str | None:
    """The readable label of one topic id (resolved through merges), or None."""
    if not topic_id:
        return None
    return topic_labels(store, [topic_id]).get(topic_id)
