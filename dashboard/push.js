// "Notify me on this device": Web Push subscriptions, the installable app's service
// worker, and answering a call from a notification (PROTOCOL.md, "Added in v1.1: Web
// Push subscriptions").
//
// Each device signs its pushes with its own VAPID key (status.push_key), and one
// service-worker registration holds one subscription for one key, so each device
// gets its own registration of sw.js at the scope "./push/<device>/". The page's own
// registration ("./") is the offline shell.

const SW_URL = "sw.js";
const SUBSCRIBE_TIMEOUT_MS = 20000;

function scopeOf(device) {
  return new URL(`push/${device}/`, document.baseURI).href;
}

function b64urlToBytes(text) {
  const b64 = text.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - (text.length % 4)) % 4);
  return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
}

function bytesToB64url(buffer) {
  let s = "";
  for (const b of new Uint8Array(buffer)) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

const IS_IOS = /iPhone|iPad|iPod/.test(navigator.userAgent) || (navigator.platform === "MacIntel" && navigator.maxTouchPoints > 1);

function standalone() {
  return navigator.standalone === true || window.matchMedia?.("(display-mode: standalone)").matches === true;
}

/** Why this browser cannot get notifications with the page closed (a sentence), or null. */
export function pushUnavailable() {
  if (!window.isSecureContext) {
    return `Notifications need the dashboard on https:// (or on this computer as localhost); this page is on ${location.protocol}//${location.host}.`;
  }
  if (IS_IOS && !standalone()) {
    return "On iPhone and iPad, notifications work once the dashboard is on the home screen: tap Share → Add to Home Screen, open peercam from there (iOS 16.4 or newer), then turn this on.";
  }
  if (!("serviceWorker" in navigator)) {
    return "This browser cannot notify you with the page closed: it has no service workers here (a private window, or a browser that does not support them).";
  }
  if (!("PushManager" in window) || !("Notification" in window)) {
    return "This browser cannot receive push notifications. Chrome, Edge, Firefox and Safari (macOS 13+, iOS 16.4+ from the home screen) can.";
  }
  if (Notification.permission === "denied") {
    return "Notifications are blocked for this site. Allow them in the browser's site settings (the icon left of the address), then turn this on again.";
  }
  return null;
}

/** The dashboard's side of Web Push; `host` is the small interface app.js gives it. */
export class PushPanel {
  /**
   * @param {object} host {send(device, message), toast(text, kind, ms), deviceName(id),
   *   status(device), answer(device, call) -> bool, changed()}
   */
  constructor(host) {
    this.host = host;
    this.state = new Map(); // device -> {subscribed, endpoint, busy, problem, confirmed}
    this.pendingAnswer = null; // {device, call} from a notification's Answer
    this.shell = null;
    this.workerProblem = null;
    const q = new URLSearchParams(location.search);
    const call = q.get("answer");
    const m = /^#\/device\/([a-z0-9][a-z0-9_-]{0,63})$/.exec(location.hash);
    if (call && m) this.pendingAnswer = { device: m[1], call };
    if (q.has("answer")) {
      q.delete("answer");
      const query = q.toString();
      history.replaceState(null, "", `${location.pathname}${query ? `?${query}` : ""}${location.hash}`);
    }
  }

  /** Register the offline shell and listen to the service worker (clicks on notifications). */
  start() {
    if (!("serviceWorker" in navigator) || !window.isSecureContext) return;
    navigator.serviceWorker.addEventListener("message", (ev) => {
      const m = ev.data;
      if (!m || m.type !== "peercam-notification" || typeof m.device !== "string") return;
      if (m.action === "answer" && typeof m.call === "string") {
        this.pendingAnswer = { device: m.device, call: m.call };
        this.tryAnswer(m.device);
      } else {
        location.hash = `#/device/${m.device}`;
      }
    });
    this.shell = navigator.serviceWorker.register(SW_URL, { scope: "./" }).catch((err) => {
      // Typically a page whose https certificate the browser does not trust.
      this.workerProblem =
        `The browser refused this page's service worker (${err?.message || err}), so it cannot notify you with the page closed. ` +
        "If the browser warned about this site's certificate, trust the certificate (or install your private CA) and reload.";
      console.warn("peercam: the offline shell's service worker did not register", err?.message || err);
      this.host.changed();
      return null;
    });
  }

  // --- device events from app.js -------------------------------------------------------

  /** A device's status arrived: refresh its subscription state, answer a pending call. */
  statusChanged(device) {
    this.tryAnswer(device);
    const st = this.state.get(device);
    if (!st) this._refresh(device);
  }

  tryAnswer(device) {
    const p = this.pendingAnswer;
    if (!p || p.device !== device) return;
    const status = this.host.status(device);
    if (!status) return; // not known yet: the retained status will come
    if (this.host.answer(device, p.call)) {
      this.pendingAnswer = null;
    } else if (status.state === "online" && status.call !== p.call) {
      this.pendingAnswer = null;
      this.host.toast(`${this.host.deviceName(device)}: that call is over.`, "warn", 8000);
    }
  }

  /** A message on our out topic; true when it was about push. */
  onOut(device, msg) {
    if (msg.type !== "push-subscribed" && msg.type !== "push-unsubscribed") return false;
    const st = this.state.get(device) || {};
    if (msg.type === "push-subscribed" && msg.endpoint === st.endpoint) {
      st.confirmed = true;
      st.busy = false;
      this.state.set(device, st);
      this.host.changed();
    }
    return true;
  }

  // --- subscribing ---------------------------------------------------------------------------

  async _registration(device) {
    return navigator.serviceWorker.getRegistration(scopeOf(device));
  }

  async _refresh(device) {
    const st = { subscribed: false, endpoint: null, busy: false, problem: null, confirmed: false };
    this.state.set(device, st);
    if (pushUnavailable()) return;
    try {
      const reg = await this._registration(device);
      const sub = reg ? await reg.pushManager.getSubscription() : null;
      const key = this.host.status(device)?.push_key;
      if (sub && key) {
        const subKey = sub.options?.applicationServerKey ? bytesToB64url(sub.options.applicationServerKey) : key;
        if (subKey !== key) {
          // The device has a new key (reinstalled): the old subscription is useless.
          await sub.unsubscribe();
        } else {
          st.subscribed = true;
          st.endpoint = sub.endpoint;
          // Tell the device again (idempotent): it may have lost its state folder.
          this.host.send(device, { type: "push-subscribe", subscription: sub.toJSON() });
        }
      }
    } catch (err) {
      st.problem = `Could not read this browser's subscription: ${err?.message || err}.`;
    }
    this.host.changed();
  }

  async subscribe(device) {
    const why = pushUnavailable() || this.workerProblem;
    const key = this.host.status(device)?.push_key;
    const st = this.state.get(device) || {};
    this.state.set(device, st);
    if (why || !key) {
      st.problem = why || this._noKeyText(device);
      this.host.changed();
      return;
    }
    st.busy = true;
    st.problem = null;
    this.host.changed();
    try {
      const permission = await Notification.requestPermission();
      if (permission !== "granted") {
        throw new Error(
          permission === "denied"
            ? "notifications are blocked for this site; allow them in the site settings and try again"
            : "the browser did not get your permission to show notifications",
        );
      }
      const reg = await navigator.serviceWorker.register(SW_URL, { scope: `./push/${device}/` });
      await this._active(reg);
      const timeout = new Promise((_, reject) =>
        setTimeout(() => reject(new Error("the browser's push service did not answer (is this browser offline?)")), SUBSCRIBE_TIMEOUT_MS),
      );
      const sub = await Promise.race([
        reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: b64urlToBytes(key) }),
        timeout,
      ]);
      st.subscribed = true;
      st.endpoint = sub.endpoint;
      st.confirmed = false;
      this.host.send(device, { type: "push-subscribe", subscription: sub.toJSON() });
    } catch (err) {
      st.subscribed = false;
      st.problem = `Could not turn on notifications: ${err?.message || err}.`;
    } finally {
      st.busy = false;
      this.host.changed();
    }
  }

  async unsubscribe(device) {
    const st = this.state.get(device) || {};
    st.busy = true;
    this.host.changed();
    try {
      const reg = await this._registration(device);
      const sub = reg ? await reg.pushManager.getSubscription() : null;
      if (sub) {
        this.host.send(device, { type: "push-unsubscribe", endpoint: sub.endpoint });
        await sub.unsubscribe();
      }
      if (reg) await reg.unregister();
      st.subscribed = false;
      st.endpoint = null;
      st.confirmed = false;
      st.problem = null;
    } catch (err) {
      st.problem = `Could not turn off notifications: ${err?.message || err}.`;
    } finally {
      st.busy = false;
      this.host.changed();
    }
  }

  _active(reg) {
    const worker = reg.active || reg.waiting || reg.installing;
    if (!worker || worker.state === "activated") return Promise.resolve();
    return new Promise((resolve) => {
      worker.addEventListener("statechange", () => {
        if (worker.state === "activated") resolve();
      });
    });
  }

  _noKeyText(device) {
    return `${this.host.deviceName(device)} does not send push notifications (its [notify] web_push is off, or its peercam is older).`;
  }

  // --- rendering (the device view) -------------------------------------------------------------

  /** Fill the "notify me" box of the device view: #dv-push, #dv-push-toggle, #dv-push-text. */
  render(device, status) {
    const box = document.getElementById("dv-push");
    if (!box) return;
    const button = document.getElementById("dv-push-toggle");
    const text = document.getElementById("dv-push-text");
    const st = this.state.get(device) || {};
    const why = pushUnavailable() || this.workerProblem;
    box.hidden = false;
    box.dataset.device = device;
    let words;
    if (st.problem) words = st.problem;
    else if (why) words = why;
    else if (!status?.push_key) words = this._noKeyText(device);
    else if (st.busy) words = "Working…";
    else if (st.subscribed) words = st.confirmed ? "This browser is notified when someone rings, even with the dashboard closed." : "This browser is subscribed; waiting for the device to confirm…";
    else words = "Get a notification on this browser when someone rings, even with the dashboard closed.";
    text.textContent = words;
    box.dataset.state = st.subscribed ? "subscribed" : why || !status?.push_key ? "unavailable" : "off";
    button.textContent = st.subscribed ? "Stop notifying me" : "Notify me on this device";
    button.disabled = Boolean(st.busy) || (!st.subscribed && (Boolean(why) || !status?.push_key));
    button.setAttribute("aria-pressed", String(Boolean(st.subscribed)));
    if (!button.dataset.wired) {
      button.dataset.wired = "1";
      button.addEventListener("click", () => {
        const id = box.dataset.device;
        const now = this.state.get(id) || {};
        if (now.subscribed) this.unsubscribe(id);
        else this.subscribe(id);
      });
    }
  }
}
