// candlecast dashboard: plain ES module, relative URLs only (works under a path prefix).
//
// URL options: ?symbol=S (single view) · ?view=grid&symbols=A,B,C · &history=N (bars to seed,
// default 300) · &stale=S (seconds without data before the badge says stale, default 10).
// One WebSocket (batch=1, history=N): its snapshot seeds each chart with setData, later frames
// update it; on reconnect the next snapshot re-seeds, so no bar is missing or duplicated.

const params = new URLSearchParams(location.search);
const HISTORY = clampInt(params.get("history"), 300, 1, 5000);
const STALE_MS = clampInt(params.get("stale"), 10, 1, 3600) * 1000;
const BACKOFF_MIN = 500;
const BACKOFF_MAX = 15000;

const $ = (id) => document.getElementById(id);
const state = {
  view: params.get("view") === "grid" ? "grid" : "single",
  symbols: [],          // symbols shown
  known: [],            // symbols the server has
  charts: new Map(),    // symbol -> {series, volume, seeded, lastTime, label}
  frames: 0,
  candles: 0,
  ignored: 0,
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

function clampInt(text, fallback, lo, hi) {
  const n = Number.parseInt(text ?? "", 10);
  return Number.isFinite(n) ? Math.min(hi, Math.max(lo, n)) : fallback;
}

// Bar open time to UTC seconds: epoch ms when large, else already seconds.
function toSeconds(t) {
  return Math.floor(t > 1e11 ? t / 1000 : t);
}

function setStatus(status) {
  if (state.status === status) return;
  state.status = status;
  const badge = $("status");
  badge.textContent = status;
  badge.className = `badge ${status}`;
}

function notice(text) {
  const el = $("notice");
  el.textContent = text;
  el.hidden = !text;
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
  history.replaceState(null, "", `${location.pathname}?${q}`);
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
      layout: { background: { color: "#161b22" }, textColor: "#8b96a5", attributionLogo: false },
      grid: { vertLines: { color: "#1f2630" }, horzLines: { color: "#1f2630" } },
      crosshair: { mode: lib.CrosshairMode.Normal },
      rightPriceScale: { borderColor: "#2a313c" },
      timeScale: { borderColor: "#2a313c", timeVisible: true, secondsVisible: false },
    });
    const series = chart.addSeries(lib.CandlestickSeries, {
      upColor: "#26a69a", downColor: "#ef5350", borderVisible: false,
      wickUpColor: "#26a69a", wickDownColor: "#ef5350", lastValueVisible: true, priceLineVisible: true,
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
  return { time: toSeconds(m.ot), value: m.v, color: m.c >= m.o ? "#26a69a55" : "#ef535055" };
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

function wsUrl() {
  const url = new URL("ws", location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  url.search = new URLSearchParams({ symbols: state.symbols.join(","), history: String(HISTORY), batch: "1" });
  const token = params.get("token");
  if (token) url.searchParams.set("token", token);
  return url.href;
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
  ws = new WebSocket(wsUrl());
  ws.onmessage = (event) => {
    if (mine !== generation) return;
    const msg = JSON.parse(event.data);
    const items = Array.isArray(msg) ? msg : [msg];
    const candles = items.filter((m) => typeof m.s === "string");
    for (const m of items) if (m.op === "error") console.warn("candlecast:", m.error, m.detail);
    if (!candles.length) return;
    state.frames += 1;
    state.candles += candles.length;
    state.lastData = performance.now();
    const t = candles[candles.length - 1].t;
    if (t > 1e12) state.latency = Date.now() - t; // epoch ms: show delivery latency
    attempt = 0;
    apply(candles);
    setStatus("live");
  };
  ws.onclose = (event) => {
    if (mine !== generation) return;
    ws = null;
    setStatus("reconnecting");
    const delay = Math.min(BACKOFF_MAX, BACKOFF_MIN * 2 ** attempt) * (0.5 + Math.random() / 2);
    attempt += 1;
    if (event.code === 1008) notice(`The server refused the connection: ${event.reason || "policy violation"}.`);
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
    notice("The chart library is missing on the server. Install it with `npm ci` in the candlecast " +
      "checkout (or build the Docker image), then reload this page.");
    console.warn("candlecast: chart library not loaded", err);
    return;
  }
  const token = params.get("token");
  for (let wait = 500; ; wait = Math.min(wait * 2, 5000)) {
    try {
      const res = await fetch(`api/symbols${token ? `?token=${encodeURIComponent(token)}` : ""}`);
      state.known = res.ok ? (await res.json()).map((x) => x.symbol) : [];
    } catch {
      state.known = [];
    }
    if (state.known.length || params.get("symbol") || params.get("symbols")) break;
    notice("No symbols yet: waiting for the first candles from upstream.");
    await new Promise((resolve) => setTimeout(resolve, wait));
  }
  notice("");
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
