// candlecast dashboard: plain ES module, relative URLs only (works under a path prefix).
//
// URL options: ?symbol=S (single view) · ?view=grid&symbols=A,B,C · &history=N (bars to seed,
// default 300) · &stale=S (seconds without data before the badge says stale, default 10).
// One WebSocket (batch=1, history=N): its snapshot seeds each chart with setData, later frames
// update it; on reconnect the next snapshot re-seeds, so no bar is missing or duplicated.
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
  symbols: [],          // symbols shown
  known: [],            // symbols the server has
  charts: new Map(),    // symbol -> {series, volume, seeded, lastTime, label}
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

function clampInt(text, fallback, lo, hi) {
  const n = Number.parseInt(text ?? "", 10);
  return Number.isFinite(n) ? Math.min(hi, Math.max(lo, n)) : fallback;
}

// Bar open time to UTC seconds: epoch ms when large, else already seconds.
function toSeconds(t) {
  return Math.floor(t > EPOCH_MS_ABOVE ? t / 1000 : t);
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
    q.set("symbols", state.symbols.join(","));
    q.delete("symbol");
  } else {
    q.delete("view");
    q.delete("symbols");
    q.set("symbol", state.symbols[0] ?? "");
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
    const label = document.createElement("span");
    label.className = "last";
    label.textContent = "–";
    head.append(name, label);
    const plot = document.createElement("div");
    plot.className = "plot";
    card.append(head, plot);
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
    state.charts.set(symbol, { chart, series, volume: null, seeded: false, lastTime: -Infinity, label });
  }
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

// Candles of one frame, per symbol. A chart's first batch after (re)connect seeds it with
// setData (which replaces everything); later candles go through update, older ones are ignored.
function apply(candles) {
  const bySymbol = new Map();
  for (const m of candles) {
    if (!state.charts.has(m.s)) continue;
    if (!bySymbol.has(m.s)) bySymbol.set(m.s, []);
    bySymbol.get(m.s).push(m);
  }
  for (const [symbol, list] of bySymbol) {
    const c = state.charts.get(symbol);
    if (!c.seeded) {
      const bars = new Map();
      for (const m of list) bars.set(toSeconds(m.ot), m);
      const sorted = [...bars.keys()].sort((a, b) => a - b).map((t) => bars.get(t));
      c.series.setData(sorted.map(toBar));
      if (sorted.some((m) => m.v !== undefined)) volumeSeries(c).setData(sorted.filter((m) => m.v !== undefined).map(toVolume));
      c.seeded = true;
      c.lastTime = toSeconds(sorted[sorted.length - 1].ot);
      label(c, sorted[sorted.length - 1]);
      continue;
    }
    for (const m of list) {
      const time = toSeconds(m.ot);
      if (time < c.lastTime) {
        state.ignored += 1; // an older bar: the chart would throw "Cannot update oldest data"
        continue;
      }
      c.series.update(toBar(m));
      if (m.v !== undefined) volumeSeries(c).update(toVolume(m));
      c.lastTime = time;
      label(c, m);
    }
  }
}

function label(c, m) {
  c.label.textContent = `${m.c}`;
  c.label.className = `last ${m.c >= m.o ? "up" : "down"}`;
}

// -- connection ---------------------------------------------------------------------------------

// GET api/symbols with the page's token (a header, never in the URL): {status, symbols}; status 0
// when the server is unreachable.
async function fetchSymbols() {
  let res;
  try {
    res = await fetch(new URL("api/symbols", location.href), TOKEN ? { headers: { Authorization: `Bearer ${TOKEN}` } } : {});
  } catch {
    return { status: 0, symbols: [] };
  }
  try {
    return { status: res.status, symbols: res.ok ? (await res.json()).map((x) => x.symbol) : [] };
  } catch {
    return { status: res.status, symbols: [] }; // not the JSON list expected (a proxy's page?)
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
  url.search = new URLSearchParams({ symbols: state.symbols.join(","), history: String(HISTORY), batch: "1" });
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
  for (const c of state.charts.values()) c.seeded = false;
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
    const { status, symbols } = await fetchSymbols();
    state.known = symbols;
    const ready = state.known.length || params.get("symbol") || params.get("symbols");
    if (status === 401) notice(TOKEN_REFUSED);
    else notice(ready ? "" : "No symbols yet: waiting for the first candles from upstream.");
    if (ready) break;
    await new Promise((resolve) => setTimeout(resolve, wait));
  }
  const wanted = state.view === "grid"
    ? (params.get("symbols") ?? "").split(",").map((s) => s.trim()).filter(Boolean)
    : [params.get("symbol") ?? ""].filter(Boolean);
  for (const s of wanted) if (!state.known.includes(s)) state.known.push(s);
  const fallback = state.view === "grid" ? state.known.slice(0, 4) : state.known.slice(0, 1);
  $("view-single").addEventListener("click", () => show(state.symbols.length ? state.symbols : state.known, "single"));
  $("view-grid").addEventListener("click", () => show(state.view === "grid" ? state.symbols : state.known.slice(0, 4), "grid"));
  $("symbol").addEventListener("change", (e) => show([e.target.value], "single"));
  show(wanted.length ? wanted : fallback);
}

start();
