// candlecast's WebSocket client: one socket to a candlecast server carrying any number of streams.
//
// Owns: the connection to the server's `ws` endpoint and its lifecycle (connect, reconnect with
// capped exponential backoff and jitter, close), the access token's two uses (the WebSocket's
// first message {"op":"auth","token":…}, and an Authorization header on api/* requests; never a
// URL it requests), the set of streams ("A" for a symbol's base interval, "A@5m") and their
// subscribe/unsubscribe commands (with ids) on the open socket, and which candles of a stream are
// its snapshot: the first ones after a connect, after the "subscribed" reply to its subscribe, or
// after a "resync". It drops a stream's frames while it waits for that reply (they belong to what
// it left, or are stale). No DOM, no page URL: it runs in a page, a worker, or Node 22+ alike.
// Closes: its socket, on connect() with other streams (1000 "resubscribing") and on close().
//
//   const client = new CandlecastClient(new URL(".", location.href), { token, history: 300, batch: true });
//   client.on("snapshot", ({ stream, candles }) => seed(stream, candles)); // replaces what was shown
//   client.on("candles", ({ stream, candles }) => update(stream, candles)); // live, in order
//   client.connect(["BTCUSD", "ETHUSD@5m"]);
//
// Events, with client.on(name, listener) (it returns a function that removes the listener); a
// listener that throws does not stop the others (its error is rethrown in a microtask):
//   status    {status, attempt}  "connecting" (first try), "open", "reconnecting" (after a close,
//             and while retrying), "closed" (close(), or connect() with no streams)
//   frame     {candles}          every frame that carried candles (all of them, in order), before
//             the stream events below: for rates, latency and "is data flowing"
//   snapshot  {stream, candles}  a stream's seed: what came before it is void (arrival order;
//             a batch may hold several candles of one bar)
//   candles   {stream, candles}  a seeded stream's live candles, in order
//   resync    {}                 the server will re-send every stream's snapshot (its next candles)
//   reply     {message}          a "subscribed", "unsubscribed" or "pong" reply ({op, id, …})
//   error     {error, detail}    an error frame from the server; the connection stays open
//   invalid   {data}             a frame that was not JSON (or not an object or an array): ignored
//   close     {code, reason, opened, error, retryIn}  the socket closed (not by this client);
//             `opened`: it had opened; `error`: the last error frame on it ("code: detail");
//             it reconnects by itself in `retryIn` ms
// Candles are the server's frames as they are ({s, t, ot, o, h, l, c, v?, i?}); a candle's stream
// is `s`, or `s@i` when it carries an interval `i`.

/** Reconnect delays: min * 2^attempt, capped at max, times a random factor in [0.5, 1). */
export const BACKOFF = Object.freeze({ minMs: 500, maxMs: 15000 });

/** The stream a candle belongs to: "A", or "A@5m" when it carries an interval. */
export const streamOf = (candle) => (candle.i ? `${candle.s}@${candle.i}` : candle.s);

/** Milliseconds to wait before reconnect number `attempt` (0 for the first). */
export function backoffDelay(attempt, { minMs, maxMs } = BACKOFF, random = Math.random) {
  return Math.min(maxMs, minMs * 2 ** attempt) * (0.5 + random() / 2);
}

export class CandlecastClient {
  #base;          // the server's base URL (http: or https:); `ws` and `api/…` resolve against it
  #token;
  #history;
  #batch;
  #backoff;
  #ws = null;     // the current socket, or null while waiting to reconnect (or closed)
  #opened = false;
  #serverError = "";
  #attempt = 0;   // failed connections since data last flowed
  #timer = null;  // the pending reconnect
  #restart = false; // a restart of the connecting socket is queued (see #command)
  #status = "closed";
  #streams = new Map(); // stream -> {seeded, awaiting: the id of the subscribe whose reply it waits for}
  #nextId = 0;
  #listeners = new Map();

  /**
   * @param {string|URL} url  the server's base URL, absolute (http(s): or ws(s):); "ws" and
   *   "api/symbols" resolve against it like links on a page there, so a path prefix is kept
   * @param {{token?: string, history?: number, batch?: boolean, backoff?: {minMs: number, maxMs: number}}} options
   *   token: sent only as the first message and in Authorization headers; history: candles per
   *   stream in each snapshot (the server caps it); batch: let the server send arrays of candles
   */
  constructor(url, { token = "", history, batch = false, backoff = BACKOFF } = {}) {
    this.#base = new URL(url);
    if (this.#base.protocol === "ws:") this.#base.protocol = "http:";
    if (this.#base.protocol === "wss:") this.#base.protocol = "https:";
    this.#token = token;
    this.#history = history;
    this.#batch = batch;
    this.#backoff = backoff;
  }

  /** The streams asked for, in order. */
  get streams() {
    return [...this.#streams.keys()];
  }

  /** "connecting", "open", "reconnecting" or "closed" (see the status event). */
  get status() {
    return this.#status;
  }

  /** {seeded, awaiting} of a stream asked for (a copy), else undefined. seeded: its snapshot has
   *  been delivered; awaiting: the id of the subscribe whose reply it waits for, else null. */
  streamState(stream) {
    const s = this.#streams.get(stream);
    return s && { ...s };
  }

  /** Listen to an event (see the header); returns the function that stops it. */
  on(name, listener) {
    if (!this.#listeners.has(name)) this.#listeners.set(name, new Set());
    this.#listeners.get(name).add(listener);
    return () => this.#listeners.get(name)?.delete(listener);
  }

  /** (Re)open the socket with exactly these streams (default: the current ones); a socket that
   *  was open is closed first (1000). With no streams it closes and stays idle. Every stream's
   *  next candles are its snapshot. */
  connect(streams = this.streams) {
    this.#streams = new Map([...new Set(streams)].map((s) => [s, { seeded: false, awaiting: null }]));
    this.#open();
  }

  /** Add streams. On an open socket: one subscribe command; their frames are dropped until its
   *  reply, and the candles after it are their snapshot. Returns the command's id, or null when
   *  the socket is not open (a connecting one is restarted, once per task, to ask for them; a
   *  pending reconnect will ask for them anyway). */
  subscribe(streams) {
    for (const s of streams) this.#streams.set(s, { seeded: false, awaiting: null });
    return this.#command("subscribe", streams);
  }

  /** Remove streams: their frames are dropped from now on. Returns the unsubscribe command's id,
   *  or null when the socket is not open (as for subscribe). */
  unsubscribe(streams) {
    for (const s of streams) this.#streams.delete(s);
    return this.#command("unsubscribe", streams);
  }

  /** Send {"op":"ping"} on an open socket (the reply is a "reply" event); false if not open. */
  ping() {
    if (this.#ws?.readyState !== WebSocket.OPEN) return false;
    this.#ws.send(JSON.stringify({ op: "ping" }));
    return true;
  }

  /** Close the socket (1000) and stop reconnecting; connect() starts again. Idempotent. */
  close() {
    this.#stop("closed");
    this.#setStatus("closed");
  }

  /** fetch() an api/* path of the server with the token in an Authorization header. */
  api(path, init = {}) {
    const headers = this.#token ? { ...init.headers, Authorization: `Bearer ${this.#token}` } : init.headers;
    return fetch(new URL(path, this.#base), headers ? { ...init, headers } : init);
  }

  /** GET api/symbols: {status, symbols, intervals} (intervals served, base first); status 0 when
   *  the server is unreachable, empty lists when the answer is not the JSON list expected. Never throws. */
  async fetchSymbols() {
    let res;
    try {
      res = await this.api("api/symbols");
    } catch {
      return { status: 0, symbols: [], intervals: [] };
    }
    try {
      const list = res.ok ? await res.json() : [];
      const intervals = list.find((x) => Array.isArray(x.intervals))?.intervals ?? [];
      return { status: res.status, symbols: list.map((x) => x.symbol), intervals };
    } catch {
      return { status: res.status, symbols: [], intervals: [] }; // a proxy's error page?
    }
  }

  // -- internals ------------------------------------------------------------------------------

  #emit(name, detail) {
    for (const listener of this.#listeners.get(name) ?? []) {
      try {
        listener(detail);
      } catch (err) {
        queueMicrotask(() => {
          throw err;
        });
      }
    }
  }

  #setStatus(status) {
    if (this.#status === status) return;
    this.#status = status;
    this.#emit("status", { status, attempt: this.#attempt });
  }

  // Forget the current socket (closing it with 1000) and any pending reconnect or restart.
  #stop(reason) {
    clearTimeout(this.#timer);
    this.#timer = null;
    this.#restart = false;
    const ws = this.#ws;
    this.#ws = null;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = null;
      ws.close(1000, reason);
    }
  }

  #url() {
    const url = new URL("ws", this.#base);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    const query = { symbols: this.streams.join(",") };
    if (this.#history !== undefined) query.history = String(this.#history);
    if (this.#batch) query.batch = "1";
    url.search = new URLSearchParams(query);
    return url.href; // no token here: it goes in the first message
  }

  #open() {
    this.#stop("resubscribing");
    if (!this.#streams.size) {
      this.#setStatus("closed");
      return;
    }
    for (const s of this.#streams.values()) Object.assign(s, { seeded: false, awaiting: null });
    this.#setStatus(this.#attempt ? "reconnecting" : "connecting");
    this.#opened = false;
    this.#serverError = "";
    const ws = new WebSocket(this.#url());
    this.#ws = ws;
    ws.onopen = () => {
      this.#opened = true;
      if (this.#token) ws.send(JSON.stringify({ op: "auth", token: this.#token }));
      this.#setStatus("open");
    };
    ws.onmessage = (event) => this.#receive(event.data);
    ws.onclose = (event) => this.#closed(event);
  }

  #command(op, streams) {
    const ws = this.#ws;
    if (ws?.readyState === WebSocket.OPEN) {
      this.#nextId += 1;
      const id = this.#nextId;
      ws.send(JSON.stringify({ op, symbols: streams, id }));
      if (op === "subscribe") for (const s of streams) this.#streams.get(s).awaiting = id;
      return id;
    }
    if (ws?.readyState === WebSocket.CONNECTING && !this.#restart) {
      // its URL names the old streams: start over with the current ones, once for all the
      // changes made in this task
      this.#restart = true;
      queueMicrotask(() => {
        if (this.#restart && this.#ws === ws) this.#open();
      });
    }
    return null;
  }

  #receive(data) {
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      msg = null;
    }
    if (msg === null || typeof msg !== "object") {
      this.#emit("invalid", { data });
      return;
    }
    const items = (Array.isArray(msg) ? msg : [msg]).filter((m) => m !== null && typeof m === "object");
    for (const m of items) {
      if (m.op === "resync") {
        // a scale-out edge that missed candles re-sends every snapshot next
        for (const s of this.#streams.values()) s.seeded = false;
        this.#emit("resync", {});
      } else if (m.op === "subscribed" || m.op === "unsubscribed" || m.op === "pong") {
        // a stream that waited for this reply takes frames again: its snapshot follows
        if (m.op === "subscribed") {
          for (const s of this.#streams.values()) if (s.awaiting === m.id) Object.assign(s, { seeded: false, awaiting: null });
        }
        this.#emit("reply", { message: m });
      } else if (m.op === "error") {
        this.#serverError = [m.error, m.detail].filter(Boolean).join(": ");
        this.#emit("error", { error: m.error, detail: m.detail });
      }
    }
    const candles = items.filter((m) => typeof m.s === "string");
    if (!candles.length) return;
    this.#attempt = 0; // data flows: the next failure starts the backoff over
    this.#emit("frame", { candles });
    const byStream = new Map();
    for (const m of candles) {
      const stream = streamOf(m);
      const s = this.#streams.get(stream);
      if (!s || s.awaiting !== null) continue;
      if (!byStream.has(stream)) byStream.set(stream, []);
      byStream.get(stream).push(m);
    }
    for (const [stream, list] of byStream) {
      const s = this.#streams.get(stream);
      if (!s) continue; // a listener unsubscribed it meanwhile
      if (s.seeded) {
        this.#emit("candles", { stream, candles: list });
      } else {
        s.seeded = true;
        this.#emit("snapshot", { stream, candles: list });
      }
    }
  }

  #closed(event) {
    this.#ws = null;
    const retryIn = backoffDelay(this.#attempt, this.#backoff);
    this.#attempt += 1;
    this.#setStatus("reconnecting");
    this.#emit("close", {
      code: event.code, reason: event.reason, opened: this.#opened, error: this.#serverError, retryIn,
    });
    // unless a listener reconnected or closed the client meanwhile
    if (this.#status === "reconnecting" && this.#ws === null && this.#timer === null) {
      this.#timer = setTimeout(() => this.#open(), retryIn);
    }
  }
}
