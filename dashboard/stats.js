// Connection statistics from RTCPeerConnection.getStats(): what the overlay shows.

export function emptyStats() {
  return {
    framesDecoded: 0,
    width: 0,
    height: 0,
    fps: 0,
    bitrateKbps: 0,
    rttMs: null,
    // Latency estimate: half the round trip + jitter buffer + decode (capture and
    // encode on the device, and the display, are not in it).
    latencyMs: null,
    path: null, // "direct" | "relayed"
    via: null, // "sfu" while watching through the device's relay (session.js sets it)
    feed: null, // the relay's feed id subscribed to
    localCandidateType: null, // host | srflx | prflx | relay
    remoteCandidateType: null,
    protocol: null, // udp | tcp
    packetsLost: 0,
    audioKbps: 0,
    talkbackKbps: 0, // our microphone to the device, during a call
    talkbackPackets: 0,
    stream: null, // v1.1 "stream" message: {stream, quality, substream, width, height}
  };
}

/**
 * Reads one getStats() report into `stats`; `prev` is the raw sample of the last call
 * (for rates). Returns the new raw sample.
 */
export function readReport(report, stats, prev) {
  let video = null;
  let audioIn = null;
  let audioOut = null;
  let selectedPairId = null;
  report.forEach((r) => {
    if (r.type === "inbound-rtp" && r.kind === "video") video = r;
    else if (r.type === "inbound-rtp" && r.kind === "audio") audioIn = r;
    else if (r.type === "outbound-rtp" && r.kind === "audio") audioOut = r;
    else if (r.type === "transport" && r.selectedCandidatePairId) selectedPairId = r.selectedCandidatePairId;
  });
  let pair = selectedPairId ? report.get(selectedPairId) : null;
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
    stats.protocol = local?.protocol ?? null;
    stats.path = stats.localCandidateType === "relay" || stats.remoteCandidateType === "relay" ? "relayed" : "direct";
    stats.rttMs = typeof pair.currentRoundTripTime === "number" ? Math.round(pair.currentRoundTripTime * 1000) : stats.rttMs;
  }
  const sample = {
    timestamp: video?.timestamp ?? performance.now(),
    videoBytes: video?.bytesReceived ?? 0,
    framesDecoded: video?.framesDecoded ?? 0,
    jitterDelay: video?.jitterBufferDelay ?? 0,
    jitterEmitted: video?.jitterBufferEmittedCount ?? 0,
    decodeTime: video?.totalDecodeTime ?? 0,
    audioBytes: audioIn?.bytesReceived ?? 0,
    talkBytes: audioOut?.bytesSent ?? 0,
  };
  if (video) {
    stats.framesDecoded = sample.framesDecoded;
    stats.width = video.frameWidth ?? stats.width;
    stats.height = video.frameHeight ?? stats.height;
    stats.packetsLost = video.packetsLost ?? 0;
  }
  if (audioOut) stats.talkbackPackets = audioOut.packetsSent ?? 0;
  if (prev) {
    const dt = (sample.timestamp - prev.timestamp) / 1000;
    if (dt > 0) {
      const kbps = (now, before) => Math.max(0, Math.round(((now - before) * 8) / dt / 1000));
      stats.bitrateKbps = kbps(sample.videoBytes, prev.videoBytes);
      stats.audioKbps = kbps(sample.audioBytes, prev.audioBytes);
      stats.talkbackKbps = kbps(sample.talkBytes, prev.talkBytes);
      const frames = sample.framesDecoded - prev.framesDecoded;
      stats.fps = typeof video?.framesPerSecond === "number" ? Math.round(video.framesPerSecond) : Math.max(0, Math.round(frames / dt));
      const emitted = sample.jitterEmitted - prev.jitterEmitted;
      if (emitted > 0 && frames > 0) {
        const buffer = ((sample.jitterDelay - prev.jitterDelay) / emitted) * 1000;
        const decode = ((sample.decodeTime - prev.decodeTime) / frames) * 1000;
        const network = stats.rttMs !== null ? stats.rttMs / 2 : 0;
        stats.latencyMs = Math.round(network + buffer + decode);
      }
    }
  }
  return sample;
}

const TYPE_NAMES = { host: "host", srflx: "srflx (NAT)", prflx: "prflx (NAT)", relay: "relay (TURN)" };

/** The overlay as lines of text. */
export function statsLines(stats) {
  const lines = [];
  if (stats.path) {
    const l = TYPE_NAMES[stats.localCandidateType] || stats.localCandidateType || "?";
    const r = TYPE_NAMES[stats.remoteCandidateType] || stats.remoteCandidateType || "?";
    const via = stats.via === "sfu" ? "via SFU · " : "";
    lines.push(`${via}${stats.path} · ${l} ↔ ${r}${stats.protocol ? ` · ${stats.protocol}` : ""}`);
  } else {
    lines.push(stats.via === "sfu" ? "via SFU · path: negotiating" : "path: negotiating");
  }
  if (stats.stream) {
    const name = stats.stream.stream === "sub" ? "substream (low)" : "main stream (high)";
    const why = stats.stream.quality === "auto" ? "auto" : `chosen: ${stats.stream.quality}`;
    lines.push(`${name} · ${why}${stats.stream.substream ? "" : " · the device has no substream"}`);
  }
  const video = [];
  if (stats.width) video.push(`${stats.width}×${stats.height}`);
  video.push(`${stats.fps} fps`);
  video.push(`${stats.bitrateKbps} kbit/s`);
  lines.push(video.join(" · "));
  const timing = [];
  timing.push(stats.rttMs !== null ? `RTT ${stats.rttMs} ms` : "RTT –");
  timing.push(stats.latencyMs !== null ? `latency ≈ ${stats.latencyMs} ms` : "latency –");
  lines.push(timing.join(" · "));
  const extra = [`${stats.framesDecoded} frames`];
  if (stats.packetsLost) extra.push(`${stats.packetsLost} packets lost`);
  if (stats.audioKbps) extra.push(`audio ${stats.audioKbps} kbit/s`);
  if (stats.talkbackKbps) extra.push(`talk ${stats.talkbackKbps} kbit/s`);
  lines.push(extra.join(" · "));
  return lines;
}
