"""Presidio's context step runs in linear time with the same results (appliance/redact/
enhancer.py). Presidio's own enhancer cost hits x tokens x keywords: a 32,768-character
prompt dense with PII held the ingest worker for minutes (timed in bench/redact_worst.py;
no wall-clock assert here). These tests hold the replacement to Presidio's own results on
varied texts: real Presidio recognisers, the real spaCy model."""

from __future__ import annotations

from typing import Any

import pytest

SENTENCE = ("Call me on +1 415 555 0134 or mail jo.smith{i}@example.org, card 4111 1111 1111 "
            "1111, IBAN GB82 WEST 1234 5698 7654 32. ")
TEXTS = [
    "My phone number is 212-555-5555 and my credit card is 4111111111111111.",
    "212-555-5555 is the number; card 4111111111111111",
    "ssn: 078-05-1120, social security number 078051120 (the ssn again)",
    "Pay to IBAN: DE89 3704 0044 0532 0130 00, account DE89370400440532013000, bank transfer",
    "passport\tX12345678\nlicense D1234567 driver\n\nphone:(415)555-0134",
    "No PII here at all, just words about a quarterly report.",
    "Email:someone@example.com;phone:+44 20 7946 0958;ip 192.168.0.1, url https://x.example.org",
    "Über-Straße 5, 10115 Berlin — Tel. +49 30 901820, Karte 5500 0000 0000 0004.",
    "x",
    "".join(SENTENCE.format(i=i) for i in range(12)),
    " ".join(["filler"] * 300) + " phone 212-555-5555",
]


def _engine(redactor: Any, enhancer: Any) -> Any:
    from presidio_analyzer import AnalyzerEngine

    analyzer = redactor._analyzer
    return AnalyzerEngine(registry=analyzer.registry, nlp_engine=analyzer.nlp_engine,
                          supported_languages=["en"], context_aware_enhancer=enhancer)


def _analysis(engine: Any, redactor: Any, text: str, keywords: bool,
              context: list[str] | None) -> list[tuple[Any, ...]]:
    """Every result, scores and the context word that raised them, before any threshold."""
    from presidio_analyzer.nlp_engine import NlpArtifacts

    artifacts = engine.nlp_engine.process_text(text, "en")
    # The lower-cased words (the redactor's keywords: no lemmatiser runs), or none at all.
    artifacts.keywords = (NlpArtifacts.set_keywords(engine.nlp_engine, artifacts.lemmas, "en")
                          if keywords else [])
    results = engine.analyze(text=text, language="en", entities=redactor._entities,
                             score_threshold=0.0, nlp_artifacts=artifacts, context=context,
                             return_decision_process=True)
    explained = [(r, r.analysis_explanation) for r in results]
    return sorted((r.entity_type, r.start, r.end, r.score,
                   e.supportive_context_word if e else "",
                   e.score_context_improvement if e else 0) for r, e in explained)


@pytest.mark.parametrize("params", [{}, {"context_prefix_count": 2, "context_suffix_count": 3},
                                    {"context_prefix_count": 0, "context_suffix_count": 1}])
def test_same_scores_as_presidio(redactor: Any, params: dict[str, int]) -> None:
    """On every text, with and without keywords and outside context words, the results
    (spans, scores, the context word that raised each) equal Presidio's enhancer's."""
    from presidio_analyzer.context_aware_enhancers import LemmaContextAwareEnhancer

    from appliance.redact.enhancer import LinearContextEnhancer

    presidio = _engine(redactor, LemmaContextAwareEnhancer(**params))
    ours = _engine(redactor, LinearContextEnhancer(**params))
    raised = 0
    for text in TEXTS:
        for keywords in (False, True):
            for context in (None, ["account"]):
                expected = _analysis(presidio, redactor, text, keywords, context)
                assert _analysis(ours, redactor, text, keywords, context) == expected, text
                raised += sum(1 for r in expected if r[4])
    # Not vacuous: context words were found and raised scores.
    assert raised >= 5


def test_redactor_uses_it_and_redacts_the_same(redactor: Any) -> None:
    """The redactor's analyser runs the linear enhancer (context words as whole words), and
    redacts each text exactly as with Presidio's own matching the same way (no text here has
    "social" or "security" apart from "social security", where the redactor's rule differs)."""
    from presidio_analyzer.context_aware_enhancers import LemmaContextAwareEnhancer

    from appliance.redact.enhancer import LinearContextEnhancer, whole_word_match

    class PresidioWholeWords(LemmaContextAwareEnhancer):  # type: ignore[misc]
        def _find_supportive_word_in_context(self, words: Any, context: Any, *_: Any) -> str:
            return whole_word_match(words, context)

    analyzer = redactor._analyzer
    mine = analyzer.context_aware_enhancer
    assert isinstance(mine, LinearContextEnhancer) and mine.whole_words
    ours = redactor.analyze_many(TEXTS)
    analyzer.context_aware_enhancer = PresidioWholeWords()
    try:
        expected = redactor.analyze_many(TEXTS)
    finally:
        analyzer.context_aware_enhancer = mine
    assert ours == expected
    assert sum(len(hits) for hits in ours) > 30


@pytest.mark.parametrize("keywords", [False, True])
def test_same_surrounding_words_at_every_offset(redactor: Any, keywords: bool) -> None:
    """For a hit starting at any character (between tokens, inside one, past the last), the
    words gathered around it equal Presidio's, or both raise Presidio's error."""
    from presidio_analyzer.context_aware_enhancers import LemmaContextAwareEnhancer
    from presidio_analyzer.nlp_engine import NlpArtifacts

    from appliance.redact.enhancer import ContextIndex, LinearContextEnhancer

    text = "Phone:  +1 415 555 0134,\n\ncard 4111-1111-1111-1111 of Ms Keller; ssn 078-05-1120 "
    engine = redactor._analyzer.nlp_engine
    artifacts = engine.process_text(text, "en")
    artifacts.keywords = (NlpArtifacts.set_keywords(engine, artifacts.lemmas, "en")
                          if keywords else [])
    presidio = LemmaContextAwareEnhancer(context_prefix_count=3, context_suffix_count=2)
    ours = LinearContextEnhancer(context_prefix_count=3, context_suffix_count=2)
    ours._local.index = (artifacts, ContextIndex.of(artifacts))

    def words(enhancer: Any, start: int) -> list[str] | str:
        try:
            return sorted(enhancer._extract_surrounding_words(artifacts, "", start))
        except ValueError as error:
            return str(error)

    for start in range(len(text) + 2):
        assert words(ours, start) == words(presidio, start), start


def test_index_declines_tokens_out_of_order() -> None:
    """An empty or out-of-order token: the index gives no answer and Presidio's scan runs."""
    from types import SimpleNamespace

    from appliance.redact.enhancer import ContextIndex

    odd = SimpleNamespace(tokens=["ab", "", "cd"], tokens_indices=[0, 2, 2],
                          lemmas=["ab", "", "cd"], keywords=["cd"])
    assert ContextIndex.of(odd).token_at(1) is None
    fine = SimpleNamespace(tokens=["ab", "cd"], tokens_indices=[0, 3], lemmas=["ab", "Cd"],
                           keywords=["cd"])
    index = ContextIndex.of(fine)
    assert [index.token_at(s) for s in range(6)] == [0, 0, 1, 1, 1, None]
    assert index.backward(1, 2) == [1] and index.forward(0, 1) == [1]


def test_a_pasted_list_of_ip_addresses_is_redacted_not_refused(redactor: Any,
                                                               policies: Any) -> None:
    """A firewall allow-list pasted as one comma-separated line (no spaces: one spaCy
    token of the whole prompt) holds some 3,000 IP addresses. The context step looked up
    each hit's surrounding words whole-word, splitting that 32,000-character token into
    its 13,000 runs of digits once per hit: past the prompt's 5 s of CPU, refused
    `unredactable` ("Presidio's context step ran past the prompt's time budget"). Now each
    word is split once per text, and every address is replaced."""
    from conftest import make_prompt

    from appliance.records import Redacted

    size = policies.correlation.max_text_chars
    ips = [f"10.{i // 65536}.{i // 256 % 256}.{i % 256}" for i in range(1, size // 8)]
    text = ",".join(ips)[:size].rsplit(",", 1)[0]
    [out] = redactor.redact_many([make_prompt(text)])
    assert isinstance(out, Redacted), f"refused: {getattr(out, 'reason', out)}"
    assert not any(c.isdigit() for c in out.text), out.text[:200]
    assert out.text.count("<IP_ADDRESS") == text.count(",") + 1
