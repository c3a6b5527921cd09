/* Shared helpers of the dashboard pages: API calls with the stored key, DOM building, formatting. */
"use strict";

const Plateau = (() => {
  const root = document.body.dataset.root || "";
  const KEY_NAME = "plateau.apiKey";
  const SVG_NS = "http://www.w3.org/2000/svg";

  function apiKey() {
    try { return localStorage.getItem(KEY_NAME) || ""; } catch (_) { return ""; }
  }

  function setApiKey(value) {
    try {
      if (value) localStorage.setItem(KEY_NAME, value); else localStorage.removeItem(KEY_NAME);
      return true;
    } catch (_) { return false; }
  }

  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  function describe(data, status) {
    const detail = data && data.detail;
    if (typeof detail === "string") return detail;
    if (Array.isArray(detail)) {
      return detail.map((d) => (d.loc ? d.loc.filter((p) => p !== "body").join(".") + ": " : "") + (d.msg || "")).join("; ");
    }
    if (status === 401) return "the API needs a key: enter it above";
    return "HTTP " + status;
  }

  /** Fetch JSON from the API under this origin; throws ApiError with a message a person can read. */
  async function api(path, options = {}) {
    const headers = { Accept: "application/json" };
    const key = apiKey();
    if (key) headers.Authorization = "Bearer " + key;
    let body;
    if (options.body !== undefined) {
      body = JSON.stringify(options.body);
      headers["Content-Type"] = "application/json";
    }
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), options.timeout || 15000);
    let response;
    try {
      response = await fetch(root + path, { method: options.method || "GET", headers, body,
                                            signal: controller.signal, cache: "no-store" });
    } catch (err) {
      throw new ApiError(0, err && err.name === "AbortError" ? "the API did not answer in time" : "the API is unreachable");
    } finally {
      clearTimeout(timer);
    }
    const text = await response.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (_) { data = null; }
    if (!response.ok) {
      let message = describe(data, response.status);
      if (response.status === 401) message += " (enter an API key above)";
      throw new ApiError(response.status, message);
    }
    return data;
  }

  function applyAttrs(node, attrs) {
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "text") node.textContent = String(value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    return node;
  }

  function append(node, children) {
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      node.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  /** An HTML element; strings become text nodes, never markup. */
  function el(tag, attrs, ...children) {
    return append(applyAttrs(document.createElement(tag), attrs), children);
  }

  /** An SVG element. */
  function svg(tag, attrs, ...children) {
    return append(applyAttrs(document.createElementNS(SVG_NS, tag), attrs), children);
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
    return node;
  }

  const pad = (n) => String(n).padStart(2, "0");

  /** Local time as YYYY-MM-DD HH:MM:SS inside a <time> element carrying the ISO value. */
  function timeEl(iso) {
    if (!iso) return el("span", { class: "muted", text: "—" });
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return el("span", { text: iso });
    const text = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
                 `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
    return el("time", { datetime: iso, title: iso, text });
  }

  function fmtNum(v) {
    if (v === null || v === undefined) return "—";
    if (typeof v !== "number") return typeof v === "object" ? JSON.stringify(v) : String(v);
    if (!Number.isFinite(v)) return String(v);
    if (Number.isInteger(v)) return String(v);
    const a = Math.abs(v);
    if (a !== 0 && (a < 1e-3 || a >= 1e5)) return v.toExponential(2);
    return String(Number(v.toPrecision(4)));
  }

  const humanize = (s) => (s ? String(s).replace(/_/g, " ") : "—");

  function statusBadge(status, attrs = {}) {
    return el("span", { class: "status status-" + status, ...attrs, text: status });
  }

  function showError(message) {
    const box = document.getElementById("error");
    if (!box) return;
    box.textContent = message || "";
    box.hidden = !message;
  }

  function initKeyForm(onChange) {
    const form = document.getElementById("api-key-form");
    const input = document.getElementById("api-key");
    const state = document.getElementById("api-key-state");
    if (!form) return;
    const show = () => { state.textContent = apiKey() ? "key saved in this browser" : "no key"; };
    input.value = apiKey();
    show();
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      if (!setApiKey(input.value.trim())) state.textContent = "this browser does not allow storing the key";
      else show();
      if (onChange) onChange();
    });
    document.getElementById("api-key-clear").addEventListener("click", () => {
      input.value = "";
      setApiKey("");
      show();
      if (onChange) onChange();
    });
  }

  return { root, api, ApiError, el, svg, clear, timeEl, fmtNum, humanize, statusBadge, showError, initKeyForm };
})();
