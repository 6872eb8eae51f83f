// iParking drivers' app: the service worker. It keeps the app shell (this build's page and
// assets) so the app opens with no network. API answers are never cached here: the app
// keeps its last session answer itself, and money calls are never queued.
const BUILD = "{{build}}";
const SHELL = ["/", ...{{assets}}];
const CACHE = "iparking-driver-" + BUILD;

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((c) => c.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches.keys()
      .then((keys) => Promise.all(keys.filter((k) => k.startsWith("iparking-driver-") && k !== CACHE).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener("fetch", (event) => {
  const req = event.request;
  if (req.method !== "GET") return;
  const url = new URL(req.url);
  if (url.origin !== self.location.origin) return;
  if (url.pathname.startsWith("/assets/")) {
    // Hashed names never change: the cache first.
    event.respondWith(caches.match(req).then((hit) => hit || fetch(req)));
  } else if (url.pathname === "/" && req.mode === "navigate") {
    // The page: the network first (a new build), the cached shell when offline.
    event.respondWith(fetch(req).catch(() => caches.match("/")));
  }
});

// A reminder from the server (Web Push, decrypted by the browser): shown as a notification
// that opens the session.
self.addEventListener("push", (event) => {
  let msg = {};
  try {
    msg = event.data ? event.data.json() : {};
  } catch {
    msg = { title: "iParking", body: event.data ? event.data.text() : "" };
  }
  event.waitUntil(self.registration.showNotification(msg.title || "iParking", {
    body: msg.body || "",
    tag: msg.session_id ? "session-" + msg.session_id : "iparking",
    icon: {{icon}},
    data: { url: msg.url || "/" },
  }));
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const url = new URL((event.notification.data && event.notification.data.url) || "/", self.location.origin).href;
  event.waitUntil(self.clients.matchAll({ type: "window", includeUncontrolled: true }).then((wins) => {
    // Only a window of this app (not /warden/ or /finance) can be sent to the session.
    for (const w of wins) {
      const at = new URL(w.url);
      const ours = at.origin === self.location.origin && !/^\/(warden|finance|public|r)(\/|$)/.test(at.pathname);
      if (ours) return w.navigate(url).then((c) => (c || w).focus()).catch(() => self.clients.openWindow(url));
    }
    return self.clients.openWindow(url);
  }));
});
