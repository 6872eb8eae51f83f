// iParking drivers' app: screens by the URL's hash (#/login, #/points, #/points/HK001,
// #/account), rendered from the API's answers with the DOM (no HTML strings, no inline
// script: the page's CSP allows neither).
import { api, ApiError, setToken, token } from "./api.js";
import { lang, number, setLang, t, translate } from "./i18n.js";

/** The Hoàn Kiếm pilot streets: where the map and list start when the position is refused. */
const PILOT = { lat: 21.0245, lon: 105.8525 };
const REFRESH_MS = 15000;

const view = document.getElementById("view");
let refreshTimer = null;

/** Builds an element: h("p", {class: "x"}, "text", child…). */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "text") el.textContent = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function show(...children) {
  clearInterval(refreshTimer);
  refreshTimer = null;
  view.replaceChildren(...children);
  view.focus({ preventScroll: true });
}

/** An API error in words, in the chosen language: never a raw code. */
function errorBox(err) {
  const text = err instanceof ApiError ? err.message : t("error_unknown");
  return h("p", { class: "error", role: "alert" }, text);
}

function distance(m) {
  return m >= 1000 ? t("km", { n: number(Math.round(m / 100) / 10) }) : t("metres", { n: number(Math.round(m)) });
}

function freeText(p) {
  if (p.status === "closed") return t("closed");
  if (p.free_spaces === null || p.free_spaces === undefined) return t("free_unknown");
  return t("free_of", { free: number(p.free_spaces), capacity: number(p.capacity) });
}

function freeClass(p) {
  if (p.status === "closed" || p.free_spaces === null || p.free_spaces === undefined) return "free-none";
  if (p.free_spaces === 0) return "free-full";
  return p.free_spaces * 4 < p.capacity ? "free-few" : "free-many";
}

// ---- Login -------------------------------------------------------------------------------

function loginScreen() {
  const status = h("div", { id: "login-status" });
  const phone = h("input", {
    id: "phone", name: "phone", type: "tel", inputmode: "tel", autocomplete: "tel", required: true,
    "aria-describedby": "phone-help", maxlength: "20",
  });
  const code = h("input", {
    id: "code", name: "code", inputmode: "numeric", autocomplete: "one-time-code", required: true,
    pattern: "[0-9]{6}", maxlength: "6",
  });
  const codeForm = h("form", { id: "code-form", class: "card", hidden: true },
    h("label", { for: "code" }, t("code")), code,
    h("button", { type: "submit" }, t("log_in")),
    h("button", { type: "button", class: "link", onclick: () => { codeForm.hidden = true; phoneForm.hidden = false; phone.focus(); } }, t("other_phone")),
  );
  const phoneForm = h("form", { id: "phone-form", class: "card" },
    h("label", { for: "phone" }, t("phone")), phone,
    h("p", { id: "phone-help", class: "help" }, t("phone_help")),
    h("button", { type: "submit" }, t("send_code")),
  );
  phoneForm.addEventListener("submit", async (e) => {
    e.preventDefault();
    status.replaceChildren();
    try {
      const sent = await api("POST", "/v1/auth/otp", { phone: phone.value });
      status.replaceChildren(h("p", { class: "ok", role: "status" },
        t("code_sent", { phone: sent.phone, minutes: Math.round(sent.expires_in_seconds / 60) })));
      phoneForm.hidden = true;
      codeForm.hidden = false;
      code.focus();
    } catch (err) {
      status.replaceChildren(errorBox(err));
    }
  });
  codeForm.addEventListener("submit", async (e) => {
    e.preventDefault();
    status.replaceChildren();
    try {
      const answer = await api("POST", "/v1/auth/token", { phone: phone.value, code: code.value });
      setToken(answer.token);
      location.hash = "#/points";
    } catch (err) {
      status.replaceChildren(errorBox(err));
    }
  });
  show(h("h1", {}, t("login_title")), status, phoneForm, codeForm);
}

// ---- Points ------------------------------------------------------------------------------

function position() {
  return new Promise((resolve) => {
    if (!navigator.geolocation) return resolve(null);
    navigator.geolocation.getCurrentPosition(
      (p) => resolve({ lat: p.coords.latitude, lon: p.coords.longitude }),
      () => resolve(null),
      { timeout: 5000, maximumAge: 60000 },
    );
  });
}

function pointItem(p, distanceM) {
  return h("li", { class: "point " + freeClass(p), "data-code": p.code },
    h("a", { href: "#/points/" + encodeURIComponent(p.code) },
      h("span", { class: "code" }, p.code),
      h("span", { class: "name" }, p.name),
      h("span", { class: "street" }, p.street.name + ", " + p.district_name),
      h("span", { class: "free" }, freeText(p)),
      distanceM === undefined ? null : h("span", { class: "dist" }, distance(distanceM)),
    ));
}

async function pointsScreen() {
  const list = h("ul", { id: "points", class: "points", "aria-label": t("points_title") });
  const note = h("p", { class: "help", id: "where" }, t("loading"));
  const status = h("div");
  const q = h("input", { id: "q", name: "q", type: "search", maxlength: "60", autocomplete: "off" });
  const search = h("form", { id: "search", class: "search", role: "search" },
    h("label", { for: "q" }, t("search")), h("div", { class: "row" }, q, h("button", { type: "submit" }, t("search_button"))));
  show(h("h1", {}, t("points_title")), search, note, status, list, h("p", { class: "help" }, t("refreshing")));

  const here = await position();
  const at = here || PILOT;
  note.textContent = here ? t("near_you") : t("near_pilot");
  let last = [];
  const render = (hits) => {
    const query = q.value.trim().toLowerCase();
    const shown = query
      ? hits.filter((x) => x.point.code.toLowerCase().includes(query) || x.point.street.name.toLowerCase().includes(query) || x.point.name.toLowerCase().includes(query))
      : hits;
    list.replaceChildren(...(shown.length ? shown.map((x) => pointItem(x.point, x.distance_m)) : [h("li", { class: "empty" }, t("none_found"))]));
  };
  const load = async () => {
    try {
      const answer = await api("GET", `/v1/points?lat=${at.lat}&lon=${at.lon}&radius_m=5000&limit=100`);
      last = answer.points;
      status.replaceChildren();
      render(last);
    } catch (err) {
      status.replaceChildren(errorBox(err));
    }
  };
  search.addEventListener("submit", async (e) => {
    e.preventDefault();
    const code = q.value.trim().toUpperCase().replace(/\s+/g, "");
    // A signboard code opens its point, wherever it is.
    if (/^[A-Z]{2,4}\d{3,6}$/.test(code)) {
      location.hash = "#/points/" + code;
      return;
    }
    render(last);
  });
  q.addEventListener("input", () => render(last));
  await load();
  refreshTimer = setInterval(load, REFRESH_MS);
}

async function pointScreen(code) {
  show(h("p", {}, t("loading")));
  try {
    const p = await api("GET", "/v1/points/" + encodeURIComponent(code));
    const classes = p.vehicle_classes.map((c) => t("class_" + c)).join(", ");
    show(
      h("p", {}, h("a", { href: "#/points", class: "back" }, "← " + t("back"))),
      h("h1", {}, t("point_title", { code: p.code })),
      h("section", { class: "card point-detail " + freeClass(p) },
        h("h2", {}, p.name),
        h("p", { class: "free big", id: "free" }, freeText(p)),
        h("dl", {},
          h("dt", {}, t("street")), h("dd", {}, p.street.name),
          h("dt", {}, t("district")), h("dd", {}, p.district_name),
          h("dt", {}, t("capacity")), h("dd", {}, number(p.capacity)),
          h("dt", {}, t("classes")), h("dd", {}, classes),
        )),
    );
  } catch (err) {
    show(h("p", {}, h("a", { href: "#/points", class: "back" }, "← " + t("back"))), errorBox(err));
  }
}

// ---- Account -----------------------------------------------------------------------------

function accountScreen() {
  const status = h("div");
  show(
    h("h1", {}, t("account_title")),
    h("p", {}, t("logged_in_as")),
    status,
    h("button", {
      type: "button", id: "logout",
      onclick: async () => {
        try {
          await api("POST", "/v1/auth/logout");
        } catch (err) {
          if (!(err instanceof ApiError) || err.status !== 401) {
            status.replaceChildren(errorBox(err));
            return;
          }
        }
        setToken(null);
        location.hash = "#/login";
      },
    }, t("log_out")),
  );
}

// ---- Router ------------------------------------------------------------------------------

function route() {
  const hash = location.hash || "#/points";
  const tabs = document.getElementById("tabs");
  if (!token()) {
    tabs.hidden = true;
    return loginScreen();
  }
  tabs.hidden = false;
  for (const a of tabs.querySelectorAll("a")) {
    if (hash.startsWith("#/" + a.dataset.tab)) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  const m = hash.match(/^#\/points\/([A-Za-z0-9]{1,12})$/);
  if (m) return pointScreen(m[1]);
  if (hash.startsWith("#/account")) return accountScreen();
  if (hash === "#/login") {
    location.hash = "#/points";
    return;
  }
  return pointsScreen();
}

function applyLang() {
  document.documentElement.lang = lang();
  const b = document.getElementById("lang");
  const other = lang() === "vi" ? "en" : "vi";
  b.textContent = other.toUpperCase();
  b.setAttribute("lang", other);
  b.setAttribute("aria-label", other === "en" ? "English" : "Tiếng Việt");
  translate();
}

function applyNetwork() {
  document.getElementById("net").hidden = navigator.onLine;
}

document.getElementById("lang").addEventListener("click", () => {
  setLang(lang() === "vi" ? "en" : "vi");
  applyLang();
  route();
});
window.addEventListener("hashchange", route);
window.addEventListener("online", applyNetwork);
window.addEventListener("offline", applyNetwork);
applyLang();
applyNetwork();
route();
if ("serviceWorker" in navigator) navigator.serviceWorker.register("/sw.js").catch(() => {});
