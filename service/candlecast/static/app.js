// candlecast dashboard: the entry module (index.html loads it), plain ES modules, no bundler,
// relative URLs only (the page works under a path prefix).
//
// Modules, each at the top level of static/ (the server serves no subfolder of it):
//   app.js       this file: the page's options, the health display (badge, updates/s, latency,
//                stale), the notice, start-up; it wires the others together
//   client.js    the WebSocket client (connect, auth, subscribe, resync, reconnect; no DOM)
//   views.js     single and grid views, their controls, the view in the URL, routing to charts
//   chart.js     one lightweight-charts chart (seed, update, precision, time axis, colours)
//   legend.js    the crosshair legend and price text     switcher.js   the interval toolbar
//
// URL options: ?symbol=S&interval=I (single view) · ?view=grid&symbols=A@5m,B,C@1h (grid; a bare
// symbol is the base interval) · &history=N (bars to seed, default 300) · &stale=S (seconds
// without data before the badge says stale, default 10).
// One WebSocket (batch=1, history=N) carries every chart's stream; its snapshot seeds each chart,
// later frames update it; on reconnect the next snapshot re-seeds, so no bar is missing or
// duplicated. Switching a chart's interval does not reconnect (see views.js and client.js).
//
// Polling, honestly: at start-up the page polls api/symbols (backoff 0.5 s to 5 s) until the server
// has symbols or the URL names some; after that every candle arrives over the WebSocket. When the
// socket fails abnormally (close 1006, or closed before it ever opened) the page asks api/symbols
// once why, since a refused token or Origin is an HTTP 403 the browser hides behind 1006; it says
// so in #notice and keeps reconnecting with backoff.
//
// Access token: #token=… in the page's URL (a fragment never reaches a server or its logs), or
// ?token=…. The page never puts it in a URL it requests: the client sends api/* an Authorization
// header and the WebSocket's first message is {"op":"auth","token":…}. A token that expires ends
// the connection with close code 4001.
//
// window.candlecast is the page's state, read by the browser tests and handy in the console.

import { loadChartLibrary } from "./chart.js";
import { CandlecastClient } from "./client.js";
import { Views } from "./views.js";

const params = new URLSearchParams(location.search);
const TOKEN = new URLSearchParams(location.hash.slice(1)).get("token") || params.get("token") || "";
const HISTORY = clampInt(params.get("history"), 300, 1, 5000);
const STALE_MS = clampInt(params.get("stale"), 10, 1, 3600) * 1000;
// A server error frame stays in the notice at least this long before live data may clear it.
const ERROR_NOTICE_MS = 10000;
// Epoch times above this are milliseconds, below it seconds: the server's rule (EPOCH_MS_ABOVE in
// candlecast/model/rules.py; tests/unit/test_rules.py checks the two are equal). The page's one copy:
// the charts get it for bar times, the latency display uses it here.
const EPOCH_MS_ABOVE = 1e11;

const TOKEN_REFUSED = "The server refused the access token (HTTP 401 from api/symbols). Open this page " +
  "with a valid #token=… in its URL; retrying in the background.";

const $ = (id) => document.getElementById(id);

function clampInt(text, fallback, lo, hi) {
  const n = Number.parseInt(text ?? "", 10);
  return Number.isFinite(n) ? Math.min(hi, Math.max(lo, n)) : fallback;
}

const client = new CandlecastClient(new URL(".", location.href), { token: TOKEN, history: HISTORY, batch: true });
const views = new Views({ client, epochMsAbove: EPOCH_MS_ABOVE, view: params.get("view") === "grid" ? "grid" : "single" });

const state = {
  status: "connecting", // the badge: connecting, live, reconnecting or stale
  frames: 0,            // frames that carried candles
  candles: 0,
  badFrames: 0,         // frames that were not JSON (or not an object or array): counted, ignored
  lastData: 0,          // performance.now() of the last frame with candles
  latency: null,        // ms from the last candle's event time to now, when it is epoch ms
  get view() { return views.view; },
  get symbols() { return views.symbols; },
  get known() { return views.known; },
  get intervals() { return views.intervals; },
  get interval() { return views.interval; },
  get precision() { return views.precision; },
  get charts() { return views.charts; },
  get ignored() { return views.ignored; },
  client,
};
window.candlecast = state;

let noticeUntil = 0; // performance.now() before which live data does not clear the notice

function setStatus(status) {
  if (state.status === status) return;
  state.status = status;
  const badge = $("status");
  badge.textContent = status;
  badge.className = `badge ${status}`;
}

// Show (or with "" hide) the notice. Live data clears it (see the frame event), but not for holdMs.
function notice(text, holdMs = 0) {
  const el = $("notice");
  el.textContent = text;
  el.hidden = !text;
  noticeUntil = text ? performance.now() + holdMs : 0;
}

// Why did the socket fail? A refused token or Origin is an HTTP 403 before the upgrade, which the
// browser reports only as close 1006, so ask api/symbols (401 when the token is refused; 200 when
// only the Origin is, or the server is full). Says so in the notice; the client keeps retrying.
async function diagnose(opened) {
  const frames = state.frames;
  const { status } = await client.fetchSymbols();
  if (state.frames !== frames) return; // live data came back meanwhile: nothing to explain
  if (status === 401) notice(TOKEN_REFUSED);
  else if (status === 0) notice("Cannot reach the server; retrying in the background.");
  else if (status !== 200) notice(`The server answers HTTP ${status}; retrying in the background.`);
  else if (!opened) {
    notice("The server refused the WebSocket connection (this page's origin may not be allowed, or the " +
      "server is full); retrying in the background.");
  }
}

// -- the client's events --------------------------------------------------------------------------

client.on("status", ({ status }) => {
  if (status === "connecting" || status === "reconnecting") setStatus(status); // "live" needs data
});

client.on("frame", ({ candles }) => {
  state.frames += 1;
  state.candles += candles.length;
  state.lastData = performance.now();
  const t = candles[candles.length - 1].t;
  if (t > EPOCH_MS_ABOVE) state.latency = Date.now() - t; // epoch ms: show delivery latency
  if (!$("notice").hidden && state.lastData >= noticeUntil) notice(""); // recovered
  setStatus("live");
});

client.on("invalid", () => {
  state.badFrames += 1;
});

client.on("error", ({ error, detail }) => {
  console.warn("candlecast:", error, detail);
  notice(`The server reported an error: ${[error, detail].filter(Boolean).join(": ")}.`, ERROR_NOTICE_MS);
});

client.on("close", ({ code, reason, opened, error }) => {
  if (code === 4001) {
    notice("The access token has expired: open this page again from the app that gave you its link.");
  } else if (code === 1008) {
    notice(`The server refused the connection: ${error || reason || "policy violation"}; retrying in the background.`);
  } else if (code === 1006 || !opened) {
    diagnose(opened);
  } else if (reason && code !== 1000 && code !== 1001) {
    notice(`The server closed the connection (${code}: ${reason}); reconnecting.`);
  }
});

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
  let lib;
  try {
    lib = await loadChartLibrary();
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
    const { status, symbols, intervals } = await client.fetchSymbols();
    const ready = symbols.length || params.get("symbol") || params.get("symbols");
    if (status === 401) notice(TOKEN_REFUSED);
    else notice(ready ? "" : "No symbols yet: waiting for the first candles from upstream.");
    if (ready) {
      views.start(lib, params, symbols, intervals);
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, wait));
  }
}

start();
