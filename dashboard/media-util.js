// Small media helpers: the ring tone (Web Audio, no sound file), snapshots to PNG,
// full screen, the microphone.

/** A two-note door chime, repeated while ringing. Browsers only play sound after a user gesture. */
export class Ringer {
  constructor() {
    this.ctx = null;
    this.timer = null;
  }

  /** Call from a user gesture (click, key): creates or resumes the audio context. */
  unlock() {
    try {
      if (!this.ctx) {
        const Ctx = window.AudioContext || window.webkitAudioContext;
        if (!Ctx) return;
        this.ctx = new Ctx();
      }
      if (this.ctx.state === "suspended") this.ctx.resume().catch(() => {});
    } catch {
      // no audio on this browser: ringing stays visual
    }
  }

  /** True when the browser will actually play the chime. */
  get audible() {
    return Boolean(this.ctx && this.ctx.state === "running");
  }

  get ringing() {
    return this.timer !== null;
  }

  start() {
    if (this.timer !== null) return;
    const chime = () => this._chime();
    chime();
    this.timer = setInterval(chime, 2500);
    if (navigator.vibrate) {
      try {
        navigator.vibrate([300, 150, 300]);
      } catch {
        // not allowed without a gesture
      }
    }
  }

  stop() {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  _chime() {
    if (!this.audible) return;
    const ctx = this.ctx;
    const t0 = ctx.currentTime + 0.02;
    [
      [659.25, 0, 0.45],
      [523.25, 0.5, 0.8],
    ].forEach(([freq, start, length]) => {
      const osc = ctx.createOscillator();
      const gain = ctx.createGain();
      osc.type = "sine";
      osc.frequency.value = freq;
      gain.gain.setValueAtTime(0.0001, t0 + start);
      gain.gain.exponentialRampToValueAtTime(0.3, t0 + start + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, t0 + start + length);
      osc.connect(gain).connect(ctx.destination);
      osc.start(t0 + start);
      osc.stop(t0 + start + length + 0.05);
    });
  }
}

/** The current frame of a <video> as a PNG download; returns the file name. */
export async function savePng(video, baseName) {
  const w = video.videoWidth;
  const h = video.videoHeight;
  if (!w || !h) throw new Error("there is no video frame yet");
  const canvas = document.createElement("canvas");
  canvas.width = w;
  canvas.height = h;
  canvas.getContext("2d").drawImage(video, 0, 0, w, h);
  const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
  if (!blob) throw new Error("the browser could not encode the PNG");
  const stamp = new Date().toISOString().replace(/[:.]/g, "-").replace(/-\d{3}Z$/, "Z");
  const name = `${baseName}-${stamp}.png`;
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = name;
  a.hidden = true;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 30000);
  return name;
}

/** A still of a <video> as a data URL (for tiles that are not live), or null. */
export function stillOf(video, maxWidth = 480) {
  const w = video.videoWidth;
  const h = video.videoHeight;
  if (!w || !h) return null;
  const scale = Math.min(1, maxWidth / w);
  const canvas = document.createElement("canvas");
  canvas.width = Math.round(w * scale);
  canvas.height = Math.round(h * scale);
  try {
    canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
    return canvas.toDataURL("image/jpeg", 0.7);
  } catch {
    return null;
  }
}

/** Full screen for an element; iOS Safari only does it for a <video>. */
export function toggleFullscreen(element, video) {
  const doc = document;
  if (doc.fullscreenElement || doc.webkitFullscreenElement) {
    (doc.exitFullscreen || doc.webkitExitFullscreen).call(doc);
    return;
  }
  if (element.requestFullscreen) {
    element.requestFullscreen().catch(() => {
      if (video.webkitEnterFullscreen) video.webkitEnterFullscreen();
    });
  } else if (element.webkitRequestFullscreen) {
    element.webkitRequestFullscreen();
  } else if (video.webkitEnterFullscreen) {
    video.webkitEnterFullscreen();
  }
}

/**
 * The microphone for talkback, or {track: null, problem} saying why not. Browsers give
 * microphones only to secure pages (https or localhost).
 */
export async function openMicrophone() {
  if (!window.isSecureContext || !navigator.mediaDevices?.getUserMedia) {
    return { track: null, problem: "the microphone needs this page on https (or localhost)" };
  }
  try {
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
      video: false,
    });
    return { track: stream.getAudioTracks()[0] || null, problem: null };
  } catch (err) {
    const why = err?.name === "NotAllowedError" ? "the microphone was not allowed" : err?.name === "NotFoundError" ? "no microphone was found" : `the microphone failed (${err?.message || err})`;
    return { track: null, problem: why };
  }
}
