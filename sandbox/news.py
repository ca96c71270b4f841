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
    pct: np.ndarray  # the session's close-to-close move in percent (the story's numbers)
    close: np.ndarray  # the session's close

    def __len__(self) -> int:
        return len(self.id)

    def take(self, index: np.ndarray | slice) -> NewsTable:
        return NewsTable(*(getattr(self, f)[index] for f in _TABLE_FIELDS))


_TABLE_FIELDS = ("id", "t_ns", "session", "sentiment", "template", "other", "pct", "close")


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
    pct = np.expm1(history.ret[session]) * 100.0
    close = history.close[session]
    return NewsTable(
        ids[order],
        t_ns[order],
        session[order],
        sentiment[order],
        template[order],
        other[order],
        pct[order],
        close[order],
    )


@dataclass(frozen=True)
class NewsItem:
    """One vendor's copy of a story, vendor-neutral; the wire modules pick their field names.

    ``story`` and ``polarity`` are the truth (:func:`news_truth`): copies of one story on several
    vendors (or twice on one, from two publishers) share ``story`` and differ in id, URL, time and
    a light rewording of the headline. ``updated_ns`` is after ``t_ns`` for an article the vendor
    updated (served as updated once the market clock passes it).
    """

    id: int | str
    t_ns: int
    symbols: tuple[str, ...]
    headline: str
    summary: str
    author: str
    publisher: str
    sentiment: str  # the vendor's own label (Polygon's insights): mostly, not always, the truth
    url: str
    body: str = ""
    updated_ns: int = 0
    story: int = 0
    polarity: int = 0
    vendor: str = ""


def render_news(symbol: str, table: NewsTable) -> list[NewsItem]:
    """Each story of ``table`` as its original article (the story's own id, URL and wording)."""
    items = []
    for i in range(len(table)):
        story = _story(symbol, table, i)
        items.append(
            NewsItem(
                id=story.key,
                t_ns=story.t_ns,
                symbols=story.symbols,
                headline=story.headline,
                summary=" ".join(story.sentences[:2]),
                author=AUTHORS[story.key % len(AUTHORS)],
                publisher=PUBLISHERS[story.key % len(PUBLISHERS)],
                sentiment=SENTIMENT_NAMES[story.polarity],
                url=story.url,
                body=" ".join(story.sentences),
                story=story.key,
                polarity=story.polarity,
            )
        )
    return items


# ---- syndication: one story, several vendors' copies -----------------------------------------------

PUBLISHER_HOSTS = ("benzinga.com", "fool.com", "zacks.com", "globenewswire.com")
ANALYSTS = ("Dan Ives", "Toni Sacconaghi", "Erik Woodring", "Samik Chatterjee", "Amit Daryanani", "Brian Nowak")
FIRMS = ("Wedbush", "Bernstein", "Morgan Stanley", "JPMorgan", "Evercore ISI", "Loop Capital")
RATING = {
    1: ("reiterated an Outperform rating", "raised the price target", "upgraded the shares to Buy"),
    -1: ("cut the rating to Underperform", "lowered the price target", "downgraded the shares to Sell"),
    0: ("kept a Neutral rating", "maintained an Equal Weight rating", "left estimates unchanged"),
}
TOPICS = (
    "The company reported quarterly revenue of ${rev:.2f} billion and earnings of ${eps:.2f} per share.",
    "Management guided to full-year sales of ${rev:.1f} billion, with margins near {margin:.0f}%.",
    "The new product line is expected to add ${rev:.1f} billion in annual sales by {year}.",
    "Regulators in {region} opened a review that could affect about {margin:.0f}% of revenue.",
    "Unit shipments grew {margin:.0f}% from a year earlier to {units:.1f} million.",
    "The board approved a ${rev:.1f} billion buyback and a dividend of ${eps:.2f} per share.",
)
REGIONS = ("the EU", "California", "Japan", "the UK", "Brazil", "India")
SYNONYMS = {
    "surge": "soar",
    "rallies": "advances",
    "jumps": "leaps",
    "climbs": "rises",
    "gains": "advances",
    "hits": "reaches",
    "plunge": "tumble",
    "falls": "slides",
    "slumps": "drops",
    "drops": "declines",
    "tumbles": "sinks",
    "sinks": "slides",
    "beat": "top",
    "after": "following",
    "announces": "unveils",
    "files": "submits",
    "shares": "stock",
    "weak": "soft",
    "strong": "solid",
}
TRACKING = (
    "?utm_source={vendor}&utm_medium=referral&utm_campaign=newsfeed",
    "?ref={vendor}&fbclid=IwAR0{key}",
    "#comments",
    "?utm_source=twitter&utm_content={key}",
)
# vendor -> (salt, probability a story is carried, probability of a second publisher's copy)
COVERAGE = {"polygon": (11, 0.85, 0.30), "alpaca": (23, 0.80, 0.0)}
UPDATE_PROBABILITY = 0.25  # of an Alpaca copy: updated later the same day
MAX_COPY_DELAY_NS = 4 * 3_600 * 1_000_000_000  # copies follow the original within hours
MINUTE_NS = 60 * 1_000_000_000


@dataclass(frozen=True)
class Story:
    key: int
    t_ns: int
    symbols: tuple[str, ...]
    polarity: int
    headline: str
    sentences: tuple[str, ...]
    url: str
    host: str


def _u(key: int, salt: int) -> float:
    return float(hash_uniform(np.array([key], dtype=np.uint64), salt)[0])


def _n(key: int, salt: int, n: int) -> int:
    return int(hash_u64(np.array([key], dtype=np.uint64), salt)[0] % np.uint64(n))


def _story(symbol: str, table: NewsTable, i: int) -> Story:
    """The story of row ``i``: wording, figures and original URL, all keyed by its id."""
    key = int(table.id[i])
    polarity = int(table.sentiment[i])
    headline = HEADLINES[polarity][int(table.template[i])].format(s=symbol)
    other = int(table.other[i])
    symbols = (symbol,) if other < 0 or DEFAULT_UNIVERSE[other] == symbol else (symbol, DEFAULT_UNIVERSE[other])
    pct, close = float(table.pct[i]), float(table.close[i])
    verb = "rose" if pct > 0.05 else "fell" if pct < -0.05 else "was little changed at"
    figures = {
        "rev": 1 + 90 * _u(key, 1),
        "eps": 0.1 + 5 * _u(key, 2),
        "margin": 5 + 40 * _u(key, 3),
        "units": 1 + 60 * _u(key, 4),
        "year": 2025 + _n(key, 5, 4),
        "region": REGIONS[_n(key, 6, len(REGIONS))],
    }
    analyst = _n(key, 7, len(ANALYSTS))
    move = (
        f"{symbol} {verb} {abs(pct):.2f}% to ${close:.2f} in the session."
        if verb != "was little changed at"
        else f"{symbol} was little changed at ${close:.2f} in the session."
    )
    sentences = [  # the lead is the story's own: its topic and figures, then the analyst's call
        TOPICS[_n(key, 11, len(TOPICS))].format(**figures),
        f"{ANALYSTS[analyst]} of {FIRMS[_n(key, 8, len(FIRMS))]} {RATING[polarity][_n(key, 9, 3)]}"
        f" with a target of ${close * (0.8 + 0.5 * _u(key, 10)):.0f}.",
        move,
        f"Volume reached {2 + 80 * _u(key, 12):.1f} million shares, {0.5 + 3 * _u(key, 13):.1f} times the"
        " 30-day average.",
    ]
    if len(symbols) > 1:
        sentences.append(f"Shares of {symbols[1]} were also in focus after the report.")
    host = PUBLISHER_HOSTS[_n(key, 14, len(PUBLISHER_HOSTS))]
    day = int(table.t_ns[i]) // (86_400 * 1_000_000_000)
    slug = "-".join(headline.lower().replace("$", "").split()[:8])
    url = f"https://www.{host}/news/{day}/{slug}-{key}"
    return Story(key, int(table.t_ns[i]), symbols, polarity, headline, tuple(sentences), url, host)


def _reword(headline: str, key: int) -> str:
    """A light rewording: some words swapped for synonyms, sometimes a publisher's prefix."""
    words = headline.split()
    out = [SYNONYMS[w] if w in SYNONYMS and _u(key, 20 + j) < 0.5 else w for j, w in enumerate(words)]
    text = " ".join(out)
    if _u(key, 40) < 0.2:
        text = f"{text} - report"
    return text


def _copy_url(story: Story, vendor: str, key: int) -> str:
    """The story's URL as this copy carries it: tracking parameters, a mobile or AMP host, or
    (syndication) the republishing site's own address."""
    roll = _u(key, 50)
    if roll < 0.3:
        host = PUBLISHER_HOSTS[(PUBLISHER_HOSTS.index(story.host) + 1 + _n(key, 51, 3)) % len(PUBLISHER_HOSTS)]
        return f"https://www.{host}/markets/{story.symbols[0].lower()}-{key:x}.html"
    if roll < 0.5:
        return story.url.replace("https://www.", "https://m.")
    if roll < 0.6:
        return story.url.replace("https://www.", "https://amp.") + "/amp"
    if roll < 0.85:
        return story.url + TRACKING[_n(key, 52, len(TRACKING))].format(vendor=vendor, key=key % 100_000)
    return story.url


def vendor_copies(vendor: str, symbol: str, table: NewsTable, now_ns: int) -> list[NewsItem]:
    """The copies ``vendor`` serves of the stories of ``table`` (as of ``now_ns``: an update the
    clock has not reached yet is served in its original version)."""
    salt, carried, second = COVERAGE[vendor]
    items: list[NewsItem] = []
    for i in range(len(table)):
        story = _story(symbol, table, i)
        copies = (_u(story.key, salt) < carried) + (_u(story.key, salt + 1) < second)
        for c in range(int(copies)):
            copy = story.key * 64 + salt * 4 + c  # distinct for every (story, vendor, copy)
            key = int(hash_u64(np.array([copy], dtype=np.uint64), 7_777)[0] >> np.uint64(12))
            delay = int((c * 40 + 30 * _u(key, 60) + (0 if c == 0 else 120 * _u(key, 61))) * MINUTE_NS)
            t_ns = story.t_ns + delay
            headline = _reword(story.headline, key) if (c or vendor != "alpaca") else story.headline
            sentences = list(story.sentences)
            symbols = story.symbols
            updated_ns = t_ns
            update_at = t_ns + int((20 + 200 * _u(key, 62)) * MINUTE_NS)
            if vendor == "alpaca" and _u(key, 63) < UPDATE_PROBABILITY and update_at <= now_ns:
                updated_ns = update_at
                headline = f"UPDATE: {headline}"
                sentences.append("This story was updated with comments from the company.")
                if _u(key, 64) < 0.4:  # the update names a second company, or drops it
                    extra = DEFAULT_UNIVERSE[_n(key, 65, len(DEFAULT_UNIVERSE))]
                    symbols = symbols[:1] if len(symbols) > 1 else (*symbols, extra) if extra != symbol else symbols
            label = story.polarity if _u(key, 66) >= 0.12 else 0  # the vendor's model misses some
            publisher = PUBLISHERS[_n(key, 67, len(PUBLISHERS))]
            ident: int | str = key % 10**9 if vendor == "alpaca" else f"{key:x}"
            items.append(
                NewsItem(
                    id=ident,
                    t_ns=t_ns,
                    symbols=symbols,
                    headline=headline,
                    summary=" ".join(sentences[: 2 if vendor == "alpaca" else 3]),
                    author=AUTHORS[_n(key, 68, len(AUTHORS))],
                    publisher=publisher,
                    sentiment=SENTIMENT_NAMES[label],
                    url=_copy_url(story, vendor, key),
                    body=" ".join(sentences),
                    updated_ns=updated_ns,
                    story=story.key,
                    polarity=story.polarity,
                    vendor=vendor,
                )
            )
    return items


def vendor_news(
    vendor: str, tables: dict[str, NewsTable], low: int, high: int, now_ns: int, descending: bool
) -> list[NewsItem]:
    """Every copy ``vendor`` serves of the symbols' stories, published in [low, high], in time order."""
    found: list[NewsItem] = []
    for sym, table in tables.items():
        a, b = np.searchsorted(table.t_ns, [low - MAX_COPY_DELAY_NS, high + 1])
        for item in vendor_copies(vendor, sym, table.take(slice(int(a), int(b))), now_ns):
            if low <= item.t_ns <= high:
                found.append(item)
    found.sort(key=lambda it: (it.t_ns, str(it.id)), reverse=descending)
    return found


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
SPAM_POSTS = (
    "FREE signals!!! ${s} 1000% gains guaranteed, join my Discord discord.gg/{k}",
    "Make $5,000 a week trading ${s} from home, DM me, link in bio",
    "Crypto giveaway: send 0.1 ETH, get 1 ETH back, ${s} holders welcome {k}",
)
OFF_TOPIC_POSTS = (
    "Anyone watching the game tonight?",
    "What laptop do you use for charting?",
    "Moving to a new city next month, any advice?",
    "Best budgeting app for a student?",
)
SPAM_PROBABILITY = 0.07
OFF_TOPIC_PROBABILITY = 0.07
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
    symbol: str  # "" for an off-topic post
    sentiment: str
    kind: str = "post"  # post | spam | off_topic (the truth)


def _base36(value: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        value, r = divmod(value, 36)
        out = digits[r] + out
        if value == 0:
            return out


SUBREDDIT_SLOTS = 1024  # post ids carry their subreddit too: Reddit's ids are unique site-wide


def post_slot(post_id: str) -> tuple[int, int]:
    """(hour slot, item) encoded in a post id; ValueError when it is not one of ours."""
    value = int(post_id, 36) // SUBREDDIT_SLOTS
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
    kind_roll = hash_uniform(key, salt + 8)
    sub_slot = symbol_hash(subreddit.lower()) % SUBREDDIT_SLOTS
    posts = []
    for i in order:
        sym = DEFAULT_UNIVERSE[int(sym_idx[i])]
        sent = int(sentiment[i])
        title = POSTS[sent][int(template[i])].format(s=sym)
        selftext = f"{title}. Not financial advice. Positions: {sym}."
        kind = "post"
        if kind_roll[i] < SPAM_PROBABILITY:
            kind, sent = "spam", 0
            title = SPAM_POSTS[int(template[i]) % len(SPAM_POSTS)].format(s=sym, k=int(key[i]) % 9973)
            selftext = f"{title} {title}"
        elif kind_roll[i] < SPAM_PROBABILITY + OFF_TOPIC_PROBABILITY:
            kind, sent, sym = "off_topic", 0, ""
            title = OFF_TOPIC_POSTS[int(template[i])]
            selftext = "Asking for a friend."
        posts.append(
            RedditPost(
                id=_base36(int(key[i]) * SUBREDDIT_SLOTS + sub_slot),
                created_utc=int(created[i]),
                title=title,
                selftext=selftext,
                author=f"user_{int(key[i]) % 99991:05d}",
                score=int(score[i]),
                num_comments=int(comments[i]),
                upvote_ratio=float(ratio[i]),
                symbol=sym,
                sentiment=SENTIMENT_NAMES[sent],
                kind=kind,
            )
        )
    return posts


# ---- the truth (control API, for tests and benchmarks) ------------------------------------------


def news_truth(
    tables: dict[str, NewsTable], low: int, high: int, now_ns: int, subreddits: tuple[str, ...], seed: int
) -> dict[str, list[dict[str, object]]]:
    """Which served items are one story and each story's polarity; each post's polarity and kind.

    ``news``: every vendor copy published in [low, high] with its story key and polarity (-1, 0,
    1); ``posts``: every post of ``subreddits`` created in that range with its kind (post, spam,
    off_topic), symbol and polarity.
    """
    news: list[dict[str, object]] = []
    for vendor in COVERAGE:
        for item in vendor_news(vendor, tables, low, high, now_ns, descending=False):
            news.append(
                {
                    "source": vendor,
                    "id": str(item.id),
                    "story": str(item.story),
                    "polarity": item.polarity,
                    "symbols": list(item.symbols),
                    "published_ns": item.t_ns,
                    "updated_ns": item.updated_ns,
                    "headline": item.headline,
                }
            )
    posts: list[dict[str, object]] = []
    for sub in subreddits:
        for post in subreddit_posts(seed, sub, low // HOUR_NS, high // HOUR_NS):
            if low <= post.created_utc * 1_000_000_000 <= high:
                posts.append(
                    {
                        "subreddit": sub,
                        "id": post.id,
                        "kind": post.kind,
                        "symbol": post.symbol,
                        "polarity": {"positive": 1, "negative": -1}.get(post.sentiment, 0),
                    }
                )
    return {"news": news, "posts": posts}
