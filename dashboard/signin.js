// Sign in and out: the form, connecting the main link (MQTT 5, falling back to 3.1.1),
// the subscriptions, a lost or refused broker, and goodbyes when the page closes.

import { closeRingDialog } from "./calls.js";
import { Link, describeUnreachable } from "./link.js";
import { onMainMessage } from "./messages.js";
import { renderAll } from "./render.js";
import { checkBrokerUrl, clearStoredSignin, signinProblems, storeSignin } from "./settings.js";
import { NO_DEVICE_HINT_MS, app } from "./state.js";
import { $, inTopic, toast } from "./ui.js";
import { applyRoute, showView } from "./views.js";

const SIGNIN_TIMEOUT_MS = 12000;
const V5_TIMEOUT_MS = 6000; // no CONNACK to MQTT 5 this long: try MQTT 3.1.1

export function showSigninMessage(text, { certUrl = null, kind = "error" } = {}) {
  const box = $("signin-message");
  box.hidden = !text;
  box.dataset.kind = kind;
  $("signin-text").textContent = text || "";
  $("signin-cert").hidden = !certUrl;
  if (certUrl) {
    $("signin-cert-link").href = certUrl;
    $("signin-cert-link").textContent = `Open ${certUrl} to check the certificate`;
  }
}

export function formSignin() {
  return {
    broker_url: $("f-broker").value.trim(),
    viewer: $("f-viewer").value.trim(),
    password: $("f-password").value,
    topic_prefix: $("f-prefix").value.trim() || "peercam",
    remember: $("f-remember").checked,
  };
}

export function fillForm(signin) {
  $("f-broker").value = signin.broker_url || "";
  $("f-viewer").value = signin.viewer || "";
  $("f-password").value = signin.password || "";
  $("f-prefix").value = signin.topic_prefix || "peercam";
  $("f-remember").checked = Boolean(signin.remember);
  checkBrokerField();
}

export function checkBrokerField() {
  const url = $("f-broker").value.trim();
  const out = $("f-broker-check");
  const result = url ? checkBrokerUrl(url) : {};
  out.textContent = result.error || result.warning || "";
  $("f-broker").setAttribute("aria-invalid", result.error ? "true" : "false");
}

export async function signIn(signin) {
  if (app.signingIn) return;
  const problems = signinProblems(signin);
  showView("signin");
  if (problems.length) {
    showSigninMessage(problems.join(" "));
    return;
  }
  app.signingIn = true;
  $("signin-submit").disabled = true;
  showSigninMessage("Connecting to the broker…", { kind: "info" });
  if (navigator.userActivation?.hasBeenActive) app.ringer.unlock(); // a click signed in
  try {
    const version = app.settings.mqttVersion;
    // A broker that only speaks MQTT 3.1.1 may refuse MQTT 5 (or not answer it at all).
    let result = await connectMain(signin, version, version === 5 ? V5_TIMEOUT_MS : SIGNIN_TIMEOUT_MS);
    if (result.retryV4) result = await connectMain(signin, 4, SIGNIN_TIMEOUT_MS);
    if (!result.link) {
      showSigninMessage(result.text, { certUrl: result.certUrl });
      return;
    }
    app.mqttVersion = result.version;
    app.signin = signin;
    app.prefix = signin.topic_prefix;
    app.main = result.link;
    // Kept for this tab (a reload signs in again; the password left the URL), or for this
    // browser when "remember me" is ticked.
    storeSignin(signin);
    scrubUrl();
    showSigninMessage("");
    $("who").textContent = signin.viewer;
    $("d-broker").textContent = signin.broker_url;
    $("d-viewer").textContent = signin.viewer;
    await subscribeMain();
    mainStateChanged(app.main);
    if (app.settings.device && !location.hash) location.hash = `#/device/${app.settings.device}`;
    applyRoute();
  } finally {
    app.signingIn = false;
    $("signin-submit").disabled = false;
  }
}

/** Connect the main link; resolves {link, version} or {text, certUrl} or {retryV4}. */
function connectMain(signin, version, timeoutMs) {
  return new Promise((resolve) => {
    let settled = false;
    const finish = (value) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(value);
    };
    const link = new Link(signin, {
      tag: "main",
      username: app.settings.username,
      mqttVersion: version,
      onMessage: onMainMessage,
      onState: (l) => {
        if (!settled) {
          if (l.state === "connected") finish({ link: l, version });
          else if (l.state === "refused") {
            l.end();
            const unsupported = l.refusal.code === 1 || l.refusal.code === 132;
            finish(unsupported && version === 5 ? { retryV4: true } : { text: l.refusal.text });
          } else if (l.state === "offline" && !l.everConnected) {
            l.end();
            finish(describeUnreachable(signin.broker_url));
          }
          return;
        }
        if (app.main === l) mainStateChanged(l);
      },
    });
    const timer = setTimeout(() => {
      link.end();
      // The WebSocket is open but MQTT 5 gets no answer: try MQTT 3.1.1 once.
      finish(version === 5 ? { retryV4: true } : describeUnreachable(signin.broker_url));
    }, timeoutMs);
  });
}

function scrubUrl() {
  // A password in the address bar would end up in the history: drop it once used.
  const q = new URLSearchParams(location.search);
  if (!q.has("password")) return;
  q.delete("password");
  const query = q.toString();
  history.replaceState(null, "", `${location.pathname}${query ? `?${query}` : ""}${location.hash}`);
}

async function subscribeMain() {
  const p = app.prefix;
  const filters = [`${p}/+/status`, `${p}/+/events`, `${p}/+/calls`, `${p}/+/clips`, `${p}/+/out/${app.signin.viewer}`];
  try {
    const granted = await app.main.subscribe(filters);
    const refused = granted.filter((g) => g && g.qos >= 128).map((g) => g.topic);
    if (refused.length) toast(`The broker refused to let this viewer read ${refused.join(", ")} (not authorised).`, "error", 15000);
  } catch (err) {
    toast(`Could not subscribe: ${err.message}`, "error", 15000);
  }
  app.signedInAt = performance.now();
  clearTimeout(app.noDeviceTimer);
  app.noDeviceTimer = setTimeout(renderAll, NO_DEVICE_HINT_MS + 50);
}

function mainStateChanged(link) {
  const status = $("broker-status");
  if (link.state === "connected") {
    status.textContent = "";
    status.dataset.kind = "ok";
  } else if (link.state === "refused") {
    // The broker refused a reconnect (password changed, viewer removed): back to the form.
    signOut(`The broker signed you out: ${link.refusal.text}`, { keepStored: true });
    return;
  } else if (link.state !== "ended") {
    status.textContent = "Connection to the broker lost; reconnecting… (live video keeps playing)";
    status.dataset.kind = "warn";
  }
  for (const s of app.sessions.values()) s.evaluate();
}

export function signOut(message = "Signed out.", { keepStored = false } = {}) {
  leaveAll();
  for (const s of app.sessions.values()) s.dispose();
  app.observer?.disconnect();
  app.sessions.clear();
  app.links.clear();
  app.main = null;
  for (const r of app.ringing.values()) clearTimeout(r.timer);
  app.ringing.clear();
  app.answered.clear();
  closeRingDialog();
  app.ringer.stop();
  for (const snap of app.snapshots.values()) if (snap.url) URL.revokeObjectURL(snap.url);
  app.snapshots.clear();
  app.devices.clear();
  app.iceCache.clear();
  $("device-grid").replaceChildren();
  if (!keepStored) {
    clearStoredSignin();
    $("f-password").value = "";
  }
  $("broker-status").textContent = "";
  history.replaceState(null, "", location.pathname + location.search);
  app.route = { view: "devices", device: null };
  showView("signin");
  showSigninMessage(message, { kind: keepStored ? "error" : "info" });
}

/** Bye for every session and a clean DISCONNECT for every link, synchronously (page closing). */
export function leaveAll() {
  for (const [device, entry] of app.links) {
    const s = app.sessions.get(device);
    const bye = s ? s.byeMessage() : null;
    if (s) {
      s.run += 1; // ignore whatever the closing peer connection still reports
      if (s.pc) s.pc.close();
      s.pc = null;
      s.id = null;
    }
    entry.link.endNow(bye ? [[inTopic(device), bye]] : []);
  }
  if (app.main) app.main.endNow();
}
