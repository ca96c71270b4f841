"""One 'flow run' for the shared rate-limit test: fetch pages through a Prefect-backed limiter.

Run as ``python -m tests.support.rate_limit_worker URL RPS PAGES`` with PREFECT_API_URL set.
"""

import asyncio
import sys

from sources.http import VendorHttp, make_http_client
from sources.polygon import PolygonClient
from sources.resilience import PrefectRateLimiter, Resilience


async def main(url: str, rps: float, pages: int) -> None:
    resilience = Resilience("polygon", limiter=PrefectRateLimiter("polygon", rps))
    client = PolygonClient(VendorHttp("polygon", make_http_client(url), resilience, auth_params={"apiKey": "k"}))
    try:
        request = client.aggregates_request("AAPL", "2024-06-03", "2024-06-28", timeframe="1min", limit=60)
        count = 0
        async for _ in client.iter_pages(request):
            count += 1
            if count >= pages:
                break
    finally:
        await client.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], float(sys.argv[2]), int(sys.argv[3])))
