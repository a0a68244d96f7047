// One MQTT-over-WebSockets connection (mqtt.js, the global `mqtt` from vendor/mqtt.min.js).
//
// The dashboard opens one "main" link (statuses, events, call logs, snapshots, its
// own out topics) and, per device it holds sessions with, one small "device" link
// whose last will is `bye "*"` on that device's in topic: an MQTT connection has
// only one will, so a will per in topic needs a connection per device.

import { certificatePageUrl, randomHex } from "./settings.js";

/** A sentence for a refused CONNECT (MQTT 3.1.1 return codes and MQTT 5 reason codes). */
export function describeRefusal(code, signin) {
  const who = `viewer "${signin.viewer}"`;
  switch (code) {
    case 4:
    case 134:
      return `Wrong viewer id or password: the broker refused ${who}.`;
    case 5:
    case 135:
      // Mosquitto answers "not authorised" for a wrong password too.
      return `The broker refused ${who}: wrong viewer id or password, or this viewer is not authorised to connect.`;
    case 1:
    case 132:
      return "The broker does not speak this MQTT version.";
    case 2:
    case 133:
      return `The broker refused the client id of ${who}.`;
    case 3:
    case 136:
      return "The broker is unavailable right now; try again in a moment.";
    case 138:
      return `The broker has banned ${who}.`;
    default:
      return `The broker refused the connection (code ${code}).`;
  }
}

/** A sentence (and a certificate link for wss://) for a broker that could not be reached. */
export function describeUnreachable(brokerUrl) {
  const cert = certificatePageUrl(brokerUrl);
  let text =
    `Cannot reach the broker at ${brokerUrl}. Check the address, the port and the path ` +
    `(Mosquitto's WebSockets listener, often :8083 for ws:// and :8084 for wss://, path /mqtt), ` +
    `that the broker runs, and that this network can reach it.`;
  if (cert) {
    text +=
      " If the broker uses a self-signed or private certificate, the browser refuses it silently: " +
      "open the certificate page below in a new tab, accept the certificate (or install your CA), then sign in again.";
  }
  return { text, certUrl: cert };
}

export class Link {
  /**
   * @param {object} signin {broker_url, viewer, password}
   * @param {object} opts {tag, username, mqttVersion, will: {topic, payload}, onMessage(topic, bytes), onState(link)}
   */
  constructor(signin, opts) {
    this.signin = signin;
    this.opts = opts;
    this.state = "connecting"; // connecting | connected | offline | refused | ended
    this.everConnected = false;
    this.refusal = null; // {code, text}
    this.waiters = [];
    this.subscriptions = new Set();
    const mqttOpts = {
      protocolVersion: opts.mqttVersion || 5,
      clientId: `${signin.viewer}-${opts.tag}-${randomHex(4)}`, // one viewer may have several tabs
      username: opts.username || signin.viewer || undefined,
      password: signin.password || undefined,
      clean: true,
      keepalive: 30,
      reconnectPeriod: 2000,
      connectTimeout: 10000,
      resubscribe: true,
    };
    if (opts.will) mqttOpts.will = { topic: opts.will.topic, payload: opts.will.payload, qos: 1, retain: false };
    const client = window.mqtt.connect(signin.broker_url, mqttOpts);
    this.client = client;
    client.on("connect", () => {
      this.everConnected = true;
      this._setState("connected");
      const waiters = this.waiters;
      this.waiters = [];
      for (const w of waiters) w.resolve(this);
    });
    client.on("reconnect", () => this._setState("connecting"));
    client.on("offline", () => {
      if (this.state !== "refused" && this.state !== "ended") this._setState("offline");
    });
    client.on("close", () => {
      if (this.state === "connected") this._setState("offline");
    });
    client.on("error", (err) => {
      const code = typeof err?.code === "number" ? err.code : null;
      if (code !== null && err.message && err.message.startsWith("Connection refused")) {
        // mqtt.js stops reconnecting after a refused CONNECT.
        this.refusal = { code, text: describeRefusal(code, signin) };
        this._setState("refused");
        this._rejectWaiters(new Error(this.refusal.text));
      } else {
        console.warn(`peercam: broker link ${opts.tag}:`, err?.message || err);
      }
    });
    client.on("message", (topic, payload) => {
      try {
        opts.onMessage?.(topic, payload);
      } catch (err) {
        console.warn(`peercam: could not handle a message on ${topic}`, err);
      }
    });
  }

  get connected() {
    return this.state === "connected";
  }

  _setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.opts.onState?.(this);
  }

  _rejectWaiters(err) {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w.reject(err);
  }

  /** Resolves when connected (now or later); rejects when refused, ended or after timeoutMs. */
  ready(timeoutMs = 10000) {
    if (this.state === "connected") return Promise.resolve(this);
    if (this.state === "refused") return Promise.reject(new Error(this.refusal.text));
    if (this.state === "ended") return Promise.reject(new Error("the broker link was closed"));
    return new Promise((resolve, reject) => {
      const waiter = { resolve: (v) => { clearTimeout(timer); resolve(v); }, reject: (e) => { clearTimeout(timer); reject(e); } };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new Error("not connected to the broker"));
      }, timeoutMs);
      this.waiters.push(waiter);
    });
  }

  /** Publishes a JSON object with QoS 1; resolves when the broker acknowledged it. */
  publish(topic, message) {
    return new Promise((resolve, reject) => {
      if (this.state === "ended") {
        reject(new Error("the broker link was closed"));
        return;
      }
      this.client.publish(topic, JSON.stringify(message), { qos: 1 }, (err) => (err ? reject(err) : resolve()));
    });
  }

  subscribe(filters) {
    const list = Array.isArray(filters) ? filters : [filters];
    for (const f of list) this.subscriptions.add(f);
    return new Promise((resolve, reject) => {
      this.client.subscribe(list, { qos: 1 }, (err, granted) => (err ? reject(err) : resolve(granted || [])));
    });
  }

  unsubscribe(filters) {
    const list = Array.isArray(filters) ? filters : [filters];
    for (const f of list) this.subscriptions.delete(f);
    if (this.state === "ended") return;
    this.client.unsubscribe(list, () => {});
  }

  /** A clean close: DISCONNECT, so the broker drops our will. */
  end() {
    if (this.state === "ended") return;
    this._setState("ended");
    this._rejectWaiters(new Error("the broker link was closed"));
    this.client.end(false);
  }

  /**
   * Leaving the page: publish the last messages and DISCONNECT synchronously. mqtt.js
   * corks its stream and writes on a setTimeout(0) "nextTick", which never runs during
   * unload, so the bytes are flushed by hand (Writable.uncork). The messages' QoS 1
   * bookkeeping is dropped (public removeOutgoingMessage) because end() would otherwise
   * wait for their PUBACK; without a DISCONNECT the broker fires our last will.
   */
  endNow(lastMessages = []) {
    if (this.state === "ended") return;
    const client = this.client;
    try {
      if (client.connected) {
        for (const [topic, message] of lastMessages) {
          client.publish(topic, JSON.stringify(message), { qos: 1 }, () => {});
          const mid = client.getLastMessageId();
          if (mid) client.removeOutgoingMessage(mid);
        }
      }
      this._setState("ended");
      client.end(false);
      const stream = client.stream;
      for (let i = 0; i < 8 && stream && typeof stream.uncork === "function"; i++) stream.uncork();
    } catch (err) {
      console.warn("peercam: could not say bye (the broker sends our last will instead)", err);
    }
  }
}
