// One device's live view in this tab: a receive-only WebRTC session (PROTOCOL.md v1),
// started when something on the page wants it, restarted by itself after failures,
// ended with `bye` when nothing wants it any more.
//
// Several things may want the same device at once (its tile, the large view, a
// ringing call, an answered call): they share one session and one MediaStream,
// shown in as many <video> elements as are attached.

import { cannotWatch, isCodecRefusal, noH264Text } from "./browser-support.js";
import { noPathAdvice } from "./ice-advice.js";
import { PROTOCOL_VERSION, randomHex } from "./settings.js";
import { JanusSubscriber } from "./sfu.js";
import { emptyStats, readReport } from "./stats.js";

const WELCOME_TIMEOUT_MS = 10000;
const ANSWER_TIMEOUT_MS = 15000;
const GATHER_MS = 500; // send the offer with what is gathered by then; the rest trickles
const GATHER_QUIET_MS = 40; // ...or once no new candidate came for this long
const STATS_INTERVAL_MS = 1000;
const STALL_MS = 8000; // no new frame for this long: the session is restarted
const FIRST_FRAME_MS = 20000; // answered but no frame for this long: restarted
const STOP_GRACE_MS = 1500; // a tile hidden this long ends its session (quick back-and-forth keeps it)
const HIDDEN_GRACE_MS = 10000; // a page in the background this long ends its sessions (not a call)
const FIRST_FRAME_POLL_MS = 100; // stats polling until the first frame (time to first frame)
const ICE_CACHE_MARGIN_S = 60; // reuse a welcome's ice_servers until this close to expiry
const BACKOFF_MS = [1000, 2000, 4000, 8000, 15000];
const RESTART_WAIT_MS = 15000; // after bye "shutdown": wait this long for the offline status

const BYE_TEXT = {
  hangup: "The device ended the session.",
  timeout: "The session timed out.",
  failed: "The connection to the device failed.",
  shutdown: "The device is restarting; the video resumes when it is back.",
  replaced: "This session was replaced by a newer one of the same viewer (another tab?).",
};

export function newSessionId() {
  return randomHex(16); // 32 hex characters, matches ^[A-Za-z0-9_-]{8,64}$
}

export class DeviceSession {
  /**
   * @param {string} device
   * @param {object} host the dashboard: {inTopic(d), deviceStatus(d), brokerConnected(),
   *   deviceLink(d) -> Promise<Link>, linkIdle(d), pageVisible(), iceCache: Map, changed(session)}
   */
  constructor(device, host) {
    this.device = device;
    this.host = host;
    this.reasons = new Set(); // "tile" | "view" | "ring" | "call"
    this.videos = new Set();
    this.state = "idle"; // idle | waiting | connecting | live | retrying | error | ended
    this.message = ""; // what the overlay says
    this.stats = emptyStats();
    this.id = null;
    this.pc = null;
    this.stream = null;
    this.call = null; // the call this session answered
    this.mic = null; // our microphone track (talkback)
    this.talkback = false; // the device said it plays talkback
    this.quality = "auto"; // PROTOCOL.md v1.1 quality: auto | high | low
    this.attempts = 0;
    this.blocked = false; // an error that retrying cannot fix: wait for the user
    this.busy = false; // refused as busy: retry when the status shows a free slot
    this.waitRestart = null; // after bye "shutdown": until the device is seen offline
    this.timers = {};
    this.prevSample = null;
    this.lastFrameAt = 0;
    this.startedAt = 0;
    this.firstFrameMs = null; // time from start to the first decoded frame, last session
    this.timeline = {}; // ms from start: offer, answer, firstFrame (last session)
    this.liveSince = 0;
    this.run = 0; // increases with every session start: stale callbacks compare it
    this.relay = null; // welcome.relay: this session watches through the device's SFU
    this.sfu = null; // the JanusSubscriber while subscribed
  }

  // --- what the page wants -----------------------------------------------------------

  want(reason, on) {
    const had = this.reasons.has(reason);
    if (on === had) return;
    if (on) this.reasons.add(reason);
    else this.reasons.delete(reason);
    this.evaluate();
  }

  get wanted() {
    return this.reasons.size > 0 && (this.host.pageVisible() || this.reasons.has("call"));
  }

  get running() {
    return this.id !== null;
  }

  attach(video) {
    this.videos.add(video);
    if (this.stream && video.srcObject !== this.stream) {
      video.srcObject = this.stream;
      video.play().catch(() => {});
    }
  }

  detach(video) {
    this.videos.delete(video);
    if (video.srcObject === this.stream) video.srcObject = null;
  }

  /** Start, stop or wait, from the current wants, device status and broker state. */
  evaluate() {
    const status = this.host.deviceStatus(this.device);
    const online = status?.state === "online";
    if (!this.wanted) {
      if (this.running && !this.timers.stop) {
        // Nothing shows the device any more (or the whole page is in the background).
        const grace = this.reasons.size > 0 ? HIDDEN_GRACE_MS : STOP_GRACE_MS;
        this.timers.stop = setTimeout(() => {
          delete this.timers.stop;
          if (!this.wanted) this.stop({ bye: true, state: "idle" });
        }, grace);
      } else if (!this.running) {
        this._clear("retry");
        this._setState("idle", "");
      }
      return;
    }
    this._clear("stop");
    if (!online) {
      if (this.call !== null) {
        this._dropCall(); // a device that went offline ended the call
        this.reasons.delete("call");
      }
      if (this.running) this.stop({ bye: false, state: "waiting", message: "The device is offline; the video resumes when it is back." });
      else this._setState("waiting", status ? "The device is offline; waiting for it…" : "Waiting for the device…");
      this._clear("retry");
      this.attempts = 0;
      this.blocked = false; // a restarted device gets a fresh try
      return;
    }
    if (this.running || this.timers.retry) return;
    if (!this.host.brokerConnected()) {
      this._setState("waiting", "Waiting for the broker…");
      return;
    }
    if (this.blocked || this.waitRestart) return;
    if (this.busy) {
      if (Number.isInteger(status.viewers) && Number.isInteger(status.max_viewers) && status.viewers >= status.max_viewers) return;
      this.busy = false;
    }
    this.start();
  }

  /** The device's status changed (the dashboard calls this after storing it). */
  statusChanged(previous, status) {
    if (status.state !== "online" || previous?.state !== "online") this._stopWaitingForRestart();
    this.evaluate();
    if (this.relay && this.running) this._followRelay(this.run); // the feed may have changed
  }

  _stopWaitingForRestart() {
    if (this.waitRestart) {
      clearTimeout(this.waitRestart);
      this.waitRestart = null;
    }
  }

  /** The user asked for a new session (Reconnect). */
  reconnect() {
    this._stopWaitingForRestart();
    this.blocked = false;
    this.busy = false;
    this.attempts = 0;
    this._clear("retry");
    if (this.running) this.stop({ bye: true, state: "connecting" });
    this.evaluate();
  }

  /** Answer a call: a new session whose offer carries `call` and our microphone. */
  answer(call, micTrack) {
    this._stopWaitingForRestart();
    this.call = call;
    this.mic = micTrack;
    this.reasons.add("call");
    this.blocked = false;
    this.attempts = 0;
    this._clear("retry");
    if (this.running) this.stop({ bye: true, state: "connecting" });
    this.evaluate();
  }

  /** Leave the call; keeps watching if something still wants the device. */
  hangUp() {
    const wasCall = this.call !== null;
    this._dropCall();
    this.reasons.delete("call");
    if (wasCall && this.running) this.stop({ bye: true, state: "connecting" });
    this.evaluate();
  }

  _dropCall() {
    this.call = null;
    if (this.mic) {
      this.mic.stop();
      this.mic = null;
    }
  }

  // --- one session ---------------------------------------------------------------------

  async start() {
    this._clear("retry");
    const why = cannotWatch();
    if (why) {
      this.blocked = true; // nothing a retry can change
      this.stop({ bye: false, state: "error", message: why });
      return;
    }
    this.run += 1;
    const run = this.run;
    this.id = newSessionId();
    this.pc = null;
    this.offerSent = false;
    this.trickled = false;
    this.offerEarly = false;
    this.stats = emptyStats();
    this.prevSample = null;
    this.lastFrameAt = 0;
    this.gotFirstFrame = false;
    this.startedAt = performance.now();
    this.timeline = {};
    this.stream = new MediaStream();
    for (const v of this.videos) v.srcObject = this.stream;
    this._setState("connecting", this.call ? "Answering the call…" : "Connecting…");
    let link;
    try {
      link = await this.host.deviceLink(this.device);
    } catch (err) {
      if (run === this.run) this._retry(`Cannot reach the broker: ${err.message}`);
      return;
    }
    if (run !== this.run) return;
    const cached = this.host.iceCache.get(this.device);
    if (cached && !cached.relay && cached.expires - Date.now() / 1000 > ICE_CACHE_MARGIN_S) {
      // We hold valid ice_servers: skip hello and offer at once (PROTOCOL.md allows it).
      this.talkback = cached.talkback;
      this._offer(run, cached.iceServers);
      return;
    }
    this._send({ type: "hello", session: this.id });
    this.timers.welcome = setTimeout(() => {
      if (run === this.run) this._retry(`The device did not answer within ${WELCOME_TIMEOUT_MS / 1000} s (is viewer allowed to talk to it?).`);
    }, WELCOME_TIMEOUT_MS);
  }

  _send(message) {
    const id = this.id;
    const link = this.host.linkOf(this.device);
    if (!link) return;
    link.publish(this.host.inTopic(this.device), { v: PROTOCOL_VERSION, ...message }).catch((err) => {
      if (this.id !== id) return;
      if (err && (err.code === 135 || err.code === 5)) {
        // MQTT 5: the broker refused to deliver what we wrote to this device.
        this.blocked = true;
        this.stop({ bye: false, state: "error", message: `Not authorised: the broker does not let this viewer write to ${this.host.inTopic(this.device)}. Ask for access to this device.` });
      } else {
        console.warn("peercam: publish failed", err?.message || err);
      }
    });
  }

  _onWelcome(msg) {
    this._clear("welcome");
    const iceServers = Array.isArray(msg.ice_servers) ? msg.ice_servers : [];
    const ttl = Number.isFinite(msg.ice_ttl) ? msg.ice_ttl : 0;
    this.talkback = msg.talkback === true;
    const relay = this.call === null && msg.relay && msg.relay.mode === "janus" ? msg.relay : null;
    if (ttl > 0) this.host.iceCache.set(this.device, { iceServers, expires: Date.now() / 1000 + ttl, talkback: this.talkback, relay: relay !== null });
    if (relay) this._viaRelay(this.run, relay, iceServers);
    else this._offer(this.run, iceServers);
  }

  // --- through the device's SFU relay (welcome.relay) ------------------------------------

  _viaRelay(run, relay, iceServers) {
    this.relay = { ...relay, iceServers };
    this.stats.via = "sfu";
    const renew = Number.isFinite(relay.renew) && relay.renew > 0 ? relay.renew : 30;
    this._clear("renew");
    // Our lease at the device: it publishes to the SFU while relayed viewers exist.
    this.timers.renew = setInterval(() => {
      if (run === this.run) this._send({ type: "hello", session: this.id });
    }, renew * 1000);
    this._followRelay(run);
  }

  /** Subscribe to the feed status.relay names (again, when it changed or the relay dropped us). */
  _followRelay(run) {
    if (run !== this.run || !this.relay) return;
    const relay = this.host.deviceStatus(this.device)?.relay;
    const live = relay && typeof relay === "object" ? relay : null; // retained data: check types
    const feed = Number.isSafeInteger(live ? live.feed : this.relay.feed) ? (live ? live.feed : this.relay.feed) : null;
    if (this.sfu && this.sfu.feed === feed) return;
    if (this.sfu) {
      this.sfu.close();
      this.sfu = null;
      this.pc = null;
    }
    if (!feed) {
      this._setState("connecting", live?.state === "fault" ? "The relay is down; the video resumes when the device has republished…" : "Waiting for the device to publish to its relay…");
      return;
    }
    const url = typeof live?.url === "string" ? live.url : this.relay.url;
    const room = Number.isSafeInteger(live?.room) ? live.room : this.relay.room;
    const sub = new JanusSubscriber({
      url,
      room,
      feed,
      pin: live?.pin ?? this.relay.pin,
      iceServers: this.relay.iceServers,
      onTrack: (track) => {
        if (run !== this.run || this.sfu !== sub) return;
        for (const old of this.stream.getTracks().filter((t) => t.kind === track.kind)) this.stream.removeTrack(old);
        this.stream.addTrack(track);
        for (const v of this.videos) {
          if (v.srcObject !== this.stream) v.srcObject = this.stream;
          v.play().catch(() => {});
        }
      },
      onGone: (why) => {
        if (run !== this.run || this.sfu !== sub) return;
        this.sfu = null;
        this.pc = null;
        this._setState("connecting", `Through the relay: ${why}; resubscribing…`);
        this._clear("relay");
        this.timers.relay = setTimeout(() => this._followRelay(run), 2000);
      },
    });
    this.sfu = sub;
    this.stats.feed = feed;
    this.timeline.subscribe = Math.round(performance.now() - this.startedAt);
    this._setState("connecting", "Subscribing through the relay (SFU)…");
    sub.start().then(
      (pc) => {
        if (run !== this.run || this.sfu !== sub) return;
        this.pc = pc;
        this.answeredAt = performance.now();
        this.timeline.answer = Math.round(this.answeredAt - this.startedAt);
        this.gotFirstFrame = false;
        this.prevSample = null;
        this._clear("stats");
        this.timers.stats = setInterval(() => this._poll(run), FIRST_FRAME_POLL_MS);
      },
      (err) => {
        if (run !== this.run || this.sfu !== sub) return;
        sub.close();
        this.sfu = null;
        this._setState("connecting", `Through the relay: ${err.message}; retrying…`);
        this._clear("relay");
        this.timers.relay = setTimeout(() => this._followRelay(run), 2000);
      },
    );
  }

  async _offer(run, iceServers) {
    let pc;
    try {
      pc = new RTCPeerConnection({ iceServers });
    } catch (err) {
      this.host.iceCache.delete(this.device); // Reconnect asks the device again (hello)
      this.blocked = true;
      this.stop({ bye: true, state: "error", message: `This browser cannot use the device's ICE servers: ${err.message}` });
      return;
    }
    this.pc = pc;
    pc.addTransceiver("video", { direction: "recvonly" });
    const status = this.host.deviceStatus(this.device);
    if (this.call !== null && this.mic) {
      pc.addTransceiver(this.mic, { direction: "sendrecv" });
    } else if (this.call !== null || (status && status.audio)) {
      pc.addTransceiver("audio", { direction: "recvonly" });
    }
    pc.ontrack = (ev) => {
      if (run !== this.run) return;
      this.stream.addTrack(ev.track);
      for (const v of this.videos) {
        if (v.srcObject !== this.stream) v.srcObject = this.stream;
        v.play().catch(() => {});
      }
    };
    pc.onconnectionstatechange = () => {
      if (run !== this.run) return;
      const st = pc.connectionState;
      if (st === "failed") this._retry(noPathAdvice(pc.remoteDescription?.sdp, location.hostname));
      else if (st === "disconnected") this._setState(this.state === "live" ? "connecting" : this.state, "Connection interrupted, waiting…");
    };
    pc.onicecandidate = (ev) => {
      if (run !== this.run || !this.offerSent) return; // before the offer: already in its SDP
      const c = ev.candidate;
      if (c && c.candidate) {
        this.trickled = true;
        this._send({ type: "candidate", session: this.id, candidate: { candidate: c.candidate, sdpMid: c.sdpMid, sdpMLineIndex: c.sdpMLineIndex } });
      } else if (!c && (this.trickled || this.offerEarly)) {
        this._send({ type: "candidate", session: this.id, candidate: null });
      }
    };
    try {
      await pc.setLocalDescription(await pc.createOffer());
      await gathered(pc, GATHER_MS);
    } catch (err) {
      if (run === this.run) {
        this.blocked = true;
        this.stop({ bye: true, state: "error", message: `Could not create the offer: ${err.message}` });
      }
      return;
    }
    if (run !== this.run) return;
    this.offerSent = true;
    this.offerEarly = pc.iceGatheringState !== "complete"; // end-of-candidates follows
    const offer = { type: "offer", session: this.id, sdp: pc.localDescription.sdp };
    if (this.call !== null) offer.call = this.call;
    offer.quality = this.quality; // v1.1; a v1 device ignores the field
    this._send(offer);
    this.timeline.offer = Math.round(performance.now() - this.startedAt);
    this._setState("connecting", this.call ? "Answering the call…" : "Connecting the video…");
    this.timers.answer = setTimeout(() => {
      if (run === this.run) this._retry(`The device did not answer the offer within ${ANSWER_TIMEOUT_MS / 1000} s.`);
    }, ANSWER_TIMEOUT_MS);
  }

  async _onAnswer(msg) {
    const run = this.run;
    // Only an answer to our pending offer: QoS 1 may deliver the same answer twice.
    if (!this.pc || !this.offerSent || this.pc.signalingState !== "have-local-offer") return;
    this._clear("answer");
    try {
      await this.pc.setRemoteDescription({ type: "answer", sdp: msg.sdp });
    } catch (err) {
      if (run === this.run) {
        this.blocked = true;
        this.stop({ bye: true, state: "error", message: `The device's answer was not usable: ${err.message}` });
      }
      return;
    }
    if (run !== this.run) return;
    this.answeredAt = performance.now();
    this.timeline.answer = Math.round(this.answeredAt - this.startedAt);
    this.message = "Waiting for the first frame…";
    this.host.changed(this);
    this._clear("stats");
    this.timers.stats = setInterval(() => this._poll(run), FIRST_FRAME_POLL_MS);
    this._poll(run);
  }

  async _poll(run) {
    const pc = this.pc;
    if (run !== this.run || !pc) return;
    let report;
    try {
      report = await pc.getStats();
    } catch {
      return;
    }
    if (run !== this.run) return;
    const before = this.stats.framesDecoded;
    this.prevSample = readReport(report, this.stats, this.prevSample);
    const now = performance.now();
    if (this.stats.framesDecoded > before) {
      this.lastFrameAt = now;
      if (!this.gotFirstFrame) {
        this.gotFirstFrame = true;
        this.firstFrameMs = Math.round(now - this.startedAt);
        this.timeline.firstFrame = this.firstFrameMs;
        this._clear("stats");
        this.timers.stats = setInterval(() => this._poll(run), STATS_INTERVAL_MS);
      }
      if (this.state !== "live") {
        this.liveSince = now;
        this._setState("live", "");
      }
      if (now - this.liveSince > 10000) this.attempts = 0; // healthy for a while: reset backoff
    } else if (this.gotFirstFrame && now - this.lastFrameAt > STALL_MS) {
      // live, or "connecting" after an ICE "disconnected" blip: the same grace
      this._retry(`No video for ${STALL_MS / 1000} s; reconnecting…`);
      return;
    } else if (!this.gotFirstFrame && this.answeredAt && now - this.answeredAt > FIRST_FRAME_MS) {
      this._retry(`No video within ${FIRST_FRAME_MS / 1000} s of the answer; reconnecting…`);
      return;
    }
    this.host.changed(this);
  }

  async _onCandidate(msg) {
    if (!this.pc) return;
    try {
      await this.pc.addIceCandidate(msg.candidate || null);
    } catch (err) {
      console.warn("peercam: remote candidate refused", err?.message || err);
    }
  }

  /** The viewer picks a stream (v1.1 `quality`): now if the session runs, else with the offer. */
  setQuality(quality) {
    this.quality = quality;
    if (this.id !== null && this.offerSent) this._send({ type: "quality", session: this.id, quality });
  }

  /** A message from the device on our out topic that names this session. */
  onMessage(msg) {
    switch (msg.type) {
      case "welcome":
        if (!this.pc && this.timers.welcome) this._onWelcome(msg);
        break;
      case "answer":
        if (typeof msg.sdp === "string") this._onAnswer(msg);
        break;
      case "candidate":
        this._onCandidate(msg);
        break;
      case "bye":
        this._onBye(typeof msg.reason === "string" ? msg.reason : "hangup");
        break;
      case "error":
        this._onError(msg);
        break;
      case "stream": // v1.1: which of the device's two streams this session gets
        this.stats.stream = {
          stream: msg.stream === "sub" ? "sub" : "main",
          quality: typeof msg.quality === "string" ? msg.quality : this.quality,
          substream: msg.substream !== false,
          width: Number.isFinite(msg.width) ? msg.width : null,
          height: Number.isFinite(msg.height) ? msg.height : null,
        };
        this.host.changed(this);
        break;
      default:
        break; // unknown types from a newer device are ignored
    }
  }

  _onBye(reason) {
    let text = BYE_TEXT[reason] || `The device ended the session (${reason}).`;
    // The device gave up before any path was found (its connect timeout): say why.
    const pc = this.pc;
    if (reason === "failed" && pc?.remoteDescription && pc.connectionState !== "connected") {
      text = noPathAdvice(pc.remoteDescription.sdp, location.hostname);
    }
    const wasCall = this.call !== null;
    if (wasCall) {
      this._dropCall();
      this.reasons.delete("call");
    }
    if (reason === "shutdown") {
      this.stop({ bye: false, state: "waiting", message: text });
      this.waitRestart = setTimeout(() => {
        this.waitRestart = null;
        this.evaluate();
      }, RESTART_WAIT_MS);
    } else if (reason === "failed" || reason === "timeout") {
      this.stop({ bye: false, state: "retrying", message: text });
      this._scheduleRetry(text);
    } else if (wasCall) {
      // The call is over; keep watching if the page still shows the device.
      this.stop({ bye: false, state: "connecting", message: "The call ended." });
      this.evaluate();
    } else {
      this.blocked = true; // hangup or replaced: do not fight it; Reconnect starts again
      this.stop({ bye: false, state: "ended", message: text });
    }
  }

  _onError(msg) {
    const code = typeof msg.code === "string" ? msg.code : "error";
    const text = typeof msg.message === "string" && msg.message ? msg.message : code;
    if (code === "busy" && msg.relay && msg.relay.mode === "janus" && this.call === null && this.id !== null) {
      // Beyond the device's peer-to-peer viewers: say hello (it takes our lease), then
      // subscribe from its SFU as the welcome says.
      if (this.pc) {
        this.pc.ontrack = this.pc.onicecandidate = this.pc.onconnectionstatechange = null;
        this.pc.close();
        this.pc = null;
      }
      this._clear("answer");
      const run = this.run;
      this._send({ type: "hello", session: this.id });
      this.timers.welcome = setTimeout(() => {
        if (run === this.run) this._retry(`The device did not answer within ${WELCOME_TIMEOUT_MS / 1000} s.`);
      }, WELCOME_TIMEOUT_MS);
    } else if (code === "busy") {
      this.busy = true;
      this.stop({ bye: false, state: "error", message: `The device is busy: ${text}. Trying again when a viewer leaves…` });
      this.timers.retry = setTimeout(() => {
        delete this.timers.retry;
        this.evaluate();
      }, 3000);
    } else if (code === "rate-limited" || code === "internal" || code === "unknown-session") {
      this.stop({ bye: true, state: "retrying", message: `The device refused: ${text} (${code}).` });
      this._scheduleRetry(text);
    } else if (isCodecRefusal(code, text)) {
      this.blocked = true;
      this.stop({ bye: true, state: "error", message: noH264Text() });
    } else {
      this.blocked = true;
      this.stop({ bye: true, state: "error", message: `The device refused: ${text} (${code}).` });
    }
  }

  _retry(text) {
    this.host.iceCache.delete(this.device); // ask again: the device may have restarted
    this.stop({ bye: true, state: "retrying", message: text });
    this._scheduleRetry(text);
  }

  _scheduleRetry(text) {
    this._clear("retry");
    const delay = BACKOFF_MS[Math.min(this.attempts, BACKOFF_MS.length - 1)];
    this.attempts += 1;
    this._setState("retrying", `${text} Retrying in ${Math.round(delay / 1000)} s…`);
    this.timers.retry = setTimeout(() => {
      delete this.timers.retry;
      this.evaluate();
    }, delay);
  }

  /** End the current session (bye to the device unless it is gone). */
  stop({ bye = true, state = "idle", message = "" } = {}) {
    const id = this.id;
    this.run += 1;
    for (const name of ["welcome", "answer", "stats", "stop", "renew", "relay"]) this._clear(name);
    if (id !== null && bye) this._send({ type: "bye", session: id, reason: "hangup" });
    if (this.sfu) {
      this.sfu.close();
      this.sfu = null;
      if (this.pc) this.pc = null; // the subscriber closed its own peer connection
    }
    this.relay = null;
    if (this.pc) {
      this.pc.ontrack = this.pc.onicecandidate = this.pc.onconnectionstatechange = null;
      this.pc.close();
    }
    this.pc = null;
    this.id = null;
    this.answeredAt = 0;
    this.liveSince = 0;
    if (this.stream) {
      for (const t of this.stream.getTracks()) t.stop();
    }
    this.stream = null;
    for (const v of this.videos) v.srcObject = null;
    this._setState(state, message);
    this.host.linkIdle(this.device);
  }

  _clear(name) {
    const t = this.timers[name];
    if (t !== undefined) {
      clearTimeout(t);
      clearInterval(t);
      delete this.timers[name];
    }
  }

  _setState(state, message) {
    this.state = state;
    if (message !== undefined) this.message = message;
    this.host.changed(this);
  }

  /** Signed out: no timers, no peer connection, no microphone, no videos (bye already sent). */
  dispose() {
    this.reasons.clear();
    for (const name of Object.keys(this.timers)) this._clear(name);
    clearTimeout(this.waitRestart);
    this.waitRestart = null;
    this.run += 1;
    if (this.sfu) {
      this.sfu.close();
      this.sfu = null;
      this.pc = null;
    }
    this.relay = null;
    if (this.pc) {
      this.pc.ontrack = this.pc.onicecandidate = this.pc.onconnectionstatechange = null;
      this.pc.close();
    }
    this.pc = null;
    this.id = null;
    this._dropCall();
    for (const v of this.videos) v.srcObject = null;
    this.videos.clear();
    this.stream = null;
  }

  /** Closing the page: the bye to send (the dashboard sends it synchronously). */
  byeMessage() {
    return this.id === null ? null : { v: PROTOCOL_VERSION, type: "bye", session: this.id, reason: "hangup" };
  }

  /** The microphone on or off (toggle, and push-to-talk while held). */
  setMicEnabled(on) {
    if (this.mic) this.mic.enabled = on;
  }
}

/**
 * Until ICE gathering is complete, or quiet for GATHER_QUIET_MS after a candidate, or
 * timeoutMs: Chromium has its host candidates within ~10 ms but reports "complete"
 * only ~130 ms later. Whatever comes after the offer is trickled.
 */
function gathered(pc, timeoutMs) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    let quiet = null;
    const done = () => {
      clearTimeout(timer);
      clearTimeout(quiet);
      pc.removeEventListener("icegatheringstatechange", check);
      pc.removeEventListener("icecandidate", candidate);
      resolve();
    };
    const check = () => {
      if (pc.iceGatheringState === "complete") done();
    };
    const candidate = (ev) => {
      if (!ev.candidate) return;
      clearTimeout(quiet);
      quiet = setTimeout(done, GATHER_QUIET_MS);
    };
    const timer = setTimeout(done, timeoutMs);
    pc.addEventListener("icegatheringstatechange", check);
    pc.addEventListener("icecandidate", candidate);
  });
}
