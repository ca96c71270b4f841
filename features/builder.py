"""The standard feature set, incremental state, and the seed's ``FeatureBuilder`` plugin API.

``FeatureSet(params, builders).compute(bars)`` gives one row per bar with the standard features
(:data:`features.kernels.FEATURES`) and every plugin's columns alongside, plus a
:class:`FeatureState`; ``compute_incremental(state, new_bars)`` continues from that state and gives
exactly what a full recompute gives for the new bars.

Plugins (the seed's example)::

    class CustomFeatureBuilder(FeatureBuilder):
        lookback_bars = 4          # history before a bar that its value needs (for incremental runs)

        def calculate_features(self, data):
            return pd.DataFrame({"close_ma5": data.groupby("symbol").close.transform(lambda s: s.rolling(5).mean())})

``data`` holds the bars of one timeframe for many symbols, sorted by (symbol, ts) — columns symbol,
timeframe, ts, open, high, low, close, volume and the standard features — and the result must
have the same index and only new numeric columns. A value at bar t may depend on bars <= t only,
and on at most ``lookback_bars`` earlier bars of its symbol. Builders are registered by name through
settings (name -> ``"package.module:Class"``) or the entry-point group ``marketpipe.features``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import pandas as pd

from core.errors import ConfigurationError, DataQualityError
from features.kernels import FeatureParams, run_standard
from features.layout import BarLayout
from sources.registry import load_import_path
from storage.feature_tables import FEATURES

if TYPE_CHECKING:
    from core.settings import FeatureSettings

ENTRY_POINT_GROUP = "marketpipe.features"
KEY_COLUMNS = ("symbol", "timeframe", "ts")
BAR_INPUTS = ("open", "high", "low", "close", "volume")
STANDARD_VERSION = "std2"  # bump when a kernel's formula or the stored basis changes (std2: levels as traded)


class FeatureBuilder:
    """The seed's plugin API: subclass and implement :meth:`calculate_features`."""

    name: ClassVar[str | None] = None
    lookback_bars: ClassVar[int] = 0
    version: ClassVar[str] = "1"

    def calculate_features(self, data: pd.DataFrame) -> pd.DataFrame:
        raise NotImplementedError(f"{type(self).__name__} must implement calculate_features(self, data)")


# ---------------------------------------------------------------------------------------------
# Standard set through the kernels


@dataclass(frozen=True, eq=False)
class FeatureState:
    """Everything needed to continue a computation: kernel state rows and, for plugins, recent rows."""

    params: FeatureParams
    timeframe: str
    symbols: tuple[str, ...]
    values: np.ndarray  # (len(symbols), params.state_layout.width) float64
    last_ts_ns: np.ndarray  # int64 per symbol
    tail: pd.DataFrame = field(default_factory=pd.DataFrame)  # last lookback rows per symbol (plugins)

    def rows_for(self, symbols: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        """State rows (a copy; zeros for unseen symbols) and last timestamps (min int64 if unseen)."""
        index = {s: k for k, s in enumerate(self.symbols)}
        values = np.zeros((len(symbols), self.values.shape[1]))
        last = np.full(len(symbols), np.iinfo(np.int64).min, dtype=np.int64)
        for k, s in enumerate(symbols):
            if s in index:
                values[k] = self.values[index[s]]
                last[k] = self.last_ts_ns[index[s]]
        return values, last

    def merged(
        self, symbols: tuple[str, ...], values: np.ndarray, last_ts_ns: np.ndarray, tail: pd.DataFrame
    ) -> FeatureState:
        """This state with ``symbols``' rows replaced (or added)."""
        replaced = set(symbols)
        keep = [k for k, s in enumerate(self.symbols) if s not in replaced]
        all_symbols = tuple(self.symbols[k] for k in keep) + symbols
        return FeatureState(
            self.params,
            self.timeframe,
            all_symbols,
            np.concatenate([self.values[keep], values]),
            np.concatenate([self.last_ts_ns[keep], last_ts_ns]),
            _merge_tail(self.tail, tail),
        )


def standard_values(
    layout: BarLayout, params: FeatureParams, state: np.ndarray | None = None, out: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The standard features of ``layout`` as a (len(FEATURES), n_bars) matrix, and the final state
    rows. ``state`` (one row per layout symbol) continues an earlier computation; it is not modified.
    ``out`` lets a caller that processes batch after batch reuse one feature matrix."""
    width = params.state_layout.width
    rows = np.zeros((len(layout.symbols), width)) if state is None else np.array(state, dtype=np.float64, copy=True)
    if out is None:
        out = np.empty((len(FEATURES), layout.n_bars))
    elif out.shape != (len(FEATURES), layout.n_bars) or out.dtype != np.float64 or not out.flags.c_contiguous:
        raise ValueError(f"out must be a C-contiguous float64 array of shape {(len(FEATURES), layout.n_bars)}")
    if layout.n_bars:
        run_standard(layout.kernel_arrays, layout.offsets, rows, out, params, layout.timeframe, layout.intraday)
    return out, rows


def _frame(layout: BarLayout, values: np.ndarray, bars: pd.DataFrame) -> pd.DataFrame:
    features = pd.DataFrame(values.T, columns=list(FEATURES), copy=False)
    keys = pd.DataFrame(
        {
            "symbol": layout.symbol_of_rows(),
            "timeframe": layout.timeframe,
            "ts": pd.to_datetime(layout.ts_ns, utc=True),
            **{c: bars[c].to_numpy() for c in BAR_INPUTS},
        }
    )
    return pd.concat([keys, features], axis=1)


class StandardFeatures(FeatureBuilder):
    """The built-in set as a FeatureBuilder (for callers that want only the kernels' columns)."""

    name = "standard"

    def __init__(self, params: FeatureParams | None = None) -> None:
        self.params = params or FeatureParams()

    def calculate_features(self, data: pd.DataFrame) -> pd.DataFrame:
        bars = _sorted(data)
        layout = BarLayout.from_frame(bars, None if "timeframe" in bars.columns else "1day")
        values, _ = standard_values(layout, self.params)
        return pd.DataFrame(values.T, columns=list(FEATURES), index=bars.index, copy=False).reindex(data.index)


# ---------------------------------------------------------------------------------------------
# Feature sets: standard + plugins


@dataclass(frozen=True)
class FeatureResult:
    frame: pd.DataFrame  # symbol, timeframe, ts, open..volume, standard features, plugin columns
    state: FeatureState


class FeatureSet:
    """The standard set plus plugin builders, with a version that names exactly what was computed."""

    def __init__(
        self, params: FeatureParams | None = None, builders: Mapping[str, FeatureBuilder] | None = None
    ) -> None:
        self.params = params or FeatureParams()
        self.builders = dict(builders or {})
        for name, builder in self.builders.items():
            if not isinstance(builder, FeatureBuilder):
                raise ConfigurationError(
                    f"feature builder {name!r} is a {type(builder).__name__}, not a FeatureBuilder"
                )

    @property
    def version(self) -> str:
        """``std2-<hash>``: changes when a window, a plugin or a plugin's version changes."""
        spec = repr(
            (
                sorted(asdict(self.params).items()),
                sorted((n, type(b).__qualname__, b.version) for n, b in self.builders.items()),
            )
        )
        return f"{STANDARD_VERSION}-{hashlib.sha256(spec.encode()).hexdigest()[:10]}"

    @property
    def lookback_bars(self) -> int:
        return max((b.lookback_bars for b in self.builders.values()), default=0)

    def compute(self, bars: pd.DataFrame, timeframe: str | None = None) -> FeatureResult:
        """Features of every bar in ``bars`` (any order; one timeframe), from the first bar of each symbol."""
        empty = FeatureState(self.params, "", (), np.zeros((0, self.params.state_layout.width)), np.zeros(0, np.int64))
        return self._run(empty, bars, timeframe)

    def compute_incremental(self, state: FeatureState, new_bars: pd.DataFrame) -> FeatureResult:
        """Features of ``new_bars`` continuing ``state``: equal to a full recompute over all bars.

        Every new bar must be later than the last bar the state has seen for its symbol (a correction
        of the past needs a recompute from that symbol's history)."""
        if state.params != self.params:
            raise ConfigurationError(f"state was computed with {state.params}, this feature set uses {self.params}")
        return self._run(state, new_bars, None if "timeframe" in new_bars.columns else state.timeframe)

    def _run(self, state: FeatureState, bars: pd.DataFrame, timeframe: str | None) -> FeatureResult:
        bars = _sorted(bars)
        layout = BarLayout.from_frame(bars, timeframe)
        if state.timeframe and layout.timeframe != state.timeframe:
            raise DataQualityError(f"state is for {state.timeframe!r} bars, got {layout.timeframe!r} bars")
        rows, last = state.rows_for(layout.symbols)
        if layout.n_bars:
            first = layout.ts_ns[layout.offsets[:-1]]
            stale = np.flatnonzero(first <= last)
            if len(stale):
                s = layout.symbols[stale[0]]
                raise DataQualityError(
                    f"new bars of {s} start at {pd.Timestamp(first[stale[0]], tz='UTC')}, not after the last bar the "
                    f"state has seen ({pd.Timestamp(last[stale[0]], tz='UTC')}): recompute {s} from its history"
                )
        values, rows = standard_values(layout, self.params, rows)
        frame = _frame(layout, values, bars)
        frame = self._plugins(frame, state.tail)
        last_ts = layout.ts_ns[layout.offsets[1:] - 1] if layout.n_bars else np.zeros(0, np.int64)
        tail = _tail(_with_history(state.tail, frame), self.lookback_bars)
        merged = state.merged(layout.symbols, rows, last_ts, tail)
        return FeatureResult(
            frame,
            FeatureState(self.params, layout.timeframe, merged.symbols, merged.values, merged.last_ts_ns, merged.tail),
        )

    def _plugins(self, frame: pd.DataFrame, tail: pd.DataFrame) -> pd.DataFrame:
        if not self.builders:
            return frame
        data = _with_history(tail, frame)
        new_rows = np.arange(len(data)) >= len(data) - len(frame)
        if len(data) > len(frame):
            order = np.argsort(data["symbol"].to_numpy(), kind="stable")  # plugins see (symbol, ts) order
            data, new_rows = data.iloc[order].reset_index(drop=True), new_rows[order]
        reserved = set(frame.columns)
        added: dict[str, np.ndarray] = {}
        for name, builder in self.builders.items():
            columns = _plugin_output(name, builder, data[list(frame.columns)], reserved | set(added))
            added.update({c: columns[c].to_numpy(np.float64)[new_rows] for c in columns.columns})
        out = data[new_rows].reset_index(drop=True)
        return out.assign(**added) if added else out


def _plugin_output(name: str, builder: FeatureBuilder, data: pd.DataFrame, reserved: set[str]) -> pd.DataFrame:
    try:
        result = builder.calculate_features(data.copy())
    except Exception as exc:
        raise ConfigurationError(f"feature builder {name!r} failed in calculate_features: {exc}") from exc
    if isinstance(result, pd.Series):
        result = result.to_frame(result.name or name)
    if not isinstance(result, pd.DataFrame) or len(result) != len(data) or not result.index.equals(data.index):
        raise ConfigurationError(
            f"feature builder {name!r} must return a DataFrame with the same index as its input "
            f"({len(data)} rows), got {type(result).__name__} {getattr(result, 'shape', '')}"
        )
    clash = sorted(set(map(str, result.columns)) & reserved)
    if clash:
        raise ConfigurationError(f"feature builder {name!r} returns column(s) {clash} that already exist: rename them")
    try:
        return result.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"feature builder {name!r} returned non-numeric columns: {exc}") from exc


def _sorted(bars: pd.DataFrame) -> pd.DataFrame:
    """``bars`` sorted by (symbol, ts) with a fresh RangeIndex — without a sort when already in order."""
    if len(bars) > 1:
        symbol = bars["symbol"].to_numpy()
        ts = pd.DatetimeIndex(bars["ts"]).as_unit("ns").asi8
        same = symbol[:-1] == symbol[1:]
        if not ((symbol[:-1] < symbol[1:]) | (same & (ts[:-1] < ts[1:]))).all():
            return bars.sort_values(["symbol", "ts"], kind="stable", ignore_index=True)
    return bars.reset_index(drop=True)


def _with_history(tail: pd.DataFrame, frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` preceded by the saved rows of its symbols (earlier in time, so order is kept)."""
    if not len(tail) or not len(frame):
        return frame
    return pd.concat([tail[tail["symbol"].isin(frame["symbol"].unique())], frame], ignore_index=True)


def _tail(frame: pd.DataFrame, n: int) -> pd.DataFrame:
    return frame.groupby("symbol", sort=False).tail(n).reset_index(drop=True) if n else frame.iloc[:0]


def _merge_tail(old: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    if not len(old):
        return new
    kept = old[~old["symbol"].isin(new["symbol"].unique())]
    return pd.concat([kept, new], ignore_index=True)


# ---------------------------------------------------------------------------------------------
# Registration


def discover_feature_builders(
    plugins: Mapping[str, str] | None = None, *, use_entry_points: bool = True
) -> dict[str, FeatureBuilder]:
    """Plugins from the ``marketpipe.features`` entry points, then ``plugins`` (name -> import path)."""
    found: dict[str, object] = {}  # checked below: each must be a FeatureBuilder subclass
    if use_entry_points:
        for entry in entry_points(group=ENTRY_POINT_GROUP):
            try:
                found[entry.name] = entry.load()
            except Exception as exc:
                raise ConfigurationError(
                    f"entry point {entry.name!r} = {entry.value!r} in group {ENTRY_POINT_GROUP!r} fails to load: {exc}"
                ) from exc
    for name, path in (plugins or {}).items():
        try:
            found[name] = load_import_path(path)
        except ConfigurationError as exc:
            raise ConfigurationError(f"feature builder {name!r}: {exc}") from exc
    builders: dict[str, FeatureBuilder] = {}
    for name, factory in found.items():
        if not (isinstance(factory, type) and issubclass(factory, FeatureBuilder)):
            raise ConfigurationError(f"feature builder {name!r} = {factory!r} is not a subclass of FeatureBuilder")
        builders[name] = factory()
    return builders


def feature_params(section: FeatureSettings) -> FeatureParams:
    """The standard set's windows from the settings' ``features`` section."""
    try:
        return FeatureParams(**{f.name: getattr(section, f.name) for f in fields(FeatureParams)})
    except ValueError as exc:
        raise ConfigurationError(f"settings features: {exc}") from exc


def feature_set_from_settings(section: FeatureSettings) -> FeatureSet:
    """The feature set the settings describe: their windows, their plugin builders and the entry points'."""
    return FeatureSet(feature_params(section), discover_feature_builders(section.builders))
