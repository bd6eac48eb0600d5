// One candlestick chart: a lightweight-charts v5 chart with its candle series and (once a candle
// carries volume) a volume histogram.
//
// Owns: loading the chart library (../vendor/lightweight-charts.mjs, served by the server, a
// dynamic import so that the page can say so when it is missing), the chart colours (read from
// the custom properties in style.css when a chart is built), converting a candle to the chart's
// bars (bar open time in UTC seconds: epoch ms above a cut-off, else already seconds), seeding
// (setData: ascending, one bar per time, replaces everything), updates (update(): the last bar's
// time replaces it, a later one appends, an older one is ignored and counted, since the library
// would throw "Cannot update oldest data"), the price format (precision), the time axis for an
// interval, and crosshair moves. Closes: the chart, in remove().

/** The chart library's module, or a rejection when the server does not have it. */
export const loadChartLibrary = () => import("../vendor/lightweight-charts.mjs");

/** The chart colours, from the custom properties in style.css (:root). */
export function readColors() {
  const css = getComputedStyle(document.documentElement);
  const v = (name) => css.getPropertyValue(name).trim();
  return {
    background: v("--chart-bg"), text: v("--chart-text"), grid: v("--chart-grid"), border: v("--chart-border"),
    up: v("--up"), down: v("--down"), volumeUp: v("--volume-up"), volumeDown: v("--volume-down"),
  };
}

/** Decimals of a price as the server wrote it (shortest round-trip form), at most 8. */
export function decimals(x) {
  if (!Number.isFinite(x)) return 0;
  const [mantissa, exp] = String(x).split("e");
  const places = (mantissa.split(".")[1] ?? "").length - Number(exp ?? 0);
  return Math.min(8, Math.max(0, places));
}

export class CandleChart {
  /**
   * @param lib the chart library (loadChartLibrary())
   * @param {HTMLElement} element where the chart goes (it sizes itself to it)
   * @param {{colors: object, epochMsAbove: number}} options colours (readColors()); epoch times
   *   above epochMsAbove are milliseconds, below it seconds (the server's rule)
   */
  constructor(lib, element, { colors, epochMsAbove }) {
    this.lib = lib;
    this.colors = colors;
    this.epochMsAbove = epochMsAbove;
    this.chart = lib.createChart(element, {
      autoSize: true,
      layout: { background: { color: colors.background }, textColor: colors.text, attributionLogo: false },
      grid: { vertLines: { color: colors.grid }, horzLines: { color: colors.grid } },
      crosshair: { mode: lib.CrosshairMode.Normal },
      rightPriceScale: { borderColor: colors.border },
      timeScale: { borderColor: colors.border, timeVisible: true, secondsVisible: false },
    });
    this.series = this.chart.addSeries(lib.CandlestickSeries, {
      upColor: colors.up, downColor: colors.down, borderVisible: false,
      wickUpColor: colors.up, wickDownColor: colors.down, lastValueVisible: true, priceLineVisible: true,
    });
    this.volume = null;       // the histogram, made when the first candle with volume comes
    this.lastTime = -Infinity; // time of the last bar shown (UTC seconds)
    this.seeds = 0;           // how often seed() ran
    this.seededWith = 0;      // bars of the last seed
    this.ignored = 0;         // updates older than the last bar, ignored
  }

  /** A bar open time (`ot`) in UTC seconds. */
  toSeconds(t) {
    return Math.floor(t > this.epochMsAbove ? t / 1000 : t);
  }

  /** The chart's bar for a candle, with its volume (undefined when it has none). */
  bar(m) {
    return { time: this.toSeconds(m.ot), open: m.o, high: m.h, low: m.l, close: m.c, volume: m.v };
  }

  /** Replace everything with these candles (one bar per time, the last candle of a time wins);
   *  the latest candle, or null when there is none. */
  seed(candles) {
    const bars = new Map();
    for (const m of candles) bars.set(this.toSeconds(m.ot), m);
    const sorted = [...bars.keys()].sort((a, b) => a - b).map((t) => bars.get(t));
    this.series.setData(sorted.map((m) => this.#candle(m)));
    const withVolume = sorted.filter((m) => m.v !== undefined);
    if (withVolume.length) this.#volume().setData(withVolume.map((m) => this.#volumeBar(m)));
    this.seeds += 1;
    this.seededWith = sorted.length;
    const latest = sorted.at(-1) ?? null;
    this.lastTime = latest ? this.toSeconds(latest.ot) : -Infinity;
    return latest;
  }

  /** Apply live candles in order, ignoring (and counting) any older than the last bar; the
   *  latest candle applied, or null. */
  update(candles) {
    let latest = null;
    for (const m of candles) {
      const time = this.toSeconds(m.ot);
      if (time < this.lastTime) {
        this.ignored += 1;
        continue;
      }
      this.series.update(this.#candle(m));
      if (m.v !== undefined) this.#volume().update(this.#volumeBar(m));
      this.lastTime = time;
      latest = m;
    }
    return latest;
  }

  /** Empty the chart (until the next seed). */
  clear() {
    this.series.setData([]);
    if (this.volume) this.volume.setData([]);
    this.lastTime = -Infinity;
    this.seededWith = 0;
  }

  /** Show prices with this many decimals (price scale and last value). */
  setPrecision(p) {
    this.series.applyOptions({ priceFormat: { type: "price", precision: p, minMove: 1 / 10 ** p } });
  }

  /** Time axis to suit an interval of this many seconds: seconds below 1 m, no time of day from 1 d on. */
  fitTimeAxis(seconds) {
    this.chart.applyOptions({ timeScale: { timeVisible: !(seconds >= 86400), secondsVisible: seconds < 60 } });
  }

  /** Call listener with the bar under the crosshair ({time, open, high, low, close, volume}), or
   *  null when the cursor is off the bars. */
  onCrosshair(listener) {
    this.chart.subscribeCrosshairMove((param) => {
      const bar = param.time === undefined ? undefined : param.seriesData.get(this.series);
      const volume = param.time === undefined || !this.volume ? undefined : param.seriesData.get(this.volume);
      listener(bar && "open" in bar ? { ...bar, volume: volume?.value } : null);
    });
  }

  remove() {
    this.chart.remove();
  }

  #candle(m) {
    return { time: this.toSeconds(m.ot), open: m.o, high: m.h, low: m.l, close: m.c };
  }

  #volumeBar(m) {
    return { time: this.toSeconds(m.ot), value: m.v, color: m.c >= m.o ? this.colors.volumeUp : this.colors.volumeDown };
  }

  #volume() {
    if (!this.volume) {
      this.volume = this.chart.addSeries(this.lib.HistogramSeries, {
        priceFormat: { type: "volume" }, priceScaleId: "", lastValueVisible: false, priceLineVisible: false,
      });
      this.volume.priceScale().applyOptions({ scaleMargins: { top: 0.8, bottom: 0 } });
      this.chart.priceScale("right").applyOptions({ scaleMargins: { top: 0.08, bottom: 0.25 } });
    }
    return this.volume;
  }
}
