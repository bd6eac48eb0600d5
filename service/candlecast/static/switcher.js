// The interval switcher: one toolbar of <button aria-pressed> per chart.
//
// Owns: the toolbar's buttons (one per interval the server serves, base first; the toolbar is
// hidden when there is only one), which one is pressed, and its keyboard use: a roving tabindex
// makes the toolbar one Tab stop (the pressed button), the arrow keys and Home/End move the
// focus between its buttons without switching, Enter or Space (a button's own click) switches.
// What a switch does is the caller's (onSelect). Holds no state beyond its DOM; closes nothing.

export class IntervalSwitcher {
  /**
   * @param {HTMLElement} element the toolbar's element (it gets role=toolbar and the label)
   * @param {{label: string, onSelect: (interval: string) => void}} options
   */
  constructor(element, { label, onSelect }) {
    this.element = element;
    this.onSelect = onSelect;
    element.className = "intervals";
    element.setAttribute("role", "toolbar");
    element.setAttribute("aria-label", label);
    element.addEventListener("keydown", (event) => this.#moveFocus(event));
  }

  /** Show these intervals with `current` pressed. */
  render(intervals, current) {
    const box = this.element;
    box.hidden = intervals.length < 2;
    if ([...box.children].map((b) => b.dataset.interval).join() !== intervals.join()) {
      box.replaceChildren(
        ...intervals.map((interval) => {
          const button = document.createElement("button");
          button.type = "button";
          button.textContent = interval;
          button.dataset.interval = interval;
          button.addEventListener("click", () => this.onSelect(interval));
          return button;
        }),
      );
    }
    for (const button of box.children) {
      const pressed = button.dataset.interval === current;
      button.setAttribute("aria-pressed", String(pressed));
      button.tabIndex = pressed ? 0 : -1;
    }
  }

  #moveFocus(event) {
    const buttons = [...this.element.children];
    const at = buttons.indexOf(document.activeElement);
    const to = { ArrowRight: at + 1, ArrowDown: at + 1, ArrowLeft: at - 1, ArrowUp: at - 1, Home: 0, End: -1 }[event.key];
    if (at < 0 || to === undefined) return;
    event.preventDefault();
    const next = buttons.at(to % buttons.length);
    for (const b of buttons) b.tabIndex = b === next ? 0 : -1;
    next.focus();
  }
}
