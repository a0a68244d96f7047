// Event history (PROTOCOL.md "Added in v1.1: motion, event clips and playback"): the
// retained `clips` list of each device with thumbnails, reason and time; playing a clip
// in the large view over WebRTC (an offer naming the clip, a `playback` data channel for
// pause, seek and download), deleting a clip, and the live view one click away.
//
// One playback at a time in this tab. While it plays, the large view's <video> shows
// the clip and the live session is detached from it (it keeps running for the tiles).

import { sendAction } from "./calls.js";
import { ID_RE, PROTOCOL_VERSION } from "./settings.js";
import { newSessionId } from "./session.js";
import { app } from "./state.js";
import { sessionFor } from "./tiles.js";
import { $, deviceName, el, formatTime, inTopic, setChildren, toast } from "./ui.js";

const CLIP_RE = /^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}$/;
const REASON_TEXT = { ring: "rang", answered: "rang (answered)", missed: "rang (missed)", motion: "motion", manual: "recorded" };
const MAX_SHOWN = 50;
const REPLY_TIMEOUT_MS = 15000;
const MAX_DOWNLOAD = 512 * 1024 * 1024; // bytes a download may announce

const history = {
  clips: new Map(), // device -> [clip]
  thumbs: new Map(), // "device/clip" -> object URL | "pending"
  playback: null, // the Playback in progress
};

function clean(c) {
  if (!c || typeof c !== "object" || typeof c.id !== "string" || !CLIP_RE.test(c.id)) return null;
  const num = (v) => (Number.isFinite(v) && Math.abs(v) < 8.64e12 ? v : null);
  return {
    id: c.id,
    at: num(c.at),
    duration: num(c.duration),
    size: num(c.size),
    reason: typeof c.reason === "string" ? c.reason : "",
    thumb: c.thumb === true,
    audio: c.audio === true,
  };
}

/** The retained `clips` message of a device. */
export function onClips(device, msg) {
  if (msg.type !== "clips" || !Array.isArray(msg.clips)) return;
  const clips = msg.clips.map(clean).filter(Boolean).slice(0, MAX_SHOWN);
  history.clips.set(device, clips);
  const keep = new Set(clips.map((c) => `${device}/${c.id}`));
  for (const [key, url] of history.thumbs) {
    if (!key.startsWith(`${device}/`) || keep.has(key)) continue;
    if (url !== "pending") URL.revokeObjectURL(url);
    else app.main?.unsubscribe(`${app.prefix}/${device}/thumb/${key.slice(device.length + 1)}`);
    history.thumbs.delete(key);
  }
  for (const c of clips) {
    const key = `${device}/${c.id}`;
    if (c.thumb && !history.thumbs.has(key) && app.main) {
      history.thumbs.set(key, "pending");
      app.main.subscribe(`${app.prefix}/${device}/thumb/${c.id}`).catch(() => {});
    }
  }
  renderHistory();
}

/** A retained thumbnail (raw JPEG). */
export function onThumb(device, clip, payload) {
  if (!CLIP_RE.test(clip)) return;
  const key = `${device}/${clip}`;
  const old = history.thumbs.get(key);
  if (old && old !== "pending") URL.revokeObjectURL(old);
  if (payload.length === 0) {
    history.thumbs.delete(key);
  } else {
    history.thumbs.set(key, URL.createObjectURL(new Blob([payload], { type: "image/jpeg" })));
    app.main?.unsubscribe(`${app.prefix}/${device}/thumb/${clip}`);
  }
  renderHistory();
}

/** Draw the large view's history (call after the route or the list changed). */
export function renderHistory() {
  const device = app.route.view === "device" ? app.route.device : null;
  const section = $("dv-clips-section");
  if (!section) return;
  if (!device) {
    if (history.playback) history.playback.stop();
    return;
  }
  if (history.playback && history.playback.device !== device) history.playback.stop();
  const clips = history.clips.get(device) || [];
  section.hidden = !history.clips.has(device);
  $("dv-clips-empty").hidden = clips.length > 0;
  const deleters = app.devices.get(device)?.status?.recording?.deleters;
  const deleter = Array.isArray(deleters) && deleters.includes(app.signin?.viewer);
  const playing = history.playback?.clip || "";
  const key = JSON.stringify([device, playing, clips.map((c) => [c.id, c.reason, history.thumbs.get(`${device}/${c.id}`) || ""])]);
  setChildren($("dv-clips"), key, () =>
    clips.map((c) => {
      const thumb = history.thumbs.get(`${device}/${c.id}`);
      const img = thumb && thumb !== "pending" ? el("img", { class: "clip-thumb", src: thumb, alt: "" }) : el("span", { class: "clip-thumb clip-thumb-empty" });
      const what = `${REASON_TEXT[c.reason] || c.reason || "clip"}, ${c.duration !== null ? `${Math.round(c.duration)} s` : ""}`;
      const play = el("button", { type: "button", class: "clip-play", "data-clip": c.id, "aria-pressed": String(playing === c.id) }, img, el("span", { class: "clip-text" }, el("span", { class: "clip-time", text: formatTime(c.at) }), el("span", { class: "clip-reason muted", text: what })));
      play.addEventListener("click", () => playClip(device, c.id));
      const remove = el("button", { type: "button", class: "secondary small clip-delete", "data-clip": c.id, text: "Delete", "aria-label": `Delete the clip of ${formatTime(c.at)}` });
      remove.hidden = !deleter;
      remove.addEventListener("click", () => deleteClip(device, c));
      return el("li", { class: "clip", "data-clip": c.id, "data-reason": c.reason }, play, remove);
    }),
  );
  const bar = $("dv-playback");
  bar.hidden = !history.playback;
  if (history.playback) {
    const p = history.playback;
    $("dv-playback-text").textContent = p.text();
    $("dv-playback-pause").textContent = p.state === "ended" ? "Play again" : p.paused ? "Play" : "Pause";
    $("dv-playback-download").disabled = !p.channelOpen || p.downloading;
  }
}

function deleteClip(device, clip) {
  if (!window.confirm(`Delete the clip of ${formatTime(clip.at)} from ${deviceName(device)}?`)) return;
  if (history.playback?.clip === clip.id) history.playback.stop();
  sendAction(device, { type: "delete-clip", clip: clip.id });
}

export function playClip(device, clip) {
  if (history.playback) history.playback.stop();
  history.playback = new Playback(device, clip);
  history.playback.start();
  renderHistory();
}

/** Back to the live picture in the large view. */
export function backToLive() {
  if (history.playback) history.playback.stop();
}

class Playback {
  constructor(device, clip) {
    this.device = device;
    this.clip = clip;
    this.id = newSessionId();
    this.pc = null;
    this.channel = null;
    this.channelOpen = false;
    this.state = "starting"; // starting | playing | ended | error | stopped
    this.message = "";
    this.position = 0;
    this.duration = history.clips.get(device)?.find((c) => c.id === clip)?.duration || 0;
    this.paused = false;
    this.framesDecoded = 0;
    this.downloading = false;
    this.download = null; // {size, parts, received}
    this.timer = null;
    this.statsTimer = null;
    this.firstFrameAt = 0; // performance.now() of the first decoded frame
    this.endedAt = 0; // ...and of the device's "ended"
  }

  text() {
    const where = `${this.position.toFixed(1)} / ${this.duration.toFixed(1)} s`;
    if (this.state === "error") return `Clip: ${this.message}`;
    if (this.state === "starting") return "Starting the clip…";
    if (this.downloading && this.download) return `Downloading… ${Math.round((100 * this.download.received) / Math.max(1, this.download.size))} %`;
    return `Clip of ${formatTime(history.clips.get(this.device)?.find((c) => c.id === this.clip)?.at)}: ${this.state === "ended" ? "ended" : this.paused ? "paused" : "playing"} (${where})`;
  }

  send(message) {
    const via = app.links.get(this.device)?.link;
    const link = via && via.connected ? via : app.main;
    if (!link) return;
    link.publish(inTopic(this.device), { v: PROTOCOL_VERSION, ...message }).catch((err) => this.fail(`could not send ${message.type}: ${err?.message || err}`));
  }

  start() {
    const live = app.sessions.get(this.device);
    if (live) live.detach($("dv-video"));
    $("dv-stage").dataset.mode = "clip";
    this.send({ type: "hello", session: this.id });
    this.timer = setTimeout(() => this.fail("the device did not answer"), REPLY_TIMEOUT_MS);
  }

  onMessage(msg) {
    if (msg.type === "welcome" && !this.pc) this.offer(Array.isArray(msg.ice_servers) ? msg.ice_servers : []);
    else if (msg.type === "answer" && this.pc && typeof msg.sdp === "string") {
      clearTimeout(this.timer);
      this.pc.setRemoteDescription({ type: "answer", sdp: msg.sdp }).catch((err) => this.fail(`bad answer: ${err.message}`));
    } else if (msg.type === "error") {
      const text = typeof msg.message === "string" ? msg.message : msg.code;
      this.fail(msg.code === "busy" ? `busy: ${text}` : text);
    } else if (msg.type === "bye") this.fail("the device ended the playback");
  }

  async offer(iceServers) {
    const pc = (this.pc = new RTCPeerConnection({ iceServers }));
    pc.addTransceiver("video", { direction: "recvonly" });
    pc.addTransceiver("audio", { direction: "recvonly" });
    const channel = (this.channel = pc.createDataChannel("playback"));
    channel.binaryType = "arraybuffer";
    channel.onopen = () => {
      this.channelOpen = true;
      renderHistory();
    };
    channel.onclose = () => {
      this.channelOpen = false;
    };
    channel.onmessage = (ev) => this.onChannel(ev.data);
    const stream = new MediaStream();
    pc.ontrack = (ev) => {
      stream.addTrack(ev.track);
      const video = $("dv-video");
      video.srcObject = stream;
      video.play().catch(() => {});
    };
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === "failed") this.fail("the connection to the device failed");
    };
    try {
      await pc.setLocalDescription(await pc.createOffer());
      await new Promise((resolve) => {
        if (pc.iceGatheringState === "complete") return resolve();
        const t = setTimeout(resolve, 1000);
        pc.addEventListener("icegatheringstatechange", () => pc.iceGatheringState === "complete" && (clearTimeout(t), resolve()));
      });
    } catch (err) {
      this.fail(`could not create the offer: ${err.message}`);
      return;
    }
    if (this.state === "stopped") return;
    this.send({ type: "offer", session: this.id, sdp: pc.localDescription.sdp, clip: this.clip });
    this.statsTimer = setInterval(() => this.readStats(), 500);
  }

  async readStats() {
    if (!this.pc) return;
    const report = await this.pc.getStats();
    report.forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "video") this.framesDecoded = s.framesDecoded || 0;
    });
    if (this.framesDecoded > 0 && this.state === "starting") {
      this.state = "playing";
      this.firstFrameAt = performance.now();
    }
    if (this.state === "playing" && !this.paused) this.position = Math.min(this.duration, this.position + 0.5);
    renderHistory();
  }

  onChannel(data) {
    if (typeof data !== "string") {
      if (!this.download) return;
      this.download.parts.push(data);
      this.download.received += data.byteLength;
      return;
    }
    let m;
    try {
      m = JSON.parse(data);
    } catch {
      return;
    }
    if (m.event === "state") {
      this.position = Number(m.position) || 0;
      this.duration = Number(m.duration) || this.duration;
      this.paused = m.paused === true;
      if (this.state === "ended" && !this.paused) this.state = "playing";
    } else if (m.event === "ended") {
      if (!this.endedAt) this.endedAt = performance.now();
      this.state = "ended";
      this.position = this.duration;
    } else if (m.event === "download" && Number.isFinite(m.size) && m.size <= MAX_DOWNLOAD) {
      this.download = { size: m.size, parts: [], received: 0 };
    } else if (m.event === "download-done" && this.download) {
      const blob = new Blob(this.download.parts, { type: "video/mp4" });
      const a = el("a", { href: URL.createObjectURL(blob), download: `${this.device}-${this.clip}.mp4` });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(a.href), 60000);
      this.download = null;
      this.downloading = false;
    } else if (m.event === "error") {
      toast(`${deviceName(this.device)}: ${typeof m.message === "string" ? m.message : "playback error"}`, "error", 8000);
      this.downloading = false;
    }
    renderHistory();
  }

  command(cmd) {
    if (this.channel && this.channelOpen) this.channel.send(JSON.stringify(cmd));
  }

  fail(message) {
    if (this.state === "stopped") return;
    this.state = "error";
    this.message = message;
    clearTimeout(this.timer);
    renderHistory();
  }

  stop() {
    if (this.state !== "stopped" && this.pc) this.send({ type: "bye", session: this.id, reason: "hangup" });
    this.state = "stopped";
    clearTimeout(this.timer);
    clearInterval(this.statsTimer);
    if (this.pc) this.pc.close();
    this.pc = null;
    if (history.playback === this) history.playback = null;
    const video = $("dv-video");
    video.srcObject = null;
    delete $("dv-stage").dataset.mode;
    if (app.route.view === "device" && app.route.device === this.device) sessionFor(this.device).attach(video);
    renderHistory();
  }
}

/** Messages on our `out` topic for the playback session; true when taken. */
export function onPlaybackMessage(device, msg) {
  const p = history.playback;
  if (!p || p.device !== device || msg.session !== p.id) return false;
  p.onMessage(msg);
  return true;
}

export function setupHistory() {
  $("dv-playback-live").addEventListener("click", backToLive);
  $("dv-playback-pause").addEventListener("click", () => {
    const p = history.playback;
    if (!p) return;
    if (p.state === "ended") p.command({ cmd: "seek", to: 0 });
    else p.command({ cmd: p.paused ? "play" : "pause" });
  });
  $("dv-playback-download").addEventListener("click", () => {
    const p = history.playback;
    if (!p || p.downloading) return;
    p.downloading = true;
    p.command({ cmd: "download" });
    renderHistory();
  });
  $("dv-record").addEventListener("click", () => {
    const device = app.route.device;
    if (device && ID_RE.test(device)) {
      sendAction(device, { type: "record" });
      toast(`${deviceName(device)}: recording a clip…`, "info", 4000);
    }
  });
}

/** For tests: what the history shows and what the playback does. */
export function historyForTests() {
  const p = history.playback;
  return {
    clips: Object.fromEntries([...history.clips].map(([d, list]) => [d, list.map((c) => ({ ...c }))])),
    playback: p ? { device: p.device, clip: p.clip, state: p.state, message: p.message, framesDecoded: p.framesDecoded, position: p.position, duration: p.duration, paused: p.paused, channelOpen: p.channelOpen, downloading: p.downloading, playedMs: p.firstFrameAt && p.endedAt ? Math.round(p.endedAt - p.firstFrameAt) : null } : null,
  };
}
