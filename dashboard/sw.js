// The dashboard's service worker: the offline shell, and Web Push notifications.
//
// Registered twice over: at the dashboard's own scope ("./": the offline shell)
// and once per device the person asked to be notified about ("./push/<device>/":
// each device signs its pushes with its own VAPID key, and a registration holds
// one push subscription for one key). The same script serves both.
//
// It never caches MQTT (WebSockets are not fetches) nor media (WebRTC; call
// snapshots come over MQTT): only the files of the page itself, network first,
// so an online dashboard is always the current one and an offline one still
// opens and says that it cannot reach the broker.

const SHELL_CACHE = "peercam-shell-v1";
const SHELL = [
  "./",
  "index.html",
  "style.css",
  "app.js",
  "browser-support.js",
  "calls.js",
  "controls.js",
  "history.js",
  "ice-advice.js",
  "lifecycle.js",
  "link.js",
  "media-util.js",
  "messages.js",
  "notify.js",
  "push.js",
  "render.js",
  "session.js",
  "settings.js",
  "sfu.js",
  "signin.js",
  "state.js",
  "stats.js",
  "testhooks.js",
  "tiles.js",
  "ui.js",
  "views.js",
  "vendor/mqtt.min.js",
  "manifest.webmanifest",
  "icon.svg",
  "icon-192.png",
  "icon-512.png",
];
const ROOT = new URL("./", self.location).href; // the dashboard's folder (where sw.js lives)
const SHELL_URLS = new Set(SHELL.map((p) => new URL(p, ROOT).href));

self.addEventListener("install", (event) => {
  event.waitUntil(
    caches
      .open(SHELL_CACHE)
      .then((cache) => cache.addAll(SHELL))
      .catch(() => {}) // a missing file must not stop notifications from working
      .then(() => self.skipWaiting()),
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((keys) => Promise.all(keys.filter((k) => k.startsWith("peercam-shell-") && k !== SHELL_CACHE).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET") return;
  const url = new URL(request.url);
  url.search = ""; // "?broker_url=…&viewer=…" is still the shell; never cached with it
  url.hash = "";
  const key = url.href;
  if (!SHELL_URLS.has(key) && key !== new URL("config.json", ROOT).href) return; // not ours
  event.respondWith(
    fetch(request)
      .then((response) => {
        if (response.ok && SHELL_URLS.has(key)) {
          const copy = response.clone();
          caches.open(SHELL_CACHE).then((cache) => cache.put(key, copy)).catch(() => {});
        }
        return response;
      })
      .catch(() => caches.match(key).then((hit) => hit || Response.error())),
  );
});

// --- Web Push -------------------------------------------------------------------------

function parsePush(event) {
  try {
    const data = event.data ? event.data.json() : null;
    if (data && typeof data === "object" && typeof data.title === "string") return data;
  } catch {
    // not JSON: shown as a plain notice below
  }
  return null;
}

self.addEventListener("push", (event) => {
  const data = parsePush(event);
  // A push must show a notification (userVisibleOnly): even one we cannot read.
  if (!data) {
    event.waitUntil(self.registration.showNotification("peercam", { body: "Your doorbell sent a notification.", icon: "icon-192.png" }));
    return;
  }
  const device = typeof data.device === "string" ? data.device : "";
  const call = typeof data.call === "string" ? data.call : "";
  const ring = data.kind === "ring";
  const options = {
    body: typeof data.body === "string" ? data.body : "",
    icon: new URL("icon-192.png", ROOT).href,
    badge: new URL("icon-192.png", ROOT).href,
    tag: `peercam-${device}-${call}`, // "missed" replaces the ring's notification
    renotify: ring,
    requireInteraction: ring,
    silent: data.kind === "ended", // answered/declined elsewhere: replace the ring quietly
    timestamp: Number.isFinite(data.at) ? data.at * 1000 : Date.now(),
    data: { device, call, kind: data.kind },
    actions: ring
      ? [
          { action: "answer", title: "Answer" },
          { action: "open", title: "Open" },
        ]
      : [{ action: "open", title: "Open" }],
  };
  if (typeof data.image === "string" && data.image.startsWith("data:image/")) options.image = data.image;
  event.waitUntil(self.registration.showNotification(data.title, options));
});

self.addEventListener("notificationclick", (event) => {
  const n = event.notification;
  const { device = "", call = "", kind = "" } = n.data || {};
  n.close();
  const answer = event.action === "answer" && kind === "ring" && call;
  const target = new URL(ROOT);
  if (answer) target.searchParams.set("answer", call);
  if (device) target.hash = `#/device/${device}`;
  event.waitUntil(
    (async () => {
      const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
      const open = windows.find((w) => w.url.startsWith(ROOT));
      if (open) {
        await open.focus().catch(() => {});
        open.postMessage({ type: "peercam-notification", action: answer ? "answer" : "open", device, call });
        return;
      }
      await self.clients.openWindow(target.href);
    })(),
  );
});
