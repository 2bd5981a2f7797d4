"""Generic English cues in a (redacted) prompt: follow-ups, corrections, intent. Pure.

No lexicon here is keyed to a data set: pronouns, ellipsis ("what about",
"and the"), elaboration ("tell me more"), corrections ("actually, I meant"),
conversation management ("repeat that"), deictic words ("there", "that day",
"too", "instead"), answers to the assistant ("yes, that works", "the first
one"), openings ("hi, I need...") and closings ("that's all, bye"), task verbs.
"""

from __future__ import annotations

import re
from functools import lru_cache

_PLACEHOLDER = re.compile(r"<([A-Z][A-Z_]*?)(?:_\d+)?>")
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_CUES = {
    "pronoun": r"\b(it|its|it's|itself|they|them|their|theirs|he|him|his|she|her|hers)\b",
    # "that" and "there" only where they point back ("about that", "go there", "...that?"),
    # not as a relative pronoun ("a function that sorts") or existential ("is there").
    "demonstrative": r"\b(this|these|those|such|the same|the other|the former|the latter|"
                     r"that one|the last one|the first one)\b|^that\b|\bthat\W*$|"
                     r"\b(about|of|for|with|on|in|at|from|to|like|is|was|do|does|did|mean|than|"
                     r"after|before|by|explain|repeat) that\b|\bthere\W*$|"
                     r"\b(go|get|going|getting|went|live|stay|drive|fly|travel|visit|from|near) "
                     r"there\b",
    "ellipsis": r"^(and|or|but|also|so|then|plus)\b|^(what|how) about\b|^what if\b|^same\b|"
                r"\b(as well|too|instead)\W*$|^(any|which) other\b",
    "elaboration": r"\b(tell me more|more about|more details?|more info|(can|could) you explain|"
                   r"explain (that|this|it|more|further|why)|elaborate|expand on|go on|continue|"
                   r"keep going|what else|anything else|why is that|how so|for example|"
                   r"give me (an )?examples?)\b",
    "correction": r"^no\b|\b(actually|i meant|i mean|not what i|that's not|that is not|"
                  r"the other one|rather than|wrong|i said|let me rephrase|i was asking)\b",
    "acknowledgement": r"^(thanks|thank you|thank|thx|ok|okay|great|cool|awesome|perfect|nice|"
                       r"good|got it|sounds good|interesting|wow|really|agreed|fair|sure|alright|"
                       r"all right|excellent|wonderful|yes|yeah|yep|bye|goodbye|cheers)\b",
    "management": r"\b(repeat (that|it|this|the last)|say (that|it) again|start over|go back|"
                  r"never ?mind|forget (it|that|about it)|change the (topic|subject)|new topic|"
                  r"summari[sz]e (our|this|the) (conversation|chat|discussion)|"
                  r"what did (i|you) (just )?(say|ask)|cancel that|undo that)\b",
    "question": r"^(what|who|whom|whose|where|when|why|how|which|is|are|was|were|do|does|did|"
                r"can|could|should|would|will|tell me|give me|show me|find|list|explain|"
                r"describe)\b",
    # Words that point at a place, time or thing already in the conversation.
    "deictic": r"\b(there|here|then|that (day|time|night|place|date|week|weekend|morning|"
               r"evening|afternoon|one|way)|the same|too|also|instead|either|as well|another|"
               r"else|again|still|the rest|both|each|anyway|otherwise)\b|"
               r"\b(anything|something|somewhere|anywhere|nothing) (\w+er|else|more|less)\b",
    # Replies to a question the assistant asked: yes/no, a choice, "just two of us".
    "answer": r"^(yes|yeah|yep|yup|no|nope|nah|sure|ok|okay|correct|right|exactly|absolutely|"
              r"definitely|of course|please do|go ahead|that works|that's fine|that is fine|"
              r"sounds good|that's right|that is right|not really|not yet|maybe|probably|"
              r"i do|i don't|i did|i didn't|i am|i'm not|i have|i haven't|none|neither|"
              r"just|only|either)\b|"
              r"\b(the )?(first|second|third|fourth|last|other|former|latter|cheapest|cheaper|"
              r"earliest|earlier|later|latest|closest|nearest|best|top|same|next) "
              r"(one|ones|option|options|choice|time|slot)\b|"
              r"^(option|number|choice|at|for|around|about|by|on|in|with|from) \S+( \S+)?\W*$",
    # How people open a conversation with an assistant.
    "opening": r"^(hi|hello|hey|hiya|howdy|good (morning|afternoon|evening|day)|greetings|"
               r"dear)\b|\b(i need|i want|i'd like|i would like|i'm looking for|i am looking for|"
               r"can you help|could you help|help me|i have a question|quick question|"
               r"i was wondering|i'm trying to|i am trying to)\b",
    # A greeting: people greet when they open a conversation, hardly ever inside one (unlike
    # "I need" / "I'd like", which also ask for the next thing mid-conversation).
    "greeting": r"^(hi|hello|hey|hiya|howdy|good (morning|afternoon|evening|day)|greetings|"
                r"dear)\b",
    # How people close one.
    "closing": r"\b(bye|goodbye|good night|that's all|that is all|that's it|that is it|"
               r"nothing else|no thanks|no thank you|have a (good|nice|great)|take care|"
               r"see you|talk (to you )?later)\b",
}
_CUE_RE = {name: re.compile(rx) for name, rx in _CUES.items()}
_ERROR = re.compile(r"\b(i meant|i mean\b|not what i (meant|asked|wanted|said)|that's not (it|"
                    r"right|what)|that is not (it|right|what)|you misunderstood|wrong|"
                    r"no,? the other|i said|let me rephrase|i was asking about)")
_TASK = re.compile(r"^(please |(can|could|would|will) you |i (need|want) you to |help me )?"
                   r"(write|create|generate|draft|compose|make|build|translate|summari[sz]e|"
                   r"rewrite|rephrase|convert|set|schedule|remind|book|send|navigate|take me|"
                   r"give me directions|direct me|find me|add|remove|delete|calculate|plan|fix|"
                   r"design|implement|edit|format|sort|draw|call|play|turn|order|reserve)\b")
_STOP_WORDS = """a an the and or but if then so of to in on at by for with from about into
over under as is are was were be been being am do does did doing have has had having i me my
we our you your he him his she her it its they them their this that these those there here
what which who whom whose when where why how can could should would will shall may might must
not no yes please thanks thank okay ok tell know like get give show want need think let also
just more most some any all very much many other such same than too one ones"""
_STOP = frozenset(_STOP_WORDS.split())


def _normal(text: str) -> str:
    return _PLACEHOLDER.sub(" ", text).replace("\u2019", "'").lower().strip()


# A reference with nothing in the prompt itself to point at ("How long does it keep?",
# "What are its side effects?", "Is this the one?"): a third-person pronoun, or a
# demonstrative standing alone, before any noun phrase of the prompt's own (a redacted
# entity, a name, a noun after a determiner or a number). Not the "it" of weather, time
# and extraposition ("is it going to rain", "it's time to", "is it safe to", "how is it
# going"), nor a self-introduction ("this is <PERSON>", "it's me").
_TOKEN = re.compile(r"<[A-Z][A-Z_]*(?:_\d+)?>|[A-Za-z0-9]+(?:'[a-z]+)?|[.!?;]")
_PRONOUN_WORDS = "it its it's itself they them their theirs themselves he him his she her hers"
_PRONOUNS = frozenset(_PRONOUN_WORDS.split())
_DEMONSTRATIVES = frozenset({"this", "these", "those"})
_ALONE_WORDS = """is was are were one ones means mean sounds works will would could can should
does did do has have had"""
_STANDS_ALONE = frozenset(_ALONE_WORDS.split())  # "this is...", "is this one...": a pronoun
_DETERMINER_WORDS = """a an the my your our some any each every no another his her their its
this that these those one two three four five six seven eight nine ten both all several many
few"""
_DETERMINERS = frozenset(_DETERMINER_WORDS.split())
_WEATHER = (r"rain\w*|snow\w*|drizzl\w*|hail\w*|storm\w*|frost\w*|sunny|cloudy|windy|foggy|"
            r"misty|humid|overcast|clear|dry|wet|hot|cold|warm|cool|chilly|freezing|dark|"
            r"light|late|early")
_JUDGEMENT = (r"possible|necessary|important|better|best|ok|okay|safe|worth|true|hard|easy|"
              r"difficult|normal|common|legal|bad|good|wise|healthy|advisable|time")
_EXPLETIVE = re.compile(
    r"\b(is|was|will|would|does|did|'s|isn't|won't)\s+it\s+(be\s+|get\s+|going\s+to\s+"
    r"(be\s+)?|gonna\s+(be\s+)?|supposed\s+to\s+(be\s+)?)?(\w+\s+)?(" + _WEATHER + r")\b|"
    r"\bit('s|\s+is|\s+was|\s+will\s+be|\s+be|\s+going\s+to\s+be|\s+gonna\s+be|\s+gets|"
    r"\s+got|\s+looks|\s+feels|\s+seems)?\s+(going\s+to\s+|gonna\s+|supposed\s+to\s+)?"
    r"(" + _WEATHER + r")\b|"
    r"\b(is|was|would|will|isn't|it's|it\s+is|it\s+was)\s+(it\s+)?(\w+\s+)?(" + _JUDGEMENT
    + r")\s+(to|that|for|if)\b|"
    r"\bhow('s|\s+is|\s+was|\s+goes)?\s+it(\s+going|\s+goin)?\b|"
    r"\bhow\s+(long|far|much\s+time)\s+(does|will|would|did|is)\s+it\s+(take|to)\b|"
    r"\bit\s+takes?\s+\w+\s+to\b|\bit\s+(seems|appears|looks)\s+(like|that|as)\b")
_INTRODUCTION = re.compile(r"\b(it's|it is|this is)\s+(me\b|<[A-Z])", re.IGNORECASE)


@lru_cache(maxsize=65536)
def unresolved_reference(text: str) -> bool:
    """A pronoun or a lone demonstrative that nothing earlier in the (redacted) prompt can
    resolve: the prompt depends on what came before it."""
    flat = text.replace("\u2019", "'")
    low = flat.lower()
    expletive = _EXPLETIVE.search(low) is not None
    if _INTRODUCTION.search(flat):
        return False
    tokens = _TOKEN.findall(flat)
    noun_seen, plural_seen, prev = False, False, "."
    for k, tok in enumerate(tokens):
        word = tok.lower()
        base = word[:-2] if word.endswith("'s") and word[:-2] not in _STOP else word
        # "my sister's birthday ... it": a possessive; "that's", "it's": not one
        after = tokens[k + 1].lower() if k + 1 < len(tokens) else "."
        pronoun = word in _PRONOUNS and not (expletive and word in ("it", "it's"))
        lone = word in _DEMONSTRATIVES and (after in _STANDS_ALONE or after in ".!?;")
        bound = word in _BOUND_PLURAL  # "planets ... their moons": bound; "them": not
        if (pronoun or lone) and not noun_seen and not (bound and plural_seen):
            return True
        if (tok.startswith("<") or (tok[0].isupper() and word != "i" and prev not in ".!?;")
                or (prev in _DETERMINERS and base not in _PRONOUNS and base.isalpha())):
            noun_seen = True
        if (base == word and word.isalpha() and len(word) >= 4 and word.endswith("s")
                and not word.endswith(("ss", "us", "is")) and word not in _NOT_PLURAL
                and word not in _STOP and prev not in _WH and word not in _PRONOUNS):
            plural_seen = True
        prev = word
    return False


@lru_cache(maxsize=65536)
def cue_names(text: str) -> frozenset[str]:
    """Names of the follow-up, correction and dialogue cues present in a redacted text."""
    norm = re.sub(r"\b(is|are|was|were) there\b", " ", _normal(text))
    found = {name for name, rx in _CUE_RE.items() if rx.search(norm)}
    if unresolved_reference(text):
        found.add("unresolved")
    return frozenset(found)


_ACK_START = re.compile(r"^(thanks|thank you|ok|okay|great|cool|awesome|perfect|nice|good|"
                        r"got it|sounds good|sure|alright|all right|excellent|wonderful|yes|yeah|"
                        r"yep|fine|lovely)\b\W*")
_REQUEST = re.compile(r"\b(and|also|now|next|could you|can you|would you|please|i('d| would) "
                      r"(also )?like|i need|i want|what|how|where|when|which|who|is there|"
                      r"are there|find|book|get|tell|show|give)\b")


@lru_cache(maxsize=65536)
def ack_then_request(text: str) -> bool:
    """An acknowledgement followed by a further request ("Great, and could you also...")."""
    norm = _normal(text)
    m = _ACK_START.match(norm)
    if m is None:
        return False
    rest = norm[m.end():]
    return word_count(rest) >= 3 and bool(_REQUEST.search(rest))


@lru_cache(maxsize=65536)
def keywords(text: str) -> frozenset[str]:
    """Content words of a redacted text (placeholders dropped, plurals folded)."""
    words = (w.removesuffix("'s") for w in _WORD.findall(_normal(text)))
    return frozenset(w[:-1] if len(w) > 4 and w.endswith("s") and not w.endswith("ss") else w
                     for w in words if len(w) >= 3 and w not in _STOP)


@lru_cache(maxsize=65536)
def placeholder_types(text: str) -> frozenset[str]:
    """Entity types redacted out of a text (`<LOCATION_1>` -> LOCATION)."""
    return frozenset(_PLACEHOLDER.findall(text))


@lru_cache(maxsize=65536)
def word_count(text: str) -> int:
    """Words of a redacted text, a placeholder counting as one."""
    return len(_WORD.findall(_normal(text))) + len(_PLACEHOLDER.findall(text))


def intent_of(text: str) -> str:
    """The prompt's intent from generic cues: recovery, management, task or information."""
    norm = _normal(text)
    cues = cue_names(text)
    if _ERROR.search(norm):
        return "error_recovery"
    if "management" in cues or ("acknowledgement" in cues and word_count(text) <= 4):
        return "conversation_management"
    return "task_execution" if _TASK.search(norm) else "information_seeking"




# Explicit references to an earlier conversation ("going back to...", "the one in Texas",
# "as you said earlier"): the only cue that lets a prompt with an empty history join an
# earlier thread.
_BACK_REFERENCE = re.compile(
    r"\b(go|goes|going|went|get|getting|come|coming|circle|circling) back to\b|"
    r"\bback to (the|our|my|your|what|that|those|this)\b|"
    r"\b(earlier|before|last time|previously),? (you|we|i) (said|mentioned|talked|discussed|"
    r"suggested|recommended|asked|told)\b|"
    r"\b(you|we|i) (said|mentioned|talked about|discussed|suggested|recommended|asked about|"
    r"told me) (earlier|before|last time|previously|yesterday)\b|"
    r"\b(as|like) (you|we|i) (said|mentioned|discussed|talked about)\b|"
    r"\b(our|the|that|your) (earlier|previous|last|other) (conversation|chat|discussion|"
    r"question|answer|suggestion|recommendation)\b|"
    r"\b(remember|recall) (when|what|the|that|our|how)\b|"
    r"\bthe (one|ones) (in|from|at|with|about|you)\b|"
    r"\bwhere (we|you|i) left off\b|\bpick(ing)? up where\b|"
    r"\b(continuing|continue|following up) (from|with|on) (the|our|my|that|your)\b")


def refers_back(text: str) -> bool:
    """Whether a (redacted) prompt explicitly refers to an earlier conversation."""
    return bool(_BACK_REFERENCE.search(_normal(text)))


def clear_cue_caches() -> None:
    """Forget the memoised results of every text seen (after an erasure or a shred)."""
    for f in (cue_names, ack_then_request, keywords, placeholder_types, word_count,
              unresolved_reference, orphan_cues):
        f.cache_clear()


# Which follow-up cues still point back when a prompt starts a thread (the `orphaned`
# label only; the linker's features use `cue_names`). An opener often carries one in a
# form that does not: "Can you explain how X works?", "...What could be wrong?", "my
# brother will be there as well", "How far are planets from their stars?".
_ELAB_BACK = re.compile(
    r"\b(more|explain|elaborate|expand|go on|continue)( \w+)?( on| about| of| with)? "
    r"(it|that|this|them|those|these|him|her)\b|\b(what else|anything else|why is that|how so)\b|"
    r"\b(tell me more|more details?|more info|elaborate|expand on|go on|continue|keep going|"
    r"for example|give me (an )?examples?|explain( more| further| why)?)\W*$")
_CORRECTION_BACK = re.compile(
    r"(^|[.!?]\s*)(no|nope|actually|wrong|rather|i meant|i mean|i said|not what)\b|"
    r"\b(i meant|not what i|(that's|that is|this is|it's|it is) not (it|right|what|correct|"
    r"true)|not correct|you misunderstood|let me rephrase|i was asking|i said)\b|"
    r"^.{0,40}\bthe other one\b")
_ELLIPSIS_BACK = re.compile(r"^(and|or|but|also|so|then|plus)\b|^(what|how) about\b|"
                            r"^what if\b|^same\b|^(any|which) other\b")
_SELF_IT = re.compile(r"\bwhat (does|did|do|would) it mean (to|when|if|that|for)\b|"
                      r"\bhow (" + _WEATHER + r") (is|was|will|does|did) it\b|"
                      r"^it's (my|our)\b")
_PLURAL_WORDS = "they them their theirs themselves"
_PLURAL_PRONOUNS = frozenset(_PLURAL_WORDS.split())
_BOUND_PLURAL = frozenset({"their", "theirs", "themselves"})  # refer within the clause
_WH_WORDS = "what who which that"
_WH = frozenset(_WH_WORDS.split())  # "what causes it": a verb, not a plural noun
_NOT_PLURAL_WORDS = """is was has does this its thus always perhaps sometimes yes plus unless
whereas across less nevertheless regardless besides towards afterwards us thats whats lets hes
shes heres theres whos"""
_NOT_PLURAL = frozenset(_NOT_PLURAL_WORDS.split())


def _antecedent_before_pronoun(text: str) -> bool:
    """A noun of the prompt's own before its first third-person pronoun: a word after a
    determiner or a possessive ("my buddy's birthday ... it"), or a plural before a plural
    pronoun ("how far are planets from their stars")."""
    tokens = [t.lower() for t in _TOKEN.findall(text.replace("\u2019", "'"))]
    first = next((k for k, w in enumerate(tokens) if w in _PRONOUNS or w in _DEMONSTRATIVES),
                 None)
    if first is None:
        return False
    plural_pronoun = tokens[first] in _PLURAL_PRONOUNS
    prev = "."
    for word in tokens[:first]:
        base = word.removesuffix("'s")
        if base.isalpha() and prev in _DETERMINERS and base not in _STOP:
            return True
        if (plural_pronoun and base == word and len(word) >= 4 and word.endswith("s")
                and not word.endswith(("ss", "us", "is")) and word not in _NOT_PLURAL
                and word not in _STOP and prev not in _WH):
            return True
        prev = word
    return False


@lru_cache(maxsize=65536)
def orphan_cues(text: str) -> frozenset[str]:
    """The follow-up cues of a (redacted) prompt that still point back at something when
    nothing precedes it: what makes a thread's first prompt `orphaned` rather than `new`."""
    cues = cue_names(text)
    if "greeting" in cues:  # people greet when they open a conversation
        return frozenset()
    norm = re.sub(r"^[\W_]+", "", _normal(text))
    short = word_count(text) <= 6
    found = set()
    if ("unresolved" in cues and not _SELF_IT.search(norm)
            and not _antecedent_before_pronoun(text)):
        found.add("unresolved")
    if "elaboration" in cues and (short or (_ELAB_BACK.search(norm)
                                            and not _antecedent_before_pronoun(text))):
        found.add("elaboration")
    if "correction" in cues and (short or _CORRECTION_BACK.search(norm)):
        found.add("correction")
    if "ellipsis" in cues and (short or _ELLIPSIS_BACK.search(norm)):
        found.add("ellipsis")
    return frozenset(found)
