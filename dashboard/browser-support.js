// What this browser can do, said in sentences a person can act on.
//
// The device sends H.264 (constrained baseline) over WebRTC and nothing else:
// it never re-encodes, so a browser without WebRTC or without an H.264 decoder
// for WebRTC cannot show its video. Firefox gets H.264 from the OpenH264 plugin
// it downloads by itself after installation; an offline, fresh or locked-down
// Firefox may not have it yet. Both cases used to end in SDP wording.

/** The sentence for a browser with no WebRTC at all (null when it has WebRTC). */
export function noWebRtcText() {
  if (typeof window.RTCPeerConnection === "function") return null;
  return (
    "This browser cannot show live video: it has no WebRTC. " +
    "Open this page in a current Chrome, Edge, Firefox or Safari (on iPhone or iPad: Safari), " +
    "or check that WebRTC is not turned off by a setting or an extension."
  );
}

const IS_FIREFOX = /\bFirefox\//.test(navigator.userAgent);

/** The sentence for a browser that cannot decode H.264 for WebRTC. */
export function noH264Text() {
  if (IS_FIREFOX) {
    return (
      "Firefox cannot play this camera's video yet: it needs the “OpenH264 Video Codec provided by " +
      "Cisco Systems”, which Firefox normally downloads by itself a few minutes after it is installed. " +
      "Open about:addons → Plugins, check that it is installed and not disabled (or restart Firefox " +
      "while online so it can fetch it), then reload this page. Chrome, Edge and Safari play it as is."
    );
  }
  return (
    "This browser cannot play this camera's H.264 video over WebRTC. " +
    "Open this page in a current Chrome, Edge, Safari or Firefox (with its OpenH264 plugin)."
  );
}

/**
 * Whether the browser says it can receive H.264 with packetization-mode 1.
 * true / false, or null when the browser cannot tell (no getCapabilities: try anyway).
 */
export function canReceiveH264() {
  const Receiver = window.RTCRtpReceiver;
  if (!Receiver || typeof Receiver.getCapabilities !== "function") return null;
  let caps;
  try {
    caps = Receiver.getCapabilities("video");
  } catch {
    return null;
  }
  if (!caps || !Array.isArray(caps.codecs)) return null;
  return caps.codecs.some(
    (c) => /^video\/h264$/i.test(c.mimeType || "") && !/packetization-mode=0/.test(c.sdpFmtpLine || ""),
  );
}

/** Why this browser cannot watch the device (a sentence), or null when it can (or may). */
export function cannotWatch() {
  return noWebRtcText() || (canReceiveH264() === false ? noH264Text() : null);
}

/** The device refused an offer because of the codec: the same sentence as above. */
export function isCodecRefusal(code, text) {
  return code === "unsupported" && /H\.?264/i.test(text || "");
}
