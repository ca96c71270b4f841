"""News items and Reddit posts about the synthetic market.

News follows prices: articles cluster on big moves and their wording is positive on up days and
negative on down days, so sentiment features computed downstream correlate with returns the way
they are meant to. Reddit posts are a separate, noisier stream keyed by subreddit and hour.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sandbox.prices import DailyHistory, symbol_hash
from sandbox.sessions import NS_PER_MINUTE, SessionCalendar
from sandbox.textgen import hash_u64, hash_uniform

#: Symbols used when a request names none (news without a ticker, Reddit mentions).
DEFAULT_UNIVERSE = (
    "AAPL",
    "MSFT",
    "AMZN",
    "GOOGL",
    "META",
    "NVDA",
    "TSLA",
    "JPM",
    "V",
    "JNJ",
    "WMT",
    "PG",
    "XOM",
    "UNH",
    "HD",
    "BAC",
    "KO",
    "PFE",
    "DIS",
    "NFLX",
)

POSITIVE_HEADLINES = (
    "{s} shares surge after earnings beat estimates",
    "{s} rallies as analysts upgrade the stock to buy",
    "{s} jumps on record quarterly revenue",
    "{s} climbs after strong guidance lifts outlook",
    "{s} gains as new product launch impresses investors",
    "{s} hits new high on robust demand",
)
NEGATIVE_HEADLINES = (
    "{s} shares plunge after earnings miss",
    "{s} falls as analysts downgrade the stock to sell",
    "{s} slumps on weak guidance and margin pressure",
    "{s} drops amid regulatory probe concerns",
    "{s} tumbles after disappointing sales figures",
    "{s} sinks as demand worries mount",
)
NEUTRAL_HEADLINES = (
    "{s} to present at industry conference next week",
    "{s} announces board changes",
    "{s} files quarterly report with the SEC",
    "{s} trading flat ahead of macro data",
    "{s} schedules earnings call date",
    "{s} unchanged as investors await Fed decision",
)
HEADLINES = {1: POSITIVE_HEADLINES, -1: NEGATIVE_HEADLINES, 0: NEUTRAL_HEADLINES}
SENTIMENT_NAMES = {1: "positive", -1: "negative", 0: "neutral"}
AUTHORS = ("Benzinga Newsdesk", "Jane Doe", "Rahul Mehta", "Chris Katje", "Shanthi Rexaline", "Erica Kollmann")
PUBLISHERS = ("Benzinga", "The Motley Fool", "Zacks Investment Research", "GlobeNewswire Inc.")


@dataclass(frozen=True)
class NewsTable:
    """News about one symbol, one row per article, sorted by time."""

    id: np.ndarray  # int64, unique across symbols
    t_ns: np.ndarray
    session: np.ndarray
    sentiment: np.ndarray  # -1, 0, 1
    template: np.ndarray
    other: np.ndarray  # index into DEFAULT_UNIVERSE of a second ticker mentioned, or -1

    def __len__(self) -> int:
        return len(self.id)

    def take(self, index: np.ndarray | slice) -> NewsTable:
        return NewsTable(
            *(getattr(self, f)[index] for f in ("id", "t_ns", "session", "sentiment", "template", "other"))
        )


def symbol_news(
    seed: int, symbol: str, history: DailyHistory, calendar: SessionCalendar, last_session: int
) -> NewsTable:
    n = min(len(history), last_session + 1)
    h = symbol_hash(symbol)
    sessions = np.arange(n, dtype=np.uint64)
    z = np.abs(history.ret[:n]) / history.sigma[:n]
    lam = 0.15 + 0.6 * np.clip(z - 1.0, 0, None)  # big moves make news
    # Poisson(lam) by inverse CDF on a keyed uniform: counts of one day never depend on others.
    u = hash_uniform(sessions, seed * 1_000_003 + h)
    counts = np.zeros(n, dtype=np.int64)
    p = np.exp(-lam)
    cdf = p.copy()
    for k in range(1, 6):  # at most 5 articles a day: a bounded loop over k, not over rows
        counts += (u > cdf).astype(np.int64)
        p = p * lam / k
        cdf = cdf + p
    session = np.repeat(np.arange(n), counts)
    item = np.arange(len(session)) - np.repeat(np.cumsum(counts) - counts, counts)
    key = session.astype(np.uint64) * np.uint64(8) + item.astype(np.uint64)
    salt = seed * 7_919 + h
    minute = (6 * 60 + hash_uniform(key, salt + 1) * 14 * 60).astype(np.int64)  # 06:00-20:00 New York
    t_ns = (
        calendar.midnight_ns[session]
        + minute * NS_PER_MINUTE
        + (hash_u64(key, salt + 2) % 60).astype(np.int64) * 1_000_000_000
    )
    move = history.ret[session] / history.sigma[session]
    sentiment = np.where(move > 0.3, 1, np.where(move < -0.3, -1, 0))
    sentiment = np.where(hash_uniform(key, salt + 3) < 0.15, 0, sentiment)
    template = (hash_u64(key, salt + 4) % 6).astype(np.int64)
    other = np.where(
        hash_uniform(key, salt + 5) < 0.3, (hash_u64(key, salt + 6) % len(DEFAULT_UNIVERSE)).astype(np.int64), -1
    )
    ids = (h % 1_000_000) * 10_000_000 + np.arange(len(session), dtype=np.int64)
    order = np.argsort(t_ns, kind="stable")
    return NewsTable(ids[order], t_ns[order], session[order], sentiment[order], template[order], other[order])


@dataclass(frozen=True)
class NewsItem:
    """One rendered article, vendor-neutral; the wire modules pick their field names."""

    id: int
    t_ns: int
    symbols: tuple[str, ...]
    headline: str
    summary: str
    author: str
    publisher: str
    sentiment: str
    url: str


def render_news(symbol: str, table: NewsTable) -> list[NewsItem]:
    items = []
    for i in range(len(table)):
        sent = int(table.sentiment[i])
        headline = HEADLINES[sent][int(table.template[i])].format(s=symbol)
        other = int(table.other[i])
        symbols = (symbol,) if other < 0 or DEFAULT_UNIVERSE[other] == symbol else (symbol, DEFAULT_UNIVERSE[other])
        summary = f"{headline}. Shares of {symbol} were in focus"
        summary += f" alongside {symbols[1]}." if len(symbols) > 1 else "."
        ident = int(table.id[i])
        items.append(
            NewsItem(
                id=ident,
                t_ns=int(table.t_ns[i]),
                symbols=symbols,
                headline=headline,
                summary=summary,
                author=AUTHORS[ident % len(AUTHORS)],
                publisher=PUBLISHERS[ident % len(PUBLISHERS)],
                sentiment=SENTIMENT_NAMES[sent],
                url=f"https://news.sandbox.invalid/{symbol.lower()}/{ident}",
            )
        )
    return items


# ---- Reddit -------------------------------------------------------------------------------------

POSITIVE_POSTS = (
    "${s} to the moon, loading more calls",
    "DD: why ${s} is massively undervalued",
    "${s} earnings crushed it, bullish",
    "Bought the dip on ${s}, feeling great",
)
NEGATIVE_POSTS = (
    "${s} is going to crash, puts printing",
    "Sold all my ${s}, this company is done",
    "${s} bagholders check in",
    "Why ${s} is a terrible investment right now",
)
NEUTRAL_POSTS = (
    "What do you think about ${s}?",
    "${s} daily discussion thread",
    "Anyone holding ${s} over earnings?",
    "${s} chart analysis for this week",
)
POSTS = {1: POSITIVE_POSTS, -1: NEGATIVE_POSTS, 0: NEUTRAL_POSTS}
HOUR_NS = 3_600 * 1_000_000_000


@dataclass(frozen=True)
class RedditPost:
    id: str  # base36, encodes hour slot and item so `after` cursors can be decoded
    created_utc: int
    title: str
    selftext: str
    author: str
    score: int
    num_comments: int
    upvote_ratio: float
    symbol: str
    sentiment: str


def _base36(value: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        value, r = divmod(value, 36)
        out = digits[r] + out
        if value == 0:
            return out


def post_slot(post_id: str) -> tuple[int, int]:
    """(hour slot, item) encoded in a post id; ValueError when it is not one of ours."""
    value = int(post_id, 36)
    return value // 8, value % 8


def subreddit_posts(seed: int, subreddit: str, first_hour: int, last_hour: int) -> list[RedditPost]:
    """Posts created in hour slots [first_hour, last_hour] (hours since the Unix epoch), newest first."""
    hours = np.arange(last_hour, first_hour - 1, -1, dtype=np.int64)
    if hours.size == 0:
        return []
    salt = seed * 104_729 + symbol_hash(subreddit.lower())
    counts = np.minimum((hash_uniform(hours.astype(np.uint64), salt) * 4.2).astype(np.int64), 4)
    hour = np.repeat(hours, counts)
    item = np.arange(len(hour)) - np.repeat(np.cumsum(counts) - counts, counts)
    key = (hour * 8 + item).astype(np.uint64)
    second = (hash_uniform(key, salt + 1) * 3600).astype(np.int64)
    created = hour * 3600 + second
    order = np.lexsort((-item, -created))
    sym_idx = (hash_u64(key, salt + 2) % len(DEFAULT_UNIVERSE)).astype(np.int64)
    sentiment = (hash_u64(key, salt + 3) % 3).astype(np.int64) - 1
    template = (hash_u64(key, salt + 4) % 4).astype(np.int64)
    score = np.exp(hash_uniform(key, salt + 5) * 9).astype(np.int64)
    comments = (score * hash_uniform(key, salt + 6) * 0.4).astype(np.int64)
    ratio = np.round(0.5 + 0.5 * hash_uniform(key, salt + 7), 2)
    posts = []
    for i in order:
        sym = DEFAULT_UNIVERSE[int(sym_idx[i])]
        sent = int(sentiment[i])
        title = POSTS[sent][int(template[i])].format(s=sym)
        posts.append(
            RedditPost(
                id=_base36(int(key[i])),
                created_utc=int(created[i]),
                title=title,
                selftext=f"{title}. Not financial advice. Positions: {sym}.",
                author=f"user_{int(key[i]) % 99991:05d}",
                score=int(score[i]),
                num_comments=int(comments[i]),
                upvote_ratio=float(ratio[i]),
                symbol=sym,
                sentiment=SENTIMENT_NAMES[sent],
            )
        )
    return posts
