"""News text on the way in and the sentiment model interface (pure)."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import ConfigurationError
from features.sentiment import VADER, VADER_LM, VaderModel, labels, load_sentiment_model, symbol_sentiment
from quality.news_text import MAX_BODY_CHARS, cashtags, clean_text, guess_language, is_spam, split_symbols, strip_html


def test_html_is_stripped_and_flagged() -> None:
    clean = clean_text("ACME <b>beats</b>", None, "<p>Revenue rose &amp; margins grew.</p><script>x()</script>")
    assert clean.headline == "ACME beats" and clean.body == "Revenue rose & margins grew."
    assert "html_stripped" in clean.flags and clean.reject is None


def test_whitespace_runs_of_any_kind_become_one_space() -> None:
    text = "\t ACME\u00a0\u00a0beats\n\r\x0bestimates\u2003&nbsp;again\u3000 "
    assert strip_html(text) == ("ACME beats estimates again", False)
    assert strip_html("   ") == ("", False)


def test_an_item_without_any_text_is_refused_with_a_reason() -> None:
    clean = clean_text("", "  ", "<p></p>")
    assert clean.reject is not None and "empty" in clean.reject


def test_an_empty_body_is_kept_and_flagged() -> None:
    clean = clean_text("ACME beats estimates", None, None)
    assert clean.reject is None and "empty_body" in clean.flags


def test_a_huge_article_is_truncated_and_flagged() -> None:
    clean = clean_text("ACME", None, "word " * 30_000)
    assert len(clean.body) == MAX_BODY_CHARS and "truncated" in clean.flags


def test_non_english_text_is_flagged() -> None:
    spanish = "Las acciones de la empresa subieron después de que los resultados superaran las previsiones del mercado"
    assert guess_language(spanish) == "other"
    assert "non_english" in clean_text("ACME sube", None, spanish).flags
    assert guess_language("The shares of the company rose after the results beat the estimates") == "en"


def test_spam_cashtags_and_bad_symbols() -> None:
    assert is_spam("FREE signals!!! $ACME 1000% gains guaranteed, join my Discord discord.gg/12")
    assert not is_spam("DD: why $ACME is undervalued")
    assert cashtags("$acme and $BRK.B beat $ACME, not $5") == ["ACME", "BRK.B"]
    assert split_symbols(["AAPL", "brk.b", "DROP TABLE", ""]) == (["AAPL", "BRK.B"], ["DROP TABLE"])


@pytest.mark.parametrize("name", [VADER, VADER_LM])
def test_the_built_in_models_run_offline_and_tell_good_from_bad_news(name: str) -> None:
    model = load_sentiment_model(name)
    scores = model.score(
        ["Shares surge after a great quarter", "Shares plunge as the company warns of a terrible loss", ""]
    )
    assert model.name == name
    assert scores[0] > 0.05 and scores[1] < -0.05 and scores[2] == 0.0
    assert list(labels(np.array([0.5, -0.5, 0.01]))) == [1, -1, 0]


def test_the_finance_word_list_reads_finance_words_vader_lacks() -> None:
    text = ["Analysts downgrade the stock after the earnings miss"]
    assert load_sentiment_model(VADER_LM).score(text)[0] < load_sentiment_model(VADER).score(text)[0]


def test_per_symbol_sentiment_reads_the_sentences_naming_each_symbol() -> None:
    model = load_sentiment_model(VADER)
    text = "ACME shares surge on great results. OTHR shares plunge on a terrible loss."
    scores = symbol_sentiment(model, text, ["ACME", "OTHR"], 0.0)
    assert scores["ACME"] > 0 > scores["OTHR"]


def test_an_unknown_model_names_the_choices() -> None:
    with pytest.raises(ConfigurationError, match="vader"):
        load_sentiment_model("bert")


def test_cached_sentiment_scores_equal_uncached_ones() -> None:
    texts = [
        "ACME shares surge on great results",
        "ACME misses badly",
        "ACME shares surge on great results",
        "",
        "Flat day",
    ]
    cached, uncached = VaderModel(cache_texts=2), VaderModel(cache_texts=0)
    first, again = cached.score(texts), cached.score(texts)
    assert np.array_equal(first, uncached.score(texts)) and np.array_equal(again, first)
    assert len(cached._cache) <= 2 and first[0] > 0 > first[1]


VADER_CASES = [
    "VADER is VERY SMART, handsome, and FUNNY!!!",
    "VADER is not smart, handsome, nor funny.",
    "At least it isn't a horrible book.",
    "The book was only kind of good.",
    "The plot was good, but the characters are uncompelling and the dialog is not great.",
    "Today only kinda sux! But I'll get by, lol",
    "Make sure you :) or :D today!",
    "Catch utf-8 emoji such as 💘 and 💋 and 😁",
    "Not bad at all",
    "never so good, never this bad",
    "without doubt a great quarter, without any doubt bad",
    "no good news and no or bad guidance",
    "the least bad outcome, at least good, very least great",
    "that was the bomb, yeah right, kiss of death, to die for",
    "we had the kiss of death today and a meal to die for",
    "you mayn't like it, it havn't helped",
    "ACME shares SURGE after earnings BEAT?? Analysts downgrade the stock",
    "  ",
]


def test_the_fast_vader_scores_as_vadersentiment_does() -> None:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer  # type: ignore[import-untyped]

    from features.sentiment import _analyzer_class

    fast, plain = _analyzer_class(SentimentIntensityAnalyzer)(), SentimentIntensityAnalyzer()
    assert type(fast) is not SentimentIntensityAnalyzer  # the installed version is the one restated
    words = " ".join(VADER_CASES).split()
    salads = [" ".join(words[i : i + n]) for n in (3, 7, 12) for i in range(0, len(words) - n, 2)]
    for text in VADER_CASES + salads:
        assert fast.polarity_scores(text) == plain.polarity_scores(text), text
