// peercam benchmark viewer: PROTOCOL.md v1 over MQTT/WebSockets, one receive-only
// session at a time, time to first frame and glass-to-glass latency.
//
// Driven by bench/chromium.py through window.bench:
//   await bench.connect()          MQTT connect (last will bye "*"), subscribe
//   await bench.watch()            hello -> welcome -> offer -> answer -> first frame
//                                  resolves {helloMs, offerMs, gatherMs}
//   bench.takeLatency()            capture->display samples since the last call
//   await bench.bye()              end the session
// The capture time is read from the barcode peercam stamps into the picture
// (device/sources/timecode.py: same layout, same CRC), drawn to a canvas.
"use strict";

const CELLS = 64;
const DATA_BITS = 48;
const START = [1, 0, 1, 1];
const END = [1, 1, 0, 1];
const MODULUS = 2 ** 48;

function crc8(bytes) {
  let crc = 0;
  for (const byte of bytes) {
    crc ^= byte;
    for (let i = 0; i < 8; i++) crc = crc & 0x80 ? ((crc << 1) ^ 0x07) & 0xff : (crc << 1) & 0xff;
  }
  return crc;
}

function layout(width, height) {
  const cell = Math.floor(width / CELLS);
  if (cell < 4 || height < 4 * cell) return null;
  const quiet = Math.max(2, Math.floor(cell / 4));
  return { cell, x0: Math.floor((width - CELLS * cell) / 2), y0: height - quiet - cell };
}

// Read the code from RGBA pixels of the code's row of cells (``cell`` rows, full width).
function readBand(rgba, width, lay) {
  const lo = Math.floor(lay.cell / 4);
  const hi = lay.cell - lo;
  const bits = [];
  for (let c = 0; c < CELLS; c++) {
    let sum = 0;
    let n = 0;
    for (let y = lo; y < hi; y++) {
      for (let x = lay.x0 + c * lay.cell + lo; x < lay.x0 + c * lay.cell + hi; x++) {
        const i = (y * width + x) * 4;
        sum += 0.299 * rgba[i] + 0.587 * rgba[i + 1] + 0.114 * rgba[i + 2];
        n++;
      }
    }
    bits.push(sum / n > 127.5 ? 1 : 0);
  }
  for (let i = 0; i < 4; i++) {
    if (bits[i] !== START[i] || bits[CELLS - 4 + i] !== END[i]) return null;
  }
  const bytes = [];
  for (let b = 0; b < 7; b++) {
    let v = 0;
    for (let i = 0; i < 8; i++) v = v * 2 + bits[4 + b * 8 + i];
    bytes.push(v);
  }
  if (crc8(bytes.slice(0, 6)) !== bytes[6]) return null;
  let value = 0;
  for (let b = 0; b < 6; b++) value = value * 256 + bytes[b];
  return value;
}

function unwrap(value, referenceUs) {
  const base = referenceUs - (referenceUs % MODULUS) + value;
  let best = base;
  for (const t of [base - MODULUS, base + MODULUS]) {
    if (Math.abs(t - referenceUs) < Math.abs(best - referenceUs)) best = t;
  }
  return best;
}

const epochMs = (t) => performance.timeOrigin + t; // a DOMHighResTimeStamp as epoch ms

const params = new URLSearchParams(location.search);
const prefix = params.get("prefix") || "peercam";
const device = params.get("device");
const viewerId = params.get("viewer");
const inTopic = `${prefix}/${device}/in/${viewerId}`;
const outTopic = `${prefix}/${device}/out/${viewerId}`;

const bench = {
  state: "init",
  errors: [],
  latency: [], // {g2g, network} ms per displayed frame
  unreadable: 0,
  frames: 0,
  client: null,
  session: null,
  waiters: {},
  readBand,
  layout,
  unwrap,
};
window.bench = bench;

function send(msg) {
  bench.client.publish(inTopic, JSON.stringify({ v: 1, ...msg }), { qos: 1 });
}

function waitFor(type, sid, timeoutMs) {
  return new Promise((resolve, reject) => {
    const key = `${type}/${sid}`;
    const timer = setTimeout(() => reject(new Error(`no ${type} in ${timeoutMs} ms`)), timeoutMs);
    bench.waiters[key] = (msg) => {
      clearTimeout(timer);
      resolve(msg);
    };
  });
}

bench.connect = function () {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(params.get("broker"), {
      clientId: viewerId,
      username: viewerId,
      clean: true,
      reconnectPeriod: 0,
      will: { topic: inTopic, payload: JSON.stringify({ v: 1, type: "bye", session: "*" }), qos: 1 },
    });
    bench.client = client;
    client.on("message", (topic, payload) => {
      const msg = JSON.parse(payload.toString());
      if (msg.type === "error") bench.errors.push(msg);
      const waiter = bench.waiters[`${msg.type}/${msg.session}`];
      if (waiter) {
        delete bench.waiters[`${msg.type}/${msg.session}`];
        waiter(msg);
      }
    });
    client.on("error", (err) => reject(err));
    client.on("close", () => {
      if (bench.state !== "connected") reject(new Error("MQTT connection closed"));
    });
    client.on("connect", () => {
      client.subscribe(outTopic, { qos: 1 }, (err) => {
        if (err) reject(err);
        else {
          bench.state = "connected";
          resolve();
        }
      });
    });
  });
};

function waitGathering(pc, timeoutMs) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, timeoutMs);
    pc.addEventListener("icegatheringstatechange", () => {
      if (pc.iceGatheringState === "complete") {
        clearTimeout(timer);
        resolve();
      }
    });
  });
}

function onFrame(session, video, canvas) {
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  const callback = (now, meta) => {
    if (bench.session !== session) return;
    bench.frames++;
    if (session.firstFrameAt === null) {
      session.firstFrameAt = now;
      session.resolveFirst();
    }
    const lay = layout(meta.width, meta.height);
    if (lay) {
      if (canvas.width !== meta.width || canvas.height !== lay.cell) {
        canvas.width = meta.width;
        canvas.height = lay.cell;
      }
      ctx.drawImage(video, 0, lay.y0, meta.width, lay.cell, 0, 0, meta.width, lay.cell);
      const value = readBand(ctx.getImageData(0, 0, meta.width, lay.cell).data, meta.width, lay);
      if (value === null) {
        bench.unreadable++;
      } else {
        const shown = epochMs(meta.expectedDisplayTime);
        const captured = unwrap(value, shown * 1000) / 1000;
        const sample = { g2g: shown - captured };
        if (meta.receiveTime !== undefined) sample.network = epochMs(meta.receiveTime) - captured;
        bench.latency.push(sample);
      }
    }
    video.requestVideoFrameCallback(callback);
  };
  video.requestVideoFrameCallback(callback);
}

bench.watch = async function () {
  const sid = `b${Math.random().toString(36).slice(2, 12)}`;
  const video = document.getElementById("video");
  const canvas = document.getElementById("band");
  const session = { id: sid, firstFrameAt: null, pc: null };
  const first = new Promise((resolve) => (session.resolveFirst = resolve));
  bench.session = session;
  const helloAt = performance.now();
  send({ type: "hello", session: sid });
  const welcome = await waitFor("welcome", sid, 10000);
  const welcomeAt = performance.now();
  const pc = new RTCPeerConnection({ iceServers: welcome.ice_servers || [] });
  const trickle = params.get("trickle") === "1";
  // Trickle (?trickle=1): the offer goes out at once, candidates follow it (held
  // back until the offer is sent, so the device never sees one first).
  const held = [];
  let offerSent = false;
  const sendCandidate = (c) => send({ type: "candidate", session: sid, candidate: c });
  if (trickle) {
    pc.onicecandidate = (ev) => {
      const c = ev.candidate
        ? {
            candidate: ev.candidate.candidate,
            sdpMid: ev.candidate.sdpMid,
            sdpMLineIndex: ev.candidate.sdpMLineIndex,
          }
        : null;
      if (offerSent) sendCandidate(c);
      else held.push(c);
    };
  }
  pc.addTransceiver("video", { direction: "recvonly" });
  pc.ontrack = (ev) => {
    video.srcObject = ev.streams[0] || new MediaStream([ev.track]);
    onFrame(session, video, canvas);
  };
  const gatherStart = performance.now();
  await pc.setLocalDescription(await pc.createOffer());
  if (!trickle) await waitGathering(pc, 2000);
  const offerAt = performance.now();
  send({ type: "offer", session: sid, sdp: pc.localDescription.sdp });
  offerSent = true;
  held.forEach(sendCandidate);
  const answer = await waitFor("answer", sid, 15000);
  const answerAt = performance.now();
  await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
  await Promise.race([
    first,
    new Promise((_, reject) => setTimeout(() => reject(new Error("no frame in 15 s")), 15000)),
  ]);
  return {
    helloMs: session.firstFrameAt - helloAt,
    offerMs: session.firstFrameAt - offerAt,
    gatherMs: offerAt - gatherStart,
    welcomeMs: welcomeAt - helloAt,
    answerMs: answerAt - offerAt,
  };
};

bench.takeLatency = function () {
  const out = { samples: bench.latency, unreadable: bench.unreadable, frames: bench.frames };
  bench.latency = [];
  bench.unreadable = 0;
  bench.frames = 0;
  return out;
};

bench.bye = async function () {
  const session = bench.session;
  bench.session = null;
  if (!session) return;
  send({ type: "bye", session: session.id, reason: "hangup" });
  if (session.pc) session.pc.close();
  document.getElementById("video").srcObject = null;
};
