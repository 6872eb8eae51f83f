// The apps' languages (shared): Vietnamese first, English one tap away, the choice
// remembered on the device. Each app's `i18n.js` registers its strings here.

const KEY = "iparking.lang";
let STRINGS = { vi: {}, en: {} };

/** Registers the app's strings (`{vi: {...}, en: {...}}`, the same keys in both). */
export function useStrings(strings) {
  STRINGS = strings;
}

export function lang() {
  const saved = localStorage.getItem(KEY);
  return saved === "en" ? "en" : "vi";
}

export function setLang(l) {
  localStorage.setItem(KEY, l === "en" ? "en" : "vi");
  document.documentElement.lang = lang();
}

/** The string `key` in the chosen language, with `{name}` filled from `vars`. */
export function t(key, vars = {}) {
  const table = STRINGS[lang()];
  const text = table[key] ?? STRINGS.vi[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => (name in vars ? String(vars[name]) : ""));
}

/** `key` if both languages have it, else `fallback`: a label for a value the API may add. */
export function tOr(key, fallback, vars = {}) {
  return key in STRINGS.vi && key in STRINGS.en ? t(key, vars) : t(fallback, vars);
}

/** Fills every `[data-i18n]` element under `root` with its string. */
export function translate(root = document) {
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
}

/** Shows the chosen language on the page: `<html lang>`, the header's switch (offering the
 * other language, named in it), and every `[data-i18n]` string. */
export function showLanguage() {
  document.documentElement.lang = lang();
  const b = document.getElementById("lang");
  const other = lang() === "vi" ? "en" : "vi";
  b.textContent = other.toUpperCase();
  b.setAttribute("lang", other);
  b.setAttribute("aria-label", other === "en" ? "EN: English" : "VI: Tiếng Việt");
  translate();
}

/** A whole number grouped the Vietnamese or English way. */
export function number(n) {
  return new Intl.NumberFormat(lang() === "en" ? "en-GB" : "vi-VN").format(n);
}
