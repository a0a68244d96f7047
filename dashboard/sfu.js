// Watching through the device's SFU relay (PROTOCOL.md, "watching through an SFU
// relay"): when `welcome.relay` says so, the video comes from a Janus VideoRoom, not
// from the device. This module speaks just enough of Janus's WebSocket API
// (subprotocol "janus-protocol") to subscribe to one feed: create a session, attach
// the VideoRoom plugin, join as subscriber, answer Janus's offer, start.
//
// The device's status says which feed to watch (`status.relay.feed`); it changes
// whenever the device republishes (Janus restarted), and session.js then makes a new
// JanusSubscriber by itself. Nothing here is typed by a user.

const REQUEST_TIMEOUT_MS = 10000;
const KEEPALIVE_MS = 25000; // Janus drops sessions silent for 60 s

function transactionId() {
  const bytes = new Uint8Array(8);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export class JanusSubscriber {
  /**
   * @param {{url: string, room: number, feed: number, pin?: string, iceServers: object[],
   *   onTrack: (track: MediaStreamTrack) => void, onGone: (why: string) => void}} options
   */
  constructor(options) {
    this.url = options.url;
    this.room = options.room;
    this.feed = options.feed;
    this.pin = options.pin;
    this.iceServers = options.iceServers || [];
    this.onTrack = options.onTrack;
    this.onGone = options.onGone;
    this.ws = null;
    this.pc = null;
    this.session = null;
    this.handle = null;
    this.pending = new Map(); // transaction -> {resolve, reject, wantsEvent, timer}
    this.keepalive = null;
    this.closed = false;
  }

  /** Subscribe; resolves with the RTCPeerConnection once Janus has our answer. */
  async start() {
    await this._open();
    const created = await this._call({ janus: "create" });
    this.session = created.data.id;
    this.keepalive = setInterval(() => this._call({ janus: "keepalive" }).catch(() => {}), KEEPALIVE_MS);
    const attached = await this._call({ janus: "attach", plugin: "janus.plugin.videoroom" });
    this.handle = attached.data.id;
    const join = { request: "join", ptype: "subscriber", room: this.room, streams: [{ feed: this.feed }] };
    if (this.pin) join.pin = this.pin;
    const joined = await this._call({ janus: "message", body: join }, true);
    pluginError(joined, "join");
    if (!joined.jsep) throw new Error("Janus sent no offer for the feed");
    const pc = new RTCPeerConnection({ iceServers: this.iceServers });
    this.pc = pc;
    pc.ontrack = (ev) => {
      if (!this.closed) this.onTrack(ev.track);
    };
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === "failed") this._gone("the media connection to the relay failed");
    };
    await pc.setRemoteDescription(joined.jsep);
    await pc.setLocalDescription(await pc.createAnswer());
    // Janus takes the answer with all candidates or trickled ones; wait briefly so
    // the answer carries what the browser gathered (no trickle code needed).
    await gatheredOrTimeout(pc, 1000);
    const started = await this._call(
      { janus: "message", body: { request: "start", room: this.room }, jsep: pc.localDescription },
      true,
    );
    pluginError(started, "start");
    return pc;
  }

  _open() {
    return new Promise((resolve, reject) => {
      let ws;
      try {
        ws = new WebSocket(this.url, "janus-protocol");
      } catch (err) {
        reject(err);
        return;
      }
      this.ws = ws;
      const timer = setTimeout(() => reject(new Error(`no answer from the relay at ${this.url}`)), REQUEST_TIMEOUT_MS);
      ws.onopen = () => {
        clearTimeout(timer);
        resolve();
      };
      ws.onerror = () => {
        clearTimeout(timer);
        reject(new Error(`cannot reach the relay at ${this.url}`));
      };
      ws.onclose = () => this._gone("the relay closed the connection");
      ws.onmessage = (ev) => this._onMessage(ev.data);
    });
  }

  _onMessage(raw) {
    let msg;
    try {
      msg = JSON.parse(raw);
    } catch {
      return;
    }
    const entry = msg && this.pending.get(msg.transaction);
    if (entry) {
      if (msg.janus === "ack" && entry.wantsEvent) return; // the event follows
      this.pending.delete(msg.transaction);
      clearTimeout(entry.timer);
      if (msg.janus === "error") entry.reject(new Error(`Janus error ${msg.error?.code}: ${msg.error?.reason}`));
      else entry.resolve(msg);
      return;
    }
    if (msg && msg.janus === "hangup") this._gone(`the relay hung up (${msg.reason || "no reason"})`);
  }

  _call(request, wantsEvent = false) {
    return new Promise((resolve, reject) => {
      if (!this.ws || this.ws.readyState !== WebSocket.OPEN) {
        reject(new Error("the connection to the relay is closed"));
        return;
      }
      const transaction = transactionId();
      const message = { ...request, transaction };
      if (this.session !== null) message.session_id = this.session;
      if (this.handle !== null && request.janus === "message") message.handle_id = this.handle;
      const timer = setTimeout(() => {
        this.pending.delete(transaction);
        reject(new Error(`the relay did not answer ${request.janus} within ${REQUEST_TIMEOUT_MS / 1000} s`));
      }, REQUEST_TIMEOUT_MS);
      this.pending.set(transaction, { resolve, reject, wantsEvent, timer });
      this.ws.send(JSON.stringify(message));
    });
  }

  _gone(why) {
    if (this.closed) return;
    this.close();
    this.onGone(why);
  }

  /** Leave quietly (no onGone). */
  close() {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.keepalive);
    for (const entry of this.pending.values()) {
      clearTimeout(entry.timer);
      entry.reject(new Error("closed"));
    }
    this.pending.clear();
    if (this.ws) {
      this.ws.onclose = this.ws.onmessage = this.ws.onerror = null;
      try {
        if (this.ws.readyState === WebSocket.OPEN && this.session !== null) {
          this.ws.send(JSON.stringify({ janus: "destroy", session_id: this.session, transaction: transactionId() }));
        }
        this.ws.close();
      } catch {
        // already closing
      }
    }
    if (this.pc) {
      this.pc.ontrack = this.pc.onconnectionstatechange = null;
      this.pc.close();
    }
  }
}

function pluginError(reply, what) {
  const data = reply?.plugindata?.data;
  if (data && (data.error_code || data.error)) throw new Error(`Janus refused ${what}: ${data.error_code} ${data.error}`);
}

function gatheredOrTimeout(pc, ms) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", check);
      resolve();
    }
    function check() {
      if (pc.iceGatheringState === "complete") done();
    }
    pc.addEventListener("icegatheringstatechange", check);
  });
}
