// Reminders by Web Push: the driver agrees in the browser, the browser subscribes at its push
// service with the server's VAPID key, and the subscription goes to the API. The service
// worker shows the reminder. Without push (browser, refusal, or server), reminders come by SMS.
import { api, ApiError } from "./api.js";
import { lang, t } from "./i18n.js";

const KEY = "iparking.push";

/** Whether this browser can take push messages at all. */
export function pushSupported() {
  return "serviceWorker" in navigator && "PushManager" in window && "Notification" in window;
}

/** The id of this browser's subscription at the API, if it has one. */
export function pushId() {
  return localStorage.getItem(KEY);
}

function keyBytes(b64url) {
  const b64 = b64url.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((b64url.length + 3) % 4);
  return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
}

/**
 * Turns reminders on for this browser. Returns "on", or why not: "denied" (the browser's
 * permission), or throws the API's refusal (e.g. push not configured on the server).
 */
export async function enablePush() {
  const { public_key: publicKey } = await api("GET", "/v1/push/key");
  const permission = await Notification.requestPermission();
  if (permission !== "granted") return "denied";
  const reg = await navigator.serviceWorker.ready;
  let sub = await reg.pushManager.getSubscription();
  if (!sub) {
    try {
      sub = await reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: keyBytes(publicKey) });
    } catch {
      throw new ApiError(0, "push_unavailable", t("reminders_failed"));
    }
  }
  const saved = await api("POST", "/v1/me/push-subscriptions", { ...sub.toJSON(), lang: lang() });
  localStorage.setItem(KEY, String(saved.id));
  return "on";
}

/** Turns reminders off for this browser (at the API, and at the push service). */
export async function disablePush() {
  const id = pushId();
  if (id) {
    try {
      await api("DELETE", "/v1/me/push-subscriptions/" + id);
    } catch (err) {
      if (!(err instanceof ApiError) || (err.status !== 404 && err.status !== 401)) throw err;
    }
  }
  localStorage.removeItem(KEY);
  if (pushSupported()) {
    const reg = await navigator.serviceWorker.getRegistration();
    const sub = reg && await reg.pushManager.getSubscription();
    if (sub) await sub.unsubscribe().catch(() => {});
  }
}

/** Forgets this browser's subscription locally (the server forgot it: logged out everywhere). */
export function forgetPush() {
  localStorage.removeItem(KEY);
}
