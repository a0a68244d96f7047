// Rendering: the device grid and its cards, missed calls, the large view, the title,
// all drawn from `app` state.

import { renderRingMedia, sendAction } from "./calls.js";
import { push } from "./notify.js";
import { CALL_ENDED_TEXT, NO_DEVICE_HINT_MS, app } from "./state.js";
import { statsLines } from "./stats.js";
import { sessionFor, updateBodyState } from "./tiles.js";
import { $, deviceName, el, formatTime, setChildren, toast } from "./ui.js";

const MAX_MISSED_SHOWN = 12;

export function sortedDevices() {
  return [...app.devices.values()]
    .filter((d) => d.status)
    .sort((a, b) => deviceName(a.id).localeCompare(deviceName(b.id)) || a.id.localeCompare(b.id))
    .map((d) => d.id);
}

export function createCard(d) {
  const card = $("card-template").content.firstElementChild.cloneNode(true);
  card.dataset.device = d.id;
  card.querySelector(".card-link").href = `#/device/${d.id}`;
  d.card = card;
  sessionFor(d.id).attach(card.querySelector("video"));
  app.observer?.observe(card);
  return card;
}

function statusWords(status) {
  if (!status) return { badge: "unknown", text: "waiting" };
  return status.state === "online" ? { badge: "online", text: "online" } : { badge: "offline", text: "offline" };
}

function viewersText(status) {
  if (!status || status.state !== "online") return "";
  if (Number.isInteger(status.viewers) && Number.isInteger(status.max_viewers)) {
    return `${status.viewers}/${status.max_viewers} watching`;
  }
  return "";
}

function overlayText(session, status) {
  if (!status) return "Waiting for the device…";
  if (status.state !== "online") return "Offline";
  if (!session || session.state === "idle") return app.liveTiles ? "" : "Live tiles are off";
  if (session.state === "live") return "";
  return session.message || "Connecting…";
}

function renderDevices() {
  const grid = $("device-grid");
  const ids = sortedDevices();
  const cards = ids.map((id) => app.devices.get(id).card);
  // Keep DOM order = sorted order without recreating nodes (videos keep playing).
  cards.forEach((card, i) => {
    if (grid.children[i] !== card) grid.insertBefore(card, grid.children[i] || null);
  });
  for (const child of [...grid.children]) if (!cards.includes(child)) child.remove();
  for (const id of ids) {
    try {
      renderCard(app.devices.get(id));
    } catch (err) {
      // One device's odd data must not stop every other card from updating.
      console.warn(`peercam: could not show device ${id}: ${err}`);
    }
  }
  const empty = $("devices-empty");
  if (ids.length === 0 && app.main) {
    empty.hidden = false;
    const waited = performance.now() - app.signedInAt >= NO_DEVICE_HINT_MS;
    empty.textContent = waited
      ? `No device is visible to viewer "${app.signin.viewer}" under "${app.prefix}/". Either no device has been online yet, or this viewer was granted none (the broker's access list decides which devices you see).`
      : "Looking for devices…";
  } else {
    empty.hidden = true;
  }
  renderMissedCalls();
}

function renderCard(d) {
  const card = d.card;
  const status = d.status;
  const s = app.sessions.get(d.id);
  const words = statusWords(status);
  const ringing = [...app.ringing.values()].some((r) => r.device === d.id);
  card.dataset.online = String(status?.state === "online");
  card.dataset.state = s ? s.state : "idle";
  card.dataset.ringing = String(ringing);
  card.querySelector(".card-name").textContent = deviceName(d.id);
  const badge = card.querySelector(".badge");
  badge.className = `badge badge-${words.badge}`;
  badge.textContent = words.text;
  const meta = [viewersText(status)];
  const missed = d.calls.filter((c) => c.reason === "missed").length;
  if (missed) meta.push(`${missed} missed call${missed > 1 ? "s" : ""}`);
  if (status?.state === "online" && typeof status.call === "string" && !ringing) meta.push("call in progress");
  if (Array.isArray(status?.faults) && status.faults.length) meta.push(status.faults.join("; "));
  card.querySelector(".card-meta").textContent = meta.filter(Boolean).join(" · ");
  card.querySelector(".ring-flag").hidden = !ringing;
  const live = s && s.state === "live";
  const still = card.querySelector(".thumb-still");
  const showStill = !live && Boolean(d.still);
  still.hidden = !showStill;
  if (showStill && still.getAttribute("src") !== d.still) still.src = d.still;
  card.querySelector(".thumb-overlay").textContent = overlayText(s, status);
  card.querySelector(".card-link").setAttribute(
    "aria-label",
    `${deviceName(d.id)}: ${words.text}${viewersText(status) ? `, ${viewersText(status)}` : ""}${ringing ? ", ringing" : ""}. Open the large view.`,
  );
}

function callItem(device, c, { withDevice }) {
  const snap = app.snapshots.get(`${device}/${c.call}`);
  const reason = typeof c.reason === "string" ? c.reason : "";
  const pic = snap?.url
    ? el("img", { class: "call-pic", src: snap.url, alt: `Picture of the call at ${formatTime(c.at)}` })
    : el("span", { class: "call-pic call-pic-none", text: c.snapshot ? "…" : "no picture" });
  let label = CALL_ENDED_TEXT[reason] || reason || (c.reason === null ? "ringing" : "call");
  if (c.by && reason !== "missed") label += ` by ${c.by}`;
  const info = el(
    "span",
    { class: "call-info" },
    withDevice ? el("a", { href: `#/device/${device}`, class: "call-device", text: deviceName(device) }) : null,
    el("time", { datetime: Number.isFinite(c.at) ? new Date(c.at * 1000).toISOString() : "", text: formatTime(c.at) }),
    el("span", { class: `call-reason reason-${reason}`, text: label }),
  );
  return el("li", { class: "call-item", "data-call": c.call, "data-reason": reason }, pic, info);
}

function renderMissedCalls() {
  const missed = [];
  for (const d of app.devices.values()) for (const c of d.calls) if (c.reason === "missed") missed.push([d.id, c]);
  missed.sort((a, b) => (b[1].at || 0) - (a[1].at || 0));
  const shown = missed.slice(0, MAX_MISSED_SHOWN);
  const key = JSON.stringify(shown.map(([id, c]) => [id, c, deviceName(id), app.snapshots.get(`${id}/${c.call}`)?.url]));
  setChildren($("recent-calls-list"), key, () => shown.map(([id, c]) => callItem(id, c, { withDevice: true })));
  $("recent-calls").hidden = missed.length === 0;
}

export function renderDeviceView() {
  const id = app.route.device;
  if (!id) return;
  const d = app.devices.get(id);
  const status = d?.status || null;
  push.render(id, status);
  const s = app.sessions.get(id);
  const words = statusWords(status);
  $("device-heading").textContent = deviceName(id);
  const badge = $("dv-badge");
  badge.className = `badge badge-${words.badge}`;
  badge.textContent = words.text;
  $("dv-viewers").textContent = viewersText(status);
  const stage = $("dv-stage");
  stage.dataset.state = s ? s.state : "idle";
  $("dv-overlay").textContent = s && s.state === "live" ? "" : overlayText(s, status) || "Connecting…";
  const quality = $("dv-quality");
  if (document.activeElement !== quality) quality.value = s ? s.quality : "auto";
  quality.disabled = !s || s.stats.stream?.substream === false;
  const stats = $("dv-stats");
  stats.hidden = $("dv-stats-toggle").getAttribute("aria-pressed") !== "true" || !s || !s.running;
  if (s && s.running) stats.textContent = statsLines(s.stats).join("\n");
  const hasAudio = Boolean(status?.audio) || Boolean(s?.call);
  $("dv-sound").hidden = !hasAudio;
  const inCall = Boolean(s && s.call !== null);
  $("dv-call-banner").hidden = !inCall;
  if (inCall) $("dv-call-banner").textContent = s.mic ? (s.mic.enabled ? "In call · microphone on" : "In call · microphone off") : "In call · no microphone";
  $("dv-call-controls").hidden = !inCall;
  $("dv-mic").hidden = !s?.mic;
  $("dv-ptt").hidden = !s?.mic;
  $("dv-ptt-help").hidden = !s?.mic;
  if (s?.mic) {
    $("dv-mic").setAttribute("aria-pressed", String(app.micWanted));
    $("dv-mic").textContent = app.micWanted ? "Microphone on" : "Microphone off";
  }
  const ring = [...app.ringing.values()].find((r) => r.device === id);
  $("dv-ring-controls").hidden = !ring || inCall;
  // Door and quick replies (fields of status the device may add).
  const replies = Array.isArray(status?.replies) ? status.replies.filter((r) => r && typeof r.id === "string" && typeof r.text === "string") : [];
  const door = status?.door === true;
  $("dv-actions").hidden = !(door || replies.length) || status?.state !== "online";
  $("dv-open").hidden = !door;
  setChildren($("dv-replies"), JSON.stringify([id, replies]), () =>
    replies.map((r) => {
      const b = el("button", { type: "button", class: "secondary", "data-reply": r.id, text: `Reply: “${r.text}”` });
      b.addEventListener("click", () => {
        sendAction(id, { type: "reply", reply: r.id });
        toast(`${deviceName(id)}: playing “${r.text}”.`);
      });
      return b;
    }),
  );
  const message = $("dv-message");
  let text = s && (s.state === "error" || s.state === "ended") && s.message ? s.message : "";
  if (!status && performance.now() - app.signedInAt >= NO_DEVICE_HINT_MS) {
    text = `No status from "${id}": it has never been online under "${app.prefix}/", or viewer "${app.signin.viewer}" is not allowed to see it (the broker's access list decides).`;
  }
  message.hidden = !text;
  message.textContent = text;
  const calls = d?.calls || [];
  $("dv-calls-empty").hidden = calls.length > 0;
  const callsKey = JSON.stringify([id, calls, calls.map((c) => app.snapshots.get(`${id}/${c.call}`)?.url)]);
  setChildren($("dv-calls"), callsKey, () => calls.map((c) => callItem(id, c, { withDevice: false })));
  $("d-device").textContent = id;
  $("d-session").textContent = s?.id || "–";
  $("d-state").textContent = s ? `${s.state}${s.firstFrameMs !== null ? ` (first frame after ${s.firstFrameMs} ms)` : ""}` : "–";
  $("d-version").textContent = typeof status?.version === "string" ? status.version : "–";
}

export function renderAll() {
  if (!app.main) return;
  renderDevices();
  if (app.route.view === "device") renderDeviceView();
  renderRingMedia();
  const ringingNames = [...new Set([...app.ringing.values()].map((r) => deviceName(r.device)))];
  document.title = ringingNames.length ? `🔔 ${ringingNames.join(", ")} ringing · peercam` : "peercam";
  $("sound-hint").hidden = !(app.ringing.size && !app.ringer.audible);
  updateBodyState();
}
