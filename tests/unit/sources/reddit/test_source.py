import asyncio
from datetime import UTC, datetime

from sources.base import SourceContext, SymbolRequest
from sources.reddit import RedditSource

START, END = datetime(2024, 3, 4, tzinfo=UTC), datetime(2024, 3, 5, tzinfo=UTC)


def test_reddit_has_no_pages_so_its_frame_is_stored_as_records():
    source = RedditSource(SourceContext(name="reddit"))
    first = source.first_requests(SymbolRequest("AAPL", START, END, "1day"))
    asyncio.run(source.aclose())
    assert first is None
