"""The six emotional-quality metrics: pure, deterministic functions ``(response, scenario) -> float`` in [0, 1].

Every metric is registered with ``@register_metric`` into ``REGISTRY`` (ordered as ``METRIC_KEYS``), in the style of
lm-evaluation-harness: a name, whether higher is better, a one-line description and the function.  ``score_response``
runs all six; ``overall_score`` is their mean.

``scenario`` is duck-typed: it needs ``emotion`` (an accepted label of ``emotion_taxonomy``) and may have ``prompt``,
``expected_sentiment`` ("positive" / "negative" / "neutral", or None = unknown) and ``intensity`` (0..1 or None).
``ScoringTarget`` is a minimal stand-in for callers without an ``emotional_dataset_builder.Scenario``.

Resources: the emotion cue lexicons of ``emotion_taxonomy`` (hand-written) and the VADER sentiment analyser and
lexicon (vaderSentiment, MIT licence), loaded once and lazily.  No network is used.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise
from typing import Any

from emotion_taxonomy import PROFILES, SELF_BLAME_WORDS, EmotionProfile, affinity, emotion_profile, word_cues
from errors import UserError

METRIC_KEYS = (
    "response_fluency",
    "emotional_intensity",
    "emotional_match",
    "empathy_score",
    "metaphor_usage",
    "sentiment_accuracy",
)

SENTIMENTS = ("positive", "negative", "neutral")


@dataclass(frozen=True)
class ScoringTarget:
    """What a response is scored against when there is no full Scenario (``--score-file``, validation)."""

    emotion: str
    expected_sentiment: str | None = None
    intensity: float | None = None
    prompt: str = ""


MetricFn = Callable[[str, Any], float]


@dataclass(frozen=True)
class MetricSpec:
    """One registered metric: its key, direction, a one-line description and the scoring function."""

    name: str
    higher_is_better: bool
    description: str
    fn: MetricFn


REGISTRY: dict[str, MetricSpec] = {}


def register_metric(name: str, *, description: str, higher_is_better: bool = True) -> Callable[[MetricFn], MetricFn]:
    """Decorator adding a metric to ``REGISTRY`` under ``name`` (which must be one of ``METRIC_KEYS``)."""

    def decorate(fn: MetricFn) -> MetricFn:
        if name not in METRIC_KEYS or name in REGISTRY:
            raise ValueError(f"metric {name!r} is not a new member of METRIC_KEYS")
        REGISTRY[name] = MetricSpec(name, higher_is_better, description, fn)
        return fn

    return decorate


# --- shared text analysis ---------------------------------------------------------------------------------------

_VADER: Any = None


def _vader() -> Any:
    """The VADER analyser, created on first use (reading its lexicon costs a few milliseconds)."""
    global _VADER
    if _VADER is None:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        _VADER = SentimentIntensityAnalyzer()
    return _VADER


_QUOTES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"', "\u2026": "...",
                         "\ufe0f": None, "\u200d": None})
# Pre-tokenised corpora and some model outputs split contractions ("do n't", "i 'm"); join them back.
_SPLIT_CONTRACTION = re.compile(r"\s+(n't|'(?:m|s|re|ve|ll|d))\b", re.IGNORECASE)
# Text stripped of apostrophes and split ("don t", "i m", "isn t"): join the negations and "i m" back.
_STRIPPED_CONTRACTION = re.compile(r"\b(do|does|did|is|was|are|were|ca|could|wo|would|should|have|has|had|ai|must"
                                   r"|need)n t\b|\b(i) (m)\b", re.IGNORECASE)
_EMOJI = "\U0001f000-\U0001faff\u2600-\u27bf\u2764"
_TOKEN = re.compile(rf"<3|[:;=]-?[()dp]|:'\(|[a-z0-9]+(?:'[a-z0-9]+)*|[.!?]+|[,;:]|[{_EMOJI}]")
_RAW_WORD = re.compile(r"\S+")
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])[\"')\]]*\s+|\n+")
_WORD = re.compile(r"[a-z0-9]")
_PUNCTUATION = re.compile(r"[.!?,;:]+$")

_NEGATORS = frozenset("""not no never nothing nobody none neither nor without hardly barely cannot can't cant don't dont
    doesn't doesnt didn't didnt isn't isnt wasn't wasnt aren't arent weren't werent won't wont wouldn't wouldnt
    couldn't couldnt shouldn't shouldnt haven't havent hasn't hasnt hadn't hadnt ain't aint""".split())
# "no"/"nothing" negate only the next word ("no hope"); further back they are usually an interjection ("no, i feel").
_ADJACENT_NEGATORS = frozenset("no nothing none".split())
# "never been this sad", "never felt so happy": "never" before these intensifies rather than negates.
_NEVER_INTENSIFIES = frozenset("been felt seen had was were".split())
_FEEL_WORDS = frozenset("feel feels feeling felt".split())
_FEEL_BOOST = 3.0
# Weight of a negated cue ("not happy", "don't be scared") as talk about that feeling, in intensity and match.
_DENIED_WEIGHT = 0.5
# Weak tone leans for text without sentiment words: negation reads as denial or refusal, "!" as enthusiasm.
_NEGATION_LEAN = 0.05
_EXCLAIM_LEAN = 0.03
# Words the VADER lexicon scores but that are mostly functional in conversation, so they are no sign of feeling.
_FUNCTIONAL_VADER = frozenset("""like well pretty kind no yes please ok okay fine sure yeah yep want play share free
    true matter certain clear clearly help party agree agreed join easy big""".split())


def _normalize(text: str) -> str:
    text = _SPLIT_CONTRACTION.sub(r"\1", unicodedata.normalize("NFC", text).translate(_QUOTES))
    return _STRIPPED_CONTRACTION.sub(_join_contraction, text)


def _join_contraction(match: re.Match[str]) -> str:
    if match.group(2):
        return f"{match.group(2)}'{match.group(3)}"
    return f"{match.group(1)}n't"


def _is_word(token: str) -> bool:
    return bool(_WORD.match(token))


@dataclass(frozen=True)
class _Analysis:
    """Everything the metrics read from one response, computed once per distinct text."""

    text: str  # normalised, original case
    lower: str
    tokens: tuple[str, ...]  # lowercase words, punctuation marks, emoticons and emoji
    words: tuple[str, ...]  # the word tokens only
    sentences: tuple[str, ...]
    cues: dict[str, float]  # profile name -> cue mass (negated cues dropped)
    cue_total: float
    denied: dict[str, float]  # profile name -> mass of negated cues ("not happy", "don't worry")
    sentence_compounds: tuple[float, ...]
    lexical_valence: float  # -1..1 from the cue lexicon's valences
    negations: int  # negators ("not", "never", "don't", ...)


def _match_cues(tokens: tuple[str, ...]) -> tuple[dict[str, float], float, dict[str, float]]:
    """Cue mass per profile, the valence of negated cues and the mass of negated cues per profile.

    Phrases match first (longest wins), then words.  A cue after a negator in its clause is dropped from the masses
    ("not happy" is no evidence of joy) but its valence, flipped, goes into the second value: "not happy" leans
    negative, "not bad" mildly positive (half weight: negated negatives are weaker praise).  The third value keeps
    the negated cues themselves: a denied feeling is still talk about that feeling ("don't be scared").
    """
    from emotion_taxonomy import CUE_LEXICON

    masses: dict[str, float] = {}
    denied: dict[str, float] = {}
    negated_valence = 0.0
    i = 0
    while i < len(tokens):
        token = tokens[i]
        found: tuple[tuple[str, float], ...] = ()
        span = 1
        for words, cues in CUE_LEXICON.phrases.get(token, ()):
            if tokens[i:i + len(words)] == words:
                found, span = cues, len(words)
                break
        if not found:
            if "?" in token:
                found = word_cues("?")
            elif not _PUNCTUATION.match(token):
                found = word_cues(token)
        if found and _negated(tokens, i):
            for name, weight in found:
                valence = PROFILES[name].valence
                negated_valence += -weight if valence == "positive" else 0.5 * weight if valence == "negative" else 0.0
                if "?" not in token:
                    denied[name] = denied.get(name, 0.0) + weight
        elif found:
            # The word after "feel"/"felt" names the feeling itself ("i feel drained"): stronger evidence.
            named = token in _FEEL_WORDS or any(t in _FEEL_WORDS for t in tokens[max(0, i - 3):i])
            boost = _FEEL_BOOST if named else 1.0
            if named and span == 1 and token in SELF_BLAME_WORDS:
                found = (("shame", 1.0),)
            for name, weight in found:
                masses[name] = masses.get(name, 0.0) + weight * boost
        i += span
    return masses, negated_valence, denied


def _negated(tokens: tuple[str, ...], index: int) -> bool:
    for back in range(index - 1, max(index - 4, -1), -1):
        token = tokens[back]
        if _PUNCTUATION.match(token):
            return False
        if token in _NEGATORS and (back == index - 1 or token not in _ADJACENT_NEGATORS):
            following = tokens[back + 1] if back + 1 < len(tokens) else ""
            return not (token == "never" and following in _NEVER_INTENSIFIES)
    return False


@lru_cache(maxsize=8192)
def _analyze(response: str) -> _Analysis:
    text = _normalize(response or "").strip()
    lower = text.lower()
    tokens = tuple(_TOKEN.findall(lower))
    words = tuple(t for t in tokens if _is_word(t))
    sentences = tuple(s.strip() for s in _SENTENCE_SPLIT.split(text) if s and s.strip())
    cues, negated_valence, denied = _match_cues(tokens)
    vader = _vader()
    compounds = tuple(vader.polarity_scores(s)["compound"] for s in sentences if _WORD.search(s.lower()))
    positive = sum(m for name, m in cues.items() if PROFILES[name].valence == "positive")
    negative = sum(m for name, m in cues.items() if PROFILES[name].valence == "negative")
    return _Analysis(
        text=text, lower=lower, tokens=tokens, words=words, sentences=sentences, cues=cues,
        cue_total=sum(cues.values()), denied=denied, sentence_compounds=compounds,
        lexical_valence=(positive - negative + negated_valence) / (positive + negative + abs(negated_valence) + 1.0),
        negations=sum(1 for t in tokens if t in _NEGATORS),
    )


def _clip(value: float) -> float:
    return 0.0 if value < 0.0 else 1.0 if value > 1.0 else value


def _saturate(amount: float, rate: float = 1.0) -> float:
    """1 - exp(-rate * amount): 0 for no evidence, approaching 1 as evidence accumulates."""
    return 1.0 - math.exp(-rate * max(0.0, amount))


def _profile(scenario: Any) -> EmotionProfile:
    return emotion_profile(getattr(scenario, "emotion", ""))


def _expected_sentiment(scenario: Any) -> str | None:
    value = getattr(scenario, "expected_sentiment", None)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str) or value.strip().lower() not in SENTIMENTS:
        raise UserError(f"expected_sentiment must be one of {', '.join(SENTIMENTS)} or empty, got {value!r}")
    return value.strip().lower()


def _target_intensity(scenario: Any) -> float | None:
    value = getattr(scenario, "intensity", None)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise UserError(f"intensity must be a number between 0 and 1, got {value!r}")
    return float(value)


def _tone(analysis: _Analysis) -> float:
    """Tone in -1..1: mean VADER compound over sentences + 0.5 * the cue lexicon's valence - 0.05 if the text has a
    negator + 0.03 if it has an exclamation mark, clipped.

    Per sentence so a long reply does not saturate towards +-1; the emotion lexicon adds what VADER's general lexicon
    lacks (disapproval and annoyance words, negated emotion words: "not happy").  The two small leans only decide
    text with no sentiment words: denial and refusal ("no. just no.", "nothing worked") lean negative, an
    exclamation ("let's go!") leans enthusiastic.
    """
    compounds = analysis.sentence_compounds
    tone = (sum(compounds) / len(compounds) if compounds else 0.0) + 0.5 * analysis.lexical_valence
    if analysis.negations:
        tone -= _NEGATION_LEAN  # denial and refusal lean negative ("no. just no.", "nothing has worked")
    if "!" in analysis.text:
        tone += _EXCLAIM_LEAN
    return max(-1.0, min(1.0, tone))


def _arousal(analysis: _Analysis) -> float | None:
    """Activation the text shows (0..1) through exclamation marks, all-caps words and elongation ("sooo"), or None
    when it shows none of them (plain text says nothing about arousal)."""
    exclamations = min(3, analysis.text.count("!"))
    caps = min(2, sum(1 for w in _RAW_WORD.findall(analysis.text) if len(w) >= 3 and w.isalpha() and w.isupper()))
    elongated = min(2, sum(1 for w in analysis.words if _ELONGATED.search(w)))
    if not exclamations + caps + elongated:
        return None
    return _clip(0.5 + 0.15 * exclamations + 0.15 * caps + 0.1 * elongated)


def _valence_fit(valence: str, tone: float) -> float:
    """How well a tone t (-1..1) suits a valence: positive clip(0.5 + t), negative clip(0.5 - t), neutral 1 - |t|,
    ambiguous 0.75 - |t|/2 (either sign fits, but a clearly valenced tone points to a valenced emotion)."""
    if valence == "positive":
        return _clip(0.5 + tone)
    if valence == "negative":
        return _clip(0.5 - tone)
    if valence == "neutral":
        return 1.0 - abs(tone)
    return 0.75 - abs(tone) / 2.0


# --- fluency resources ------------------------------------------------------------------------------------------

# Closed word classes of English, used to spot word orders no fluent writer produces.
_CLASSES: dict[str, str] = {}
for _cls, _members in {
    "DET": "the a an every each another",
    "POSS": "my your his its our their",
    "SUBJ": "i he she we they",
    "OBJ": "me him us them",
    "PRONAUX": """i'm i've i'll i'd you're you've you'll you'd we're we've we'll they're they've they'll he's she's
        it's that's there's what's who's let's im ive youre theyre""",
    "MODAL": "will would can could should shall might must",
    "BE": "am is are was were",
    "HAS": "has had",
    "DOES": "does did",
    "AUXNEG": """don't doesn't didn't isn't aren't wasn't weren't can't couldn't won't wouldn't shouldn't haven't hasn't
        hadn't dont doesnt didnt isnt arent wasnt werent cant couldnt wont wouldnt shouldnt havent hasnt""",
    "PREP": """of in on at for with from by about into onto upon among between through during without within toward
        towards across against under behind beneath beside despite""",
    "TO": "to",
    "CONJ": "and or but nor",
    "SUB": "because although though unless whereas",
}.items():
    for _word in _members.split():
        _CLASSES[_word] = _cls

# Penalty for a word of class A followed by a word of class B (or by the end of the text, "END").
_STRONG, _MEDIUM = 1.0, 0.5
_BAD_PAIRS: dict[tuple[str, str], float] = {}
for _a, _bs, _weight in (
    ("DET", "DET POSS SUBJ OBJ PRONAUX MODAL BE HAS DOES AUXNEG PREP TO CONJ SUB END", _STRONG),
    ("POSS", "DET POSS SUBJ OBJ PRONAUX MODAL BE DOES AUXNEG PREP TO CONJ SUB END", _STRONG),
    ("SUBJ", "DET POSS SUBJ OBJ PRONAUX TO", _STRONG),
    ("SUBJ", "PREP END", _MEDIUM),
    ("PRONAUX", "PRONAUX SUBJ MODAL BE HAS DOES AUXNEG", _STRONG),
    ("MODAL", "MODAL BE HAS DOES PRONAUX AUXNEG", _STRONG),
    ("BE", "BE MODAL HAS DOES PRONAUX", _STRONG),
    ("HAS", "MODAL BE DOES PRONAUX", _STRONG),
    ("DOES", "MODAL BE HAS DOES PRONAUX", _STRONG),
    ("AUXNEG", "AUXNEG MODAL BE PRONAUX", _STRONG),
    ("TO", "BE MODAL HAS DOES AUXNEG SUBJ PRONAUX CONJ TO SUB", _STRONG),
    ("TO", "PREP END", _MEDIUM),
    ("PREP", "BE MODAL HAS DOES AUXNEG", _STRONG),
    ("PREP", "SUBJ PRONAUX END", _MEDIUM),
    ("CONJ", "CONJ END", _STRONG),
    ("SUB", "END CONJ", _STRONG),
):
    for _b in _bs.split():
        _BAD_PAIRS[(_a, _b)] = _weight

# Function words that start sentences; capitalised in the middle of a sentence they betray scrambled word order.
_CAPITALISED_FUNCTION = frozenset("""the a an my your his her its our their this that these those it he she we they you
    me him us them is are was were am be been do does did have has had will would can could should must may might
    and or but so because if when what who why how where which there here not no just also very really to of in on
    at for with from by about as than then too""".split())

_LIST_MARKER = re.compile(r"^(?:[-*\u2022#>]+|\d{1,2}[.)])$")
_I_FORMS = frozenset("i i'm i've i'll i'd im ive".split())

# Tokens that language-model tokenisers leak into broken output.
_BROKEN_TOKEN = re.compile(r"\u0120|\u2581|\u010a|\ufffd|##\w|<unk>|<pad>|</?s>|<\|[^|>]*\|>|\[/?INST\]|"
                           r"\u00e2\u20ac|\u00c3[\u0080-\u00bf\u00a0-\u00ff]")
_NOISE_SYMBOL = set("#^*+=~`|<>{}\\@_")  # brackets, $, % and & are ordinary in text
_VOWELS = set("aeiouy")
_ELONGATED = re.compile(r"([a-z])\1\1")
_ELONGATED_RUN = re.compile(r"([a-z])\1{2,}")
_SUFFIXES = ("s", "es", "ed", "d", "ing", "ly", "er", "est", "ness", "ment", "ful", "less", "y", "ies")
_ODD_BITS = 5.3  # mean bits per letter above which a word starts to look invented (1% of real words)
_DIGIT_INSIDE = re.compile(r"[a-z]\d+[a-z]|\d[a-z]+\d")

# Common English words the character model learns from, on top of the VADER lexicon and the emotion cue words.
_COMMON_WORDS = """the be to of and a in that have i it for not on with he as you do at this but his by from they we say
    her she or an will my one all would there their what so up out if about who get which go me when make can like
    time no just him know take people into year your good some could them see other than then now look only come its
    over think also back after use two how our work first well way even new want because any these give day most us
    is are was were been being has had did does done said made went gone got getting thing things life world hand
    part child children eye woman man men place week case point company number group problem fact home water room
    mother father family friend friends school night story money business month right question book job word side
    kind head house service away lot bit little long great old big high different small large next early young
    important few public bad same able last sure free whole hard real best better true enough nice happy sorry yeah
    okay maybe really very much more many always never often sometimes today tomorrow yesterday again still already
    something nothing everything anything someone everyone anyone nobody somebody everybody here where why while
    though through during before between under around without against should might must shall may need feel felt
    seem seemed keep kept let begin began help talk talked turn start show hear heard play run move live believe
    bring happen happened write provide sit stand lose pay meet include continue set learn change lead understand
    watch follow stop create speak read spend grow open walk win offer remember love consider appear buy wait serve
    die send expect build stay fall cut reach kill remain suggest raise pass sell require report decide pull call
    tell told ask asked try tried leave left put mean meant find found give gave think thought know knew see saw come
    came take took make made go went get got say said look looked want wanted work worked seem seems feel feels
    dad mom mum brother sister son daughter wife husband boyfriend girlfriend partner baby kid kids dog cat pet
    doctor teacher boss manager office car phone email text message call city country town street store game team
    movie music song show food coffee dinner lunch breakfast party trip vacation weekend morning evening afternoon
    hour minute second year years days weeks months ago later soon yet once twice together alone almost quite rather
    enough such own each every both either neither another those these ever anyway please thanks thank yes myself
    yourself himself herself itself ourselves themselves view girl boy half edge quote photo video wrap pizza knife
    gonna wanna gotta kinda sorta dunno yeah nope okay hmm wow omg lol haha buddy dude guy guys thing stuff idea
    news tide wave lean keep keeps stuck luck wrong right left check change chance choose chose choice voice noise
    quiet quite quick quickly queen question quit quiz square squeeze equal equally require acquire unique
    technique physical physics rhythm rhythms strength strengths twelfth sixth months depths width length
    through though thought although enough laugh cough tough rough bought brought caught taught daughter
    knight knee knew know knowledge known wrist write wrote wrong written psychology psycho honest hour heir
    subtle debt doubt island listen often salmon calm half walk talk folk yacht colonel""".split()


@lru_cache(maxsize=1)
def _char_model() -> tuple[frozenset[str], dict[str, float], dict[str, float], dict[str, float]]:
    """An interpolated letter-trigram model learnt from general English word lists.

    The words are the VADER lexicon's, the emotion cue words and ``_COMMON_WORDS``; returns (the vocabulary,
    trigram, bigram and unigram probabilities), where a trigram's key is its three characters, ``^`` marking the
    start and ``$`` the end of a word.
    """
    from emotion_taxonomy import CUE_LEXICON

    vocabulary = {w for w in _vader().lexicon if w.isalpha() and set(w) & _VOWELS}
    vocabulary.update(_COMMON_WORDS)
    vocabulary.update(w for w in CUE_LEXICON.exact if w.isalpha())
    vocabulary.update(CUE_LEXICON.prefixes)
    counts: list[Counter[str]] = [Counter(), Counter(), Counter()]
    for word in vocabulary:
        padded = f"^^{word}$"
        for k in range(2, len(padded)):
            for order in range(3):
                counts[order][padded[k - order:k + 1]] += 1
    totals: list[Counter[str]] = [Counter(), Counter(), Counter()]
    for order in (1, 2):
        for gram, count in counts[order].items():
            totals[order][gram[:-1]] += count
    letters = sum(counts[0].values())
    unigram = {g: c / letters for g, c in counts[0].items()}
    bigram = {g: c / totals[1][g[:-1]] for g, c in counts[1].items()}
    trigram = {g: c / totals[2][g[:-1]] for g, c in counts[2].items()}
    return frozenset(vocabulary), trigram, bigram, unigram


@lru_cache(maxsize=65536)
def _word_oddness(word: str) -> float:
    """0 for a plausible English word, up to 1 for a string no writer would produce (lowercase letters only).

    Mean bits per letter under the interpolated letter model (0.6 trigram, 0.3 bigram, 0.1 unigram); English words
    outside the vocabulary average about 3.5 bits (99% below 6), random letters about 7.
    """
    word = _ELONGATED_RUN.sub(r"\1\1", word)  # "ahhhh" and "sooo" are emphasis, judged as "ahh" and "soo"
    if len(word) <= 3:
        return 0.0
    vocabulary, trigram, bigram, unigram = _char_model()
    if word in vocabulary or any(word.endswith(suffix) and word[:-len(suffix)] in vocabulary
                                 for suffix in _SUFFIXES):
        return 0.0
    padded = f"^^{word}$"
    bits = 0.0
    for k in range(2, len(padded)):
        p = (0.6 * trigram.get(padded[k - 2:k + 1], 0.0) + 0.3 * bigram.get(padded[k - 1:k + 1], 0.0)
             + 0.1 * unigram.get(padded[k], 1e-4))
        bits -= math.log2(p)
    oddness = _clip((bits / (len(padded) - 2) - _ODD_BITS) / 1.5)
    if not set(word) & _VOWELS:
        # "hmm" and "shh" exist; four consonants in a row without a vowel rarely do, five never.
        oddness = max(oddness, 1.0 if len(word) >= 5 else 0.5)
    return oddness


def _script(char: str) -> str:
    try:
        return unicodedata.name(char).split(" ", 1)[0]
    except ValueError:
        return "UNKNOWN"


@dataclass(frozen=True)
class FluencyReport:
    """The fluency factors of one response (each 1 = no problem found); ``score`` is their product."""

    length: float
    repetition: float
    gibberish: float
    word_order: float
    ending: float

    @property
    def score(self) -> float:
        """Product of the factors: any one failure pulls the score down."""
        return self.length * self.repetition * self.gibberish * self.word_order * self.ending


def _repetition_factor(words: tuple[str, ...], sentences: tuple[str, ...]) -> float:
    """exp(-4 * excess repeated trigrams) * exp(-2.5 * duplicate-sentence share) * exp(-6 * excess stutters)."""
    n = len(words)
    factor = 1.0
    if n >= 6:
        trigrams = list(zip(words, words[1:], words[2:], strict=False))
        repeated = 1.0 - len(set(trigrams)) / len(trigrams)
        # A little repetition is normal in long replies ("I hope ... I hope ..."); loops repeat far more.
        factor *= math.exp(-4.0 * max(0.0, repeated - 0.08))
    keyed = [" ".join(_TOKEN.findall(s.lower())) for s in sentences]
    keyed = [k for k in keyed if len(k.split()) >= 2]
    if len(keyed) >= 2:
        factor *= math.exp(-2.5 * (1.0 - len(set(keyed)) / len(keyed)))
    if n >= 4:
        stutters = sum(1 for a, b in pairwise(words) if a == b) / (n - 1)
        factor *= math.exp(-6.0 * max(0.0, stutters - 0.03))
    return factor


def _gibberish_factor(analysis: _Analysis) -> float:
    """exp(-5 * odd-word share - 8 * (noise-symbol share - 0.03) - 3 * minority-script share), broken tokens odd."""
    raw_words = _RAW_WORD.findall(analysis.text)
    if not raw_words:
        return 0.0
    odd = 0.0
    for raw in raw_words:
        core = raw.strip(".,!?;:'\"()[]-")
        if not core:
            continue
        lower = core.lower()
        if len(core) > 25 and not core.startswith(("http", "www")):
            odd += 1.0
        elif _DIGIT_INSIDE.search(lower):
            odd += 1.0
        elif lower.isalpha() and lower.isascii():
            if not (core.isupper() and len(core) <= 6):  # acronyms (NSFW, NYPD) are not words either way
                odd += _word_oddness(lower)
            # Alternating case inside a word ("hElLo") is a decoding artefact; names switch at most twice (McDonald).
            switches = sum(1 for a, b in pairwise(core[1:]) if a.islower() != b.islower())
            if switches >= 3:
                odd += 1.0
        if _ELONGATED.search(lower) and len(set(lower)) <= 2:
            odd += 1.0  # "aaaaa", "hahahaha" without other letters reads as noise
    odd += 2.0 * len(_BROKEN_TOKEN.findall(analysis.text))
    chars = [c for c in analysis.text.lstrip(">") if not c.isspace()]
    noisy = sum(1 for c in chars if c in _NOISE_SYMBOL)
    noise = noisy / len(chars) if noisy >= 3 else 0.0
    letters = [c for c in chars if c.isalpha()]
    minority = 0.0
    if letters:
        scripts = Counter(_script(c) for c in letters)
        minority = 1.0 - scripts.most_common(1)[0][1] / len(letters)
    odd_share = min(1.0, odd / len(raw_words))
    return math.exp(-5.0 * odd_share - 8.0 * max(0.0, noise - 0.03) - 3.0 * minority)


def _classify(word: str) -> str:
    return _CLASSES.get(word, "W")


def _order_factor(analysis: _Analysis) -> float:
    """exp(-8 * rate of implausible word orders per word pair), counting:

    closed-class bigrams no fluent writer produces ("the of", "to was", "my and"); in text that uses capitals, a
    capitalised function word (1) or known word (0.5) in mid-sentence outside a run of capitalised words (titles,
    names), a lowercase word right after a full stop (0.5) and a lowercase first word (0.5) -- the signature of
    scrambled text.
    """
    raw: list[str] = []
    line_starts: set[int] = set()
    for line in analysis.text.splitlines():
        tokens = _RAW_WORD.findall(line)
        # A new line, a heading or a list marker ("-", "1.") starts a sentence, as a full stop does.
        while tokens and _LIST_MARKER.match(tokens[0]):
            tokens.pop(0)
        line_starts.add(len(raw))
        raw.extend(tokens)
    if len(raw) < 3:
        return 1.0
    cores = [token.strip("\"'()[]*_") for token in raw]
    lowers = [core.lower().rstrip(".,!?;:") for core in cores]
    title = [core[:1].isupper() and lower not in _I_FORMS and not (len(core) > 1 and core.isupper())
             for core, lower in zip(cores, lowers, strict=True)]
    shouting = sum(1 for core in cores if len(core) > 1 and core.isupper()) > len(cores) / 2
    ends = [core.endswith((".", "!", "?", ":")) and not core.endswith("..") for core in cores]
    capitalises = not shouting and any(title)
    bad = 0.0
    if capitalises:
        if cores[0][:1].islower():
            bad += _MEDIUM
        for k in range(1, len(raw)):
            if k in line_starts:
                continue
            if ends[k - 1] or raw[k - 1].endswith((":", '"', ";")) or raw[k].startswith(("(", '"', "'")):
                if ends[k - 1] and cores[k][:1].islower() and lowers[k] not in _I_FORMS:
                    bad += _MEDIUM  # a new sentence that starts in lowercase
                continue
            in_run = title[k - 1] or (k + 1 < len(raw) and title[k + 1])
            if title[k] and not in_run:
                if lowers[k] in _CAPITALISED_FUNCTION:
                    bad += _STRONG
                elif lowers[k] in _char_model()[0]:
                    bad += _MEDIUM
    classes = [_classify(lower) + ("|" if core.endswith((",", ";", ":", ".", "!", "?")) else "")
               for core, lower in zip(cores, lowers, strict=True)]
    for k, (a, b) in enumerate(pairwise(classes), start=1):
        if a.endswith("|") or k in line_starts:
            continue  # punctuation between the words: the pair crosses a clause boundary
        bad += _BAD_PAIRS.get((a, b.rstrip("|")), 0.0)
    return math.exp(-8.0 * bad / (len(raw) - 1))


def _ending_factor(analysis: _Analysis) -> float:
    """1 for a reply that ends cleanly; 0.75 without closing punctuation; 0.5 when it also stops on a word that
    cannot end an English sentence ("the", "and", "to", ...)."""
    text = analysis.text.rstrip()
    if not text:
        return 0.0
    if text.endswith((":)", ":-)", ":(", ":D", "<3", ";)")):
        return 1.0
    stripped = text.rstrip("\"')]*_ ")
    last = stripped[-1:]
    if last and (last in ".!?" or re.match(rf"[{_EMOJI}]", last)):
        return 1.0
    words = analysis.words
    if words and _BAD_PAIRS.get((_classify(words[-1]), "END")):
        return 0.5
    return 0.75


def fluency_report(response: str) -> FluencyReport:
    """The factors behind ``response_fluency`` (useful when explaining a low score)."""
    analysis = _analyze(response)
    n = len(analysis.words)
    if n == 0:
        return FluencyReport(0.0, 0.0, 0.0, 0.0, 0.0)
    return FluencyReport(
        length=min(1.0, 0.5 + 0.1 * n),
        repetition=_repetition_factor(analysis.words, analysis.sentences),
        gibberish=_gibberish_factor(analysis),
        word_order=_order_factor(analysis),
        ending=_ending_factor(analysis),
    )


# --- the six metrics --------------------------------------------------------------------------------------------

@register_metric("response_fluency", description="well-formed text: no loops, gibberish, scrambled or cut-off output")
def response_fluency(response: str, scenario: Any) -> float:
    """Fluency = length x repetition x gibberish x word_order x ending, each factor in [0, 1].

    length = min(1, 0.5 + 0.1 * words) (empty -> 0); repetition = exp(-4 * max(0, repeated-trigram share - 0.08))
    * exp(-2.5 * duplicate-sentence share) * exp(-6 * max(0, immediate word repeats - 0.03)); gibberish =
    exp(-5 * odd-word share - 8 * excess noise-symbol share - 3 * minority-script share), where a word is odd for
    no vowels, implausible letter trigrams, digits inside letters, alternating case or leaked tokeniser pieces;
    word_order = exp(-8 * implausible orders per word pair: closed-class bigrams such as "the of", capitals out of
    place, see ``_order_factor``); ending = 1 with closing punctuation, 0.75 without, 0.5 when it also stops on
    "the"/"and"/"to"-like words.
    ``scenario`` is not used.
    """
    del scenario
    return _clip(fluency_report(response).score)


_INTENSITY_SCALE = 4.0
# Interjections, the word class that exists to voice feeling ("oh", "aww", "ouch", "geez"); fillers ("um", "hmm") and
# attention-getters ("hey") are not among them, and those the cue lexicon knows ("wow", "ugh") count as cues.
_INTERJECTION = re.compile(r"^(?:o+h+|a+h+|a+w+|o+o+h+|ouch|gosh|gee+z|jee+z|dang|darn|welp|eh|bah|pf+t|aha|alas|"
                           r"shee+sh|yee+sh|bru+h|whew|yowza|blah)$")
# Degree words that heighten whatever follows ("so", "really", "totally"), counted wherever they stand.
_INTENSIFIERS = frozenset("""so such really very too totally absolutely literally seriously extremely super incredibly
    utterly truly completely honestly deeply insanely fucking freaking frickin friggin effing bloody damn""".split())


def expressed_intensity(response: str) -> float:
    """How strongly the text expresses emotion, 0..1: ``1 - exp(-E / (4 * sqrt(max(words, 10) / 10)))``.

    E = sum over words of |VADER valence| / 4 + emotion-cue mass (question marks excluded) + 0.5 * negated cue mass
    ("not happy at all" still voices a feeling) + 0.4 * boosters before emotional words + 0.3 * exclamation marks (at
    most 5) + 0.4 * all-caps words + 0.3 * elongated words ("sooo") + 0.4 * first-person words (at most 3: speaking
    of oneself is self-disclosure) + 0.3 * intensifiers ("so", "really", "totally", expletives such as "freaking")
    wherever they stand + 0.4 * interjections ("oh", "aww", "ouch", "geez").  Dividing by the square root of length
    lets a longer text need more emotional words for the same intensity; the scale 4 puts a calm practical reply
    near 0, a warm everyday one near 0.5 and an outpouring near 0.9.
    """
    analysis = _analyze(response)
    n = len(analysis.words)
    if n == 0:
        return 0.0
    lexicon = _vader().lexicon
    from vaderSentiment.vaderSentiment import BOOSTER_DICT

    strength = [0.0 if w in _FUNCTIONAL_VADER else abs(lexicon.get(w, 0.0)) / 4.0 for w in analysis.tokens]
    emotional = [s > 0 or bool(word_cues(w)) for s, w in zip(strength, analysis.tokens, strict=True)]
    boosters = sum(1 for k, w in enumerate(analysis.tokens)
                   if BOOSTER_DICT.get(w, 0) > 0 and any(emotional[k + 1:k + 3]))
    # Question marks are not intensity ("i'm so curious" is); a denied feeling ("not happy at all") is still one.
    questions = sum(1 for t in analysis.tokens if "?" in t) * sum(w for _, w in word_cues("?"))
    cue_mass = (analysis.cue_total - min(questions, analysis.cues.get("curiosity", 0.0))
                + _DENIED_WEIGHT * sum(analysis.denied.values()))
    exclamations = min(5, analysis.text.count("!"))
    interjections = sum(1 for w in analysis.words if _INTERJECTION.match(w))
    caps = sum(1 for w in _RAW_WORD.findall(analysis.text) if len(w) >= 3 and w.isalpha() and w.isupper())
    elongated = sum(1 for w in analysis.words if _ELONGATED.search(w))
    first_person = min(3, sum(1 for w in analysis.words if w in _ME_WORDS))
    intensifiers = sum(1 for w in analysis.words if w in _INTENSIFIERS)
    energy = (sum(strength) + cue_mass + 0.4 * boosters + 0.3 * exclamations + 0.4 * caps + 0.3 * elongated
              + 0.4 * first_person + 0.3 * intensifiers + 0.4 * interjections)
    return _saturate(energy / (_INTENSITY_SCALE * math.sqrt(max(n, 10) / 10.0)))


@register_metric("emotional_intensity", description="expressed emotional intensity, relative to the scenario's")
def emotional_intensity(response: str, scenario: Any) -> float:
    """Intensity fit.  With a scenario intensity t: ``1 - |I - t| / max(t, 1 - t)`` where I = expressed_intensity.

    A good reply meets the user at their level: flat answers to a devastating loss and melodrama about a minor
    annoyance both lose, and the divisor makes the worst possible mismatch 0 at any t.  Without an intensity
    (None) the score is I itself.
    """
    expressed = expressed_intensity(response)
    target = _target_intensity(scenario)
    if target is None:
        return expressed
    return _clip(1.0 - abs(expressed - target) / max(target, 1.0 - target))


@register_metric("emotional_match", description="emotional vocabulary fits the scenario's emotion rather than others")
def emotional_match(response: str, scenario: Any) -> float:
    """Match = e * fit + (1 - e) * 0.5 * valence_fit * g * arousal_fit, with e = 1 - exp(-C) for cue mass C.

    fit = sum over cue profiles of mass * affinity(target, profile) / C: the share of the reply's emotion words that
    belong to the target emotion (1), a related emotion (0.85), its family when the target is a basic emotion (0.8),
    the rest of its family (0.35) or only its valence (0.1).  Cues right after "feel"/"felt" count 3x (they name
    the feeling); a negated negative-emotion cue counts half for its emotion, since a denied fear or guilt is still
    the feeling under discussion ("don't be scared", "i don't feel guilty"), while a negated positive one counts
    nothing ("not happy" is no joy); stance cues (caring, approval, curiosity: "gentle", "agree", "?") enter C only
    with their affinity, so they support a matching target without counting against others.  With few cues the
    score leans on tone, capped at 0.5 since tone alone is weak evidence: valence_fit is how well the tone suits the
    target's valence, g = 1 for a basic emotion (tone is evidence for a broad family, not a specific member) else
    0.9, and arousal_fit = 1 - |text arousal - target arousal| / 2 when the text shows arousal ("!", caps, "sooo"),
    else 1.  For "neutral" the score is (1 - e) * (1 - |tone|).
    """
    analysis = _analyze(response)
    target = _profile(scenario)
    if not analysis.words:
        return 0.0
    tone = _tone(analysis)
    support = relevant = 0.0
    for name, mass in _match_masses(analysis).items():
        weight = affinity(target, name)
        support += mass * weight
        # A responder's stance (kindness, agreement, a question) is evidence for a matching target but no
        # evidence against any other: it says little about which emotion the reply is engaging with.
        relevant += mass * (weight if name in _STANCE_PROFILES else 1.0)
    evidence = _saturate(relevant)
    if target.valence == "neutral":
        return _clip((1.0 - evidence) * (1.0 - abs(tone)))
    fit = support / relevant if relevant > 0 else 0.0
    fallback = _valence_fit(target.valence, tone) * (1.0 if target.is_family_head else 0.9)
    arousal = _arousal(analysis)
    if arousal is not None:
        fallback *= 1.0 - 0.5 * abs(arousal - target.arousal)
    return _clip(evidence * fit + (1.0 - evidence) * 0.5 * fallback)


_STANCE_PROFILES = frozenset({"caring", "approval", "curiosity"})


def _match_masses(analysis: _Analysis) -> dict[str, float]:
    """The cue masses emotional_match reads: the text's cues plus half the mass of negated negative-emotion cues.

    A denied negative feeling is still the feeling under discussion: "don't be scared", "it's not your fault" and
    "i don't feel guilty" engage with fear and guilt.  A denied positive one is not ("not happy" is no joy; its
    flipped valence already counts in the tone).
    """
    denied = {name: mass for name, mass in analysis.denied.items() if PROFILES[name].valence == "negative"}
    if not denied:
        return analysis.cues
    masses = dict(analysis.cues)
    for name, mass in denied.items():
        masses[name] = masses.get(name, 0.0) + _DENIED_WEIGHT * mass
    return masses


def _phrases(*patterns: str) -> re.Pattern[str]:
    return re.compile(r"\b(?:" + "|".join(patterns) + r")\b")


_I = r"(?:i'm|i am|im)"
_YOU_ARE = r"(?:you're|you are|youre|ur)"
_HARD = (r"(?:hard|tough|rough|awful|terrible|horrible|sad|heartbreaking|scary|frightening|unfair|painful|difficult|"
         r"stressful|frustrating|exhausting|overwhelming|lonely|upsetting|devastating)")
_ACKNOWLEDGE = _phrases(
    r"sorry (?:to hear|for|about|that|you)", rf"{_I} (?:so |really |very |truly )?sorry", r"so sorry",
    r"(?:sad|hate|terrible|awful) to hear", r"i hate that", r"i feel for you",
    r"that (?:sounds|must|seems)", rf"(?:it |this )?sounds (?:like|really|so|very|incredibly|{_HARD})",
    r"(?:must|has got to|have got to|got to|gotta) (?:be|have been|feel|hurt)", r"must've been",
    r"can(?:'t| ?not) be easy", r"(?:this|such a|a|these) (?:difficult|hard|tough|rough|trying) times?",
    r"i (?:can |can't |cannot |can not )?(?:only )?imagine", r"i (?:completely |totally )?understand",
    r"understandable", r"(?:it's|it is|that's|that is) (?:okay|ok|normal|natural|understandable|valid|alright|fine) to",
    r"(?:your )?feelings are valid", r"makes (?:total |complete |perfect )?sense", r"no wonder", r"of course you",
    r"anyone would", r"you have every right", rf"{_YOU_ARE} allowed to", r"i hear you", r"oh no",
    r"poor (?:thing|you|guy|girl|baby|kid)", r"aw+", r"(?:that's|that is|what) (?:a shame|too bad|unfortunate)",
    r"what a (?:shame|pity)", r"(?:that|it) (?:really |totally )?(?:sucks|stinks)",
    rf"(?:does |must )?sound(?:s|ed)? (?:so |really |very |pretty |super |a bit |a little )?{_HARD}",
    r"(?:that's|that is|how|so) (?:so |really |very )?sad", r"i feel (?:for|bad for|so bad for|terrible for) you",
    r"my heart goes out", r"heartbreaking", r"i know (?:how|the feeling|what)", r"i've been there",
    rf"(?:that's|that is|how) (?:so |really |very )?{_HARD}")
_GOOD_NEWS = r"(?:that's|that is|what) (?:great|wonderful|awesome|amazing|fantastic|brilliant|good|exciting) news"
_CELEBRATION = (r"congrat\w*", r"happy for you", r"happy birthday", _GOOD_NEWS, r"have fun", r"enjoy (?:it|yourself)",
                r"(?:good|great|nice) job", r"way to go", r"how exciting", r"so exciting")
_SUPPORT = _phrases(
    *_CELEBRATION,
    rf"{_I} here", r"here for you", r"here if you", r"not alone", r"i (?:really |certainly |do |sure )?hope",
    r"hope (?:you|things|it|everything|that|he|she|they|your|the|this|all)", r"hopefully", r"lucky you",
    r"(?:keep your|chin|head) up", r"make the best of", r"for the best", r"something better",
    r"you(?:'ll| will) (?:get|make|find|figure) (?:it|there|through|one|something|out)",
    r"(?:don't|dont|do not) let (?:this|it|that|them) (?:define|get|stop)", r"good luck", r"best of luck",
    r"wish(?:ing)? you", r"best wishes", r"fingers crossed", r"proud of you", r"glad (?:you|to hear|that)",
    r"good for you", r"well done", r"(?:good|great|positive) vibes", r"you deserve",
    r"have a (?:good|great|nice|wonderful) (?:day|time|one|trip|weekend|night|evening)", r"enjoy your",
    r"you did (?:great|well|your best|the right thing|nothing wrong)", r"you(?:'ve| have)? got this",
    r"you can do (?:it|this)", r"you(?:'ll| will) (?:be|get through|do) (?:fine|great|okay|ok|alright|well)",
    r"(?:it|things|everything) (?:will|'ll|is going to) (?:be|get|work out)", r"it'll (?:be|get)",
    r"hang in there", r"take care", r"be (?:gentle|kind|patient) with yourself", r"one (?:day|step) at a time",
    r"(?:don't|dont|do not|try not to|not) (?:be (?:so |too )?hard on|blame|beat) yourself",
    r"(?:don't|dont|do not) (?:feel bad|worry|beat yourself up|give up)", r"no worries", r"time heals",
    r"there(?:'s| is) always (?:another|the next|next)", r"(?:we|everyone|everybody) (?:all )?makes? mistakes",
    r"(?:my )?prayers (?:are )?with", r"god bless", r"happy for yo\w*", r"(?:not|isn't) your fault",
    r"thinking of you", r"sending (?:you )?(?:love|hugs|strength|prayers|good vibes)", r"hugs?", r"condolences",
    r"in my (?:thoughts|prayers)", r"praying for", r"rest in peace", r"reach out", r"talk to someone", r"lean on",
    r"here to listen", r"happy to listen", r"feel better", r"get well", r"stay strong", r"it gets better",
    rf"{_YOU_ARE} doing (?:great|well|your best|the best you can|amazing)",
    r"i(?:'m| am) sure (?:it|you|things|he|she|they|everything)", r"you should be proud", r"be proud",
    r"no need to (?:worry|apologi[sz]e|feel)", r"support", r"keep (?:it up|going|trying|working|at it|pushing)",
    rf"{_YOU_ARE} (?:a |an |so |such a |very |really )?(?:great|good|wonderful|amazing|strong|brave|lucky|kind|"
    r"awesome|stand up|talented|smart|capable|resilient)", r"(?:lucky|blessed) to have you",
    r"you(?:'ll| will) (?:be|make) (?:a |an )?(?:great|good|fine|wonderful|amazing)",
    r"be (?:kind|kinder|good|nice|easy|gentle) (?:to|on|with) yourself", r"tomorrow is (?:a new|another) day",
    r"step by step", r"you can (?:do|get|make|handle|manage)",
    r"(?:that's|that is|what) (?:an? )?(?:amazing|great|huge|big|wonderful|impressive) (?:accomplishment|achievement)")
_CELEBRATE = _phrases(*_CELEBRATION)
_PERSPECTIVE = _phrases(
    r"you must (?:feel|be|have)", r"you (?:might|may) (?:feel|be)", rf"{_YOU_ARE} (?:probably |likely )?feeling",
    r"i imagine (?:you|that|it)", r"i bet (?:you|that|it|he|she|they)", r"in your (?:shoes|position|place|situation)",
    r"(?:it )?(?:seems|sounds) like you", r"you seem", r"(?:how|what) you(?:'re| are)? (?:feel|feeling|going through)",
    r"your (?:feelings|emotions|pain|loss|grief|anger|fear|worry|heart|sadness|frustration|excitement|joy)",
    r"for you", r"from your (?:perspective|point of view)")
_INVITE = _phrases(
    r"how are you (?:feeling|doing|holding up|coping)", r"how do you feel",
    r"how did (?:that|it|you) (?:make you )?feel", r"(?:do|would) you (?:want|like) to (?:talk|share)",
    r"want to talk about", r"if you (?:want|would like|need) to (?:talk|vent)", r"what (?:would|might|could) help",
    r"is there anything (?:i|that)", r"what do you need", r"tell me (?:more|about)", r"how can i help",
    r"do you have (?:someone|anyone|people|friends|family|support)", r"are you (?:okay|ok|alright|doing okay)")
_DISMISS = _phrases(
    r"(?:not|no) (?:such )?a? ?big deal", r"not that big of a deal", r"(?:it's|it is|that's|that is) not that bad",
    r"(?:it|things) could (?:be|have been) worse", r"(?:others|other people|people) have it worse",
    r"overreacting", r"too sensitive", r"you(?:'ll| will) get over it",
    r"don't be (?:so )?(?:dramatic|sensitive|silly|ridiculous|a baby)", r"so what ?[?!.]", r"who cares ?[?!.]",
    r"that's life", r"shit happens", r"life goes on", r"(?:your|ur) own fault",
    rf"{_YOU_ARE} (?:being )?(?:ridiculous|dramatic|silly|stupid|pathetic)", r"forget about it")
# Orders that brush the feeling aside; only as an order (sentence start, "just ...", "you need to ..."), since
# "helping you calm down" or "having to deal with it" are not dismissive.
_DISMISS_ORDER = re.compile(
    r"(?:^|[.!?,;]\s|\bjust\s|\byou (?:need|have|should|gotta|got|ought) to\s|\bshould\s)(?:calm down|get over it|"
    r"man up|toughen up|suck it up|grow up|deal with it|get a grip|move on|relax|chill out|chill|snap out of it|"
    r"stop (?:crying|complaining|whining|worrying|being so \w+)|ignore it|whatever)\b")
_MINIMISE = _phrases(r"at least", r"cheer up", r"look on the bright side")
_LOSS_PROFILES = frozenset({"grief", "despair", "sadness", "loneliness"})
_YOU_WORDS = frozenset("you your yours yourself you're you've you'll you'd youre ur".split())
_ME_WORDS = frozenset("i me my mine myself i'm i've i'll i'd im ive".split())


@register_metric("empathy_score", description="acknowledges, validates and supports the person; not dismissive")
def empathy_score(response: str, scenario: Any) -> float:
    """Empathy = clip(C + min(1, 2.5 C) (0.15 s(Q) + 0.1 Y) - 0.35 D - 0.1 M), where
    C = 0.4 s(A) + 0.35 s(S) + 0.2 s(P) and s(x) = 1 - exp(-1.2 x).

    A counts acknowledgement/validation phrases ("that sounds hard", "I'm so sorry", "it's okay to feel"); S
    supportive phrases ("I'm here for you", "I hope", "you're not alone", "congratulations" -- celebration does not
    count when the emotion is a loss: grief, despair, sadness, loneliness); P perspective taking ("you must feel",
    "your grief"); Q questions inviting the person to share ("how are you holding up?"); Y is the share of you-words
    among you/I words (second-person focus); D counts dismissive phrases ("just get over it", "calm down", "not a
    big deal") and M minimising ones ("at least").  Q and Y scale with C: alone they are conversation, not empathy.
    """
    analysis = _analyze(response)
    text = analysis.lower
    if not analysis.words:
        return 0.0
    acknowledge = len(_ACKNOWLEDGE.findall(text))
    support = len(_SUPPORT.findall(text))
    if _profile(scenario).name in _LOSS_PROFILES:
        support -= len(_CELEBRATE.findall(text))  # "congratulations" to someone grieving is not support
    perspective = len(_PERSPECTIVE.findall(text))
    invite = len(_INVITE.findall(text))
    dismiss = len(_DISMISS.findall(text)) + len(_DISMISS_ORDER.findall(text))
    minimise = len(_MINIMISE.findall(text))
    you = sum(1 for w in analysis.words if w in _YOU_WORDS)
    me = sum(1 for w in analysis.words if w in _ME_WORDS)
    you_focus = you / (you + me) if you + me else 0.0
    caring = 0.4 * _saturate(acknowledge, 1.2) + 0.35 * _saturate(support, 1.2) + 0.2 * _saturate(perspective, 1.2)
    # Second-person focus and questions deepen caring content; on their own ("where are you going?") they are
    # ordinary conversation, so they scale with it.
    depth = min(1.0, 2.5 * caring) * (0.15 * _saturate(invite, 1.2) + 0.1 * you_focus)
    score = caring + depth - 0.35 * dismiss - 0.1 * minimise
    return _clip(score)


_SIMILE = _phrases(r"like (?:a|an|the|being|you're|you are|someone|something|it's|walking|carrying|drowning|"
                   r"standing|running|swimming|trying)", r"as if", r"as though", r"as \w+ as (?:a|an|the)")
_METAPHORS = _phrases(
    r"weight (?:on|off) (?:your|my|our|his|her|their) (?:shoulders|chest)", r"weight of the world", r"heavy heart",
    r"heart (?:is|feels) heavy", r"broken heart", r"(?:weather|ride out|calm after) the storm", r"storms?",
    r"eye of the storm", r"roller ?coaster", r"light at the end of the tunnel", r"silver lining", r"every cloud",
    r"dark cloud", r"on cloud nine", r"over the moon", r"walking on air", r"butterflies in (?:your|my) stomach",
    r"rock bottom", r"uphill (?:battle|climb)", r"mountain to climb", r"long road", r"road to recovery",
    r"bumpy road", r"crossroads", r"new chapter", r"turn the page", r"doors? (?:opens?|closes?)",
    r"burn(?:ed|t)? bridges",
    r"anchor", r"lifeline", r"beacon", r"ray of (?:hope|sunshine|light)", r"glimmer of hope", r"spark of",
    r"fire in (?:your|my) belly", r"blood boil", r"seeing red", r"see red", r"let off steam", r"blow off steam",
    r"drowning in", r"head above water", r"treading water", r"waves? of", r"tidal wave", r"floodgates",
    r"sea of", r"ocean of", r"hole in (?:your|my) heart", r"dark place", r"walls? closing in", r"on thin ice",
    r"walking on eggshells", r"elephant in the room", r"pit in (?:your|my) stomach", r"knot in (?:your|my) stomach",
    r"lump in (?:your|my) throat", r"bitter pill", r"salt in the wound", r"slap in the face", r"stab in the back",
    r"punch in the gut", r"gut punch", r"heart of gold", r"heart on (?:your|my) sleeve", r"cold feet",
    r"green with envy", r"green-eyed monster", r"feeling blue", r"on top of the world", r"in the same boat",
    r"(?:your|my|a) rock", r"house of cards", r"pick up the pieces", r"end of (?:your|my) rope", r"running on empty",
    r"running out of steam", r"burn(?:ed|t) out", r"recharge (?:your|my) batter(?:y|ies)", r"pressure cooker",
    r"bottled? up", r"time heals", r"marathon,? not a sprint", r"finish line", r"turning point", r"new dawn",
    r"ebb and flow", r"piece of the puzzle", r"missing piece", r"spread (?:your|my) wings", r"walls? up",
    r"behind a mask", r"tip of the iceberg", r"in the dark", r"out of the woods", r"weight lifted",
    r"weights? (?:has|have) been lifted", r"breath of fresh air", r"heart (?:swells?|sank|sinks|races|racing)",
    r"heart (?:is )?(?:full|bursting|breaking|aches?)", r"shattered", r"numb", r"fog", r"chapter", r"journey",
    r"bloom\w*", r"blossom\w*", r"seeds? of", r"roots?", r"shine|shining", r"sunshine", r"rainbow",
    r"(?:a|the) tunnel", r"burden", r"carry(?:ing)? (?:this|that|the|so much)", r"scars?", r"wounds?")
# "I like a ...", "would like a ...": after these words "like" is the verb, not a simile.
_LIKE_VERB_BEFORE = frozenset("""i you we they he she who would i'd you'd we'd they'd he'd she'd to do does did don't
    dont doesn't didn't really just also might may not people""".split())


def _like_is_verb(text: str, match: re.Match[str]) -> bool:
    if not match.group(0).startswith("like"):
        return False
    before = text[:match.start()].split()
    return bool(before) and before[-1] in _LIKE_VERB_BEFORE


# Single words that are often literal ("storm", "journey"): half weight, so literal use cannot score high alone.
_WEAK_METAPHOR = frozenset("""storm storms anchor beacon shattered numb fog chapter journey root roots shine shining
    sunshine rainbow burden scar scars wound wounds""".split())


@register_metric("metaphor_usage", description="some apt figurative language, not none and not all metaphor")
def metaphor_usage(response: str, scenario: Any) -> float:
    """Metaphor = (1 - exp(-1.5 F)) * exp(-1.2 * max(0, d - 0.75)), F = weighted distinct figures, d = figures/sentence.

    Figures are similes ("like a", "as if", "as ... as a") and conventional emotional metaphors ("weight on your
    shoulders", "light at the end of the tunnel", "rollercoaster"); single words that are often literal ("storm",
    "journey") count half.  The first factor rewards some figurative language; the second penalises a reply that
    is nearly all metaphor (more than about three figures per four sentences), repeats included.  No figure -> 0.
    ``scenario`` is not used.
    """
    del scenario
    analysis = _analyze(response)
    if not analysis.words:
        return 0.0
    found = [m.group(0) for m in _SIMILE.finditer(analysis.lower) if not _like_is_verb(analysis.lower, m)]
    found += _METAPHORS.findall(analysis.lower)
    if not found:
        return 0.0
    weights = {f: (0.5 if f in _WEAK_METAPHOR else 1.0) for f in found}
    distinct = sum(weights.values())
    density = sum(weights[f] for f in found) / max(1, len(analysis.sentences))
    return _clip(_saturate(distinct, 1.5) * math.exp(-1.2 * max(0.0, density - 0.75)))


@register_metric("sentiment_accuracy", description="the reply's tone matches the expected sentiment")
def sentiment_accuracy(response: str, scenario: Any) -> float:
    """Sentiment fit of the tone t (-1..1; mean VADER compound over sentences + 0.5 * the emotion lexicon's
    valence - 0.05 with a negator + 0.03 with "!", see ``_tone``): positive clip(0.5 + t), negative clip(0.5 - t),
    neutral clip(1 - 1.5 |t|).

    Without an expected sentiment (None) the emotion's valence decides; an ambiguous valence (surprise,
    nostalgia) accepts either tone and scores clip(1 - 0.5 |t|).  An empty reply scores 0.
    """
    analysis = _analyze(response)
    if not analysis.words:
        return 0.0
    tone = _tone(analysis)
    expected = _expected_sentiment(scenario) or _profile(scenario).valence
    if expected == "positive":
        return _clip(0.5 + tone)
    if expected == "negative":
        return _clip(0.5 - tone)
    if expected == "neutral":
        return _clip(1.0 - 1.5 * abs(tone))
    return _clip(1.0 - 0.5 * abs(tone))


assert tuple(REGISTRY) == METRIC_KEYS, "metrics must be registered in METRIC_KEYS order"


def score_response(response: str, scenario: Any) -> dict[str, float]:
    """All six metrics for one response, rounded to 4 decimals, keyed and ordered as ``METRIC_KEYS``."""
    _profile(scenario)  # an unknown emotion is a UserError before any scoring
    return {key: round(float(spec.fn(response or "", scenario)), 4) for key, spec in REGISTRY.items()}


def overall_score(metrics: dict[str, float]) -> float:
    """The mean of the six metrics (a missing key is a ValueError: a partial mean would not be comparable)."""
    missing = [key for key in METRIC_KEYS if key not in metrics]
    if missing:
        raise ValueError(f"metrics missing: {', '.join(missing)}")
    return sum(float(metrics[key]) for key in METRIC_KEYS) / len(METRIC_KEYS)
