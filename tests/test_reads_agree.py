"""What an engineer reads from `threads list` and `search` is the same over the service's
query socket as with the store opened directly, and the same as the TUI tells: the same
sentence for the same mistake, and a search says which tenants it left out."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from test_query_reads import refused, remote_app, served  # noqa: F401  (served: a fixture)
from test_spine import run_cli
from test_tui import (
    fixed_store,  # noqa: F401  (a fixture)
    run,
    settle,
    table_keys,
)


def test_threads_list_user_without_tenant_is_one_and_the_same_sentence_either_way(
        served: dict[str, Any], data_dir: Path, passphrase_file: Path) -> None:  # noqa: F811
    """Over the socket it read "'user' must be a string, with 'tenant'." (a string was given;
    the protocol's field names) where the direct command says what to add."""
    sock = ["--socket", str(served["sock"]), "--role", "reader"]
    direct = ["--data-dir", str(data_dir), "--passphrase-file", str(passphrase_file)]
    for way in (sock, direct):
        result = run_cli("threads", "list", "--user", "u-ann-7731", *way)
        refused(result, "--user needs --tenant (user ids are pseudonymised per tenant).")
        assert result.returncode == 2 and not result.stdout
    ok = run_cli("threads", "list", "--user", "u-ann-7731", "--tenant", "acme", *sock,
                 "--json")
    assert ok.returncode == 0 and len(json.loads(ok.stdout)) == 1


def test_a_search_across_tenants_names_those_it_left_out(
        served: dict[str, Any], data_dir: Path, passphrase_file: Path) -> None:  # noqa: F811
    """globex has no cross_user_search: a search without --tenant covered acme only and
    said nothing, read as "no hits in globex" (the TUI says 'skipped globex')."""
    sock = ["--socket", str(served["sock"]), "--role", "auditor"]
    direct = ["--data-dir", str(data_dir), "--passphrase-file", str(passphrase_file)]
    for way in (sock, direct):
        text = run_cli("search", "zebra procurement ledger", *way)
        assert text.returncode == 0, text.stderr
        assert "not searched: globex" in text.stderr and "--user" in text.stderr
        assert len(text.stderr.strip().splitlines()) == 1
        as_json = run_cli("search", "zebra procurement ledger", *way, "--json")
        hits = json.loads(as_json.stdout)  # stdout stays the array of hits
        assert hits and {h["tenant"] for h in hits} == {"acme"}
        assert "not searched: globex" in as_json.stderr
    # one tenant named, or one user's prompts: nothing left out, nothing said
    for args in (["--tenant", "acme"], ["--tenant", "globex", "--user", "u-ann-7731"]):
        quiet = run_cli("search", "zebra procurement ledger", *sock, *args)
        assert quiet.returncode == 0 and quiet.stdout and not quiet.stderr, quiet.stderr


def test_threads_show_calls_a_new_threads_similarity_best_as_the_tui_does(
        pipeline: Any, data_dir: Path, passphrase_file: Path) -> None:
    """A new thread's first turn printed `sim=0.26` beside `new`: the similarity to a turn
    it does not continue (the closest one, not taken), which the TUI labels `best`."""
    from conftest import make_prompt

    out = pipeline.process([
        make_prompt("Give me a recipe for a vegetarian lasagna", user="dave", minutes=0),
        make_prompt("Can I make it without ricotta?", user="dave", minutes=1),
        make_prompt("How do I renew my passport before a trip abroad?", user="dave",
                    minutes=300)])
    first, later = out[0].thread_id, out[2].thread_id
    assert first != later and out[1].thread_id == first and out[2].similarity is not None
    cred = ("--data-dir", str(data_dir), "--passphrase-file", str(passphrase_file))
    shown = run_cli("threads", "show", later, *cred)
    assert shown.returncode == 0, shown.stderr
    assert ", 1 turn, cost " in shown.stdout.splitlines()[0]  # it read "1 turns"
    turn = shown.stdout.splitlines()[2]
    assert " new " in turn and f"best={out[2].similarity:.2f}" in turn and "sim=" not in turn
    follow_up = run_cli("threads", "show", first, *cred).stdout.splitlines()[4]
    assert "continuation" in follow_up and f"sim={out[1].similarity:.2f}" in follow_up


def test_threads_show_tells_a_tiny_similarity_from_zero_as_the_tui_does(
        runtime: Any, embedder: Any, data_dir: Path, passphrase_file: Path) -> None:
    """A turn whose similarity was 0.003 printed `sim=0.00`, read as "nothing alike":
    `sim=<0.01` now, as the TUI's bar shows it."""
    from test_tui_readable import store_thread

    store_thread(runtime, embedder, {"link_source": "content", "score": 0.62,
                                     "threshold": 0.45, "scored": 1}, similarity=0.003)
    shown = run_cli("threads", "show", "th_00000000000000aa", "--data-dir", str(data_dir),
                    "--passphrase-file", str(passphrase_file))
    assert shown.returncode == 0, shown.stderr
    follow_up = shown.stdout.splitlines()[4]
    assert "continuation" in follow_up and "sim=<0.01" in follow_up, shown.stdout

def test_stats_rows_line_up_whatever_the_length_of_a_model_name(
        pipeline: Any, data_dir: Path, passphrase_file: Path) -> None:
    """A model named with its provider and date (longer than a topic id) pushed its row's
    columns right of every other row's in `stats models` text."""
    from conftest import make_prompt

    models = ["gpt-4o", "anthropic/claude-3-5-sonnet-20241022", "gpt-4o-mini"]
    pipeline.process([make_prompt(text, user="dave", minutes=60 * i, model=model)
                      for i, (text, model) in enumerate(zip(
                          ["Give me a recipe for a vegetarian lasagna",
                           "How do I renew my passport before a trip abroad?",
                           "What is the weather in Paris this weekend?"], models,
                          strict=True))])
    done = run_cli("stats", "models", "--tenant", "acme", "--user", "dave", "--role",
                   "compliance", "--from", "2026-03-01", "--to", "2026-03-04",
                   "--data-dir", str(data_dir), "--passphrase-file", str(passphrase_file))
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if "threads 1" in line]
    assert sorted(row.split()[0] for row in rows) == sorted(models)
    assert len({row.index("threads 1") for row in rows}) == 1, rows


def test_the_tuis_filter_refuses_a_tenant_the_store_never_held_as_the_cli_does(
        served: dict[str, Any], runtime: Any) -> None:  # noqa: F811
    """`tenant:Acme` (the gateway sends 'acme') in the threads filter emptied the table,
    'No threads match the filter', read as "this tenant has no threads"; `threads list
    --tenant Acme` and `tui --tenant Acme` refuse it. Over the socket and directly."""
    from appliance.tui.app import make_app

    acme = {o.thread_id for o in served["outcomes"] if o.request_id.startswith("acme")}

    async def scenario(pilot: Any) -> None:
        async def apply(text: str) -> tuple[set[str], str]:
            await pilot.press("f")
            pilot.app.screen.query_one("#filter").value = text
            await pilot.press("enter")
            await settle(pilot)
            status = str(pilot.app.screen.query_one("#status").render())
            return set(table_keys(pilot.app, "#threads")), status

        shown, status = await apply("tenant:acme")
        assert shown == acme and "filter tenant:acme" in status
        shown, status = await apply("tenant:Acme")
        assert "never held data of tenant 'Acme'" in status and "case-sensitive" in status
        assert shown == acme and "filter tenant:acme" in status  # what is shown, still
        await pilot.press("r")  # a refresh reads the filter shown, not the refused one
        await settle(pilot)
        assert set(table_keys(pilot.app, "#threads")) == acme

    run(remote_app(served, "reader"), scenario)
    run(make_app(runtime, role="analyst", refresh_seconds=3600), scenario)


def test_a_topic_is_found_by_one_phrase_of_its_label(
        served: dict[str, Any], data_dir: Path, passphrase_file: Path) -> None:  # noqa: F811
    """`stats topics` shows 'weather, umbrella'; `threads list --topic umbrella` said "No
    topic 'umbrella' in scope": only the whole label, comma and all, named it."""
    from appliance.topics import tables

    sock = ["--socket", str(served["sock"]), "--role", "reader"]
    direct = ["--data-dir", str(data_dir), "--passphrase-file", str(passphrase_file),
              "--tenant", "acme"]
    listed = json.loads(run_cli("threads", "list", *sock, "--tenant", "acme", "--json").stdout)
    want = sorted(t["thread_id"] for t in listed)[:2]
    rows = [tables.TopicRow(tid, "", 1, 1, label, (), 0.0) for tid, label in (
        ("tp_wet", "weather, umbrella"), ("tp_snow", "weather, snow"),
        ("tp_vpn", "vpn guide, laptop"))]
    tables.publish(served["store"].db, "acme", rows, {}, [(t, "tp_vpn") for t in want])
    for way in (sock, direct):
        for phrase in ("laptop", "VPN guide", "vpn guide, laptop"):
            got = run_cli("threads", "list", *way, "--topic", phrase, "--json")
            assert got.returncode == 0, got.stderr
            assert sorted(t["thread_id"] for t in json.loads(got.stdout)) == want
        refused(run_cli("threads", "list", *way, "--topic", "weather"),
                "'weather' is in the labels of 2 topics (tp_snow, tp_wet)")
        refused(run_cli("threads", "list", *way, "--topic", "guide"), "No topic 'guide'")
    # stats models --topic reads the same topic by the same phrase
    one_user = ("stats", "models", "--tenant", "acme", "--user", "u-ann-7731", "--role",
                "compliance", "--from", "2026-03-01", "--to", "2026-03-04", *direct[:4],
                "--json")
    by_phrase = run_cli(*one_user, "--topic", "laptop")
    assert by_phrase.returncode == 0, by_phrase.stderr
    assert by_phrase.stdout == run_cli(*one_user, "--topic", "tp_vpn").stdout


def test_a_word_of_a_label_is_refused_naming_the_labels_that_hold_it(
        served: dict[str, Any], data_dir: Path,  # noqa: F811
        passphrase_file: Path, runtime: Any) -> None:
    """The demo's topic is 'weather forecast, umbrella'; `threads list --topic weather`
    said only "No topic 'weather' in scope", beside a topic about the weather, and the
    reader was left to guess what to type. A word is still not a phrase (it names
    nothing), but the sentence now names the labels holding it. CLI over the socket and
    directly, and the TUI's `topic:` filter."""
    from appliance.topics import tables
    from appliance.tui.app import make_app

    sock = ["--socket", str(served["sock"]), "--role", "reader"]
    direct = ["--data-dir", str(data_dir), "--passphrase-file", str(passphrase_file),
              "--tenant", "acme"]
    rows = [tables.TopicRow(tid, "", 1, 1, label, (), 0.0) for tid, label in (
        ("tp_fc", "weather forecast, umbrella"), ("tp_vpn", "vpn guide, laptop"))]
    tables.publish(served["store"].db, "acme", rows, {}, [])
    for way in (sock, direct):
        result = run_cli("threads", "list", *way, "--topic", "Weather", "--json")
        assert result.returncode == 2 and not result.stdout
        refused(result, "No topic 'Weather' in scope: 'weather forecast, umbrella' (tp_fc) "
                        "has that word; give a whole label, one of its phrases")
        refused(run_cli("threads", "list", *way, "--topic", "zebra"),
                "No topic 'zebra' in scope (`stats topics` lists them).")

    async def scenario(pilot: Any) -> None:
        await pilot.press("f")
        pilot.app.screen.query_one("#filter").value = "topic:guide"
        await pilot.press("enter")
        await settle(pilot)
        status = str(pilot.app.screen.query_one("#status").render())
        assert "'vpn guide, laptop' (tp_vpn) has that word" in status, status

    run(make_app(runtime, role="analyst", refresh_seconds=3600), scenario)


def test_stats_models_on_a_topic_says_which_topic_its_figures_are_of(
        served: dict[str, Any], data_dir: Path, passphrase_file: Path) -> None:  # noqa: F811
    """`stats models --topic T` printed 'models for acme, ...' as without --topic, and its
    JSON named no topic: a saved comparison could not say what it compared on (a label or
    a merged id given, the topic it resolved to was nowhere)."""
    from appliance.topics import tables

    tables.publish(served["store"].db, "acme",
                   [tables.TopicRow("tp_vpn", "", 1, 1, "vpn guide, laptop", (), 0.0)], {}, [])
    window = ("--tenant", "acme", "--user", "u-ann-7731", "--from", "2026-03-01", "--to",
              "2026-03-04")
    sock = ("--socket", str(served["sock"]), "--role", "auditor")
    direct = ("--data-dir", str(data_dir), "--passphrase-file", str(passphrase_file),
              "--role", "compliance")
    for way in (sock, direct):
        text = run_cli("stats", "models", *window, *way, "--topic", "VPN guide, laptop")
        assert text.returncode == 0, text.stderr
        assert text.stdout.startswith("models on topic tp_vpn (vpn guide, laptop) for acme, ")
        data = json.loads(run_cli("stats", "models", *window, *way, "--topic", "tp_vpn",
                                  "--json").stdout)
        assert (data["topic"], data["topic_label"]) == ("tp_vpn", "vpn guide, laptop")
        every = run_cli("stats", "models", *window, *way, "--json")
        assert json.loads(every.stdout)["topic"] is None
        assert run_cli("stats", "models", *window, *way).stdout.startswith("models for acme, ")


def test_stats_incident_says_which_baseline_it_compared_against(
        served: dict[str, Any], data_dir: Path, passphrase_file: Path) -> None:  # noqa: F811
    """A lift (`x2.10`, `new*`) is against a baseline window that stats incident never
    named, in text or JSON: the window before by default, or --baseline-from/--to."""
    window = ("--tenant", "acme", "--user", "u-ann-7731", "--from", "2026-03-01", "--to",
              "2026-03-04")
    sock = ("--socket", str(served["sock"]), "--role", "auditor")
    direct = ("--data-dir", str(data_dir), "--passphrase-file", str(passphrase_file),
              "--role", "compliance")
    for way in (sock, direct):
        text = run_cli("stats", "incident", *window, *way)
        assert text.returncode == 0, text.stderr
        assert text.stdout.startswith("incident for acme, 2026-03-01 00:00 to 2026-03-04 00:00 "
                                      "UTC\n  against 2026-02-26 00:00 to 2026-03-01 00:00 UTC")
        given = json.loads(run_cli("stats", "incident", *window, *way, "--baseline-from",
                                   "2026-02-01", "--baseline-to", "2026-02-15", "--json").stdout)
        assert (given["baseline_start"], given["baseline_end"]) == (
            "2026-02-01T00:00:00Z", "2026-02-15T00:00:00Z")
        other = json.loads(run_cli("stats", "topics", *window, *way, "--json").stdout)
        assert "baseline_start" not in other


def test_the_tuis_topic_filter_takes_a_label_or_phrase_as_threads_list_does(
        served: dict[str, Any], runtime: Any) -> None:  # noqa: F811
    """`threads list --topic laptop` lists the topic labelled 'vpn guide, laptop'; the TUI's
    `topic:laptop` (or the label shown in its topic column) matched no thread, 'No threads
    match the filter', and a mistyped topic read as an empty topic."""
    from appliance.topics import tables
    from appliance.tui.app import make_app

    listed = sorted(o.thread_id for o in served["outcomes"] if o.request_id.startswith("acme"))
    want = set(listed[:2])
    rows = [tables.TopicRow(tid, "", 1, 1, label, (), 0.0) for tid, label in (
        ("tp_wet", "weather, umbrella"), ("tp_snow", "weather, snow"),
        ("tp_vpn", "vpn guide, laptop"))]
    tables.publish(served["store"].db, "acme", rows, {}, [(t, "tp_vpn") for t in want])

    async def scenario(pilot: Any) -> None:
        async def apply(text: str) -> tuple[set[str], str]:
            await pilot.press("f")
            pilot.app.screen.query_one("#filter").value = text
            await pilot.press("enter")
            await settle(pilot)
            return (set(table_keys(pilot.app, "#threads")),
                    str(pilot.app.screen.query_one("#status").render()))

        for named in ("topic:laptop", 'tenant:acme topic:"VPN guide"', "topic:tp_vpn"):
            shown, status = await apply(named)
            assert shown == want, (named, status)
        shown, status = await apply("topic:weather")
        assert "'weather' is in the labels of 2 topics (tp_snow, tp_wet)" in status
        assert shown == want and "filter topic:tp_vpn" in status  # kept
        shown, status = await apply("topic:tp_typo")
        assert "No topic 'tp_typo' in scope" in status and shown == want

    run(remote_app(served, "reader"), scenario)
    run(make_app(runtime, role="analyst", refresh_seconds=3600), scenario)


def test_a_direct_search_reports_its_indexing_progress_on_stderr(
        pipeline: Any, data_dir: Path, passphrase_file: Path) -> None:
    """Run with the key, `search` decrypts every vector in scope before it answers (seconds
    on 100,000 prompts) and said nothing meanwhile; it now shows progress as the other
    long commands do (a line every SEMTRACE_PROGRESS_INTERVAL_S off a terminal)."""
    from conftest import make_prompt

    pipeline.process([make_prompt(f"Where is the VPN guide for office {i}?", user=f"u{i}",
                                  minutes=i) for i in range(3)])
    cred = ("--data-dir", str(data_dir), "--passphrase-file", str(passphrase_file))
    done = run_cli("search", "VPN guide", "--tenant", "acme", *cred, "--json",
                   env={"SEMTRACE_PROGRESS_INTERVAL_S": "0"})
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)) == 3  # stdout stays the hits
    assert "semtrace: search: prompts indexed: 3 of 3 (100%)" in done.stderr
    quiet = run_cli("search", "VPN guide", "--tenant", "acme", *cred)  # short: no line
    assert quiet.returncode == 0 and not quiet.stderr


def test_threads_show_names_the_threads_topic_as_list_and_the_tui_do(
        served: dict[str, Any], data_dir: Path, passphrase_file: Path) -> None:  # noqa: F811
    """`threads list` and the TUI's thread view name a thread's topic; `threads show` text
    did not, and its --json turns carry the topic id each was given, merged away since."""
    from appliance.topics import tables

    thread = sorted(o.thread_id for o in served["outcomes"] if o.request_id.startswith("acme"))[0]
    tables.publish(served["store"].db, "acme",
                   [tables.TopicRow("tp_vpn", "", 1, 1, "vpn guide, laptop", (), 0.0)], {},
                   [(thread, "tp_vpn")])
    sock = ["--socket", str(served["sock"]), "--role", "reader"]
    direct = ["--data-dir", str(data_dir), "--passphrase-file", str(passphrase_file)]
    for way in (sock, direct):
        listed = {t["thread_id"]: t for t in json.loads(
            run_cli("threads", "list", "--tenant", "acme", *way, "--json").stdout)}[thread]
        shown = run_cli("threads", "show", thread, *way)
        assert shown.returncode == 0, shown.stderr
        # no model named: no cost known, '–' as in the TUI's thread view, not '– USD'
        head = shown.stdout.splitlines()[0]
        assert listed["cost"] is None and ", cost –): " in head and "USD" not in head
        assert shown.stdout.splitlines()[1] == (
            f"  topic: {listed['topic_label']} ({listed['topic_id']})") == (
            "  topic: vpn guide, laptop (tp_vpn)")


def test_threads_list_says_when_more_threads_match_than_it_shows(
        served: dict[str, Any], data_dir: Path, passphrase_file: Path) -> None:  # noqa: F811
    """`threads list` shows 50 threads by default and said nothing of the others: an
    engineer read 50 as the count (the TUI says 'Threads 1-100 of 164')."""
    sock = ["--socket", str(served["sock"]), "--role", "reader"]
    direct = ["--data-dir", str(data_dir), "--passphrase-file", str(passphrase_file)]
    total = len(served["outcomes"])
    for way in (sock, direct):
        cut = run_cli("threads", "list", "--limit", "2", *way, "--json")
        assert cut.returncode == 0 and len(json.loads(cut.stdout)) == 2
        assert "the 2 threads seen most recently are shown; more match" in cut.stderr
        one = run_cli("threads", "list", "--limit", "1", *way)
        assert "semtrace: the thread seen most recently is shown; more match" in one.stderr
        whole = run_cli("threads", "list", "--limit", str(total), *way)
        assert whole.returncode == 0 and not whole.stderr
        assert len(whole.stdout.splitlines()) == total + 1  # the header and every thread


def test_the_topics_screen_shows_a_merged_topics_mark_whole(fixed_store: Path,  # noqa: F811
                                                            tmp_path: Path) -> None:
    """The topic column was 24 cells: 'trip museums spring · with tp_accounts merged
    since' read 'trip museums spring · wi' (an unlabelled topic 'tp_… · unlabe'), so the
    mark the docs describe was never seen."""
    import shutil

    from test_tui import app_for

    from appliance.keys import read_key_file
    from appliance.runtime import open_runtime

    copy = tmp_path / "fixed"
    shutil.copytree(fixed_store, copy)
    rt = open_runtime(copy / "data", read_key_file(copy / "key"))
    shown: list[str] = []

    async def scenario(pilot: Any) -> None:
        await pilot.press("o")
        await settle(pilot)
        shown.append(pilot.app.export_screenshot().replace("&#160;", " "))

    try:
        with rt.store.db:
            rt.store.db.execute("UPDATE topics SET merged_into = 'tp_travel', label = NULL "
                                "WHERE topic_id = 'tp_accounts'")
        run(app_for(rt, role="analyst"), scenario, size=(160, 30))
    finally:
        rt.close()
    assert "with tp_accounts merged since" in shown[0]


def test_threads_show_takes_the_record_id_search_prints(
        served: dict[str, Any], data_dir: Path, passphrase_file: Path) -> None:  # noqa: F811
    """`search` and `threads show` print a prompt as `#1253799737951298` (the TUI's side
    panel as `record 1253799737951298`); `threads show #1253799737951298` said "No thread
    with this id in scope.": it shows the thread that record is in, over the socket and
    directly, and an id naming neither says which ids it takes."""
    sock = ["--socket", str(served["sock"]), "--role", "reader"]
    direct = ["--data-dir", str(data_dir), "--passphrase-file", str(passphrase_file)]
    acme = next(o for o in served["outcomes"] if o.request_id.startswith("acme"))
    whole = json.loads(run_cli("threads", "show", acme.thread_id, *sock, "--json").stdout)
    record = whole["records"][0]["record_id"]
    for way in (sock, direct):
        for ref in (f"#{record}", str(record)):
            shown = run_cli("threads", "show", ref, *way)
            assert shown.returncode == 0, shown.stderr
            assert shown.stdout.startswith(f"Thread {acme.thread_id} (acme, ")
            assert f"#{record}" in shown.stdout
            as_json = json.loads(run_cli("threads", "show", ref, *way, "--json").stdout)
            assert as_json["thread_id"] == acme.thread_id
        for ref in ("#99", "nope", "99999999999999999999"):
            refused(run_cli("threads", "show", ref, *way), "a record's id, #N")
    analyst = ["--socket", str(served["sock"]), "--role", "analyst-acme"]
    globex = next(o for o in served["outcomes"] if o.request_id.startswith("globex"))
    theirs = json.loads(run_cli("threads", "show", globex.thread_id, *sock, "--json").stdout)
    # a record of a tenant the role does not see is as absent as its thread
    refused(run_cli("threads", "show", f"#{theirs['records'][0]['record_id']}", *analyst),
            "No thread with this id in scope")


def test_threads_show_says_the_score_and_threshold_that_decided_each_turn(
        pipeline: Any, data_dir: Path, passphrase_file: Path) -> None:
    """`threads show` gave a turn's similarity and `signal=content`, not why the content
    linked it or started a thread: the score against the threshold, which the TUI's why
    panel gives ('score 0.89 ≥ threshold 0.50') and only --json held."""
    from conftest import make_prompt

    out = pipeline.process([
        make_prompt("Give me a recipe for a vegetarian lasagna", user="dave", minutes=0),
        make_prompt("Can I make it without ricotta?", user="dave", minutes=1),
        make_prompt("How do I renew my passport before a trip abroad?", user="dave",
                    minutes=300)])
    cred = ("--data-dir", str(data_dir), "--passphrase-file", str(passphrase_file))
    for thread in (out[0].thread_id, out[2].thread_id):
        shown = run_cli("threads", "show", thread, *cred)
        assert shown.returncode == 0, shown.stderr
        records = json.loads(run_cli("threads", "show", thread, *cred, "--json").stdout)[
            "records"]
        for line, r in zip(shown.stdout.splitlines()[2::2], records, strict=True):
            ev = r["evidence"]
            if not ev.get("scored"):  # the user's first prompt: nothing to score
                assert "score=" not in line, line
                continue
            sign = "≥" if r["parent_id"] is not None else "<"
            assert ev["score"] >= ev["threshold"] if sign == "≥" else \
                ev["score"] < ev["threshold"]
            best = f"{ev['score']:.2f}" if ev["score"] >= 0.005 else f"{ev['score']:.1g}"
            assert f"score={best}{sign}{ev['threshold']:.2f}  signal=content" in line, line
    assert "score=" in run_cli("threads", "show", out[2].thread_id, *cred).stdout


def test_threads_show_gives_no_content_score_where_the_gateway_decided(
        runtime: Any, embedder: Any, data_dir: Path, passphrase_file: Path) -> None:
    """A turn the request's message history linked is not 'score=0.31<0.50' beside its
    parent: the content did not decide it. A calibrated threshold says so."""
    from test_tui_readable import store_thread

    store_thread(runtime, embedder, {"link_source": "history", "score": 0.31,
                                     "threshold": 0.5, "scored": 2}, similarity=0.4)
    cred = ("--data-dir", str(data_dir), "--passphrase-file", str(passphrase_file))
    shown = run_cli("threads", "show", "th_00000000000000aa", *cred)
    assert shown.returncode == 0, shown.stderr
    follow_up = shown.stdout.splitlines()[4]
    assert "signal=history" in follow_up and "score=" not in follow_up, follow_up
    from appliance.cli.browse import content_score

    calibrated = {"link_source": "content", "scored": 4, "threshold_source": "calibrated"}
    assert content_score({**calibrated, "score": 0.4497, "threshold": 0.45}) == \
        "score=0.4497<0.4500(calibrated)"  # not 'score=0.45<0.45'
    assert content_score({**calibrated, "score": 0.0003, "threshold": 0.45}) == \
        "score=0.0003<0.45(calibrated)"


def test_threads_list_reaches_any_period_with_since_and_until(
        served: dict[str, Any], data_dir: Path, passphrase_file: Path) -> None:  # noqa: F811
    """`threads list` gave the --limit most recent threads (10,000 at most) with no way to a
    period: --since and --until, as the TUI's since: and until: read them, over the socket
    and directly; a bad or reversed window is one sentence."""
    sock = ["--socket", str(served["sock"]), "--role", "reader", "--tenant", "acme"]
    direct = ["--data-dir", str(data_dir), "--passphrase-file", str(passphrase_file),
              "--tenant", "acme"]
    acme = {o.thread_id: o for o in served["outcomes"] if o.request_id.startswith("acme")}
    # the acme prompts are at 09:00, 09:01 and 09:02 on 2026-03-02, one thread each
    later = {t for t, o in acme.items() if o.request_id != "acme-u-ann-7731"}
    for way in (sock, direct):
        def listed(*window: str, way: list[str] = way) -> set[str]:
            done = run_cli("threads", "list", *way, *window, "--json")
            assert done.returncode == 0, done.stderr
            return {t["thread_id"] for t in json.loads(done.stdout)}

        assert listed("--since", "2026-03-02", "--until", "2026-03-02") == set(acme)
        assert listed("--until", "2026-03-01") == set()
        assert listed("--since", "2026-03-02T09:01") == later
        assert listed("--until", "2026-03-02T09:01") == set(acme) - later
        text = run_cli("threads", "list", *way, "--until", "2026-03-01")
        assert "(no threads match these filters)" in text.stdout  # not "in scope"
        refused(run_cli("threads", "list", *way, "--since", "last week"),
                "--since must be an ISO-8601 date or time")
        # --since filters the last turn, --until the start: a --since after --until is
        # the threads still going on between, here none (each thread is one turn)
        assert listed("--since", "2026-03-03", "--until", "2026-03-02") == set()


CODE_PROMPT = "Fix this code for <me>:\n  def f(x):\n\treturn x+1\nIt fails on strings."


def test_a_prompt_of_several_lines_keeps_the_listings_rows_whole(
        pipeline: Any, runtime: Any, embedder: Any, data_dir: Path,
        passphrase_file: Path) -> None:
    """A prompt with a pasted code block: `search` printed its lines from column 0, where
    they read as rows of the table, `threads show` its second line on at column 0, out of
    its turn, and the TUI's search screen showed 'Fix this code for <me>:' alone."""
    from conftest import make_prompt
    from test_tui import app_for, run, settle

    [out] = pipeline.process([make_prompt(CODE_PROMPT, user="dave", minutes=0)])
    cred = ("--data-dir", str(data_dir), "--passphrase-file", str(passphrase_file))
    shown = run_cli("threads", "show", out.thread_id, *cred)
    assert shown.returncode == 0, shown.stderr
    turn = shown.stdout.splitlines()[3:]
    assert turn == ["      Fix this code for <me>:", "        def f(x):",
                    "      \treturn x+1", "      It fails on strings."], shown.stdout
    found = run_cli("search", "fix this code", "--tenant", "acme", "--user", "dave", *cred)
    assert found.returncode == 0, found.stderr
    rows = found.stdout.splitlines()
    assert len(rows) == 2 and rows[1].endswith(
        "Fix this code for <me>: def f(x): return x+1 It fails on strings."), rows
    as_json = json.loads(run_cli("search", "fix this code", "--tenant", "acme", "--user",
                                 "dave", *cred, "--json").stdout)
    assert as_json[0]["text"] == CODE_PROMPT  # the text as stored

    async def scenario(pilot: Any) -> None:
        await pilot.press("slash")
        await settle(pilot)
        pilot.app.screen.query_one("#query").value = "user:dave fix this code"
        await pilot.press("enter")
        await settle(pilot)
        table = pilot.app.screen.query_one("#hits")
        assert str(table.get_row_at(0)[-1]) == \
            "Fix this code for <me>: def f(x): return x+1 It fails on strings."

    run(app_for(runtime, embedder, role="compliance"), scenario)


def test_threads_show_json_gives_similarity_to_4_decimals_as_search_does(
        runtime: Any, embedder: Any, data_dir: Path, passphrase_file: Path) -> None:
    """`search --json` gives a similarity to 4 decimals; `threads show --json` gave the same
    turn's 0.812345678: the two reads of one similarity did not agree."""
    from test_tui_readable import store_thread

    store_thread(runtime, embedder, {"link_source": "content", "score": 0.62,
                                     "threshold": 0.45, "scored": 1}, similarity=0.812345678)
    shown = run_cli("threads", "show", "th_00000000000000aa", "--data-dir", str(data_dir),
                    "--passphrase-file", str(passphrase_file), "--json")
    assert shown.returncode == 0, shown.stderr
    sims = [r["similarity"] for r in json.loads(shown.stdout)["records"]]
    assert 0.8123 in sims and all(s is None or s == round(s, 4) for s in sims), sims


def test_threads_show_takes_an_id_pasted_with_spaces_around_it(
        served: dict[str, Any], data_dir: Path, passphrase_file: Path) -> None:  # noqa: F811
    """`threads show " th_… "` (an id copied from a table with its padding) said "No thread
    ' th_… ' in this store": the spaces are not part of the id, over the socket and directly;
    an id of spaces alone is blank, not a search for a thread named ''."""
    sock = ["--socket", str(served["sock"]), "--role", "reader"]
    direct = ["--data-dir", str(data_dir), "--passphrase-file", str(passphrase_file)]
    acme = next(o for o in served["outcomes"] if o.request_id.startswith("acme"))
    for way in (sock, direct):
        shown = run_cli("threads", "show", f" {acme.thread_id} ", *way, "--json")
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)["thread_id"] == acme.thread_id
        refused(run_cli("threads", "show", "  ", *way), "THREAD_ID must not be blank")


def test_the_query_socket_reads_a_lower_case_z_as_utc(served: dict[str, Any]) -> None:  # noqa: F811
    """The query socket shares the ingest's parser: `since` ending in `z` (RFC 3339) was
    refused 'must be an ISO-8601 date or time' where `Z` was answered."""
    from test_query_reads import raw

    replies = [raw(served["sock"], op="threads", role="reader", tenant="acme",
                   since=f"2026-03-02T09:01:00{case}")[1] for case in ("Z", "z")]
    assert replies[0].get("threads") and replies[1] == replies[0], replies


def test_threads_list_finds_the_threads_still_going_on_at_a_time(
        pipeline: Any, data_dir: Path, passphrase_file: Path) -> None:
    """`--since` filters a thread's last turn, `--until` its start: `--since D --until D`
    (threads that started before D and were still active after it) was refused
    "--since must be earlier than --until.", though it matches a thread spanning D."""
    from conftest import T0, make_prompt

    out = pipeline.process([
        make_prompt("Give me a recipe for a vegetarian lasagna", minutes=0, session_id="s1"),
        make_prompt("How do I renew my passport?", minutes=2, session_id="s2"),
        make_prompt("Can I make it without ricotta?", minutes=10, session_id="s1"),
        make_prompt("Which bus goes to the airport?", minutes=20, session_id="s3")])
    spanning = out[0].thread_id
    assert out[2].thread_id == spanning and len({o.thread_id for o in out}) == 3
    at = (T0 + timedelta(minutes=5)).isoformat()  # lasagna 09:00-09:10, passport 09:02,
    cred = ("--data-dir", str(data_dir), "--passphrase-file", str(passphrase_file))  # bus 09:20
    listed = run_cli("threads", "list", "--since", at, "--until", at, "--json", *cred)
    assert listed.returncode == 0, listed.stderr
    assert [t["thread_id"] for t in json.loads(listed.stdout)] == [spanning]
