// Cards: how this server takes them (the page's meta tags, set by the server), paying with a
// saved card, and collecting a new card or a card top-up with Stripe's Payment Element.
// Stripe.js is loaded from Stripe, and only when the server is configured with Stripe: the
// page's CSP allows Stripe's origins only then. The SANDBOX (demo) saves play cards at once.
import { api, ApiError } from "./api.js";
import { lang, t } from "./i18n.js";

function meta(name) {
  const m = document.querySelector(`meta[name="${name}"]`);
  return m ? m.content : "";
}

/** "" (no cards), "sandbox", "stripe" (new cards collected here) or "saved" (saved cards only). */
export function cardsMode() {
  return meta("iparking-cards");
}

/** Whether new cards (and card top-ups) can be collected in the app. */
export function canCollectCards() {
  return cardsMode() === "sandbox" || cardsMode() === "stripe";
}

let stripe = null;

/** Stripe.js, loaded once from Stripe. */
function loadStripe() {
  if (!stripe) {
    stripe = new Promise((resolve, reject) => {
      const s = document.createElement("script");
      s.src = "https://js.stripe.com/v3/";
      s.onload = () => resolve(window.Stripe(meta("iparking-stripe-key"), { locale: lang() }));
      s.onerror = () => {
        stripe = null;
        reject(new ApiError(0, "network", t("card_form_unavailable")));
      };
      document.head.append(s);
    });
  }
  return stripe;
}

/**
 * Stripe's Payment Element for `clientSecret`, mounted in `host`. Returns `confirm()`, which
 * confirms the setup (a card to save) or the payment (a top-up), staying on the page.
 */
export async function cardForm(host, clientSecret, kind) {
  const s = await loadStripe();
  const elements = s.elements({ clientSecret, locale: lang() });
  elements.create("payment").mount(host);
  return async () => {
    const r = kind === "setup"
      ? await s.confirmSetup({ elements, redirect: "if_required" })
      : await s.confirmPayment({ elements, redirect: "if_required" });
    if (r.error) throw new ApiError(402, "card_declined", r.error.message || t("card_declined"));
  };
}

/** A card charge that waits for the driver's 3-D Secure: done in Stripe's own window. */
async function authenticate(clientSecret) {
  const s = await loadStripe();
  const r = await s.handleNextAction({ clientSecret });
  if (r.error) throw new ApiError(402, "card_declined", r.error.message || t("card_declined"));
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * What a money call paid by card answered: a session (paid at once), or a charge to follow
 * (202): 3-D Secure when asked, then its state until it is paid or refused. Returns the
 * session.
 */
export async function settleCardPayment(answer) {
  let charge = answer;
  if (!charge || charge.purpose === undefined) return answer;
  for (let i = 0; i < 60; i++) {
    if (charge.session && charge.status === "succeeded") return charge.session;
    if (["failed", "canceled", "abandoned", "refund_due"].includes(charge.status)) {
      throw new ApiError(402, "card_declined", t("card_declined"));
    }
    if (charge.status === "requires_action" && charge.client_secret) {
      await authenticate(charge.client_secret);
    } else {
      await sleep(1000);
    }
    charge = await api("GET", "/v1/me/card-charges/" + charge.id);
  }
  throw new ApiError(0, "card_pending", t("card_pending"));
}

/** Waits (up to ~20 s) until `check()` is true: a card saved, a top-up credited, by webhook. */
export async function until(check) {
  for (let i = 0; i < 20; i++) {
    if (await check()) return true;
    await sleep(1000);
  }
  return false;
}
