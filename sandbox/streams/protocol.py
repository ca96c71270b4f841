"""What both vendors' stream protocols share: a parsed client action and a subscription set.

Subscriptions are kept per neutral channel (trades, quotes, bars...) as a set of symbols where
"*" means every symbol of the connection's universe, which is how both vendors define wildcards.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Action:
    """One client message: auth, subscribe / unsubscribe (topics per channel) or an error to answer."""

    kind: str  # "auth" | "subscribe" | "unsubscribe" | "error"
    key: str = ""
    secret: str = ""
    topics: dict[str, list[str]] = field(default_factory=dict)
    params: list[str] = field(default_factory=list)  # Polygon's params as sent, for its replies
    error: str = ""


class Subscriptions:
    def __init__(self) -> None:
        self._by_channel: dict[str, set[str]] = {}
        self.version = 0  # bumped on every change, so a producer knows to rebuild its chunk

    def add(self, topics: dict[str, list[str]]) -> None:
        for channel, symbols in topics.items():
            self._by_channel.setdefault(channel, set()).update(symbols)
        self.version += 1

    def remove(self, topics: dict[str, list[str]]) -> None:
        for channel, symbols in topics.items():
            held = self._by_channel.get(channel, set())
            held.difference_update(symbols)
            if "*" in symbols:
                held.clear()
        self.version += 1

    def symbols(self, channel: str) -> list[str]:
        return sorted(self._by_channel.get(channel, set()))

    def pairs(self, universe: Iterable[str]) -> list[tuple[str, str]]:
        """(symbol, channel) for every stream to replay, wildcards expanded over `universe`."""
        universe = list(universe)
        out = []
        for channel in sorted(self._by_channel):
            held = self._by_channel[channel]
            chosen = set(universe) | (held - {"*"}) if "*" in held else held
            out += [(s, channel) for s in sorted(chosen)]
        return out

    def __bool__(self) -> bool:
        return any(self._by_channel.values())
