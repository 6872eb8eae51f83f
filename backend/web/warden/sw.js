// iParking wardens' app: the service worker. It keeps the app shell (this build's page and
// assets) so the handheld opens with no network. API answers are never cached here: the app
// keeps its rosters and its queue of actions in IndexedDB itself.
const BUILD = "{{build}}";
const SHELL = ["/warden/", ...{{assets}}];
const CACHE = "iparking-warden-" + BUILD;

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((c) => c.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches.keys()
      .then((keys) => Promise.all(keys.filter((k) => k.startsWith("iparking-warden-") && k !== CACHE).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener("fetch", (event) => {
  const req = event.request;
  if (req.method !== "GET") return;
  const url = new URL(req.url);
  if (url.origin !== self.location.origin) return;
  if (url.pathname.startsWith("/assets/")) {
    event.respondWith(caches.match(req).then((hit) => hit || fetch(req)));
  } else if (url.pathname === "/warden/" && req.mode === "navigate") {
    event.respondWith(fetch(req).catch(() => caches.match("/warden/")));
  }
});
