"""News and post text on the way in (pure): HTML to text, size limits, a language guess, spam, and
the symbols an item is about. Each check says what it did in a flag the store keeps
(``news.items.flags``), so nothing is silently changed or dropped.

Rejections (an item with neither headline nor body, a headline that is only markup) carry a reason
and go to the dead-letter table with the raw page's key: the raw zone still holds the payload.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

MAX_BODY_CHARS = 20_000  # stored body; the raw zone keeps the whole article
MAX_HEADLINE_CHARS = 1_000
_TAG = re.compile(r"<(script|style)\b[^>]*>.*?</\1\s*>|<[^>]+>", re.IGNORECASE | re.DOTALL)
_WORD = re.compile(r"[a-zà-ÿ']+")
# A ticker as the pipeline accepts one (pipeline.request): letters/digits, an optional share class.
_TICKER = re.compile(r"^[A-Z0-9]{1,10}([.][A-Z0-9]{1,4})?$")
_CASHTAG = re.compile(r"(?<![A-Za-z0-9$])\$([A-Za-z]{1,6}(?:\.[A-Za-z]{1,2})?)(?![A-Za-z0-9])")
# The most frequent English function words: a text in English has many of them.
_ENGLISH = frozenset(
    [
        "the",
        "a",
        "an",
        "and",
        "or",
        "of",
        "to",
        "in",
        "on",
        "for",
        "with",
        "as",
        "at",
        "by",
        "from",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "has",
        "have",
        "had",
        "it",
        "its",
        "that",
        "this",
        "after",
        "before",
        "over",
        "under",
        "than",
        "their",
        "his",
        "her",
        "they",
        "we",
        "you",
        "not",
        "will",
        "would",
        "can",
        "could",
        "said",
        "says",
        "about",
        "into",
        "up",
        "down",
        "out",
        "more",
        "most",
        "new",
    ]
)
_SPAM = (
    re.compile(r"\b(discord\.gg|t\.me|whatsapp|telegram)\b", re.IGNORECASE),
    re.compile(r"\b(dm me|link in bio|giveaway|guaranteed|free signals?)\b", re.IGNORECASE),
    re.compile(r"\bsend \d+(\.\d+)? ?(eth|btc)\b", re.IGNORECASE),
    re.compile(r"\$\d[\d,]* a (day|week)\b", re.IGNORECASE),
)
SPAM_HITS = 2  # patterns a post must match to be called spam


def strip_html(text: str | None) -> tuple[str, bool]:
    """Plain text of ``text`` (tags, scripts and styles removed, entities decoded, whitespace
    collapsed) and whether it held markup."""
    if not text:
        return "", False
    had_markup = "<" in text and bool(_TAG.search(text))
    plain = _TAG.sub(" ", text) if had_markup else text
    # whitespace runs to one space, ends stripped: str.split's whitespace is regex \s's (both
    # str.isspace), and split + join is a third of the regex's time
    return " ".join(html.unescape(plain).split()), had_markup


def english_share(text: str) -> float:
    """The share of the first 200 words that are common English function words (0 for no words)."""
    return _english_share(_WORD.findall(text[:4000].lower())[:200])


def _english_share(words: list[str]) -> float:
    return sum(map(_ENGLISH.__contains__, words)) / len(words) if words else 0.0


def guess_language(text: str) -> str:
    """``en``, ``und`` (undetermined: too short to tell) or ``other``: a stop-word test, enough to
    keep a lexicon model off text it cannot read."""
    words = _WORD.findall(text[:4000].lower())
    if len(words) < 6:
        return "en" if any(w in _ENGLISH for w in words) or not words else "und"
    return "en" if _english_share(words[:200]) >= 0.12 else "other"


def is_spam(text: str) -> bool:
    return sum(bool(p.search(text)) for p in _SPAM) >= SPAM_HITS


def cashtags(text: str) -> list[str]:
    """``$AAPL``-style mentions, upper-cased, in order of first appearance."""
    seen: list[str] = []
    for match in _CASHTAG.finditer(text):
        tag = match.group(1).upper()
        if tag not in seen:
            seen.append(tag)
    return seen


def split_symbols(symbols: Iterable[str]) -> tuple[list[str], list[str]]:
    """(valid tickers, refused spellings): a vendor's symbol list may hold junk."""
    good: list[str] = []
    bad: list[str] = []
    for raw in symbols:
        symbol = raw.strip().upper()
        if not symbol:
            continue
        (good if _TICKER.match(symbol) else bad).append(symbol)
    return list(dict.fromkeys(good)), bad


@dataclass(frozen=True)
class CleanText:
    """One item's text as stored and scored, or the reason it is refused."""

    headline: str
    summary: str
    body: str
    lang: str
    flags: tuple[str, ...]
    reject: str | None = None

    @property
    def lead(self) -> str:
        """What dedup and sentiment read: the summary, else the body's beginning."""
        return self.summary or self.body[:600]


def clean_text(headline: str | None, summary: str | None, body: str | None) -> CleanText:
    """Headline, summary and body as plain text within the size limits, with the flags that say
    what was done; ``reject`` says why an item cannot be stored (no text at all)."""
    flags: list[str] = []
    head, head_html = strip_html(headline)
    summ, summ_html = strip_html(summary)
    text, body_html = strip_html(body)
    if head_html or summ_html or body_html:
        flags.append("html_stripped")
    if len(text) > MAX_BODY_CHARS:
        text = text[:MAX_BODY_CHARS]
        flags.append("truncated")
    if len(head) > MAX_HEADLINE_CHARS:
        head = head[:MAX_HEADLINE_CHARS]
        flags.append("truncated_headline")
    if not text and not summ:
        flags.append("empty_body")
    lang = guess_language(" ".join((head, summ, text[:2000])))
    if lang == "other":
        flags.append("non_english")
    reject = None
    if not head and not summ and not text:
        reject = "no text: the headline, summary and body are all empty"
    elif not head:
        head = (summ or text)[:200]
        flags.append("headline_from_body")
    return CleanText(head, summ, text, lang, tuple(flags), reject)


def mentioned(text: str, symbols: Sequence[str]) -> list[str]:
    """The ``symbols`` named in ``text`` as a word or a cashtag."""
    upper = f" {text} "
    return [s for s in symbols if re.search(rf"(?<![A-Za-z0-9]){re.escape(s)}(?![A-Za-z0-9])", upper)]
