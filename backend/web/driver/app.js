// iParking drivers' app: screens by the URL's hash (#/login, #/points, #/points/HK001,
// #/account), rendered from the API's answers with the DOM (no HTML strings, no inline
// script: the page's CSP allows neither).
import { api, ApiError, newKey, setToken, token } from "./api.js";
import { h } from "./dom.js";
import { current, errorBox, every, nextScreen, show, viewElement } from "./screen.js";
import { lang, number, setLang, showLanguage, t, tOr } from "./i18n.js";
import { drawMap } from "./map.js";
import { canCollectCards, cardForm, cardsMode, settleCardPayment, until } from "./cards.js";
import { disablePush, enablePush, forgetPush, pushId, pushSupported } from "./push.js";

/** The Hoàn Kiếm pilot streets: where the map and list start when the position is refused. */
const PILOT = { lat: 21.0245, lon: 105.8525 };
const REFRESH_MS = 15000;

/** A money action's failure: offline, it says the action was not queued. */
function moneyError(err) {
  if (err instanceof ApiError && err.code === "network") return h("p", { class: "error", role: "alert" }, t("money_offline"));
  return errorBox(err);
}

/**
 * A money action behind `button`: sent once per tap (the button is held while in flight),
 * with one Idempotency-Key kept across retries until the call is answered, so a retry after a
 * lost answer is the same action. A refusal drops the key (the next try is a new action).
 * Failures are told in `statusEl`. `reset()` drops the key when the action's input changes.
 */
function moneyAction(button, statusEl, call) {
  let key = null;
  const run = async () => {
    if (button.disabled) return;
    button.disabled = true;
    key = key || newKey();
    try {
      await call(key);
      key = null;
    } catch (err) {
      // A refusal is final for this key; an answer still being made keeps it.
      if (err instanceof ApiError && err.status !== 0 && err.status < 500 && err.code !== "idempotency_in_progress") key = null;
      statusEl.replaceChildren(moneyError(err));
    } finally {
      button.disabled = false;
    }
  };
  return { run, reset: () => { key = null; } };
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
  const mapEl = h("div", { id: "map", class: "map", hidden: true, role: "region" });
  const mapButton = h("button", { type: "button", id: "show-map", class: "secondary", "aria-pressed": "false" }, t("show_map"));
  show(h("h1", {}, t("points_title")), search, mapButton, mapEl, note, status, list, h("p", { class: "help" }, t("refreshing")));
  let map = null;
  mapButton.addEventListener("click", async () => {
    const showing = mapEl.hidden;
    mapEl.hidden = !showing;
    mapButton.setAttribute("aria-pressed", String(showing));
    mapButton.textContent = showing ? t("hide_map") : t("show_map");
    if (showing) {
      try {
        if (map) map.remove();
        map = await drawMap(mapEl, at, last.map((x) => ({ point: x.point, cls: freeClass(x.point), free: freeText(x.point) })));
      } catch {
        mapEl.replaceChildren(h("p", { class: "error" }, t("map_failed")));
      }
    }
  });

  const here = await position();
  const at = here || PILOT;
  note.textContent = here ? t("near_you") : t("near_pilot");
  let last = [];
  let searched = false; // the list shows a city-wide search's answer, not the nearby points
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
      if (!searched) render(last);
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
    if (!q.value.trim()) {
      searched = false;
      render(last);
      return;
    }
    // Streets and names anywhere in the city, not only nearby.
    try {
      const found = await api("GET", "/v1/points/search?q=" + encodeURIComponent(q.value.trim()) + "&limit=50");
      searched = true;
      list.replaceChildren(...(found.length ? found.map((p) => pointItem(p)) : [h("li", { class: "empty" }, t("none_found"))]));
      status.replaceChildren();
    } catch (err) {
      status.replaceChildren(errorBox(err));
    }
  });
  q.addEventListener("input", () => {
    searched = false;
    render(last);
  });
  await load();
  every(REFRESH_MS, load);
}

/** A time in Hanoi's zone, whatever the phone's: `14:35` or `14:35, 05/12`. */
function hanoiTime(iso, withDate = false) {
  const opts = { timeZone: "Asia/Ho_Chi_Minh", hour: "2-digit", minute: "2-digit", hour12: false };
  if (withDate) Object.assign(opts, { day: "2-digit", month: "2-digit" });
  return new Intl.DateTimeFormat(lang() === "en" ? "en-GB" : "vi-VN", opts).format(new Date(iso));
}

function money(v) {
  return number(v) + " đ";
}

function hoursText(minutes) {
  return minutes % 60 === 0 ? t("hours", { n: minutes / 60 }) : t("minutes", { n: minutes });
}

/** A tariff in plain words: per window, its hours and the price per turn by hour of stay. */
function tariffSection(prices) {
  const items = [];
  for (const w of prices.windows) {
    const tiers = w.block_price != null
      ? [t("block", { price: money(w.block_price) })]
      : w.tiers.map((tier) => tier.to_hour != null
        ? t("tier_range", { from: tier.from_hour, to: tier.to_hour, price: money(tier.price), turn: hoursText(prices.turn_minutes) })
        : t("tier_from", { from: tier.from_hour, price: money(tier.price), turn: hoursText(prices.turn_minutes) }));
    items.push(h("li", {}, h("strong", {}, `${w.label} ${w.start}–${w.end}`), h("ul", {}, tiers.map((x) => h("li", {}, x)))));
  }
  return h("section", { class: "card", id: "tariff" },
    h("h2", {}, t("tariff_title", { name: prices.tariff_name })),
    h("ul", { class: "tariff" }, items),
    prices.daily_cap != null ? h("p", {}, t("daily_cap", { price: money(prices.daily_cap) })) : null,
    h("p", { class: "help" }, t("grace", { n: prices.grace_minutes })));
}

function quoteLines(lines) {
  return h("table", { class: "lines" },
    h("caption", { class: "sr" }, t("lines")),
    h("tbody", {}, lines.map((l) => h("tr", {}, h("td", {}, l.description), h("td", { class: "num" }, money(l.amount))))));
}

const DURATIONS = [60, 120, 180, 240, 360];

async function pointScreen(code) {
  const live = current();
  show(h("p", {}, t("loading")));
  let p;
  try {
    p = await api("GET", "/v1/points/" + encodeURIComponent(code));
  } catch (err) {
    if (!live()) return;
    show(h("p", {}, h("a", { href: "#/points", class: "back" }, "← " + t("back"))), errorBox(err));
    return;
  }
  const classes = p.vehicle_classes.map((c) => t("class_" + c)).join(", ");
  const free = h("p", { class: "free big", id: "free" }, freeText(p));
  const tariffBox = h("div", { id: "tariff-box" });
  const quoteBox = h("div", { id: "quote", "aria-live": "polite" });
  const startStatus = h("div", { id: "start-status" });
  const vclass = h("select", { id: "class", name: "vehicle_class" },
    p.vehicle_classes.map((c) => h("option", { value: c }, t("class_" + c))));
  const minutes = h("select", { id: "minutes", name: "minutes" },
    DURATIONS.map((m) => h("option", { value: String(m), selected: m === 180 }, hoursText(m))));
  const amount = h("input", { id: "amount", name: "amount", inputmode: "numeric", maxlength: "9", autocomplete: "off" });
  const plate = h("select", { id: "plate", name: "plate" });
  const newPlate = h("input", { id: "new-plate", name: "new_plate", autocomplete: "off", maxlength: "16", "aria-describedby": "plate-help" });
  const startButton = h("button", { type: "submit", id: "start" }, t("start"));
  const payment = paymentChoice("payment");
  let startKey = null; // kept across retries of the same start, dropped once it is answered

  const quote = async (body) => {
    try {
      const q = await api("POST", "/v1/quotes", Object.assign({ point_code: p.code, vehicle_class: vclass.value }, body));
      quoteBox.replaceChildren(
        h("p", { class: "total" }, t("quote_total", { total: money(q.total), end: hanoiTime(q.end, true), turns: q.turns })),
        quoteLines(q.lines));
      return q;
    } catch (err) {
      quoteBox.replaceChildren(errorBox(err));
      return null;
    }
  };
  const loadTariff = async () => {
    try {
      const tv = await api("GET", `/v1/points/${encodeURIComponent(p.code)}/tariff?vehicle_class=${vclass.value}`);
      const prices = tv.classes.find((c) => c.vehicle_class === vclass.value) || tv.classes[0];
      tariffBox.replaceChildren(prices ? tariffSection(prices) : h("p", {}, t("no_tariff")));
    } catch (err) {
      tariffBox.replaceChildren(errorBox(err));
    }
  };
  const loadPlates = async () => {
    const vs = await api("GET", "/v1/me/vehicles");
    plate.replaceChildren(...vs.map((v) => h("option", { value: v.plate }, v.plate)), h("option", { value: "" }, t("other_plate")));
  };
  vclass.addEventListener("change", () => { loadTariff(); quote({ minutes: Number(minutes.value) }); startKey = null; });
  minutes.addEventListener("change", () => { quote({ minutes: Number(minutes.value) }); startKey = null; });
  plate.addEventListener("change", () => { startKey = null; });
  payment.select.addEventListener("change", () => { startKey = null; });
  newPlate.addEventListener("input", () => { startKey = null; });

  const forAmount = h("form", { id: "for-amount", class: "row" },
    h("label", { for: "amount" }, t("for_amount")), amount, h("button", { type: "submit" }, t("ask")));
  forAmount.addEventListener("submit", async (e) => {
    e.preventDefault();
    const v = Number(amount.value.replace(/\D/g, ""));
    if (!v) return;
    const q = await quote({ amount: v });
    if (q) {
      const m = q.turns * (q.turn_minutes || 60);
      if (![...minutes.options].some((o) => o.value === String(m))) minutes.append(h("option", { value: String(m) }, hoursText(m)));
      minutes.value = String(m);
    }
  });

  const startForm = h("form", { id: "start-form", class: "card" },
    h("h2", {}, t("park_here")),
    h("label", { for: "class" }, t("vehicle_class")), vclass,
    h("label", { for: "plate" }, t("plate")), plate,
    h("label", { for: "new-plate" }, t("new_plate")), newPlate,
    h("p", { id: "plate-help", class: "help" }, t("plate_help")),
    h("label", { for: "minutes" }, t("duration")), minutes,
    quoteBox,
    h("label", { for: "payment" }, t("pay_with")), payment.select,
    startStatus, startButton);
  startForm.addEventListener("submit", async (e) => {
    e.preventDefault();
    if (startButton.disabled) return;
    startButton.disabled = true;
    startStatus.replaceChildren();
    try {
      let plateText = plate.value;
      if (!plateText || newPlate.value.trim()) {
        plateText = newPlate.value.trim();
        if (plateText) await api("POST", "/v1/me/vehicles", { plate: plateText, vehicle_class: vclass.value }).catch((err) => {
          if (err.code !== "vehicle_exists") throw err;
        });
      }
      startKey = startKey || newKey();
      const answer = await api("POST", "/v1/sessions", {
        point_code: p.code, plate: plateText, vehicle_class: vclass.value, minutes: Number(minutes.value), ...payment.fields(),
      }, { key: startKey });
      // Paid by card, it may wait for 3-D Secure or the processor: followed to its end.
      const s = await settleCardPayment(answer);
      startKey = null;
      remember(s);
      location.hash = "#/sessions/" + s.id;
    } catch (err) {
      // A refusal is final for this key; a lost answer keeps it, so a retry is the same start.
      if (err instanceof ApiError && err.status !== 0 && err.status < 500 && err.code !== "idempotency_in_progress") startKey = null;
      startStatus.replaceChildren(moneyError(err));
      if (err.code === "point_full" && err.details && Array.isArray(err.details.alternatives)) {
        startStatus.append(h("ul", { class: "points", id: "alternatives", "aria-label": t("alternatives") },
          err.details.alternatives.map((a) => h("li", { class: "point free-many", "data-code": a.code },
            h("a", { href: "#/points/" + encodeURIComponent(a.code) },
              h("span", { class: "code" }, a.code),
              h("span", { class: "name" }, a.name),
              h("span", { class: "dist" }, distance(a.distance_m)),
              h("span", { class: "free" }, t("free_count", { free: number(a.free_spaces) })))))));
      }
    } finally {
      startButton.disabled = false;
    }
  });

  if (!live()) return;

  show(
    h("p", {}, h("a", { href: "#/points", class: "back" }, "← " + t("back"))),
    h("h1", {}, t("point_title", { code: p.code })),
    h("section", { class: "card point-detail " + freeClass(p) },
      h("h2", {}, p.name),
      free,
      h("dl", {},
        h("dt", {}, t("street")), h("dd", {}, p.street.name),
        h("dt", {}, t("district")), h("dd", {}, p.district_name),
        h("dt", {}, t("capacity")), h("dd", {}, number(p.capacity)),
        h("dt", {}, t("classes")), h("dd", {}, classes),
      )),
    tariffBox,
    forAmount,
    startForm,
  );
  await Promise.all([loadTariff(), loadPlates().catch(() => {}), payment.load().catch(() => {}), quote({ minutes: Number(minutes.value) })]);
}

// ---- Sessions ----------------------------------------------------------------------------

const LAST = "iparking.session";

/** Keeps the last answer about an active session, for the offline view. */
function remember(s) {
  if (s.status === "active") localStorage.setItem(LAST, JSON.stringify(s));
  else if (JSON.parse(localStorage.getItem(LAST) || "null")?.id === s.id) localStorage.removeItem(LAST);
}

function countdown(s) {
  const ms = new Date(s.paid_until) - Date.now();
  if (s.status !== "active") return t("ended");
  if (ms <= 0) return t("time_up");
  const total = Math.floor(ms / 1000);
  const hh = Math.floor(total / 3600), mm = Math.floor((total % 3600) / 60), ss = total % 60;
  return t("left", { time: `${hh}:${String(mm).padStart(2, "0")}:${String(ss).padStart(2, "0")}` });
}

async function sessionScreen(id) {
  const live = current();
  show(h("p", {}, t("loading")));
  let s;
  let offline = false;
  try {
    s = await api("GET", "/v1/sessions/" + encodeURIComponent(id));
    remember(s);
  } catch (err) {
    const last = JSON.parse(localStorage.getItem(LAST) || "null");
    if (err.code === "network" && last && String(last.id) === String(id)) {
      s = last;
      offline = true;
    } else {
      if (!live()) return;
      show(errorBox(err));
      return;
    }
  }
  const left = h("p", { class: "countdown", id: "countdown", role: "timer" }, countdown(s));
  if (!live()) return;
  show(
    h("h1", {}, t("session_title", { plate: s.plate })),
    offline ? h("p", { class: "error", id: "offline-note" }, t("offline_session")) : null,
    h("section", { class: "card", id: "session" },
      left,
      h("dl", {},
        h("dt", {}, t("point")), h("dd", {}, h("a", { href: "#/points/" + s.point_code }, s.point_code)),
        h("dt", {}, t("paid_until")), h("dd", { id: "paid-until" }, hanoiTime(s.paid_until, true)),
        h("dt", {}, t("charged")), h("dd", {}, money(s.amount_charged)),
        s.amount_refunded ? [h("dt", {}, t("refunded")), h("dd", {}, money(s.amount_refunded))] : null,
      ),
      (s.warnings || []).map((w) => h("p", { class: "warn" }, w))),
    h("section", { class: "card", id: "receipt" },
      h("h2", {}, t("receipt")),
      (s.purchases || []).map((pu) => h("div", { class: "purchase" },
        h("p", {}, t("purchase", { at: hanoiTime(pu.at, true), amount: money(pu.amount), until: hanoiTime(pu.paid_until) })),
        quoteLines(pu.lines))),
      offline ? null : receiptCheck(s.id)),
  );
  every(1000, () => { left.textContent = countdown(s); });
  if (s.status === "active") viewElement().append(changeSection(s));
  else if (!offline && s.amount_charged > s.amount_refunded) viewElement().append(disputeSection(s));
}

/** The receipt's number and check code, and its QR code: anyone can check it at /r/…. */
function receiptCheck(id) {
  const box = h("div", { id: "receipt-check", class: "receipt-check" });
  (async () => {
    try {
      const r = await api("GET", `/v1/sessions/${id}/receipt`);
      const url = new URL(r.public_path, location.origin).href;
      const { qrSvg } = await import("./qr.js");
      box.replaceChildren(
        h("p", {}, t("receipt_number", { number: r.number }), h("br"), t("receipt_code", { code: r.code })),
        qrSvg(url, t("receipt_qr")),
        h("p", { class: "help" }, h("a", { href: url, id: "receipt-link" }, t("receipt_check"))));
      box.dataset.url = url;
    } catch {
      // The receipt above stands; its check code shows when the server answers.
    }
  })();
  return box;
}

/** A refund request about a session, for finance to decide (issue 7's rule). */
function disputeSection(s) {
  const status = h("div", { id: "dispute-status", "aria-live": "polite" });
  const reason = h("textarea", { id: "dispute-reason", name: "reason", maxlength: "500", rows: "3", required: true });
  const send = h("button", { type: "submit" }, t("dispute_send"));
  const form = h("form", { id: "dispute", class: "card" },
    h("h2", {}, t("dispute_title")),
    h("label", { for: "dispute-reason" }, t("dispute_reason")), reason,
    h("p", { class: "help" }, t("dispute_help")), status, send);
  const request = moneyAction(send, status, async (key) => {
    await api("POST", "/v1/me/refund-requests", { kind: "session", session_id: s.id, reason: reason.value }, { key });
    status.replaceChildren(h("p", { class: "ok", role: "status" }, t("dispute_sent")));
    reason.value = "";
  });
  reason.addEventListener("input", request.reset);
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    request.run();
  });
  return form;
}

/** Extend (its price first), stop (its refund first), and a plate typo's correction. */
function changeSection(s) {
  const status = h("div", { id: "change-status", "aria-live": "polite" });
  const preview = h("div", { id: "extend-price", "aria-live": "polite" });
  const minutes = h("select", { id: "extend-minutes", name: "minutes" },
    [60, 120, 180].map((m) => h("option", { value: String(m) }, hoursText(m))));
  const confirmExtend = h("button", { type: "button", id: "confirm-extend", hidden: true });
  const stopBox = h("div", { id: "stop-preview", "aria-live": "polite" });
  const confirmStop = h("button", { type: "button", id: "confirm-stop", class: "secondary", hidden: true });
  const payment = paymentChoice("extend-payment");
  const extend = moneyAction(confirmExtend, status, async (key) => {
    const answer = await api("POST", `/v1/sessions/${s.id}/extend`, { minutes: Number(minutes.value), ...payment.fields() }, { key });
    const after = await settleCardPayment(answer);
    remember(after);
    route();
  });
  const stop = moneyAction(confirmStop, status, async (key) => {
    const after = await api("POST", `/v1/sessions/${s.id}/stop`, undefined, { key });
    remember(after);
    route();
  });

  const priceExtension = async () => {
    extend.reset();
    confirmExtend.hidden = true;
    try {
      const q = await api("GET", `/v1/sessions/${s.id}/extension-quote?minutes=${minutes.value}`);
      preview.replaceChildren(h("p", { class: "total" }, t("extend_price", { total: money(q.total), end: hanoiTime(q.end, true) })), quoteLines(q.lines));
      confirmExtend.textContent = t("pay", { total: money(q.total) });
      confirmExtend.hidden = false;
    } catch (err) {
      preview.replaceChildren(moneyError(err));
    }
  };
  minutes.addEventListener("change", priceExtension);
  payment.select.addEventListener("change", extend.reset);
  payment.load().catch(() => {});
  confirmExtend.addEventListener("click", extend.run);

  const askStop = h("button", { type: "button", id: "ask-stop", class: "secondary" }, t("stop"));
  askStop.addEventListener("click", async () => {
    try {
      const q = await api("GET", `/v1/sessions/${s.id}/stop-quote`);
      stopBox.replaceChildren(h("p", {}, q.refund > 0 ? t("stop_refund", { refund: money(q.refund) }) : t("stop_no_refund")));
      confirmStop.textContent = t("confirm_stop");
      confirmStop.hidden = false;
    } catch (err) {
      stopBox.replaceChildren(moneyError(err));
    }
  });
  confirmStop.addEventListener("click", stop.run);

  const plate = h("input", { id: "fix-plate", name: "plate", maxlength: "16", autocomplete: "off", "aria-describedby": "fix-help" });
  const fix = h("form", { id: "fix-form", class: "row" },
    h("label", { for: "fix-plate" }, t("fix_plate")), plate, h("button", { type: "submit" }, t("fix")));
  fix.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      const after = await api("PATCH", `/v1/sessions/${s.id}`, { plate: plate.value });
      remember(after);
      route();
    } catch (err) {
      status.replaceChildren(errorBox(err));
    }
  });

  priceExtension();
  return h("section", { class: "card", id: "changes" },
    h("h2", {}, t("extend")),
    h("label", { for: "extend-minutes" }, t("extend_by")), minutes,
    h("label", { for: "extend-payment" }, t("pay_with")), payment.select, preview, confirmExtend,
    h("h2", {}, t("stop_title")), askStop, stopBox, confirmStop,
    h("h2", {}, t("fix_title")), fix, h("p", { id: "fix-help", class: "help" }, t("fix_help")),
    status);
}

async function sessionsScreen() {
  const live = current();
  show(h("p", {}, t("loading")));
  try {
    const all = await api("GET", "/v1/sessions");
    if (!live()) return;
    show(h("h1", {}, t("sessions_title")),
      all.length
        ? h("ul", { class: "points", id: "sessions" }, all.map((s) => h("li", { class: s.status === "active" ? "free-many" : "free-none" },
          h("a", { href: "#/sessions/" + s.id },
            h("span", { class: "code" }, s.point_code),
            h("span", { class: "name" }, s.plate),
            h("span", { class: "street" }, t("until", { at: hanoiTime(s.paid_until, true) })),
            h("span", { class: "free" }, s.status === "active" ? t("active") : t("ended"))))))
        : h("p", {}, t("no_sessions")));
  } catch (err) {
    if (!live()) return;
    show(errorBox(err));
  }
}

// ---- Paying ------------------------------------------------------------------------------

/** The wallet, or a saved card when this server takes cards: a select, and the body's fields. */
function paymentChoice(id) {
  const select = h("select", { id, name: "payment" }, h("option", { value: "wallet" }, t("pay_wallet")));
  const load = async () => {
    if (!cardsMode()) return;
    const cs = await api("GET", "/v1/me/cards");
    select.replaceChildren(h("option", { value: "wallet" }, t("pay_wallet")),
      ...cs.map((c) => h("option", { value: "card:" + c.id }, t("pay_card", { card: cardName(c) }))));
  };
  const fields = () => select.value.startsWith("card:")
    ? { payment: "card", card_id: Number(select.value.slice(5)) }
    : { payment: "wallet" };
  return { select, load, fields };
}

function cardName(c) {
  return `${c.brand.toUpperCase()} •••• ${c.last4}`;
}

// ---- Account -----------------------------------------------------------------------------

async function accountScreen() {
  const status = h("div");
  const balance = h("p", { class: "big", id: "balance" }, t("loading"));
  const sandboxBox = h("div");
  const load = async () => {
    const w = await api("GET", "/v1/me/wallet");
    balance.textContent = money(w.balance);
    if (w.sandbox) {
      const topup = h("button", { type: "button", id: "sandbox-topup" }, t("sandbox_topup", { amount: money(200000) }));
      const topUp = moneyAction(topup, status, async (key) => {
        await api("POST", "/v1/me/wallet/sandbox-topups", { amount: 200000 }, { key });
        await load();
      });
      topup.addEventListener("click", topUp.run);
      sandboxBox.replaceChildren(h("p", { class: "sandbox" }, t("sandbox_note")), topup);
    }
  };
  const movements = h("ul", { class: "movements", id: "movements" });
  const cards = h("ul", { class: "movements", id: "cards" });
  const requests = h("ul", { class: "movements", id: "refund-requests" });
  const loadMore = async () => {
    const w = await api("GET", "/v1/me/wallet");
    movements.replaceChildren(...(w.movements.length
      ? w.movements.slice().reverse().slice(0, 20).map((m) => h("li", {},
        h("span", {}, hanoiTime(m.at, true) + " · " + tOr("movement_" + m.kind, "movement_other")),
        h("span", { class: m.amount < 0 ? "neg num" : "num" }, (m.amount > 0 ? "+" : "") + money(m.amount))))
      : [h("li", { class: "help" }, t("no_movements"))]));
    const cs = await api("GET", "/v1/me/cards");
    cards.replaceChildren(...(cs.length ? cs.map((c) => h("li", {},
      h("span", {}, `${cardName(c)} (${String(c.exp_month).padStart(2, "0")}/${c.exp_year})`),
      h("button", { type: "button", class: "link", "data-card": String(c.id), "aria-label": t("remove") + " " + cardName(c), onclick: async () => {
        try {
          await api("DELETE", "/v1/me/cards/" + c.id);
          await loadMore();
        } catch (err) {
          status.replaceChildren(errorBox(err));
        }
      } }, t("remove")))) : [h("li", { class: "help" }, t("no_cards"))]));
    const rs = await api("GET", "/v1/me/refund-requests");
    requests.replaceChildren(...(rs.length ? rs.map((r) => h("li", {},
      h("span", {}, money(r.amount) + " · " + r.reason),
      h("span", { class: "state" }, tOr("request_" + r.status, "request_other")))) : [h("li", { class: "help" }, t("no_requests"))]));
  };
  show(
    h("h1", {}, t("account_title")),
    h("section", { class: "card" }, h("h2", {}, t("wallet")), balance, sandboxBox,
      canCollectCards() ? cardTopup(async () => { await load(); await loadMore(); }) : null,
      h("h3", {}, t("movements")), movements),
    h("section", { class: "card" }, h("h2", {}, t("cards")), cards,
      canCollectCards() ? addCard(() => loadMore()) : null),
    h("section", { class: "card" }, h("h2", {}, t("refund_requests")), requests),
    remindersSection(),
    h("p", {}, h("a", { href: "#/citations" }, t("citations_title"))),
    status,
    h("button", {
      type: "button", id: "logout", class: "secondary",
      onclick: async () => {
        // This browser's reminders stop with its login.
        await disablePush().catch(() => {});
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
    logoutEverywhere(status),
  );
  try {
    await load();
    await loadMore();
  } catch (err) {
    status.replaceChildren(errorBox(err));
  }
}

/** Saving a card: the SANDBOX saves a play card at once; Stripe collects it in its form. */
function addCard(reload) {
  const host = h("div", { id: "card-form" });
  const note = h("div", { "aria-live": "polite" });
  const button = h("button", { type: "button", id: "add-card", class: "secondary" }, t("add_card"));
  const add = moneyAction(button, note, async (key) => {
    const setup = await api("POST", "/v1/me/cards/setups", undefined, { key });
    if (setup.card) {
      note.replaceChildren(h("p", { class: "ok", role: "status" },
        setup.sandbox ? t("card_added_sandbox", { card: cardName(setup.card) }) : t("card_added", { card: cardName(setup.card) })));
      await reload();
      return;
    }
    const before = (await api("GET", "/v1/me/cards")).length;
    const confirm = await cardForm(host, setup.client_secret, "setup");
    const save = h("button", { type: "button", id: "save-card" }, t("save_card"));
    save.addEventListener("click", async () => {
      save.disabled = true;
      try {
        await confirm();
        note.replaceChildren(h("p", { role: "status" }, t("card_saving")));
        const saved = await until(async () => (await api("GET", "/v1/me/cards")).length > before);
        note.replaceChildren(h("p", { class: saved ? "ok" : "help", role: "status" }, saved ? t("card_saved") : t("card_pending")));
        host.replaceChildren();
        save.remove();
        await reload();
      } catch (err) {
        note.replaceChildren(moneyError(err));
      } finally {
        save.disabled = false;
      }
    });
    host.after(save);
  });
  button.addEventListener("click", add.run);
  return h("div", { class: "add-card" }, button, host, note);
}

/** A card top-up: the SANDBOX credits play money at once; Stripe takes the card in its form. */
function cardTopup(reload) {
  const amount = h("select", { id: "topup-amount", name: "amount" },
    [50000, 100000, 200000, 500000].map((a) => h("option", { value: String(a) }, money(a))));
  const button = h("button", { type: "button", id: "card-topup" }, t("topup_card"));
  const host = h("div", { id: "topup-form" });
  const note = h("div", { "aria-live": "polite" });
  const topup = moneyAction(button, note, async (key) => {
    const r = await api("POST", "/v1/me/wallet/topups", { amount: Number(amount.value) }, { key });
    if (r.status === "succeeded") {
      note.replaceChildren(h("p", { class: "ok", role: "status" }, t(r.sandbox ? "topup_done_sandbox" : "topup_done", { amount: money(r.amount) })));
      await reload();
      return;
    }
    const before = (await api("GET", "/v1/me/wallet")).balance;
    const confirm = await cardForm(host, r.client_secret, "payment");
    const pay = h("button", { type: "button", id: "pay-topup" }, t("pay", { total: money(r.amount) }));
    pay.addEventListener("click", async () => {
      pay.disabled = true;
      try {
        await confirm();
        note.replaceChildren(h("p", { role: "status" }, t("topup_crediting")));
        const credited = await until(async () => (await api("GET", "/v1/me/wallet")).balance > before);
        note.replaceChildren(h("p", { class: credited ? "ok" : "help", role: "status" },
          credited ? t("topup_done", { amount: money(r.amount) }) : t("card_pending")));
        host.replaceChildren();
        pay.remove();
        await reload();
      } catch (err) {
        note.replaceChildren(moneyError(err));
      } finally {
        pay.disabled = false;
      }
    });
    host.after(pay);
  });
  amount.addEventListener("change", topup.reset);
  button.addEventListener("click", topup.run);
  return h("div", { class: "card-topup" },
    h("label", { for: "topup-amount" }, t("topup_amount")), amount, button, host, note);
}

/** Reminders before a session ends: Web Push on this browser, or SMS. */
function remindersSection() {
  const state = h("p", { id: "reminders-state", "aria-live": "polite" });
  const button = h("button", { type: "button", id: "reminders", class: "secondary" });
  const render = () => {
    if (!pushSupported()) {
      state.textContent = t("reminders_unsupported");
      button.hidden = true;
      return;
    }
    const on = Boolean(pushId());
    state.textContent = on ? t("reminders_on") : t("reminders_off");
    button.textContent = on ? t("reminders_disable") : t("reminders_enable");
    button.setAttribute("aria-pressed", on ? "true" : "false");
  };
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      if (pushId()) {
        await disablePush();
        render();
      } else {
        const got = await enablePush();
        render();
        if (got === "denied") state.textContent = t("reminders_denied");
      }
    } catch (err) {
      render();
      state.textContent = err instanceof ApiError && err.message ? err.message : t("reminders_failed");
    } finally {
      button.disabled = false;
    }
  });
  render();
  return h("section", { class: "card", "aria-labelledby": "reminders-title" },
    h("h2", { id: "reminders-title" }, t("reminders")), state, button);
}

/** "Log out on every device": asked once more before it is done. */
function logoutEverywhere(status) {
  const confirmBox = h("div", { hidden: true });
  const ask = h("button", { type: "button", id: "logout-all", class: "link" }, t("log_out_everywhere"));
  const yes = h("button", { type: "button", id: "logout-all-confirm", class: "danger" }, t("log_out_everywhere_confirm"));
  const no = h("button", { type: "button", class: "secondary" }, t("cancel"));
  ask.addEventListener("click", () => { confirmBox.hidden = false; ask.hidden = true; yes.focus(); });
  no.addEventListener("click", () => { confirmBox.hidden = true; ask.hidden = false; });
  yes.addEventListener("click", async () => {
    yes.disabled = true;
    try {
      await api("POST", "/v1/auth/logout-all");
    } catch (err) {
      if (!(err instanceof ApiError) || err.status !== 401) {
        yes.disabled = false;
        status.replaceChildren(errorBox(err));
        return;
      }
    }
    forgetPush();
    setToken(null);
    location.hash = "#/login";
  });
  confirmBox.append(h("p", {}, t("log_out_everywhere_help")), yes, no);
  return h("div", { class: "logout-all" }, ask, confirmBox);
}

// ---- Citations ---------------------------------------------------------------------------

async function citationsScreen() {
  const live = current();
  show(h("p", {}, t("loading")));
  let list;
  try {
    list = await api("GET", "/v1/me/citations");
  } catch (err) {
    if (!live()) return;
    show(errorBox(err));
    return;
  }
  const details = h("div", { id: "citation", "aria-live": "polite" });
  const items = list.map((c) => {
    const code = h("input", { id: "code-" + c.number, name: "code", autocomplete: "off", maxlength: "16" });
    const form = h("form", { class: "row" },
      h("label", { for: "code-" + c.number }, t("ticket_code")), code, h("button", { type: "submit" }, t("open")));
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const q = `plate=${encodeURIComponent(c.plate)}&code=${encodeURIComponent(code.value.trim())}`;
      try {
        const d = await api("GET", `/v1/citations/${encodeURIComponent(c.number)}?${q}`);
        details.replaceChildren(h("section", { class: "card" },
          h("h2", {}, t("citation", { number: d.number })),
          h("dl", {},
            h("dt", {}, t("reason")), h("dd", {}, tOr("kind_" + d.kind, "kind_other")),
            h("dt", {}, t("point")), h("dd", {}, `${d.point_code} · ${d.point_name}, ${d.street}`),
            h("dt", {}, t("when")), h("dd", {}, hanoiTime(d.issued_at, true)),
            d.note ? [h("dt", {}, t("note")), h("dd", {}, d.note)] : null),
          h("div", { class: "photos" }, d.photos.map((_, i) => h("img", {
            src: `/v1/citations/${encodeURIComponent(d.number)}/photos/${i}?${q}`,
            alt: t("photo", { n: i + 1 }), loading: "lazy",
          })))));
      } catch (err) {
        details.replaceChildren(errorBox(err));
      }
    });
    return h("li", { class: "card" },
      h("p", {}, h("strong", {}, c.number), ` · ${c.plate} · ${c.point_code} ${c.point_name} · ${hanoiTime(c.issued_at, true)}`),
      form);
  });
  if (!live()) return;
  show(h("h1", {}, t("citations_title")),
    h("p", { class: "help" }, t("citations_help")),
    items.length ? h("ul", { class: "citations" }, items) : h("p", {}, t("no_citations")),
    details);
}

// ---- Router ------------------------------------------------------------------------------

function route() {
  nextScreen();
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
  if (m) return pointScreen(m[1].toUpperCase());
  const sm = hash.match(/^#\/sessions\/(\d{1,18})$/);
  if (sm) return sessionScreen(sm[1]);
  if (hash.startsWith("#/sessions")) return sessionsScreen();
  if (hash.startsWith("#/citations")) return citationsScreen();
  if (hash.startsWith("#/account")) return accountScreen();
  if (hash === "#/login") {
    location.hash = "#/points";
    return;
  }
  return pointsScreen();
}

function applyLang() {
  showLanguage();
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
