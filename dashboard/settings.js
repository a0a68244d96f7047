// Sign-in settings: where they come from, how they are checked, where they are kept.
//
// Sources, later ones win: config.json beside the page (shipped with empty
// values; `peercam demo` / `peercam dashboard` serve a generated one), what the
// user saved in this browser, then URL parameters. Nothing here touches the DOM.

export const PROTOCOL_VERSION = 1;
export const ID_RE = /^[a-z0-9][a-z0-9_-]{0,63}$/;
export const PREFIX_RE = /^[A-Za-z0-9_-]+(\/[A-Za-z0-9_-]+)*$/;
export const CALL_RE = /^[A-Za-z0-9_-]{8,64}$/;

const STORAGE_KEY = "peercam.signin.v1";

export function randomHex(bytes) {
  // crypto.getRandomValues works on plain-http LAN pages too (randomUUID needs a secure context).
  const buf = new Uint8Array(bytes);
  crypto.getRandomValues(buf);
  return Array.from(buf, (b) => b.toString(16).padStart(2, "0")).join("");
}

function truthy(value) {
  return value === true || value === 1 || ["1", "true", "yes", "on"].includes(String(value).toLowerCase());
}

/** config.json beside the page; {} when it is missing or not JSON (a plain static server). */
export async function loadPageConfig() {
  try {
    const response = await fetch("config.json", { cache: "no-store" });
    if (!response.ok) return {};
    const data = await response.json();
    return data && typeof data === "object" && !Array.isArray(data) ? data : {};
  } catch {
    return {};
  }
}

function readStored() {
  for (const store of [localStorage, sessionStorage]) {
    try {
      const raw = store.getItem(STORAGE_KEY);
      if (raw) {
        const data = JSON.parse(raw);
        if (data && typeof data === "object") return { ...data, remember: store === localStorage };
      }
    } catch {
      // storage disabled or garbage in it: behave as if nothing was saved
    }
  }
  return null;
}

/** Keep the sign-in for this tab (sessionStorage) or, when asked, for this browser (localStorage). */
export function storeSignin(signin) {
  clearStoredSignin();
  const data = {
    broker_url: signin.broker_url,
    viewer: signin.viewer,
    password: signin.password,
    topic_prefix: signin.topic_prefix,
  };
  try {
    (signin.remember ? localStorage : sessionStorage).setItem(STORAGE_KEY, JSON.stringify(data));
  } catch {
    // private mode with storage disabled: the user signs in again next time
  }
}

export function clearStoredSignin() {
  for (const store of [localStorage, sessionStorage]) {
    try {
      store.removeItem(STORAGE_KEY);
    } catch {
      // nothing stored
    }
  }
}

/**
 * Everything the page starts from: {signin, auto, device, demo, mqttVersion, username}.
 * `signin` prefills the form; `auto` says to sign in without waiting for the user.
 */
export function resolveSettings(fileConfig, search = location.search) {
  const q = new URLSearchParams(search);
  const file = fileConfig || {};
  const fromFile = (name) => (file[name] === undefined || file[name] === null ? undefined : String(file[name]));
  const fromUrl = (...names) => {
    for (const name of names) if (q.has(name)) return q.get(name);
    return undefined;
  };
  const stored = readStored();
  const pick = (urlNames, fileName) => {
    const u = fromUrl(...urlNames);
    if (u !== undefined) return u;
    if (stored && stored[fileName] !== undefined && stored[fileName] !== "") return String(stored[fileName]);
    return fromFile(fileName) ?? "";
  };
  let viewer = pick(["viewer"], "viewer");
  const randomViewer = !viewer && truthy(file.auto_signin);
  if (randomViewer) viewer = `viewer-${randomHex(4)}`; // the demo: one viewer id per tab
  const signin = {
    // "{host}": the host this page came from (the demo on 0.0.0.0, watched from a phone).
    broker_url: pick(["broker_url", "broker"], "broker_url").replace("{host}", location.hostname),
    viewer,
    password: pick(["password"], "password"),
    topic_prefix: pick(["topic_prefix", "prefix"], "topic_prefix") || "peercam",
    remember: Boolean(stored && stored.remember),
  };
  const version = Number(fromUrl("mqtt_version") ?? fromFile("mqtt_version") ?? 5);
  // Sign in at once when the URL says so (signin=1, or a link carrying the viewer and
  // either the broker or the password: a link handed to a family member, the broker
  // coming from config.json), when the page config asks for it (the demo), or when a
  // sign-in was saved here.
  const urlSignin = fromUrl("signin", "auto_signin");
  const urlLink =
    fromUrl("viewer") !== undefined &&
    (fromUrl("broker_url", "broker") !== undefined || fromUrl("password") !== undefined);
  const auto =
    urlSignin !== undefined
      ? truthy(urlSignin)
      : urlLink || truthy(file.auto_signin) || Boolean(stored && stored.password !== undefined && stored.broker_url);
  return {
    signin,
    auto,
    device: fromUrl("device") ?? fromFile("device") ?? "",
    demo: truthy(file.demo),
    ringUrl: typeof file.ring_url === "string" && file.ring_url ? file.ring_url : "api/ring",
    mqttVersion: version === 4 ? 4 : 5,
    // The protocol says viewer id == MQTT username; a config may still name another username.
    username: fromUrl("username") ?? fromFile("username") ?? "",
  };
}

function isLoopbackHost(host) {
  const h = host.replace(/^\[|\]$/g, "");
  return h === "localhost" || h.endsWith(".localhost") || /^127\./.test(h) || h === "::1";
}

/**
 * Checks a broker URL for the page it is used from. Returns {error} (cannot work), {warning}
 * (may work) or {} (fine).
 */
export function checkBrokerUrl(url, pageProtocol = location.protocol) {
  if (!url) return { error: "Enter the broker's WebSocket URL, e.g. ws://192.168.1.10:8083/mqtt." };
  let parsed;
  try {
    parsed = new URL(url);
  } catch {
    return { error: `"${url}" is not a URL. It looks like ws://host:8083/mqtt or wss://host:8084/mqtt.` };
  }
  if (parsed.protocol === "mqtt:" || parsed.protocol === "mqtts:" || parsed.protocol === "tcp:") {
    return {
      error: `Browsers cannot speak MQTT over plain TCP (${parsed.protocol}//). Use the broker's WebSockets listener: ws://${parsed.hostname}:8083/mqtt or wss://${parsed.hostname}:8084/mqtt.`,
    };
  }
  if (parsed.protocol !== "ws:" && parsed.protocol !== "wss:") {
    return { error: `The broker URL must start with ws:// or wss:// (MQTT over WebSockets), not ${parsed.protocol}//.` };
  }
  if (pageProtocol === "https:" && parsed.protocol === "ws:" && !isLoopbackHost(parsed.hostname)) {
    return {
      error:
        `This page was loaded over https, and browsers block unencrypted ws:// connections from https pages. ` +
        `Use the broker's secure WebSockets listener (wss://${parsed.host.replace(/:\d+$/, "")}:8084/mqtt, which needs a TLS certificate on the broker), ` +
        `or open this dashboard over http:// instead.`,
    };
  }
  return {};
}

/** Problems with a sign-in, as sentences; empty when it can be tried. */
export function signinProblems(signin) {
  const problems = [];
  const broker = checkBrokerUrl(signin.broker_url);
  if (broker.error) problems.push(broker.error);
  if (!signin.viewer) problems.push("Enter your viewer id (your MQTT user name).");
  else if (!ID_RE.test(signin.viewer)) {
    problems.push(`The viewer id "${signin.viewer}" is not valid: lower-case letters, digits, "-" and "_", starting with a letter or digit, at most 64.`);
  }
  if (!PREFIX_RE.test(signin.topic_prefix) || signin.topic_prefix.length > 64) {
    problems.push(`The topic prefix "${signin.topic_prefix}" is not valid (letters, digits, "-", "_" and "/").`);
  }
  return problems;
}

/** The https:// address of a wss:// broker, to open in a tab and accept its certificate. */
export function certificatePageUrl(brokerUrl) {
  try {
    const u = new URL(brokerUrl);
    if (u.protocol !== "wss:") return null;
    return `https://${u.host}/`;
  } catch {
    return null;
  }
}
