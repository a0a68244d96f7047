// What to tell a person when no network path to the device was found.
//
// "The connection failed" is true but nobody can act on it. The device's answer
// says which addresses it offered (its a=candidate lines), and that is usually
// enough to say why this browser could not use them and what would help:
// - only loopback (127.0.0.1, ::1): only a browser on the device's own machine
//   could reach it; browsers elsewhere never can;
// - only private LAN addresses and no relay: this browser is on another network,
//   or the LAN keeps clients apart (guest Wi-Fi, access-point isolation, a VPN);
// - a relay was offered too: even the TURN server was unreachable from here.
// The device's log names the candidates and the checks it saw (peercam.session).

const LOOPBACK = /^(127\.|::1$|0:0:0:0:0:0:0:1$)/;

/** The answer's candidates as {address, type}; [] for a missing or odd SDP. */
export function answerCandidates(sdp) {
  if (typeof sdp !== "string") return [];
  const out = [];
  for (const line of sdp.split(/\r?\n/)) {
    if (!line.startsWith("a=candidate:")) continue;
    const f = line.split(" ");
    const typ = f.indexOf("typ");
    if (f.length > 7 && typ > 0) out.push({ address: f[4], type: f[typ + 1] });
  }
  return out;
}

/**
 * A sentence a person can act on, for a session that found no path.
 * @param {string|undefined} answerSdp the device's answer
 * @param {string} pageHost location.hostname of this page
 */
export function noPathAdvice(answerSdp, pageHost = "") {
  const candidates = answerCandidates(answerSdp);
  if (!candidates.length) {
    return "No network path to the device: its answer offered no address to connect to. Check the device's log.";
  }
  const relays = candidates.filter((c) => c.type === "relay");
  const addresses = [...new Set(candidates.filter((c) => c.type === "host").map((c) => c.address))];
  const shown = addresses.slice(0, 3).join(", ");
  if (!relays.length && addresses.length && addresses.every((a) => LOOPBACK.test(a))) {
    const here = LOOPBACK.test(pageHost) || pageHost === "localhost";
    return here
      ? `No network path to the device: it offers only its loopback address (${shown}), which this browser does not use for video. Give the device a network address ([webrtc] host_networks, e.g. your LAN) or a TURN server.`
      : `No network path to the device: it offers only its loopback address (${shown}), which only its own machine can reach. Set [webrtc] host_networks to its LAN (for the demo: --host 0.0.0.0), or configure a TURN server.`;
  }
  if (relays.length) {
    return `No network path to the device, not even through its TURN relay (${relays[0].address}): this network may block UDP and TCP to it. Try another network, or allow the TURN server's ports.`;
  }
  return `No network path to the device: this browser could not reach ${shown}. Are you on the same network? Guest Wi-Fi, access-point isolation, a VPN or a firewall can keep the two apart; from elsewhere the device needs a TURN server ([webrtc] ice_servers).`;
}
