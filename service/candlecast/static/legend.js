// The crosshair legend above each plot, and how the dashboard writes prices.
//
// Owns: the legend's markup (O/H/L/C, V when the bar has volume, and the change: close − open,
// and %, coloured up or down; each value in a <span data-k="O|H|L|C|V|change">), price text with
// a symbol's precision (2 decimals until one is known), and the compact volume format. Which bar
// it shows (the one under the crosshair, else the latest) is the caller's choice. Pure DOM
// building: it keeps no state and closes nothing.

const VOLUME = new Intl.NumberFormat("en", { notation: "compact", maximumFractionDigits: 2 });

/** A price with `precision` decimals (2 when unknown). */
export function formatPrice(x, precision) {
  return x.toFixed(precision ?? 2);
}

/** Fill `element` with the legend of `bar` ({open, high, low, close, volume?}); empty it when
 *  there is no bar. */
export function renderLegend(element, bar, precision) {
  if (!bar) {
    element.replaceChildren();
    return;
  }
  const p = precision ?? 2;
  let change = bar.close - bar.open;
  if (Number(change.toFixed(p)) === 0) change = 0; // no "-0.00"
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
  element.replaceChildren(
    field("O", formatPrice(bar.open, p)), field("H", formatPrice(bar.high, p)),
    field("L", formatPrice(bar.low, p)), field("C", formatPrice(bar.close, p)),
    ...(bar.volume === undefined ? [] : [field("V", VOLUME.format(bar.volume))]), delta,
  );
}
