"""One time budget per prompt (`pattern_timeout_s`) covers the whole of its redaction:
spaCy's share, Presidio's patterns and IBAN checks, and Semtrace's own recognisers (their
expressions and loops). A prompt past it is refused as `unredactable`, never stored partly
redacted. Before, Semtrace's recognisers and spaCy ran with no limit at all (the prompt was
stored however long they took), and the IBAN checks' limit was whichever policy was loaded
last in the process. Real Presidio, spaCy, llama.cpp, SQLCipher and the service's socket."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import make_prompt, real_pipeline, running_service, scan_for
from test_spine import run_cli

from appliance.client import Client

CANARY = "quimby.budget@example.com"
CARD = "4111 1111 1111 1111"
NAME = "Rosalind Quimbleford"
TINY = 0.3
# A long prompt of street lines (bench/redact_budget.py): its whole redaction takes over a
# second (spaCy's NER most of it), far past 0.3 s; before the budget it was stored regardless.
STREET = "12 Main Street, Springfield, "
MAX_CHARS = 32768


def adversarial() -> str:
    """A prompt of `max_text_chars` characters with the canaries at its start."""
    head = f"Write to {NAME} at {CANARY}, card {CARD}. "
    body = STREET * ((MAX_CHARS - len(head)) // len(STREET) + 1)
    return (head + body)[:MAX_CHARS]


@pytest.fixture(scope="module")
def tiny_redactor(policies: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The real redactor with a 0.3 s budget per prompt."""
    from appliance.config import RedactionSettings
    from appliance.redact import Redactor

    settings = RedactionSettings.model_validate({**policies.redaction.model_dump(),
                                                 "pattern_timeout_s": TINY})
    return Redactor(settings, cache_dir=tmp_path_factory.mktemp("tld"))


@pytest.fixture
def tiny_pipeline(runtime: Any, embedder: Any, tiny_redactor: Any) -> Any:
    return real_pipeline(runtime, embedder, tiny_redactor)


def _own(redactor: Any, name: str) -> Any:
    return next(r for r in redactor._analyzer.registry.recognizers if r.name == name)


def test_semtrace_recogniser_past_the_budget_refuses_and_names_itself(
        tiny_redactor: Any) -> None:
    """Semtrace's own recogniser stops once the prompt's budget is spent (here by the steps
    before it), naming itself and never the text; with time left it finds the name."""
    from appliance.redact.budget import prompt_budget
    from appliance.redact.failclosed import RedactionFailed

    names = _own(tiny_redactor, "semtrace_PersonNameRecognizer")
    text = f"Please forward this to {NAME} today."
    engine = tiny_redactor._analyzer.nlp_engine
    with tiny_redactor._nlp.memory_zone():
        artifacts = engine.process_text(text, "en")
        with prompt_budget(TINY, spent=TINY), pytest.raises(RedactionFailed) as raised:
            names.analyze(text, ["PERSON"], artifacts)
        with prompt_budget(TINY):
            found = names.analyze(text, ["PERSON"], artifacts)
    assert "semtrace_PersonNameRecognizer" in str(raised.value)
    assert "time budget" in str(raised.value) and NAME not in str(raised.value)
    assert [text[r.start:r.end] for r in found] == [NAME]


def test_a_timed_expression_stops_at_the_budget(tiny_redactor: Any) -> None:
    """An expression of Semtrace's that backtracks without end is stopped by the budget
    (Python's `re` could not be stopped at all)."""
    from appliance.redact.budget import prompt_budget, timed
    from appliance.redact.failclosed import RedactionFailed

    catastrophic = timed(r"(?:x|xx)+(?=y)\w")
    with prompt_budget(0.2), pytest.raises(RedactionFailed) as raised:
        list(catastrophic.finditer("x" * 60 + "z"))
    assert "time budget (0.2 s" in str(raised.value) and "xxxx" not in str(raised.value)


def test_iban_checks_follow_each_redactors_own_budget(
        redactor: Any, tiny_redactor: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Presidio's IBAN recogniser gets the time left to the prompt of the redactor running
    it, not the limit of whichever policy was loaded last."""
    from presidio_analyzer.predefined_recognizers.generic import iban_recognizer

    real = iban_recognizer.re
    limits: list[float] = []

    class Watching:
        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

        def finditer(self, *args: Any, timeout: Any = None, **kwargs: Any) -> Any:
            limits.append(float(timeout))
            return real.finditer(*args, timeout=timeout, **kwargs)

    monkeypatch.setattr(iban_recognizer, "re", Watching())
    text = "Pay to IBAN GB82 WEST 1234 5698 7654 32 please"
    limit: dict[str, float] = {}
    hits: dict[str, Any] = {}
    for name, each in (("tiny", tiny_redactor), ("default", redactor)):
        limits.clear()
        hits[name] = each.analyze(text)
        assert limits, "the IBAN recogniser ran"
        limit[name] = max(limits)
    assert limit["tiny"] <= TINY and limit["default"] > TINY
    assert any(d.entity_type == "IBAN_CODE" for d in hits["tiny"])


def test_adversarial_prompt_past_the_budget_is_refused_and_never_stored(
        tiny_pipeline: Any, data_dir: Path, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    sock = tmp_path / "s.sock"
    with running_service(tiny_pipeline, sock), Client(sock, timeout=600) as c:
        good = c.ingest(tenant="acme", user_id="alice", request_id="good-1",
                        text="Which clauses in the lease cover the deposit?")
        reply = c.ingest(tenant="acme", user_id="alice", text=adversarial(),
                         request_id="slow-1")
        stats = c.request({"v": 1, "op": "stats"})
    assert good["ok"]
    assert reply["ok"] is False and reply["error"]["code"] == "unredactable"
    assert CANARY not in str(reply) and CARD not in str(reply) and NAME not in str(reply)
    assert stats["counters"]["unredactable"] == 1 and stats["counters"]["ingested"] == 1
    texts = [r.text or "" for r in tiny_pipeline.store.records("1 = 1", ())]
    assert len(texts) == 1 and "lease" in texts[0]
    events = [r for r in caplog.records if getattr(r, "event", None) == "ingest_unredactable"]
    assert len(events) == 1 and "time budget" in events[0].getMessage()
    logged = "\n".join(r.getMessage() + str(r.__dict__) for r in caplog.records)
    assert CANARY not in logged and CARD not in logged and NAME not in logged
    assert "Springfield" not in logged
    assert scan_for(data_dir, [CANARY, CARD, NAME, "Main Street, Springfield"]) == []


def test_a_timed_expression_takes_re_flags_as_re_does() -> None:
    """`timed` takes `re`'s flags: `regex` numbers ASCII differently (re.ASCII is 256,
    regex.ASCII 128), so a flag passed on as a number would match other text than `re` does."""
    import re

    from appliance.redact.budget import timed

    for flags in (0, re.ASCII, re.IGNORECASE | re.ASCII, re.S | re.M, re.X):
        for text in ("Émile écrit", "line one\nLINE two", "straße 12"):
            for pattern in (r"\w+", r"^line.two$", r"(?:é|e)\w*", r"l i n e"):
                want = [m.span() for m in re.compile(pattern, flags).finditer(text)]
                got = [m.span() for m in timed(pattern, flags).finditer(text)]
                assert got == want, (pattern, flags, text)


# The budget is CPU time of the redacting thread, not wall-clock time. Before, it was wall-
# clock time: on a host busier than its cores, ordinary long prompts waited for a core past
# 5 s and were refused (bench/redact_budget.py under load: 32 of 40 runs of shapes that cost
# 0.5-1.1 s of CPU). Sleeping is waiting that costs no CPU, as a descheduled thread does.
WAIT_S = 0.8


def _waiting(monkeypatch: pytest.MonkeyPatch, recogniser: Any, seconds: float) -> None:
    """`recogniser` waits `seconds` (no CPU) before it runs, as on a host busier than its
    cores."""
    import time

    real = recogniser.analyze

    def slow(*args: Any, **kwargs: Any) -> Any:
        time.sleep(seconds)
        return real(*args, **kwargs)

    monkeypatch.setattr(recogniser, "analyze", slow)


def test_time_waiting_for_a_core_is_not_charged_to_the_prompt(
        tiny_redactor: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A prompt whose redaction costs little CPU is redacted even though it took longer
    than its budget on the wall clock (waiting, not working); before, it was refused."""
    from appliance.records import Redacted

    _waiting(monkeypatch, _own(tiny_redactor, "semtrace_PersonNameRecognizer"), WAIT_S)
    [red] = tiny_redactor.redact_many([make_prompt(f"Write to {NAME} at {CANARY} please")])
    assert isinstance(red, Redacted), red
    assert NAME not in red.text and CANARY not in red.text
    assert "<PERSON>" in red.text and "<EMAIL_ADDRESS>" in red.text


def test_a_prompt_costing_more_cpu_than_its_budget_is_still_refused(
        tiny_redactor: Any) -> None:
    """The long street-lines prompt costs over a second of CPU: past 0.3 s it is refused,
    and the reason says the budget is CPU time."""
    from appliance.records import Unredactable

    [red] = tiny_redactor.redact_many([make_prompt(adversarial())])
    assert isinstance(red, Unredactable)
    assert f"time budget ({TINY:g} s of CPU, pattern_timeout_s)" in red.reason
    assert CANARY not in red.reason and NAME not in red.reason


def test_the_wall_clock_guard_stops_a_prompt_starved_of_cpu(
        tiny_redactor: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A prompt that waits longer than `WALL_FACTOR` times its budget is refused all the
    same (here the factor is 2: 0.6 s), naming the guard: a worker is never held without
    bound."""
    from appliance.records import Unredactable
    from appliance.redact import budget

    monkeypatch.setattr(budget, "WALL_FACTOR", 2.0)
    _waiting(monkeypatch, _own(tiny_redactor, "semtrace_PersonNameRecognizer"), WAIT_S)
    [red] = tiny_redactor.redact_many([make_prompt(f"Write to {NAME} at {CANARY} please")])
    assert isinstance(red, Unredactable)
    assert "wall-clock guard (0.6 s, 2 x pattern_timeout_s" in red.reason
    assert CANARY not in red.reason and NAME not in red.reason


def test_the_policys_wall_timeout_sets_the_guard(
        tiny_redactor: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """`wall_timeout_s` replaces `WALL_FACTOR` times the budget: at 0.6 s the prompt that
    waits 0.8 s is refused naming the key (the default guard, 3 s, lets it through: the test
    above); at 3 s it is redacted although the factor alone (2: 0.6 s) would refuse it."""
    from appliance.records import Redacted, Unredactable
    from appliance.redact import budget

    _waiting(monkeypatch, _own(tiny_redactor, "semtrace_PersonNameRecognizer"), WAIT_S)
    prompt = make_prompt(f"Write to {NAME} at {CANARY} please")
    settings = tiny_redactor.settings
    monkeypatch.setattr(tiny_redactor, "settings",
                        settings.model_copy(update={"wall_timeout_s": 2 * TINY}))
    [red] = tiny_redactor.redact_many([prompt])
    assert isinstance(red, Unredactable)
    assert "wall-clock guard (0.6 s, wall_timeout_s: the host gave it too little CPU)" \
        in red.reason

    monkeypatch.setattr(budget, "WALL_FACTOR", 2.0)
    monkeypatch.setattr(tiny_redactor, "settings",
                        settings.model_copy(update={"wall_timeout_s": 10 * TINY}))
    [red] = tiny_redactor.redact_many([prompt])
    assert isinstance(red, Redacted), red
    assert NAME not in red.text and CANARY not in red.text


@pytest.mark.parametrize(("line", "says"), [
    ("wall_timeout_s = 1.0", "`wall_timeout_s` (1 s) is less than `pattern_timeout_s` (5 s)"),
    ("wall_timeout_s = 0", "key 'wall_timeout_s': Input should be greater than 0"),
    ("wall_timeout_s = 601", "key 'wall_timeout_s': Input should be less than or equal to 600"),
    ('wall_timeout_s = "soon"', "key 'wall_timeout_s': Input should be a valid number"),
])
def test_a_bad_wall_timeout_is_refused_in_one_sentence(tmp_path: Path, line: str,
                                                       says: str) -> None:
    from appliance.config import policy_dir

    target = tmp_path / "policies"
    shutil.copytree(policy_dir(), target)
    toml = target / "redaction.toml"
    toml.write_text(toml.read_text().replace("pattern_timeout_s = 5.0",
                                             f"pattern_timeout_s = 5.0\n{line}"))
    r = run_cli("serve", "--data-dir", str(tmp_path / "d"), "--check",
                env={"SEMTRACE_POLICY_DIR": str(target)})
    assert r.returncode == 2, r.stderr
    sentence = r.stderr.strip()
    assert "redaction.toml" in sentence and says in sentence, sentence
    assert "\n" not in sentence and "Traceback" not in sentence
    assert not (tmp_path / "d").exists()


class _StopsOnce:
    """A `regex` pattern whose first `finditer` stops with `TimeoutError` after `after`
    matches and whose first other call stops at once, as `regex` does when other threads of
    the process used the CPU it counts (the process's) although this prompt's budget is not
    spent."""

    def __init__(self, pattern: str, after: int) -> None:
        import regex

        self.compiled = regex.compile(pattern, regex.VERSION0)
        self.after = after
        self.stopped = 0

    def finditer(self, text: str, **kwargs: Any) -> Any:
        n = 0
        for m in self.compiled.finditer(text, **kwargs):
            self._stop(n)
            yield m
            n += 1
        self._stop(n)  # past the last match, looking for another

    def _stop(self, n: int) -> None:
        if n == self.after and not self.stopped:
            self.stopped += 1
            raise TimeoutError("regex timed out")

    def search(self, text: str, **kwargs: Any) -> Any:
        if not self.stopped:
            self.stopped += 1
            raise TimeoutError("regex timed out")
        return self.compiled.search(text, **kwargs)


def test_a_regex_timeout_from_other_threads_cpu_goes_on_from_the_last_match() -> None:
    """`regex` counts its timeout on the process's CPU clock: a stop with the prompt's own
    budget unspent goes on with the time left and the same matches come out, each once (empty
    matches too); with the budget spent it is refused. Before, the prompt was refused."""
    from appliance.redact.budget import (
        RedactionFailed,
        bounded_call,
        bounded_finditer,
        prompt_budget,
    )

    def fail(_budget: Any) -> RedactionFailed:
        return RedactionFailed("past")

    for pattern, text in ((r"x*", "axxbx"), (r"\d+", "1 22 333 4444"), (r"(?<=a)b|^a", "abab")):
        want = [m.span() for m in _StopsOnce(pattern, 0).compiled.finditer(text)]
        for after in range(len(want) + 1):
            stops = _StopsOnce(pattern, after)
            with prompt_budget(5.0):
                got = [m.span() for m in bounded_finditer(stops, text, (), {}, default=None,
                                                          fail=fail)]
            assert got == want and stops.stopped == 1, (pattern, after)
    stops = _StopsOnce(r"\d+", 0)
    with prompt_budget(5.0):
        found = bounded_call(lambda timeout: stops.search("ab 12", timeout=timeout),
                             default=None, fail=fail)
    assert found.group() == "12" and stops.stopped == 1
    with prompt_budget(TINY, spent=TINY), pytest.raises(RedactionFailed):
        list(bounded_finditer(_StopsOnce(r"\d+", 0), "1 2", (), {}, default=None, fail=fail))
