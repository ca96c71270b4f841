"""The sandbox's vendor-faithful WebSocket streams: Polygon's stocks cluster and Alpaca's v2 stream.

Both replay the one seeded market that REST serves, on a replay clock, with faults on demand.
Consumers and tests code against exactly what is written here.

Endpoints (same host and port as REST; plain ws://, loopback)
-------------------------------------------------------------
- Polygon ``ws://HOST:PORT/stocks`` (massive: ``WebSocketClient(api_key=KEY, feed="HOST:PORT",
  secure=False)`` builds exactly this URL; it cannot carry a query string, so configure massive's
  connections per key with ``POST /_sandbox/streams/keys/{KEY}``, see below).
  1. on connect: ``[{"ev":"status","status":"connected","message":"Connected Successfully"}]``
  2. ``{"action":"auth","params":KEY}`` -> ``[{"ev":"status","status":"auth_success","message":"authenticated"}]``;
     a missing key or one starting with the sandbox's bad-key prefix (``invalid``, as REST decides) ->
     ``[{"ev":"status","status":"auth_failed","message":"authentication failed"}]`` and close 1008.
  3. ``{"action":"subscribe","params":"T.AAPL,Q.*,AM.MSFT,A.*"}`` -> one
     ``{"ev":"status","status":"success","message":"subscribed to: T.AAPL"}`` per param (in one array);
     ``unsubscribe`` likewise (``"unsubscribed to: T.AAPL"``). Channels: ``T`` trades, ``Q`` quotes,
     ``AM`` minute aggregates, ``A`` second aggregates. Actions before auth -> status ``error``
     ``"not authorized"``; unparseable or unknown actions -> status ``error``.
  4. data: every frame is a JSON array of events, in market-time order (faults aside):
     trade ``{"ev":"T","sym","i","x","p","s","t","q","z"}`` (``i`` the REST id string, ``q`` the REST
     sequence_number, ``x`` exchange id, ``z`` tape 1/2/3, ``t`` SIP time in Unix ms; no ``c``: the REST
     trades carry no conditions either); quote ``{"ev":"Q","sym","bx","bp","bs","ax","ap","as","t","q","z"}``;
     minute agg ``{"ev":"AM","sym","v","av","op","vw","o","c","h","l","a","z","n","s","e"}`` (``s``/``e`` window
     start/end ms, ``av`` the session's accumulated volume, ``op`` the session open, ``a`` the session VWAP,
     ``z`` average trade size); second agg ``{"ev":"A",...}`` same fields over one second (only seconds with
     trades).
  5. a second connection authenticating with a key that already has ``max_connections`` (default 1) live
     connections evicts the OLDEST: it gets ``[{"ev":"status","status":"max_connections","message":...}]``
     and close code 1008; the newcomer is authenticated. Two reconnecting clients of one key thus evict
     each other. (Polygon keeps no half-dead slots: eviction makes them moot.)
  6. a client too slow for ``kick_slow`` gets ``[{"ev":"status","status":"slow_consumer",...}]`` then close 1008.
- Alpaca ``ws://HOST:PORT/v2/iex``, ``/v2/sip``, ``/v2/test`` (alpaca-py:
  ``StockDataStream(key, secret, url_override="ws://HOST:PORT/v2/iex?speed=60...")``). All three serve the
  same market (REST ignores ``feed`` too); each is its own connection slot.
  1. on connect ``[{"T":"success","msg":"connected"}]``
  2. ``{"action":"auth","key":K,"secret":S}`` -> ``[{"T":"success","msg":"authenticated"}]``; a missing or
     ``invalid``-prefixed key/secret -> ``[{"T":"error","code":402,"msg":"auth failed"}]`` and close 1008;
     no auth within ``auth_timeout_s`` -> 404 ``auth timeout`` and close; a second auth -> 403.
     Connection limit: if the key already holds ``max_connections`` (default 1) slots on this endpoint ->
     ``[{"T":"error","code":406,"msg":"connection limit exceeded"}]`` and close 1008 (the NEW one is
     refused; the old one goes on). A slot is freed when the server has processed the connection's close
     frame (a reconnect racing its own close can still see 406, as with Alpaca); a client that vanishes
     without one (TCP drop, kill -9) is "half-dead" and its slot is only reaped after ``reap_s`` (default
     90 s), so an immediate reconnect gets 406 until then. ``DELETE /_sandbox/streams/slots`` reaps now.
  3. ``{"action":"subscribe","trades":[..],"quotes":[..],"bars":[..],"updatedBars":[..],"dailyBars":[..]}``
     (``"*"`` = every symbol of the universe) and ``unsubscribe`` -> ``[{"T":"subscription","trades":[..],
     "quotes":[..],"bars":[..],"updatedBars":[..],"dailyBars":[..],"statuses":[],"lulds":[],
     "corrections":[..],"cancelErrors":[..]}]`` (corrections and cancelErrors follow trades). Before auth
     -> 401 ``not authenticated``; bad JSON / unknown action -> 400 ``invalid syntax``.
  4. data: trade ``{"T":"t","S","i","x","p","s","c":["@"],"z","t"}``, quote ``{"T":"q","S","bx","bp","bs","ax",
     "ap","as","c":["R"],"z","t"}``, minute bar ``{"T":"b","S","o","h","l","c","v","n","vw","t"}`` (``t`` the
     window start, sent when the minute ends), ``u`` updated bar (same shape; sent after late trades of an
     already-sent minute were delivered, see ``late``), ``d`` daily bar (the session so far, sent at every
     minute end, ``t`` = session midnight New York), correction ``{"T":"c","S","x","oi","op","os","oc","ci",
     "cp","cs","cc","z","t"}``, cancel ``{"T":"x","S","i","x","p","s","a":"C","z","t"}``.
     Encoding: msgpack (binary frames; ``t`` a msgpack Timestamp, as alpaca-py expects) when the upgrade
     request has ``Content-Type: application/msgpack`` (alpaca-py sends it); otherwise JSON text frames with
     ``t`` an RFC 3339 UTC string with nanoseconds (``2024-06-03T13:30:00.123456789Z``), ids/prices as REST.
  5. a client too slow for ``kick_slow`` gets ``[{"T":"error","code":407,"msg":"slow client"}]`` then close 1008.
- Alpaca news ``ws://HOST:PORT/v1beta1/news`` (alpaca-py: ``NewsDataStream(key, secret,
  url_override="ws://HOST:PORT/v1beta1/news?speed=0&from=00:00")``): the Alpaca protocol above (its own
  connection slot) with one channel: ``{"action":"subscribe","news":["*"]}`` -> ``[{"T":"subscription",
  "news":["*"]}]``; each article of REST's ``/v1beta1/news`` as ``{"T":"n","id","headline","summary","author",
  "created_at","updated_at","url","content","symbols","source":"benzinga"}`` when published, and again when
  updated (see ``news``). A session's replay covers its whole news day (midnight New York, or ``from``, to
  26 h later: news is published 06:00-20:00, updates follow within hours), not its trading hours; the
  clock is always private (``clock`` is ignored); the delivery faults apply, tick faults do not.

The same market as REST
-----------------------
- Trades streamed for a minute are exactly ``Market.trades(symbol, session)`` of that minute: same ids
  (Polygon ``i`` = REST ``id``, Alpaca ``i`` = REST ``i``), prices, sizes, exchanges, tape, times (Polygon ms =
  REST ``sip_timestamp`` // 1e6; Alpaca ns = REST). Quotes likewise (``Market.quotes``).
- ``AM`` / ``b`` are the REST 1-minute bars of the same minutes (o, h, l, c, v, n, vw identical to
  ``/v2/aggs/.../1/minute?adjusted=false`` and ``/v2/stocks/bars?timeframe=1Min&adjustment=raw``; a
  stream is unadjusted, which equals the adjusted REST bars for sessions after the symbol's last split).
  Because sandbox/ticks.py builds the trades inside each REST minute bar, the bar built from the
  streamed trades of a minute has the same open (first trade), high, low, close (last trade), volume
  (sum of sizes) and trade count; its VWAP differs (the generator draws the bar VWAP independently of
  the trade prices; REST and stream share it). ``A`` second aggregates are built from the trades (their
  VWAP included) and add up to the minute's volume and count.
- With ``corrections``/``cancels`` (Alpaca) a trade first appears wrong and is fixed later; the invariant
  holds after applying them (a corrected trade is first printed with id ``2_000_000_000 + i`` and a price
  5 cents off; the correction's ``oi``/``op`` name that print and ``ci``/``cp``/``cs`` are the REST
  id/price/size; a cancelled trade is an extra print REST never had, id ``1_000_000_000 + i``, same
  time/price/size as trade ``i``). ``late`` trades keep their own ``t`` and are delivered ``late_s`` market
  seconds later; bars always carry the full REST values (a late trade is late on the trades channel
  only), Alpaca sends the ``u`` bar of a minute once its late trades are in. ``duplicate``/``reorder``/
  ``malformed`` disturb delivery only.

Replay clock and configuration
------------------------------
Every connection's settings come from, lowest precedence first: built-in defaults <
``POST /_sandbox/streams/defaults`` < ``POST /_sandbox/streams/keys/{KEY}`` (applied when KEY authenticates)
< the URL query string (``/stocks?speed=600&session=2024-06-03&from=10:00``). JSON bodies use the same
names and value types as the query (numbers as numbers). Unknown names -> HTTP 400 at the control API and
close 1008 with the reason on a WebSocket. Settings:

- ``session`` (YYYY-MM-DD, default the market's last session, i.e. ``as_of``): the first session on or after
  it is replayed. ``sessions`` (int, default 1): replay that many consecutive sessions back to back.
- ``from`` (HH:MM[:SS] New York, default 09:30): where the replay starts in the first session; events due
  at or after it are sent (so ``from=15:58`` starts with the 15:57 bar, due at 15:58:00).
- Due instants: a trade or quote at its own ``t`` (a late one ``late_s`` later), a minute bar and the
  running daily bar when the minute ends, a second aggregate when its second ends, a correction or
  cancel 1 market second after its trade.
- ``speed`` (float, default 1.0): market seconds per wall second; ``60`` streams a session minute per second;
  ``0`` means as fast as the socket takes it (TCP backpressure paces it). A paced replay (speed > 0) never
  runs past the market's clock (``sandbox.clock``, the one REST serves by): a replay of the session under
  way waits at its now. ``speed=0`` and ``rate`` replays are benchmarks' and ignore it.
- ``rate`` (float msgs/s, default 0 = off): pace by message count instead of market time: the replay
  moves on through the sessions' events in order, ``rate`` data messages per second (a token bucket
  banking 0.25 s, frames of up to ``batch``); ``t`` stays the market time (see ``stamp``). With wildcard
  subscriptions over ``universe=N`` and ``sessions=K`` it drives benchmarks: trades per session range
  from ~1.5k (MSFT) to 1.5M (UNH) by symbol, and the 20-symbol default universe has ~3M trades and
  as many quotes a session. Measured on the 2-core dev box against a separate sandbox process
  (``T.*,Q.*``, universe 20): Polygon rate=200000 -> ~206k msgs/s, speed=0 -> ~270k msgs/s; Alpaca
  JSON ~125-145k msgs/s (its RFC 3339 times cost more). Each replayed (symbol, session) is built once
  and cached up to 1 GiB (~100 B per trade+quote), so the first minute of a big universe takes a
  couple of seconds.
- ``universe`` (comma list, or an int N = the first N symbols of the sandbox list: the 20 news-universe
  tickers then synthetic ``S0001``, ``S0002``...; default the 20): what ``*`` means.
- ``clock`` (name, default private): connections naming the same clock share one replay clock, started
  by the first subscribe (or ``POST /_sandbox/streams/clocks/{name}``) and running on in wall time; a
  connection that joins (or re-joins after a disconnect) starts at the clock's current market time, as a
  real feed does: what was missed is not replayed, fetch it over REST. A private clock starts at the
  connection's first subscribe. ``rate`` always uses a private clock.
- ``batch`` (int, default 1000): max data messages per frame; ``tick_ms`` (default 10): the producer wakes
  at most this often and sends what became due as frames.
- ``at_end`` (``idle`` default | ``close``): after the last replayed session's close the socket stays open
  and silent (pings answered), like a real feed after hours, or closes with code 1000 "replay done".
  Either way ``GET /_sandbox/streams`` shows the connection ``"done": true``.
- ``stamp`` (``market`` default | ``send``): ``send`` rewrites ``t`` of trades and quotes to the wall-clock
  instant the frame is built (for latency benchmarks; breaks the REST equality).
- vendor limits: ``max_connections`` (default 1), ``reap_s`` (Alpaca half-dead reaping, default 90),
  ``auth_timeout_s`` (Alpaca, default 10).

Faults (same precedence; seeded by ``seed``, default 0, so reruns see the same faults)
- ``disconnect_after`` (data messages) / ``disconnect_after_s`` (wall seconds after auth): drop the
  connection. ``disconnect_code``: ``abrupt`` (default: TCP close without a close frame, the client sees
  1006; an Alpaca slot then stays held for ``reap_s``) or a close code (``1011``...).
- ``stall_after`` (messages) / ``stall_after_s`` (seconds after auth): stop sending data, keep the socket
  open, keep reading (and answering) client actions and pings (uvicorn answers pings and itself pings
  every 20 s). ``stall_s`` (default forever) ends the stall; what became due meanwhile is then sent in a
  burst (nothing lost). Once per connection.
- ``malformed`` (fraction of data frames): the frame is cut in half (invalid JSON / msgpack).
- ``duplicate`` (fraction of data messages): the message is sent again in the next frame.
- ``reorder`` (fraction of data messages): swapped with the message after it.
- ``late`` (fraction of trades) with ``late_s`` (default 5 market seconds): delivered late, own ``t``.
- ``corrections`` / ``cancels`` (fraction of trades, Alpaca only): see "The same market as REST";
  the ``c``/``x`` message follows 1 market second after the trade.
- ``future_after`` (data messages, default 0 = off) with ``future_s`` (default 3600): once per connection,
  the first trade past that many data messages is stamped ``future_s`` seconds after the wall clock (a
  vendor's bad print, a skewed clock); the rest of the replay is unchanged.
- ``kick_slow`` (frames): the server buffers up to that many frames for a client that reads too slowly,
  then kicks it (Alpaca 407 then close 1008; Polygon status ``slow_consumer`` then close 1008). Without
  it (default 0) a slow reader is paced by TCP backpressure and the replay clock falls behind.

Control API (JSON)
- ``GET /_sandbox/streams``: ``{"defaults":{...},"keys":{KEY:{...}},"clocks":{name:{"market_ns",
  "market_time","session","speed","done"}},"connections":[{"id","vendor","path","key","state","messages","frames",
  "market_ns","done","close_code"}],"slots":[{"vendor","path","key","reaped_in_s"}]}`` (connections: live
  ones and the last 200 closed; ``state``: connected, authenticated, streaming, stalled, done, closing,
  closed; ``market_ns`` the due instant of the last event sent; ``close_code`` 0 = dropped without a
  close frame by the sandbox, 1005/1006 = the client vanished).
- ``POST|DELETE /_sandbox/streams/defaults``, ``POST|DELETE /_sandbox/streams/keys/{KEY}``: set / clear.
- ``POST /_sandbox/streams/clocks/{name}`` ``{"session","from","speed","sessions","late_s"}``: (re)start a
  shared clock now; ``GET`` it (the body above, 404 if unknown); ``DELETE`` it.
- ``POST /_sandbox/streams/disconnect`` ``{"vendor"?,"key"?,"code"?}``: drop the matching live connections
  now (``code`` as ``disconnect_code``, default ``abrupt``); returns ``{"disconnected": n}``.
- ``DELETE /_sandbox/streams/slots``: reap every held (half-dead) Alpaca slot now.
- ``DELETE /_sandbox/streams``: defaults, per-key settings, clocks and held slots cleared, closed-connection
  history emptied (live connections go on).

Layout: ``settings`` (the names above, parsed), ``clock`` (segments, replay clock, token bucket),
``timeline`` (per symbol-session event tables over ``Market``), ``polygon`` / ``alpaca`` / ``news`` (protocol
and rendering), ``faults`` (delivery faults), ``connection`` (the I/O of one socket), ``hub`` (state shared
by connections: settings layers, clocks, limits), ``routes`` (Starlette wiring).
"""
