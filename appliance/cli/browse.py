"""`semtrace threads list | show` and `semtrace search`: reading stored threads and prompts.

Each asks the service's query socket (`--socket`, or the data dir's when no passphrase
or key is given), else opens the store read-only; the role decides what it sees.
"""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from appliance.cli import (
    credential_options,
    data_dir_option,
    emit_json,
    not_blank,
    open_read,
    progress_bar,
    role_option,
)
from appliance.cli.sockets import ask, query_socket, query_socket_option
from appliance.errors import InputError

if TYPE_CHECKING:
    from appliance.records import Record, Thread

LIST_MAX = 10_000  # threads one listing returns (the query socket's limit too)


@click.group()
def threads() -> None:
    """Conversation threads."""


@threads.command("list")
@data_dir_option
@credential_options
@role_option
@click.option("--tenant", default=None, help="Only this tenant.")
@click.option("--user", default=None, help="Only this user id (needs --tenant).")
@click.option("--topic", default=None,
              help="Only threads of this topic: its id (`stats topics` lists them; an id "
                   "merged since finds the topic it went into), its label, or one phrase "
                   "of its label (`umbrella` of 'weather forecast, umbrella').")
@click.option("--since", default=None,
              help="Only threads last seen at or after this ISO date or time (active "
                   "since), or an age ago: 30m, 24h, 7d (as the TUI's since:).")
@click.option("--until", default=None,
              help="Only threads that started before this time; a date takes in its whole "
                   "day (as the TUI's until:). It filters the start, --since the last turn: "
                   "--since D --until D lists the threads still going on at D.")
@click.option("--limit", type=click.IntRange(1, LIST_MAX), default=50, show_default=True,
              help="At most this many threads, most recent first (stderr says when more "
                   "match).")
@query_socket_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def threads_list(data_dir: Path | None, passphrase_file: Path | None, key_file: Path | None,
                 role: str | None, tenant: str | None, user: str | None, topic: str | None,
                 since: str | None, until: str | None, limit: int, socket_path: Path | None,
                 as_json: bool) -> None:
    """List threads, most recent activity first (last seen, started), each with its title,
    topic and cost; --since and --until reach the threads of any period, past the
    --limit most recent."""
    from appliance.query import ThreadFilter, list_threads, live_topic, no_topic, tenants
    from appliance.reads import check_tenant, user_pseudonym
    from appliance.reads_json import thread_from_json
    from appliance.records import jsonable
    from appliance.roles import bound_tenants, require
    from appliance.titles import shorten
    from appliance.tui.format import money

    not_blank(tenant=tenant, user=user, topic=topic)
    topic = topic and topic.strip()  # an id pasted with the spaces around it
    if user is not None and tenant is None:  # the same sentence over the socket as direct
        raise InputError("--user needs --tenant (user ids are pseudonymised per tenant).")
    start, end = list_window(since, until)
    socket_path = query_socket(socket_path, data_dir, passphrase_file, key_file)
    # one more than shown, to tell whether more match (the TUI says "1-100 of 164")
    wanted = min(limit + 1, LIST_MAX)
    if socket_path is not None:
        req = {"op": "threads", "role": role, "tenant": tenant, "user": user, "limit": wanted,
               **{k: t.isoformat() for k, t in (("since", start), ("until", end)) if t}}
        reply = ask(socket_path, {**req, "topic": topic} if topic is not None else req)
        rows, currency = [thread_from_json(t) for t in reply["threads"]], reply["currency"]
    else:
        rt = open_read(data_dir, passphrase_file, key_file, "threads list")
        try:
            name = require(rt.policies.access, role, "threads:read", tenant=tenant)
            check_tenant(rt.store, rt.policies, tenant)
            bound = bound_tenants(rt.policies.access, name)
            live = None
            if topic is not None:
                scope = [tenant] if tenant else (bound or tenants(rt.store))
                live = live_topic(rt.store, topic, scope)
                if live is None:
                    raise InputError(no_topic(rt.store, topic, scope,
                                              "`stats topics` lists them"))
            # the bound tenants in the query itself: filtered after the LIMIT, other
            # tenants' recent threads left the list short or empty
            rows = list_threads(rt.store, ThreadFilter(
                tenant=tenant, tenants=tuple(bound) if bound else None,
                user=user_pseudonym(rt.store, rt.keyring, tenant, user), topic_id=live,
                since=start, until=end), limit=wanted)
            currency = rt.policies.pricing.currency
        finally:
            rt.close()
    if len(rows) > limit or len(rows) == limit == wanted:  # on stderr: --json stays the list
        more = "more match" if len(rows) > limit else "more may match"  # (at LIST_MAX)
        which = ("the thread seen most recently is shown" if limit == 1
                 else f"the {limit:,} threads seen most recently are shown")
        click.echo(f"semtrace: {which}; {more} "
                   f"(--limit, at most {LIST_MAX:,}; --tenant, --user, --topic, --since "
                   "or --until narrow the list).", err=True)
        rows = rows[:limit]
    if as_json:  # each thread with the currency of its cost, as the text's header says;
        # no "records": a list reads none (it was always [], read as "no turns"): show has
        emit_json([{**{k: v for k, v in jsonable(t).items() if k != "records"},
                    "currency": currency} for t in rows])
        return
    cost = f"cost {currency}"
    # listed by last activity: shown, so that the order reads (it looked unsorted by start)
    click.echo(f"{'thread':<20} {'tenant':<10} {'user':<24} {'last seen':<17} "
               f"{'started':<17} {'turns':>5} {cost:>10}  {'topic':<24}  title")
    if not rows:
        # which: a filter that matches nothing, or nothing held (as the TUI tells them)
        click.echo("  (no threads match these filters)" if any(
            (tenant, user, topic, since, until)) else "  (no threads in scope: nothing "
            "ingested yet, or all of it erased or shredded by retention)")
    for t in rows:
        topic = shorten(t.topic_label or t.topic_id or "–", 24)  # at a word, with "…"
        click.echo(f"{t.thread_id:<20} {t.tenant:<10} {t.user:<24} "
                   f"{t.last_ts:%Y-%m-%d %H:%M}  {t.first_ts:%Y-%m-%d %H:%M}  "
                   f"{t.turns:>5} {money(t.cost):>10}  "
                   f"{topic:<24}  {t.title if t.title is not None else '[shredded]'}")


def list_window(since: str | None, until: str | None
                ) -> tuple[datetime | None, datetime | None]:
    """`--since` (the last turn at or after it) and `--until` (started before it) as the TUI's
    filter reads them: an ISO date or time (UTC) or an age; `--until` a date is the
    midnight after it."""
    from appliance.tui.filters import FilterError, parse_time

    now, times = datetime.now(UTC), []
    for name, value in (("since", since), ("until", until)):
        try:
            times.append(parse_time(value, now, end=name == "until") if value else None)
        except FilterError:
            raise InputError(f"--{name} must be an ISO-8601 date or time (e.g. 2024-03-04) "
                             "or an age such as 30m, 24h, 7d.") from None
    # no order between them: --since filters the last turn, --until the start, so a
    # --since later than --until asks for the threads that started before --until and
    # were still active at --since (every pair can match a thread; none is refused)
    start, end = times
    return start, end


@threads.command("show")
@click.argument("thread_id")
@data_dir_option
@credential_options
@role_option
@query_socket_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def threads_show(thread_id: str, data_dir: Path | None, passphrase_file: Path | None,
                 key_file: Path | None, role: str | None, socket_path: Path | None,
                 as_json: bool) -> None:
    """Show one thread's turns in order: position, intent, similarity, the linker's score
    against the threshold where the content decided, the signal that linked each (history,
    previous_response_id, session_id, content), its parent, and the redacted text.
    THREAD_ID: a thread's id (th_…), or a record's id (#N, as `search` and this command
    print it) to show the thread that record is in; spaces around it (a pasted id) are
    ignored."""
    from appliance.query import NAMES_A_THREAD, find_thread
    from appliance.reads_json import thread_from_json
    from appliance.records import jsonable
    from appliance.roles import require, sees
    from appliance.tui.format import money

    thread_id = thread_id.strip()  # pasted with the spaces around it
    if not thread_id:
        raise InputError(f"THREAD_ID must not be blank ({NAMES_A_THREAD}).")
    socket_path = query_socket(socket_path, data_dir, passphrase_file, key_file)
    thread: Thread | None
    if socket_path is not None:
        shown = ask(socket_path, {"op": "thread", "role": role, "thread_id": thread_id})
        thread, currency = thread_from_json(shown["thread"]), shown["currency"]
    else:
        rt = open_read(data_dir, passphrase_file, key_file, "threads show")
        try:
            name = require(rt.policies.access, role, "threads:read")
            thread = find_thread(rt.store, thread_id)
            if thread is not None and not sees(rt.policies.access, name, thread.tenant):
                thread = None  # another tenant's thread: as if absent
            currency = rt.policies.pricing.currency
        finally:
            rt.close()
    if thread is None:
        raise InputError(f"No thread {thread_id!r} in this store ({NAMES_A_THREAD}).")
    if as_json:  # similarity to 4 decimals, as `search --json` gives it
        shown = jsonable(thread)
        for r in shown["records"]:
            if isinstance(r.get("similarity"), float):
                r["similarity"] = round(r["similarity"], 4)
        emit_json({**shown, "currency": currency})
        return
    unit = f" {currency}" if thread.cost is not None else ""  # unknown: `–`, as the TUI
    turns = f"{thread.turns} turn{'' if thread.turns == 1 else 's'}"  # not "1 turns"
    click.echo(f"Thread {thread.thread_id} ({thread.tenant}, {thread.user}, {turns}, "
               f"cost {money(thread.cost)}{unit}): "
               f"{thread.title if thread.title is not None else '[shredded]'}")
    # its topic now, as `threads list` and the TUI's thread view name it (a turn's own
    # topic_id in --json is the one it was given, which a refinement may have merged since)
    label = f"{thread.topic_label} ({thread.topic_id})" if thread.topic_label else None
    click.echo(f"  topic: {label or thread.topic_id or '– (none yet)'}")
    for r in thread.records:
        click.echo(f"  {r.ts:%Y-%m-%d %H:%M:%S}  #{r.record_id:<6} {turn_line(r)}")
        # every line of the prompt under its turn (a pasted code block's lines started
        # at column 0, where they read as lines of the listing)
        click.echo(textwrap.indent(r.text if r.text is not None else "[shredded]", " " * 6,
                                   lambda line: True).rstrip("\n"))


def turn_line(r: Record) -> str:
    """A turn's link as `threads show` prints it: position, intent, similarity, the signal
    that decided (history, previous_response_id, session_id or content), the gateway's
    signals the request carried that named no turn held (`unmatched=`) and the parent."""
    from appliance.history import unmatched_signals
    from appliance.tui.format import score

    parts = [f"{r.position:<12}", r.intent or "intent ?"]
    if r.similarity is not None:  # without a parent: to the closest turn, not taken (the TUI's
        # `best`); `sim=` read as the similarity to what the turn continues
        parts.append(f"{'sim' if r.parent_id is not None else 'best'}={score(r.similarity)}")
    if decided := content_score(r.evidence):
        parts.append(decided)
    if r.link_source:
        parts.append(f"signal={r.link_source}")
    if missed := unmatched_signals(r.evidence):  # sent, but named no turn held
        parts.append(f"unmatched={','.join(missed)}")
    if r.parent_id is not None:
        parts.append(f"parent=#{r.parent_id}")
    return "  ".join(parts)


def content_score(ev: dict[str, Any] | None) -> str | None:
    """`score=0.89≥0.50`: where the content decided (not the gateway's history or response
    id), the linker's score for the best earlier turn against the tenant's threshold, as
    the TUI's why panel gives it: why a turn was linked, or started a thread of its own."""
    from appliance.tui.format import versus

    ev = ev or {}
    best, threshold = ev.get("score"), ev.get("threshold")
    if ev.get("link_source") not in (None, "content", "session_id") or not ev.get("scored") \
            or not isinstance(best, int | float) or not isinstance(threshold, int | float):
        return None
    shown, limit = versus(float(best), float(threshold))
    if shown == "<0.01":  # `score=<0.01<0.50` read as garbled: its first digit (0.004)
        shown = f"{best:.1g}"
    source = ev.get("threshold_source")
    who = f"({source})" if source in ("calibrated", "pinned") else ""
    return f"score={shown}{'≥' if best >= threshold else '<'}{limit}{who}"


@click.command()
@click.argument("text")
@data_dir_option
@credential_options
@role_option
@click.option("--tenant", default=None, help="Only this tenant.")
@click.option("--user", default=None, help="Only this user id (needs --tenant).")
@click.option("--since", default=None,
              help="Only prompts from this ISO date or time on, or from an age ago: 30m, "
                   "24h, 7d (as the TUI's since:).")
@click.option("-k", "--limit", type=click.IntRange(1, 1000), default=10, show_default=True,
              help="At most this many prompts, the most similar first.")
@query_socket_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of hits.")
def search(text: str, data_dir: Path | None, passphrase_file: Path | None,
           key_file: Path | None, role: str | None, tenant: str | None, user: str | None,
           since: str | None, limit: int, socket_path: Path | None, as_json: bool) -> None:
    """Find stored prompts similar to TEXT (redacted text is searched).

    Scoped by role: one user's prompts with --user, other users' prompts only in
    tenants whose privacy policy allows cross-user search (or for auditors).
    Exact below a size threshold, usearch HNSW above it.
    """
    from appliance.reads import run_search, search_skipped
    from appliance.records import jsonable
    from appliance.roles import require
    from appliance.tui.filters import FilterError, parse_time

    if not text.strip():
        raise InputError("The search text is empty.")
    not_blank(tenant=tenant, user=user)
    now = datetime.now(UTC)
    try:
        start = parse_time(since, now) if since is not None else None
    except FilterError:
        raise InputError("--since must be an ISO-8601 date or time (e.g. 2024-03-04) or an "
                         "age such as 30m, 24h, 7d.") from None
    if start is not None and start > now:  # as `stats` refuses a window yet to come
        raise InputError(f"--since {since} is in the future ({start:%Y-%m-%d %H:%M} UTC): "
                         "there is nothing to search yet.")
    socket_path = query_socket(socket_path, data_dir, passphrase_file, key_file)
    if socket_path is not None:  # an age is sent as the time it names
        reply = ask(socket_path, {"op": "search", "role": role, "text": text, "tenant": tenant,
                                  "user": user, "since": start and start.isoformat(),
                                  "limit": limit})
        hits: list[dict[str, Any]] = reply["hits"]
        skipped = reply.get("skipped", [])  # a service of an earlier version does not say
    else:
        rt = open_read(data_dir, passphrase_file, key_file, "search")
        try:
            from appliance.embed import LlamaEmbedder

            role_name = require(rt.policies.access, role, "search", tenant=tenant)
            with progress_bar() as prog:  # decrypting every vector in scope takes a while
                task = prog.add_task("search: prompts indexed", total=None)
                hits = jsonable(run_search(
                    rt.store, rt.keyring, rt.policies, role_name,
                    LlamaEmbedder(rt.policies.correlation.embedding), text, tenant=tenant,
                    user=user, since=start, limit=limit,
                    progress=lambda done, total: prog.update(task, completed=done,
                                                             total=total)))
            skipped = search_skipped(rt.store, rt.policies, role_name, tenant, user)
        finally:
            rt.close()
    if skipped:  # on stderr: --json stays the array of hits
        click.echo(f"semtrace: not searched: {', '.join(skipped)} (cross-user search is off "
                   "there in privacy.toml, cross_user_search); search one user's prompts "
                   "with --tenant and --user.", err=True)
    if as_json:
        emit_json(hits)
        return
    if not hits:
        click.echo("(no matching prompts in scope)")
        return
    # headed, and whose and when, as the TUI's search shows them (a bare number, thread,
    # record and text left a reader to guess what the number was, and whose prompt it was)
    click.echo(f"{'score':<6} {'thread':<20} {'record':<18} {'tenant/user':<30} "
               f"{'time (UTC)':<17} prompt (redacted)")
    for h in hits:
        who = f"{h.get('tenant', '?')}/{h.get('user', '?')}"
        # one line a hit: a prompt's newlines and tabs (pasted code) broke the table's rows
        # (--json keeps the text as stored; `threads show` prints it whole)
        text = " ".join(h["text"].split()) if h.get("text") is not None else "[shredded]"
        click.echo(f"{h['similarity']:<6.3f} {h['thread_id']:<20} {'#' + str(h['record_id']):<18} "
                   f"{who:<30} {_when(h.get('ts')):<17} {text}")


def _when(ts: object) -> str:
    """A hit's time as the listings print it (its ISO string in --json)."""
    if not isinstance(ts, str):
        return "?"
    try:
        return datetime.fromisoformat(ts.replace("Z", "+00:00")).strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return "?"


COMMANDS = [threads, search]
