// candlecast dashboard: plain ES module, relative URLs only (works under a path prefix).
//
// URL options: ?symbol=S&interval=I (single view) · ?view=grid&symbols=A@5m,B,C@1h (grid; a bare
// symbol is the base interval) · &history=N (bars to seed, default 300) · &stale=S (seconds
// without data before the badge says stale, default 10).
// One WebSocket (batch=1, history=N) carries every chart's stream ("A" for the base interval,
// "A@5m"): its snapshot seeds each chart with setData, later frames update it; on reconnect the
// next snapshot re-seeds, so no bar is missing or duplicated. Switching a chart's interval does
// not reconnect: it sends unsubscribe (old stream) and subscribe (new one, id'd) on the same
// socket, drops the chart's frames until the "subscribed" reply with that id, and lets the
// snapshot after it re-seed the chart. Each chart has a legend (O/H/L/C/V and the change of the
// bar under the crosshair, else the latest bar), prices shown with the symbol's precision: the
// most decimals seen in its prices (at most 8).
//
// Polling, honestly: at start-up the page polls api/symbols (backoff 0.5 s to 5 s) until the server
// has symbols or the URL names some; after that every candle arrives over the WebSocket. When the
// socket fails abnormally (close 1006, or closed before it ever opened) the page asks api/symbols
// once why, since a refused token or Origin is an HTTP 403 the browser hides behind 1006; it says
// so in #notice and keeps reconnecting with backoff. Chart colours come from style.css.
//
// Access token: #token=… in the page's URL (a fragment never reaches a server or its logs), or
// ?token=…. The page never puts it in a URL it requests: api/* get an Authorization header, and the
// WebSocket's first message is {"op":"auth","token":…}. A token that expires ends the connection
// with close code 4001.

const params = new URLSearchParams(location.search);
const TOKEN = new URLSearchParams(location.hash.slice(1)).get("token") || params.get("token") || "";
const HISTORY = clampInt(params.get("history"), 300, 1, 5000);
const STALE_MS = clampInt(params.get("stale"), 10, 1, 3600) * 1000;
const BACKOFF_MIN = 500;
const BACKOFF_MAX = 15000;
// A server error frame stays in the notice at least this long before live data may clear it.
const ERROR_NOTICE_MS = 10000;
// Epoch times above this are milliseconds, below it seconds. Mirrors EPOCH_MS_ABOVE in
// candlecast/rules.py: keep the two equal.
const EPOCH_MS_ABOVE = 1e11;

const $ = (id) => document.getElementById(id);
const state = {
  view: params.get("view") === "grid" ? "grid" : "single",
  symbols: [],          // symbols shown (one chart each)
  known: [],            // symbols the server has
  intervals: [],        // intervals the server serves, base first (from api/symbols; [] if unknown)
  interval: new Map(),  // symbol -> interval chosen, when not the base
  precision: new Map(), // symbol -> decimals of its prices (most seen, at most 8)
  charts: new Map(),    // stream ("A" or "A@5m") -> {symbol, interval, stream, chart, series, volume, seeded,
                        //   seeds, seededWith (bars of the last seed), awaiting (the id of the subscribe
                        //   whose reply it waits for), lastTime, latest, hover, shown, label, legend, switcher}
  frames: 0,
  candles: 0,
  ignored: 0,
  badFrames: 0,         // frames that were not JSON (or not an object or array): counted, ignored
  status: "connecting",
  lastData: 0,
  latency: null,
};
window.candlecast = state; // read by the browser tests and handy in the console

let lib = null;
let ws = null;
let attempt = 0;
let reconnectTimer = null;
let generation = 0;
let colors = null;      // chart colours, read from the stylesheet's custom properties
let noticeUntil = 0;    // performance.now() before which live data does not clear the notice
let commandId = 0;      // ids of the subscribe/unsubscribe commands this page sends

function clampInt(text, fallback, lo, hi) {
  const n = Number.parseInt(text ?? "", 10);
  return Number.isFinite(n) ? Math.min(hi, Math.max(lo, n)) : fallback;
}

// Bar open time to UTC seconds: epoch ms when large, else already seconds.
function toSeconds(t) {
  return Math.floor(t > EPOCH_MS_ABOVE ? t / 1000 : t);
}

// -- intervals and streams ------------------------------------------------------------------------

const UNIT_SECONDS = { s: 1, m: 60, h: 3600, d: 86400, w: 604800 };

// "5m" -> 300 (seconds); NaN when not an interval name.
function intervalSeconds(name) {
  const m = /^([1-9][0-9]*)([smhdw])$/.exec(name ?? "");
  return m ? Number(m[1]) * UNIT_SECONDS[m[2]] : Number.NaN;
}

const baseInterval = () => state.intervals[0] ?? "";

// The interval a symbol's chart shows: the one chosen, else the base.
const intervalOf = (symbol) => state.interval.get(symbol) ?? baseInterval();

// "A" (the base interval) or "A@5m": what the page subscribes to and routes frames by.
const streamOf = (symbol, interval = intervalOf(symbol)) =>
  !interval || interval === baseInterval() ? symbol : `${symbol}@${interval}`;

// Remember a symbol's interval: an interval the server does not serve (when its list is known)
// or the base is not remembered, so the chart shows the base.
function chooseInterval(symbol, interval) {
  const served = !state.intervals.length || state.intervals.includes(interval);
  if (interval && served && interval !== baseInterval()) state.interval.set(symbol, interval);
  else state.interval.delete(symbol);
}

// Decimals of a price as the server wrote it (shortest round-trip form), at most 8.
function decimals(x) {
  if (!Number.isFinite(x)) return 0;
  const [mantissa, exp] = String(x).split("e");
  const places = (mantissa.split(".")[1] ?? "").length - Number(exp ?? 0);
  return Math.min(8, Math.max(0, places));
}

function setStatus(status) {
  if (state.status === status) return;
  state.status = status;
  const badge = $("status");
  badge.textContent = status;
  badge.className = `badge ${status}`;
}

// Show (or with "" hide) the notice. Live data clears it (see onmessage), but not for holdMs.
function notice(text, holdMs = 0) {
  const el = $("notice");
  el.textContent = text;
  el.hidden = !text;
  noticeUntil = text ? performance.now() + holdMs : 0;
}

const TOKEN_REFUSED = "The server refused the access token (HTTP 401 from api/symbols). Open this page " +
  "with a valid #token=… in its URL; retrying in the background.";

// The chart colours, from the custom properties in style.css (:root).
function readColors() {
  const css = getComputedStyle(document.documentElement);
  const v = (name) => css.getPropertyValue(name).trim();
  return {
    background: v("--chart-bg"), text: v("--chart-text"), grid: v("--chart-grid"), border: v("--chart-border"),
    up: v("--up"), down: v("--down"), volumeUp: v("--volume-up"), volumeDown: v("--volume-down"),
  };
}

// -- URL and controls -------------------------------------------------------------------------

function writeUrl() {
  const q = new URLSearchParams(location.search);
  if (state.view === "grid") {
    q.set("view", "grid");
    q.set("symbols", state.symbols.map((s) => streamOf(s)).join(","));
    q.delete("symbol");
    q.delete("interval");
  } else {
    q.delete("view");
    q.delete("symbols");
    const symbol = state.symbols[0] ?? "";
    q.set("symbol", symbol);
    if (streamOf(symbol) === symbol) q.delete("interval");
    else q.set("interval", intervalOf(symbol));
  }
  history.replaceState(null, "", `${location.pathname}?${q}${location.hash}`);
}

function renderControls() {
  $("view-single").setAttribute("aria-pressed", String(state.view === "single"));
  $("view-grid").setAttribute("aria-pressed", String(state.view === "grid"));
  $("pick-single").hidden = state.view !== "single";
  $("pick-grid").hidden = state.view !== "grid";
  const select = $("symbol");
  select.replaceChildren(...state.known.map((s) => new Option(s, s, false, s === state.symbols[0])));
  const box = $("symbols");
  box.replaceChildren(
    ...state.known.map((s) => {
      const label = document.createElement("label");
      label.className = "chip";
      const input = document.createElement("input");
      input.type = "checkbox";
      input.value = s;
      input.checked = state.symbols.includes(s);
      input.addEventListener("change", () => {
        const chosen = [...box.querySelectorAll("input:checked")].map((i) => i.value);
        show(chosen.length ? chosen : [s]);
      });
      label.append(input, s);
      return label;
    }),
  );
}

function show(symbols, view = state.view) {
  state.view = view;
  state.symbols = view === "single" ? symbols.slice(0, 1) : symbols;
  writeUrl();
  renderControls();
  buildCharts();
  connect();
}

// -- charts -------------------------------------------------------------------------------------

function buildCharts() {
  colors = readColors();
  for (const c of state.charts.values()) c.chart.remove();
  state.charts.clear();
  const root = $("charts");
  root.className = `charts ${state.view}`;
  root.replaceChildren();
  for (const symbol of state.symbols) {
    const card = document.createElement("article");
    card.className = "card";
    card.setAttribute("aria-label", `${symbol} chart`);
    const head = document.createElement("header");
    const name = document.createElement("b");
    name.textContent = symbol;
    const switcher = document.createElement("div");
    switcher.className = "intervals";
    switcher.setAttribute("role", "toolbar");
    switcher.setAttribute("aria-label", `${symbol} interval`);
    const label = document.createElement("span");
    label.className = "last";
    label.textContent = "–";
    head.append(name, switcher, label);
    const legend = document.createElement("div");
    legend.className = "legend";
    const plot = document.createElement("div");
    plot.className = "plot";
    card.append(head, legend, plot);
    root.append(card);
    const chart = lib.createChart(plot, {
      autoSize: true,
      layout: { background: { color: colors.background }, textColor: colors.text, attributionLogo: false },
      grid: { vertLines: { color: colors.grid }, horzLines: { color: colors.grid } },
      crosshair: { mode: lib.CrosshairMode.Normal },
      rightPriceScale: { borderColor: colors.border },
      timeScale: { borderColor: colors.border, timeVisible: true, secondsVisible: false },
    });
    const series = chart.addSeries(lib.CandlestickSeries, {
      upColor: colors.up, downColor: colors.down, borderVisible: false,
      wickUpColor: colors.up, wickDownColor: colors.down, lastValueVisible: true, priceLineVisible: true,
    });
    const c = {
      symbol, interval: intervalOf(symbol), stream: streamOf(symbol), chart, series, volume: null,
      seeded: false, seeds: 0, seededWith: 0, awaiting: null, lastTime: -Infinity, latest: null, hover: null,
      label, legend, switcher,
    };
    state.charts.set(c.stream, c);
    chart.subscribeCrosshairMove((param) => {
      const bar = param.time === undefined ? undefined : param.seriesData.get(series);
      const volume = param.time === undefined || !c.volume ? undefined : param.seriesData.get(c.volume);
      c.hover = bar && "open" in bar ? { ...bar, volume: volume?.value } : null;
      renderLegend(c);
    });
    renderSwitcher(c);
    applyInterval(c);
    renderLegend(c);
  }
}

// -- interval switcher --------------------------------------------------------------------------

// One toolbar of <button aria-pressed> per chart; a roving tabindex makes it one Tab stop, the
// arrow keys (and Home/End) move between its buttons, Enter/Space switches.
function renderSwitcher(c) {
  const box = c.switcher;
  box.hidden = state.intervals.length < 2;
  if (box.children.length !== state.intervals.length) {
    box.replaceChildren(
      ...state.intervals.map((interval) => {
        const button = document.createElement("button");
        button.type = "button";
        button.textContent = interval;
        button.dataset.interval = interval;
        button.addEventListener("click", () => switchInterval(c, interval));
        return button;
      }),
    );
    box.onkeydown = (event) => moveFocus(box, event);
  }
  for (const button of box.children) {
    const pressed = button.dataset.interval === c.interval;
    button.setAttribute("aria-pressed", String(pressed));
    button.tabIndex = pressed ? 0 : -1;
  }
}

function moveFocus(box, event) {
  const buttons = [...box.children];
  const at = buttons.indexOf(document.activeElement);
  const to = { ArrowRight: at + 1, ArrowDown: at + 1, ArrowLeft: at - 1, ArrowUp: at - 1, Home: 0, End: -1 }[event.key];
  if (at < 0 || to === undefined) return;
  event.preventDefault();
  const next = buttons.at(to % buttons.length);
  for (const b of buttons) b.tabIndex = b === next ? 0 : -1;
  next.focus();
}

// Show another interval in chart c: re-key it, empty it, and (on an open socket) unsubscribe the
// old stream and subscribe the new one; the snapshot after the "subscribed" reply re-seeds it.
function switchInterval(c, interval) {
  const symbol = c.symbol;
  chooseInterval(symbol, interval);
  const stream = streamOf(symbol);
  if (stream === c.stream) return;
  const old = c.stream;
  state.charts.delete(old);
  Object.assign(c, {
    interval: intervalOf(symbol), stream, seeded: false, seededWith: 0, awaiting: null, lastTime: -Infinity,
    latest: null, hover: null,
  });
  state.charts.set(stream, c);
  c.series.setData([]);
  if (c.volume) c.volume.setData([]);
  c.label.textContent = "–";
  c.label.className = "last";
  renderSwitcher(c);
  applyInterval(c);
  renderLegend(c);
  writeUrl();
  if (ws?.readyState === WebSocket.OPEN) {
    commandId += 1;
    ws.send(JSON.stringify({ op: "unsubscribe", symbols: [old], id: commandId }));
    commandId += 1;
    c.awaiting = commandId;
    ws.send(JSON.stringify({ op: "subscribe", symbols: [stream], id: commandId }));
  } else if (ws?.readyState === WebSocket.CONNECTING) {
    connect(); // its URL names the old stream: start over with the current ones
  } // else a reconnect is pending, and its URL will name the current streams
}

// Time axis to suit the interval: seconds below 1 m, no time of day from 1 d on.
function applyInterval(c) {
  const seconds = intervalSeconds(c.interval);
  c.chart.applyOptions({
    timeScale: { timeVisible: !(seconds >= 86400), secondsVisible: seconds < 60 },
  });
}

// -- legend and precision -----------------------------------------------------------------------

const VOLUME = new Intl.NumberFormat("en", { notation: "compact", maximumFractionDigits: 2 });

function price(symbol, x) {
  return x.toFixed(state.precision.get(symbol) ?? 2);
}

// Note the decimals of candles' prices; when the symbol's precision grows, its chart's price
// scale, legend and last price follow.
function notePrecision(symbol, candles) {
  const before = state.precision.get(symbol) ?? -1;
  let p = before;
  for (const m of candles) p = Math.max(p, decimals(m.o), decimals(m.h), decimals(m.l), decimals(m.c));
  if (p === before) return;
  state.precision.set(symbol, p);
  for (const c of state.charts.values()) {
    if (c.symbol !== symbol) continue;
    c.series.applyOptions({ priceFormat: { type: "price", precision: p, minMove: 1 / 10 ** p } });
    renderLegend(c);
  }
}

// O/H/L/C/V and the change of the bar under the crosshair, else of the latest bar.
function renderLegend(c) {
  const bar = c.hover ?? c.latest;
  c.shown = bar; // the bar the legend shows (read by the browser tests)
  if (!bar) {
    c.legend.replaceChildren();
    return;
  }
  const p = state.precision.get(c.symbol) ?? 2;
  let change = bar.close - bar.open;
  if (Number(change.toFixed(p)) === 0) change = 0;
  const pct = bar.open ? (change / bar.open) * 100 : 0;
  const sign = change > 0 ? "+" : "";
  const field = (key, text) => {
    const item = document.createElement("span");
    const name = document.createElement("span");
    name.className = "k";
    name.textContent = key;
    const value = document.createElement("span");
    value.dataset.k = key;
    value.textContent = text;
    item.append(name, value);
    return item;
  };
  const delta = document.createElement("span");
  delta.dataset.k = "change";
  delta.className = change > 0 ? "up" : change < 0 ? "down" : "";
  delta.textContent = `${sign}${change.toFixed(p)} (${sign}${pct.toFixed(2)}%)`;
  c.legend.replaceChildren(
    field("O", price(c.symbol, bar.open)), field("H", price(c.symbol, bar.high)),
    field("L", price(c.symbol, bar.low)), field("C", price(c.symbol, bar.close)),
    ...(bar.volume === undefined ? [] : [field("V", VOLUME.format(bar.volume))]), delta,
  );
}

function volumeSeries(c) {
  if (!c.volume) {
    c.volume = c.chart.addSeries(lib.HistogramSeries, {
      priceFormat: { type: "volume" }, priceScaleId: "", lastValueVisible: false, priceLineVisible: false,
    });
    c.volume.priceScale().applyOptions({ scaleMargins: { top: 0.8, bottom: 0 } });
    c.chart.priceScale("right").applyOptions({ scaleMargins: { top: 0.08, bottom: 0.25 } });
  }
  return c.volume;
}

function toBar(m) {
  return { time: toSeconds(m.ot), open: m.o, high: m.h, low: m.l, close: m.c };
}

function toVolume(m) {
  return { time: toSeconds(m.ot), value: m.v, color: m.c >= m.o ? colors.volumeUp : colors.volumeDown };
}

// Candles of one frame, per stream (m.s, and m.i for a higher interval). A chart's first batch
// after (re)connect or (re)subscribe seeds it with setData (which replaces everything); later
// candles go through update, older ones are ignored. A chart that awaits its "subscribed" reply
// takes nothing: what comes before it is of the stream it left, or stale.
function apply(candles) {
  const byStream = new Map();
  for (const m of candles) {
    const stream = m.i ? `${m.s}@${m.i}` : m.s;
    const c = state.charts.get(stream);
    if (!c || c.awaiting !== null) continue;
    if (!byStream.has(c)) byStream.set(c, []);
    byStream.get(c).push(m);
  }
  for (const [c, list] of byStream) {
    notePrecision(c.symbol, list);
    if (!c.seeded) {
      const bars = new Map();
      for (const m of list) bars.set(toSeconds(m.ot), m);
      const sorted = [...bars.keys()].sort((a, b) => a - b).map((t) => bars.get(t));
      c.series.setData(sorted.map(toBar));
      if (sorted.some((m) => m.v !== undefined)) volumeSeries(c).setData(sorted.filter((m) => m.v !== undefined).map(toVolume));
      c.seeded = true;
      c.seeds += 1;
      c.seededWith = sorted.length;
      c.lastTime = toSeconds(sorted[sorted.length - 1].ot);
      label(c, sorted[sorted.length - 1]);
      continue;
    }
    let latest = null;
    for (const m of list) {
      const time = toSeconds(m.ot);
      if (time < c.lastTime) {
        state.ignored += 1; // an older bar: the chart would throw "Cannot update oldest data"
        continue;
      }
      c.series.update(toBar(m));
      if (m.v !== undefined) volumeSeries(c).update(toVolume(m));
      c.lastTime = time;
      latest = m;
    }
    if (latest) label(c, latest);
  }
}

// The chart's last price (header) and latest bar (legend, unless the crosshair is on a bar).
function label(c, m) {
  c.label.textContent = price(c.symbol, m.c);
  c.label.className = `last ${m.c >= m.o ? "up" : "down"}`;
  c.latest = { ...toBar(m), volume: m.v };
  if (c.hover?.time === c.latest.time) c.hover = c.latest; // the bar under the cursor moved
  renderLegend(c);
}

// -- connection ---------------------------------------------------------------------------------

// GET api/symbols with the page's token (a header, never in the URL): {status, symbols, intervals}
// (intervals served, base first); status 0 when the server is unreachable.
async function fetchSymbols() {
  let res;
  try {
    res = await fetch(new URL("api/symbols", location.href), TOKEN ? { headers: { Authorization: `Bearer ${TOKEN}` } } : {});
  } catch {
    return { status: 0, symbols: [], intervals: [] };
  }
  try {
    const list = res.ok ? await res.json() : [];
    const intervals = list.find((x) => Array.isArray(x.intervals))?.intervals ?? [];
    return { status: res.status, symbols: list.map((x) => x.symbol), intervals };
  } catch {
    return { status: res.status, symbols: [], intervals: [] }; // not the JSON list expected (a proxy's page?)
  }
}

// Why did the socket fail? A refused token or Origin is an HTTP 403 before the upgrade, which the
// browser reports only as close 1006, so ask api/symbols (401 when the token is refused; 200 when
// only the Origin is, or the server is full). Says so in the notice; the caller keeps retrying.
async function diagnose(opened) {
  const frames = state.frames;
  const { status } = await fetchSymbols();
  if (state.frames !== frames) return; // live data came back meanwhile: nothing to explain
  if (status === 401) notice(TOKEN_REFUSED);
  else if (status === 0) notice("Cannot reach the server; retrying in the background.");
  else if (status !== 200) notice(`The server answers HTTP ${status}; retrying in the background.`);
  else if (!opened) {
    notice("The server refused the WebSocket connection (this page's origin may not be allowed, or the " +
      "server is full); retrying in the background.");
  }
}

function wsUrl() {
  const url = new URL("ws", location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  const streams = state.symbols.map((s) => streamOf(s)).join(",");
  url.search = new URLSearchParams({ symbols: streams, history: String(HISTORY), batch: "1" });
  return url.href; // no token here: it goes in the first message (see onopen)
}

function connect() {
  generation += 1;
  const mine = generation;
  clearTimeout(reconnectTimer);
  if (ws) {
    ws.onclose = null;
    ws.close(1000, "resubscribing");
  }
  if (!state.symbols.length) return;
  for (const c of state.charts.values()) Object.assign(c, { seeded: false, awaiting: null });
  setStatus(attempt ? "reconnecting" : "connecting");
  let opened = false;
  let serverError = ""; // the last error frame on this connection, for the close notice
  ws = new WebSocket(wsUrl());
  ws.onopen = (event) => {
    opened = true;
    if (TOKEN) event.target.send(JSON.stringify({ op: "auth", token: TOKEN }));
  };
  ws.onmessage = (event) => {
    if (mine !== generation) return;
    let msg;
    try {
      msg = JSON.parse(event.data);
    } catch {
      msg = null;
    }
    if (msg === null || typeof msg !== "object") {
      state.badFrames += 1; // not JSON, or not a candle, array or control message: ignore it
      return;
    }
    const items = (Array.isArray(msg) ? msg : [msg]).filter((m) => m !== null && typeof m === "object");
    const candles = items.filter((m) => typeof m.s === "string");
    // resync: the server (a scale-out edge that missed candles) re-sends a snapshot next; let it
    // re-seed every chart with setData instead of being taken as updates.
    if (items.some((m) => m.op === "resync")) for (const c of state.charts.values()) c.seeded = false;
    // a chart that switched interval takes frames again from its subscribe's reply on: the new
    // stream's snapshot follows that reply and re-seeds it
    for (const m of items) {
      if (m.op !== "subscribed") continue;
      for (const c of state.charts.values()) if (c.awaiting === m.id) Object.assign(c, { seeded: false, awaiting: null });
    }
    for (const m of items) {
      if (m.op !== "error") continue;
      console.warn("candlecast:", m.error, m.detail);
      serverError = [m.error, m.detail].filter(Boolean).join(": ");
      notice(`The server reported an error: ${serverError}.`, ERROR_NOTICE_MS);
    }
    if (!candles.length) return;
    state.frames += 1;
    state.candles += candles.length;
    state.lastData = performance.now();
    const t = candles[candles.length - 1].t;
    if (t > EPOCH_MS_ABOVE) state.latency = Date.now() - t; // epoch ms: show delivery latency
    attempt = 0;
    if (!$("notice").hidden && state.lastData >= noticeUntil) notice(""); // recovered
    apply(candles);
    setStatus("live");
  };
  ws.onclose = (event) => {
    if (mine !== generation) return;
    ws = null;
    setStatus("reconnecting");
    const delay = Math.min(BACKOFF_MAX, BACKOFF_MIN * 2 ** attempt) * (0.5 + Math.random() / 2);
    attempt += 1;
    if (event.code === 4001) {
      notice("The access token has expired: open this page again from the app that gave you its link.");
    } else if (event.code === 1008) {
      notice(`The server refused the connection: ${serverError || event.reason || "policy violation"}; ` +
        "retrying in the background.");
    } else if (event.code === 1006 || !opened) {
      diagnose(opened);
    } else if (event.reason && event.code !== 1000 && event.code !== 1001) {
      notice(`The server closed the connection (${event.code}: ${event.reason}); reconnecting.`);
    }
    reconnectTimer = setTimeout(connect, delay);
  };
}

// updates/s, latency and staleness, once a second
let lastCount = 0;
setInterval(() => {
  $("rate").textContent = `${state.candles - lastCount} upd/s`;
  lastCount = state.candles;
  $("latency").textContent = state.latency === null ? "– ms" : `${Math.max(0, state.latency)} ms`;
  if (state.status === "live" && performance.now() - state.lastData > STALE_MS) setStatus("stale");
}, 1000);

// -- start ----------------------------------------------------------------------------------------

async function start() {
  try {
    lib = await import("../vendor/lightweight-charts.mjs");
  } catch (err) {
    setStatus("stale");
    notice("The chart library is missing on the server. Reinstall candlecast from a wheel or an sdist " +
      "(they carry it), or run scripts/bootstrap (npm ci) in the checkout, then reload this page.");
    console.warn("candlecast: chart library not loaded", err);
    return;
  }
  // Poll api/symbols with backoff until the server has symbols (or the URL names some): the only
  // polling on this page. A refused token says so; the page still goes on (and keeps trying).
  for (let wait = 500; ; wait = Math.min(wait * 2, 5000)) {
    const { status, symbols, intervals } = await fetchSymbols();
    state.known = symbols;
    state.intervals = intervals;
    const ready = state.known.length || params.get("symbol") || params.get("symbols");
    if (status === 401) notice(TOKEN_REFUSED);
    else notice(ready ? "" : "No symbols yet: waiting for the first candles from upstream.");
    if (ready) break;
    await new Promise((resolve) => setTimeout(resolve, wait));
  }
  // grid: symbols=A@5m,B (bare: the base interval); single: symbol=A&interval=5m
  const items = state.view === "grid"
    ? (params.get("symbols") ?? "").split(",").map((s) => s.trim()).filter(Boolean)
    : [params.get("symbol") ?? ""].filter(Boolean).map((s) => (params.get("interval") ? `${s}@${params.get("interval")}` : s));
  const wanted = [];
  for (const item of items) {
    const [symbol, interval = ""] = item.split("@");
    if (!symbol || wanted.includes(symbol)) continue; // one chart per symbol
    wanted.push(symbol);
    chooseInterval(symbol, interval.trim());
  }
  for (const s of wanted) if (!state.known.includes(s)) state.known.push(s);
  const fallback = state.view === "grid" ? state.known.slice(0, 4) : state.known.slice(0, 1);
  $("view-single").addEventListener("click", () => show(state.symbols.length ? state.symbols : state.known, "single"));
  $("view-grid").addEventListener("click", () => show(state.view === "grid" ? state.symbols : state.known.slice(0, 4), "grid"));
  $("symbol").addEventListener("change", (e) => {
    chooseInterval(e.target.value, intervalOf(state.symbols[0])); // the new symbol in the same interval
    show([e.target.value], "single");
  });
  show(wanted.length ? wanted : fallback);
}

start();
