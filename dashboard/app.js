// peercam viewer page: MQTT signaling (PROTOCOL.md v1) + one receive-only WebRTC session.
//
// Plain ES module, no build step. mqtt.js is loaded before this file as a
// classic script (vendor/mqtt.min.js) and provides the global `mqtt`.
//
// Flow: read config.json (query parameters override it) -> connect to the
// broker over WebSockets with a last will `bye "*"` -> subscribe to the
// device's retained status and our `out` topic -> when the device is online:
// hello -> welcome -> offer (after ICE gathering, at most ~2 s) -> answer ->
// media. Tests read `window.peercam` and `document.body.dataset.state`.

const PROTOCOL_VERSION = 1;
const ID_RE = /^[a-z0-9][a-z0-9_-]{0,63}$/;
const PREFIX_RE = /^[A-Za-z0-9_/-]{1,64}$/;
const ICE_GATHER_TIMEOUT_MS = 2000;
const WELCOME_TIMEOUT_MS = 10000;
const ANSWER_TIMEOUT_MS = 15000;
const STATS_INTERVAL_MS = 1000;

const BYE_TEXT = {
  hangup: "The device hung up.",
  timeout: "The session timed out.",
  failed: "The connection to the device failed.",
  shutdown: "The device shut down.",
  replaced: "This session was replaced by a newer one from the same viewer.",
};

// --- state exposed for tests and for the future dashboard ---------------------------

const stats = {
  framesDecoded: 0,
  width: 0,
  height: 0,
  fps: 0,
  bitrateKbps: 0,
  rttMs: null,
  path: null, // "direct" | "relayed"
  localCandidateType: null,
  remoteCandidateType: null,
};

const peercam = {
  state: "connecting", // "connecting" | "live" | "ended" | "error"
  stats,
  config: null,
  device: null, // last status message from the device
  session: null, // current session id
  broker: "connecting", // "connecting" | "connected" | "offline"
  reconnect: () => restart(),
};
window.peercam = peercam;

const $ = (id) => document.getElementById(id);
const ui = {
  badge: $("device-badge"),
  deviceText: $("device-text"),
  video: $("video"),
  overlay: $("overlay"),
  stats: $("stats"),
  message: $("message"),
  reconnect: $("reconnect"),
  sound: $("sound"),
  dBroker: $("d-broker"),
  dDevice: $("d-device"),
  dViewer: $("d-viewer"),
  dSession: $("d-session"),
  dState: $("d-state"),
};

let client = null; // mqtt.js client
let topics = null;
let current = null; // the live session: {id, pc, timer, offerSent, trickled, stream, statsTimer, ...}
let autoStart = true; // start a session whenever the device is (or comes back) online

// --- helpers ----------------------------------------------------------------------------

function randomHex(bytes) {
  // crypto.getRandomValues works on plain-http LAN pages too (randomUUID needs a secure context).
  const buf = new Uint8Array(bytes);
  crypto.getRandomValues(buf);
  return Array.from(buf, (b) => b.toString(16).padStart(2, "0")).join("");
}

function newSessionId() {
  return randomHex(16); // 32 chars, matches ^[A-Za-z0-9_-]{8,64}$
}

function setState(state, overlayText) {
  peercam.state = state;
  document.body.dataset.state = state;
  ui.dState.textContent = state;
  if (overlayText !== undefined) ui.overlay.textContent = overlayText;
}

function showMessage(text) {
  ui.message.textContent = text || "";
  ui.message.hidden = !text;
}

function publish(message) {
  if (!client || !topics) return;
  const payload = JSON.stringify({ v: PROTOCOL_VERSION, ...message });
  client.publish(topics.inbox, payload, { qos: 1 }, (err) => {
    if (err) console.warn("peercam: publish failed", err);
  });
}

// --- configuration ------------------------------------------------------------------------

async function loadConfig() {
  let fromFile = {};
  try {
    const response = await fetch("config.json", { cache: "no-store" });
    if (response.ok) fromFile = await response.json();
  } catch (err) {
    console.warn("peercam: no config.json, using query parameters only", err);
  }
  const q = new URLSearchParams(location.search);
  const pick = (...names) => {
    for (const name of names) {
      if (q.has(name)) return q.get(name);
    }
    for (const name of names) {
      if (fromFile[name] !== undefined && fromFile[name] !== null) return String(fromFile[name]);
    }
    return "";
  };
  const config = {
    // "{host}": the host this page came from (the demo on 0.0.0.0, watched from a phone).
    // (location.hostname keeps an IPv6 address in brackets.)
    broker_url: pick("broker_url", "broker").replace("{host}", location.hostname),
    device: pick("device"),
    viewer: pick("viewer") || `viewer-${randomHex(4)}`,
    username: pick("username"),
    password: pick("password"),
    topic_prefix: pick("topic_prefix", "prefix") || "peercam",
  };
  const problems = [];
  if (!config.broker_url) problems.push("no broker URL (config.json broker_url or ?broker_url=ws://host:port/mqtt)");
  else if (!/^wss?:\/\//.test(config.broker_url)) problems.push(`broker URL ${config.broker_url} must start with ws:// or wss://`);
  else if (location.protocol === "https:" && config.broker_url.startsWith("ws:")) {
    problems.push(`this page is served over https, so the browser refuses the unencrypted broker ${config.broker_url}: use a wss:// URL`);
  }
  if (!ID_RE.test(config.device)) problems.push(`device id "${config.device}" is missing or invalid`);
  if (!ID_RE.test(config.viewer)) problems.push(`viewer id "${config.viewer}" is invalid`);
  if (!PREFIX_RE.test(config.topic_prefix)) problems.push(`topic prefix "${config.topic_prefix}" is invalid`);
  return { config, problems };
}

// --- device status ------------------------------------------------------------------------

function renderDevice() {
  const s = peercam.device;
  if (peercam.broker !== "connected") {
    ui.badge.className = "badge badge-unknown";
    ui.badge.textContent = "no broker";
    ui.deviceText.textContent = peercam.broker === "offline" ? "Broker unreachable, retrying…" : "Connecting to the broker…";
    return;
  }
  if (!s) {
    ui.badge.className = "badge badge-unknown";
    ui.badge.textContent = "waiting";
    ui.deviceText.textContent = `Waiting for device "${peercam.config.device}"…`;
    return;
  }
  const online = s.state === "online";
  ui.badge.className = `badge ${online ? "badge-online" : "badge-offline"}`;
  ui.badge.textContent = online ? "online" : "offline";
  const name = typeof s.name === "string" && s.name ? s.name : peercam.config.device;
  let text = name;
  if (online && Number.isInteger(s.viewers) && Number.isInteger(s.max_viewers)) {
    text += ` · ${s.viewers}/${s.max_viewers} viewers`;
  }
  if (Array.isArray(s.faults) && s.faults.length) text += ` · ${s.faults.join("; ")}`;
  ui.deviceText.textContent = text;
  ui.sound.hidden = !(s.audio && s.audio.codec);
}

function onStatus(status) {
  const wasOnline = peercam.device?.state === "online";
  peercam.device = status;
  renderDevice();
  const online = status.state === "online";
  if (online && !current && autoStart) {
    startSession();
  } else if (!online && wasOnline && current) {
    endSession("ended", "The device is offline; the video resumes when it is back.", { sendBye: false });
    autoStart = true;
  } else if (!online && !current && peercam.state === "connecting") {
    setState("connecting", "The device is offline; waiting for it…");
  }
}

// --- the WebRTC session ---------------------------------------------------------------

function startSession() {
  if (current) endSession(null, null, { sendBye: true, reason: "hangup" });
  showMessage("");
  const id = newSessionId();
  current = { id, pc: null, offerSent: false, trickled: false, timer: null, stream: null, statsTimer: null, prev: null };
  peercam.session = id;
  ui.dSession.textContent = id;
  resetStats();
  setState("connecting", "Asking the device for a session…");
  publish({ type: "hello", session: id });
  current.timer = setTimeout(() => fail(`The device did not answer within ${WELCOME_TIMEOUT_MS / 1000} s.`), WELCOME_TIMEOUT_MS);
}

function fail(text) {
  endSession("error", text, { sendBye: true, reason: "failed" });
}

function endSession(state, text, { sendBye = false, reason = "hangup" } = {}) {
  const s = current;
  current = null;
  if (s) {
    clearTimeout(s.timer);
    clearInterval(s.statsTimer);
    if (sendBye) publish({ type: "bye", session: s.id, reason });
    if (s.pc) {
      s.pc.ontrack = s.pc.onicecandidate = s.pc.onconnectionstatechange = null;
      s.pc.close();
    }
  }
  ui.video.srcObject = null;
  if (state) {
    // The overlay says it briefly; the alert below says why (and is read out).
    setState(state, state === "error" ? "No video" : "Session ended");
    if (text) showMessage(text);
  }
}

async function onWelcome(msg) {
  const s = current;
  clearTimeout(s.timer);
  setState("connecting", "Connecting the video…");
  const iceServers = Array.isArray(msg.ice_servers) ? msg.ice_servers : [];
  let pc;
  try {
    pc = new RTCPeerConnection({ iceServers });
  } catch (err) {
    fail(`This browser cannot use the device's ICE servers: ${err.message}`);
    return;
  }
  s.pc = pc;
  s.stream = new MediaStream();
  pc.addTransceiver("video", { direction: "recvonly" });
  pc.addTransceiver("audio", { direction: "recvonly" });

  pc.ontrack = (ev) => {
    s.stream.addTrack(ev.track);
    if (ui.video.srcObject !== s.stream) ui.video.srcObject = s.stream;
  };
  pc.onconnectionstatechange = () => {
    if (current !== s) return;
    const st = pc.connectionState;
    if (st === "failed") fail("The connection to the device failed (no network path; a TURN server may be needed).");
    else if (st === "disconnected") setState("connecting", "Connection interrupted, waiting…");
    // Back to "live" when frames flow again (updateStats).
  };
  pc.onicecandidate = (ev) => {
    if (current !== s || !s.offerSent) return; // gathered before the offer: already in its SDP
    const c = ev.candidate;
    if (c && c.candidate) {
      s.trickled = true;
      publish({ type: "candidate", session: s.id, candidate: { candidate: c.candidate, sdpMid: c.sdpMid, sdpMLineIndex: c.sdpMLineIndex } });
    } else if (!c && s.trickled) {
      publish({ type: "candidate", session: s.id, candidate: null });
    }
  };

  try {
    await pc.setLocalDescription(await pc.createOffer());
    await gatheringComplete(pc, ICE_GATHER_TIMEOUT_MS);
  } catch (err) {
    if (current === s) fail(`Could not create the offer: ${err.message}`);
    return;
  }
  if (current !== s) return;
  s.offerSent = true;
  publish({ type: "offer", session: s.id, sdp: pc.localDescription.sdp });
  s.timer = setTimeout(() => fail(`The device did not answer the offer within ${ANSWER_TIMEOUT_MS / 1000} s.`), ANSWER_TIMEOUT_MS);
}

function gatheringComplete(pc, timeoutMs) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", check);
      resolve();
    };
    const check = () => {
      if (pc.iceGatheringState === "complete") done();
    };
    const timer = setTimeout(done, timeoutMs); // then send what we have; the rest trickles
    pc.addEventListener("icegatheringstatechange", check);
  });
}

async function onAnswer(msg) {
  const s = current;
  if (!s.pc || !s.offerSent) return;
  clearTimeout(s.timer);
  try {
    await s.pc.setRemoteDescription({ type: "answer", sdp: msg.sdp });
  } catch (err) {
    if (current === s) fail(`The device's answer was not usable: ${err.message}`);
    return;
  }
  if (current !== s) return;
  ui.overlay.textContent = "Waiting for the first frame…";
  s.statsTimer = setInterval(() => updateStats(s), STATS_INTERVAL_MS);
}

async function onRemoteCandidate(msg) {
  const s = current;
  if (!s.pc) return;
  try {
    await s.pc.addIceCandidate(msg.candidate || null);
  } catch (err) {
    console.warn("peercam: remote candidate refused", err);
  }
}

// --- stats --------------------------------------------------------------------------------

function resetStats() {
  Object.assign(stats, {
    framesDecoded: 0, width: 0, height: 0, fps: 0, bitrateKbps: 0, rttMs: null,
    path: null, localCandidateType: null, remoteCandidateType: null,
  });
  ui.stats.innerHTML = "&nbsp;";
}

async function updateStats(s) {
  if (current !== s || !s.pc) return;
  let report;
  try {
    report = await s.pc.getStats();
  } catch {
    return;
  }
  if (current !== s) return;
  let video = null;
  let pair = null;
  let selectedPairId = null;
  report.forEach((r) => {
    if (r.type === "inbound-rtp" && r.kind === "video") video = r;
    if (r.type === "transport" && r.selectedCandidatePairId) selectedPairId = r.selectedCandidatePairId;
  });
  if (selectedPairId) pair = report.get(selectedPairId);
  if (!pair) {
    report.forEach((r) => {
      if (r.type === "candidate-pair" && r.nominated && r.state === "succeeded") pair = r;
    });
  }
  if (pair) {
    const local = report.get(pair.localCandidateId);
    const remote = report.get(pair.remoteCandidateId);
    stats.localCandidateType = local?.candidateType ?? null;
    stats.remoteCandidateType = remote?.candidateType ?? null;
    stats.path = stats.localCandidateType === "relay" || stats.remoteCandidateType === "relay" ? "relayed" : "direct";
    stats.rttMs = typeof pair.currentRoundTripTime === "number" ? Math.round(pair.currentRoundTripTime * 1000) : null;
  }
  if (video) {
    const prev = s.prev;
    const before = stats.framesDecoded;
    stats.framesDecoded = video.framesDecoded ?? 0;
    stats.width = video.frameWidth ?? 0;
    stats.height = video.frameHeight ?? 0;
    if (prev) {
      const dt = (video.timestamp - prev.timestamp) / 1000;
      if (dt > 0) {
        stats.bitrateKbps = Math.round(((video.bytesReceived - prev.bytesReceived) * 8) / dt / 1000);
        stats.fps = typeof video.framesPerSecond === "number"
          ? Math.round(video.framesPerSecond)
          : Math.round((stats.framesDecoded - prev.framesDecoded) / dt);
      }
    }
    s.prev = { timestamp: video.timestamp, bytesReceived: video.bytesReceived ?? 0, framesDecoded: stats.framesDecoded };
    if (stats.framesDecoded > before && peercam.state !== "live") {
      setState("live"); // frames are being decoded: first frame, or flowing again
      showMessage("");
    }
  }
  renderStats();
}

function renderStats() {
  const parts = [];
  if (stats.path) parts.push(`${stats.path} (${stats.localCandidateType} ↔ ${stats.remoteCandidateType})`);
  if (stats.width) parts.push(`${stats.width}×${stats.height}`);
  parts.push(`${stats.fps} fps`);
  parts.push(`${stats.bitrateKbps} kbit/s`);
  parts.push(`${stats.framesDecoded} frames`);
  if (stats.rttMs !== null) parts.push(`RTT ${stats.rttMs} ms`);
  ui.stats.textContent = parts.join(" · ");
}

// --- signaling ------------------------------------------------------------------------

function onDeviceMessage(msg) {
  if (!msg || typeof msg !== "object" || msg.v !== PROTOCOL_VERSION || typeof msg.type !== "string") {
    console.warn("peercam: ignored a message that is not protocol v1", msg);
    return;
  }
  const s = current;
  const ours = s && msg.session === s.id;
  switch (msg.type) {
    case "welcome":
      if (ours && !s.pc) onWelcome(msg);
      break;
    case "answer":
      if (ours && typeof msg.sdp === "string") onAnswer(msg);
      break;
    case "candidate":
      if (ours) onRemoteCandidate(msg);
      break;
    case "bye":
      if (ours) {
        const reason = typeof msg.reason === "string" ? msg.reason : "hangup";
        const text = BYE_TEXT[reason] || `The device ended the session (${reason}).`;
        endSession(reason === "failed" ? "error" : "ended", text, { sendBye: false });
        // After a shutdown the device comes back with a fresh retained status: rejoin then.
        autoStart = reason === "shutdown";
      }
      break;
    case "error": {
      // Errors about an older session are stale; errors without a session concern us.
      if (msg.session && !ours) break;
      const text = typeof msg.message === "string" && msg.message ? msg.message : "unknown error";
      const code = typeof msg.code === "string" ? ` (${msg.code})` : "";
      endSession("error", `The device refused: ${text}${code}`, { sendBye: false });
      autoStart = false;
      break;
    }
    default:
      break; // unknown types from a newer device are ignored
  }
}

function onMqttMessage(topic, payload) {
  let msg;
  try {
    msg = JSON.parse(new TextDecoder().decode(payload));
  } catch {
    console.warn(`peercam: ignored a non-JSON message on ${topic}`);
    return;
  }
  if (topic === topics.status) {
    if (msg && msg.type === "status") onStatus(msg);
  } else if (topic === topics.outbox) {
    onDeviceMessage(msg);
  }
}

function connectBroker(config) {
  const base = `${config.topic_prefix}/${config.device}`;
  topics = { status: `${base}/status`, inbox: `${base}/in/${config.viewer}`, outbox: `${base}/out/${config.viewer}` };
  client = window.mqtt.connect(config.broker_url, {
    protocolVersion: 4, // MQTT 3.1.1: what every broker (and the demo's) speaks
    clientId: `${config.viewer}-${randomHex(4)}`, // one viewer may have several tabs
    username: config.username || undefined,
    password: config.password || undefined,
    clean: true,
    keepalive: 30,
    reconnectPeriod: 2000,
    connectTimeout: 10000,
    will: { topic: topics.inbox, payload: JSON.stringify({ v: PROTOCOL_VERSION, type: "bye", session: "*" }), qos: 1, retain: false },
  });
  let brokerErrorShown = false;
  client.on("connect", () => {
    peercam.broker = "connected";
    if (brokerErrorShown) showMessage("");
    brokerErrorShown = false;
    renderDevice();
    client.subscribe([topics.status, topics.outbox], { qos: 1 }, (err) => {
      if (err) {
        endSession("error", `The broker refused the subscription: ${err.message}`);
        return;
      }
      // The retained status arrives right after; it starts the session.
      if (!peercam.device && !current && peercam.state === "connecting") {
        setState("connecting", `Waiting for device "${config.device}"…`);
      }
    });
  });
  client.on("reconnect", () => {
    peercam.broker = "connecting";
    renderDevice();
  });
  client.on("offline", () => {
    peercam.broker = "offline";
    renderDevice();
    if (!current && peercam.state === "connecting") setState("connecting", "Broker unreachable, retrying…");
  });
  client.on("error", (err) => {
    // Authentication and similar errors: mqtt.js keeps retrying, the user should know why.
    showMessage(`Broker ${config.broker_url}: ${err.message}`);
    brokerErrorShown = true;
  });
  client.on("message", onMqttMessage);
}

// --- user actions and page lifecycle --------------------------------------------------

function restart() {
  autoStart = true;
  showMessage("");
  if (peercam.device?.state === "online" && peercam.broker === "connected") {
    startSession();
  } else {
    endSession(null, null, { sendBye: true, reason: "hangup" });
    setState("connecting", "Waiting for the device…");
  }
}

ui.reconnect.addEventListener("click", restart);

ui.sound.addEventListener("click", () => {
  ui.video.muted = !ui.video.muted;
  ui.sound.setAttribute("aria-pressed", String(!ui.video.muted));
  ui.sound.textContent = ui.video.muted ? "Sound on" : "Sound off";
  if (!ui.video.muted) ui.video.play().catch(() => {});
});

ui.video.addEventListener("playing", () => {
  if (current && peercam.state === "connecting") setState("live");
});

// Leaving the page: say bye and disconnect cleanly, synchronously. mqtt.js corks its
// stream and writes on a setTimeout(0) "nextTick", which never runs during unload, so
// the bytes are flushed by hand (Writable.uncork). The bye's QoS 1 bookkeeping is
// dropped (public removeOutgoingMessage) because end() would otherwise wait for its
// PUBACK; without a DISCONNECT the broker fires our last will (bye "*"), which would
// also end this viewer's sessions in other tabs.
function leave() {
  const s = current;
  endSession(null, null);
  if (!client) return;
  try {
    if (s && client.connected) {
      const payload = JSON.stringify({ v: PROTOCOL_VERSION, type: "bye", session: s.id, reason: "hangup" });
      client.publish(topics.inbox, payload, { qos: 1 }, () => {});
      const mid = client.getLastMessageId();
      if (mid) client.removeOutgoingMessage(mid);
    }
    client.end(false);
    const stream = client.stream;
    for (let i = 0; i < 8 && stream && typeof stream.uncork === "function"; i++) stream.uncork();
  } catch (err) {
    console.warn("peercam: could not say bye (the broker sends our last will instead)", err);
  }
}

window.addEventListener("pagehide", leave);

window.addEventListener("pageshow", (ev) => {
  // Back from the back/forward cache: the old session and connection are gone.
  if (ev.persisted && client) {
    client.reconnect();
    autoStart = true;
    setState("connecting", "Reconnecting…");
  }
});

async function main() {
  if (!window.mqtt || typeof window.mqtt.connect !== "function") {
    setState("error", "mqtt.js did not load.");
    showMessage("vendor/mqtt.min.js did not load; the page cannot reach the broker.");
    return;
  }
  const { config, problems } = await loadConfig();
  peercam.config = config;
  ui.dBroker.textContent = config.broker_url || "–";
  ui.dDevice.textContent = config.device || "–";
  ui.dViewer.textContent = config.viewer;
  if (problems.length) {
    setState("error", "Not configured.");
    showMessage(`Cannot start: ${problems.join("; ")}.`);
    return;
  }
  setState("connecting", "Connecting to the broker…");
  connectBroker(config);
}

main();
