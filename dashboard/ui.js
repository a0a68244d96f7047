// Small UI helpers shared by the page's modules: element lookup and creation, toasts,
// device names and times as people read them, our in topic of a device.

import { app } from "./state.js";

export const $ = (id) => document.getElementById(id);

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (v !== undefined && v !== null && v !== false) node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

/** Replace an element's children only when `key` changed (keeps focus and decoded images). */
export function setChildren(node, key, build) {
  if (node.dataset.key === key) return;
  node.dataset.key = key;
  node.replaceChildren(...build());
}

export function toast(text, kind = "info", ms = 6000) {
  const box = $("toasts");
  const item = el("p", { class: `toast toast-${kind}`, text });
  box.append(item);
  while (box.childElementCount > 4) box.firstElementChild.remove();
  setTimeout(() => item.remove(), ms);
}

export function deviceName(id) {
  const s = app.devices.get(id)?.status;
  return s && typeof s.name === "string" && s.name ? s.name : id;
}

export function inTopic(device) {
  return `${app.prefix}/${device}/in/${app.signin.viewer}`;
}

export function formatTime(unix) {
  if (!Number.isFinite(unix)) return "";
  const d = new Date(unix * 1000);
  const today = new Date();
  const sameDay = d.toDateString() === today.toDateString();
  return sameDay ? d.toLocaleTimeString() : d.toLocaleString();
}
