// The apps' screens (shared): one screen in `#view` at a time, its repeating timer stopped
// when another is shown, and a screen still loading never painting over the one asked for
// after it.
import { ApiError } from "./api.js";
import { h } from "./dom.js";
import { t } from "./i18n.js";

const view = document.getElementById("view");
let timer = null;
let generation = 0;

/** A new screen is asked for (the router calls this first). */
export function nextScreen() {
  generation += 1;
}

/** A check that the screen calling it is still the one asked for. */
export function current() {
  const mine = generation;
  return () => mine === generation;
}

/** Shows a screen: its children replace the view's, its timer stops the last one's. */
export function show(...children) {
  clearInterval(timer);
  timer = null;
  view.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  view.focus({ preventScroll: true });
}

/** Runs `fn` every `ms` while the screen that calls it is shown. */
export function every(ms, fn) {
  clearInterval(timer);
  timer = setInterval(fn, ms);
}

/** An API error in words, in the chosen language: never a raw code. */
export function errorBox(err) {
  const text = err instanceof ApiError && err.message ? err.message : t("error_unknown");
  return h("p", { class: "error", role: "alert" }, text);
}

/** The view (for a screen that appends to itself). */
export function viewElement() {
  return view;
}
