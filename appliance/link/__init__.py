"""Linking: which earlier prompt (if any) a new prompt continues. Pure; no I/O.

The caller hands in the prompt's vector and the user's candidate history
(same tenant and user only, oldest first); the linker returns a `Link`.
A learned pairwise model (trained offline by bench/train_linker.py, shipped as
`policies/linker-weights.json`, evaluated here with numpy only) scores a
shortlist of candidates: the most recent turns, the latest turn of each recently
active thread and the most similar turns. The best candidate becomes the parent
when its probability reaches `link_threshold`; otherwise a new thread starts.
"""
from __future__ import annotations

from appliance.cues import cue_names, intent_of, keywords, placeholder_types, word_count
from appliance.link.cache import VectorCache
from appliance.link.decide import CachedLinker, decide, link_rule, make_linker
from appliance.link.features import (
    FEATURES,
    FOLLOW_UP_CUES,
    ORPHAN_CUES,
    QUERY_CUES,
    REFERRING_CUES,
    Linker,
    LinkInput,
    features,
)
from appliance.link.model import DECISION_FEATURES, PairModel, decision_row, load_model

__all__ = ["DECISION_FEATURES", "FEATURES", "FOLLOW_UP_CUES", "ORPHAN_CUES", "QUERY_CUES",
           "REFERRING_CUES",
           "CachedLinker", "LinkInput", "Linker", "PairModel", "VectorCache", "cue_names",
           "decide", "decision_row", "features", "intent_of", "keywords", "link_rule",
           "load_model", "make_linker", "placeholder_types", "word_count"]
