// The views: single (one large chart) and grid (small live charts, one per symbol, each in its
// own interval), the controls that choose them, and the view in the page's URL.
//
// Owns: which symbols are shown and in which interval ("A" is a symbol's base interval, "A@5m"
// another: the stream it subscribes to), the chart cards in #charts (header with the symbol, its
// interval switcher and last price; the legend; the plot), routing the client's snapshot and
// candles events to their card, each symbol's price precision (the most decimals seen, at most
// 8), interval switching over the same socket (unsubscribe the old stream, subscribe the new
// one; the client drops its frames until the reply and hands over the snapshot after it), the
// view controls in the header (#view-single, #view-grid, #symbol, #symbols) and writing the view
// back to the URL (?symbol=A&interval=5m, ?view=grid&symbols=A,B@5m) so a link reproduces it.
// Each new view rebuilds the cards (chart colours read afresh) and reconnects the client with its
// streams. Closes: the charts of the cards it replaces.

import { CandleChart, decimals, readColors } from "./chart.js";
import { formatPrice, renderLegend } from "./legend.js";
import { IntervalSwitcher } from "./switcher.js";

const $ = (id) => document.getElementById(id);

const UNIT_SECONDS = { s: 1, m: 60, h: 3600, d: 86400, w: 604800 };

/** "5m" -> 300 (seconds); NaN when not an interval name. */
export function intervalSeconds(name) {
  const m = /^([1-9][0-9]*)([smhdw])$/.exec(name ?? "");
  return m ? Number(m[1]) * UNIT_SECONDS[m[2]] : Number.NaN;
}

/** One chart card: its DOM, its CandleChart (plot), switcher and legend. The browser tests read
 *  chart, series, volume, seeded, awaiting, seeds, seededWith, interval, hover, shown and legend. */
class Card {
  constructor(views, symbol, colors) {
    this.views = views;
    this.symbol = symbol;
    this.interval = views.intervalOf(symbol);
    this.stream = views.streamOf(symbol);
    this.latest = null; // the latest bar
    this.hover = null;  // the bar under the crosshair, or null
    this.shown = null;  // the bar the legend shows
    this.element = document.createElement("article");
    this.element.className = "card";
    this.element.setAttribute("aria-label", `${symbol} chart`);
    const head = document.createElement("header");
    const name = document.createElement("b");
    name.textContent = symbol;
    const toolbar = document.createElement("div");
    this.label = document.createElement("span");
    this.label.className = "last";
    this.label.textContent = "–";
    head.append(name, toolbar, this.label);
    this.legend = document.createElement("div");
    this.legend.className = "legend";
    const plot = document.createElement("div");
    plot.className = "plot";
    this.element.append(head, this.legend, plot);
    views.root.append(this.element);
    this.plot = new CandleChart(views.lib, plot, { colors, epochMsAbove: views.epochMsAbove });
    this.switcher = new IntervalSwitcher(toolbar, {
      label: `${symbol} interval`,
      onSelect: (interval) => views.switchInterval(this, interval),
    });
    this.plot.onCrosshair((bar) => {
      this.hover = bar;
      this.renderLegend();
    });
    this.renderInterval();
  }

  get chart() { return this.plot.chart; }
  get series() { return this.plot.series; }
  get volume() { return this.plot.volume; }
  get seeds() { return this.plot.seeds; }
  get seededWith() { return this.plot.seededWith; }
  /** Its stream's snapshot has been applied (since the last connect, subscribe or resync). */
  get seeded() { return this.views.client.streamState(this.stream)?.seeded ?? false; }
  /** The id of the subscribe whose reply its stream waits for, else null. */
  get awaiting() { return this.views.client.streamState(this.stream)?.awaiting ?? null; }

  get precision() {
    return this.views.precision.get(this.symbol);
  }

  /** The switcher and the time axis, for the card's interval. */
  renderInterval() {
    this.switcher.render(this.views.intervals, this.interval);
    this.plot.fitTimeAxis(intervalSeconds(this.interval));
  }

  /** The legend: the bar under the crosshair, else the latest bar. */
  renderLegend() {
    this.shown = this.hover ?? this.latest;
    renderLegend(this.legend, this.shown, this.precision);
  }

  /** The header's last price and the latest bar (legend, unless the crosshair is on another bar). */
  showLatest(m) {
    this.label.textContent = formatPrice(m.c, this.precision);
    this.label.className = `last ${m.c >= m.o ? "up" : "down"}`;
    this.latest = this.plot.bar(m);
    if (this.hover?.time === this.latest.time) this.hover = this.latest; // the bar under the cursor moved
    this.renderLegend();
  }

  /** Empty, until the snapshot of another stream seeds it. */
  reset() {
    this.plot.clear();
    this.latest = null;
    this.hover = null;
    this.label.textContent = "–";
    this.label.className = "last";
  }
}

export class Views {
  /**
   * @param {{client: import("./client.js").CandlecastClient, epochMsAbove: number, view: "single"|"grid"}} options
   */
  constructor({ client, epochMsAbove, view }) {
    this.client = client;
    this.epochMsAbove = epochMsAbove;
    this.lib = null;             // the chart library, from start()
    this.root = $("charts");
    this.view = view;
    this.symbols = [];           // symbols shown (one chart each)
    this.known = [];             // symbols the server has
    this.intervals = [];         // intervals the server serves, base first ([] if unknown)
    this.interval = new Map();   // symbol -> interval chosen, when not the base
    this.precision = new Map();  // symbol -> decimals of its prices (most seen, at most 8)
    this.charts = new Map();     // stream ("A" or "A@5m") -> its Card
    this.ignored = 0;            // updates older than their chart's last bar, ignored
    client.on("snapshot", ({ stream, candles }) => this.#seed(stream, candles));
    client.on("candles", ({ stream, candles }) => this.#update(stream, candles));
  }

  baseInterval() {
    return this.intervals[0] ?? "";
  }

  /** The interval a symbol's chart shows: the one chosen, else the base. */
  intervalOf(symbol) {
    return this.interval.get(symbol) ?? this.baseInterval();
  }

  /** "A" (the base interval) or "A@5m": what the page subscribes to and routes frames by. */
  streamOf(symbol, interval = this.intervalOf(symbol)) {
    return !interval || interval === this.baseInterval() ? symbol : `${symbol}@${interval}`;
  }

  /** Remember a symbol's interval: one the server does not serve (when its list is known) or
   *  the base is not remembered, so the chart shows the base. */
  chooseInterval(symbol, interval) {
    const served = !this.intervals.length || this.intervals.includes(interval);
    if (interval && served && interval !== this.baseInterval()) this.interval.set(symbol, interval);
    else this.interval.delete(symbol);
  }

  /** Show the view the URL asks for (grid: symbols=A@5m,B, a bare symbol in the base interval;
   *  single: symbol=A&interval=5m), else the first symbols the server has, and wire the controls.
   *  `known` and `intervals` are what api/symbols lists. */
  start(lib, params, known, intervals) {
    this.lib = lib;
    this.known = known;
    this.intervals = intervals;
    const items = this.view === "grid"
      ? (params.get("symbols") ?? "").split(",").map((s) => s.trim()).filter(Boolean)
      : [params.get("symbol") ?? ""].filter(Boolean).map((s) => (params.get("interval") ? `${s}@${params.get("interval")}` : s));
    const wanted = [];
    for (const item of items) {
      const [symbol, interval = ""] = item.split("@");
      if (!symbol || wanted.includes(symbol)) continue; // one chart per symbol
      wanted.push(symbol);
      this.chooseInterval(symbol, interval.trim());
    }
    for (const s of wanted) if (!this.known.includes(s)) this.known.push(s);
    const fallback = this.view === "grid" ? this.known.slice(0, 4) : this.known.slice(0, 1);
    $("view-single").addEventListener("click", () => this.show(this.symbols.length ? this.symbols : this.known, "single"));
    $("view-grid").addEventListener("click", () => this.show(this.view === "grid" ? this.symbols : this.known.slice(0, 4), "grid"));
    $("symbol").addEventListener("change", (e) => {
      this.chooseInterval(e.target.value, this.intervalOf(this.symbols[0])); // the new symbol in the same interval
      this.show([e.target.value], "single");
    });
    this.show(wanted.length ? wanted : fallback);
  }

  /** Show these symbols in this view: URL, controls, cards, and a connection for their streams. */
  show(symbols, view = this.view) {
    this.view = view;
    this.symbols = view === "single" ? symbols.slice(0, 1) : symbols;
    this.writeUrl();
    this.renderControls();
    this.buildCharts();
    this.client.connect(this.symbols.map((s) => this.streamOf(s)));
  }

  writeUrl() {
    const q = new URLSearchParams(location.search);
    if (this.view === "grid") {
      q.set("view", "grid");
      q.set("symbols", this.symbols.map((s) => this.streamOf(s)).join(","));
      q.delete("symbol");
      q.delete("interval");
    } else {
      q.delete("view");
      q.delete("symbols");
      const symbol = this.symbols[0] ?? "";
      q.set("symbol", symbol);
      if (this.streamOf(symbol) === symbol) q.delete("interval");
      else q.set("interval", this.intervalOf(symbol));
    }
    history.replaceState(null, "", `${location.pathname}?${q}${location.hash}`);
  }

  renderControls() {
    $("view-single").setAttribute("aria-pressed", String(this.view === "single"));
    $("view-grid").setAttribute("aria-pressed", String(this.view === "grid"));
    $("pick-single").hidden = this.view !== "single";
    $("pick-grid").hidden = this.view !== "grid";
    $("symbol").replaceChildren(...this.known.map((s) => new Option(s, s, false, s === this.symbols[0])));
    const box = $("symbols");
    box.replaceChildren(
      ...this.known.map((s) => {
        const label = document.createElement("label");
        label.className = "chip";
        const input = document.createElement("input");
        input.type = "checkbox";
        input.value = s;
        input.checked = this.symbols.includes(s);
        input.addEventListener("change", () => {
          const chosen = [...box.querySelectorAll("input:checked")].map((i) => i.value);
          this.show(chosen.length ? chosen : [s]);
        });
        label.append(input, s);
        return label;
      }),
    );
  }

  buildCharts() {
    const colors = readColors();
    for (const c of this.charts.values()) c.plot.remove();
    this.charts.clear();
    this.root.className = `charts ${this.view}`;
    this.root.replaceChildren();
    for (const symbol of this.symbols) {
      const c = new Card(this, symbol, colors);
      this.charts.set(c.stream, c);
      c.renderLegend();
    }
  }

  /** Show another interval in card c: re-key it, empty it, and swap its stream on the socket;
   *  the snapshot after the "subscribed" reply re-seeds it. */
  switchInterval(c, interval) {
    this.chooseInterval(c.symbol, interval);
    const stream = this.streamOf(c.symbol);
    if (stream === c.stream) return;
    const old = c.stream;
    this.charts.delete(old);
    c.interval = this.intervalOf(c.symbol);
    c.stream = stream;
    this.charts.set(stream, c);
    c.reset();
    c.renderInterval();
    c.renderLegend();
    this.writeUrl();
    this.client.unsubscribe([old]);
    this.client.subscribe([stream]);
  }

  // Note the decimals of a symbol's prices; when its precision grows, its chart's price scale
  // and legend follow (the header's last price on its next candle).
  #notePrecision(symbol, candles) {
    const before = this.precision.get(symbol) ?? -1;
    let p = before;
    for (const m of candles) p = Math.max(p, decimals(m.o), decimals(m.h), decimals(m.l), decimals(m.c));
    if (p === before) return;
    this.precision.set(symbol, p);
    for (const c of this.charts.values()) {
      if (c.symbol !== symbol) continue;
      c.plot.setPrecision(p);
      c.renderLegend();
    }
  }

  #seed(stream, candles) {
    const c = this.charts.get(stream);
    if (!c) return;
    this.#notePrecision(c.symbol, candles);
    const latest = c.plot.seed(candles);
    if (latest) c.showLatest(latest);
  }

  #update(stream, candles) {
    const c = this.charts.get(stream);
    if (!c) return;
    this.#notePrecision(c.symbol, candles);
    const ignoredBefore = c.plot.ignored;
    const latest = c.plot.update(candles);
    this.ignored += c.plot.ignored - ignoredBefore;
    if (latest) c.showLatest(latest);
  }
}
