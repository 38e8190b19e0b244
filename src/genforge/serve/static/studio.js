// genforge studio: a plain ES module, no framework, no build step, nothing fetched from elsewhere.
// It talks to the OpenAI-style API of the server that serves it (same origin, relative URLs, so the
// page also works behind a reverse proxy under a path prefix).

import { setupImages } from "./images.js";
import { setupMolecules } from "./molecules.js";
import { setupSound } from "./sound.js";

const $ = (id) => document.getElementById(id);

const KEY_STORE = "genforge.apiKey";
const PARAMS_STORE = "genforge.studio.params.v2"; // only the values the user changed from the defaults
const MODEL_STORE = "genforge.studio.models";
// The defaults and ranges of the parameters come from the server (/v1/models: genforge_sampling, which is
// SamplingParams' one rule); the server also checks every value, so the page keeps no copy of either.
let DEFAULTS = { max_tokens: "", temperature: "", top_p: "", seed: "", stop: "" };

// ---------------------------------------------------------------- modalities and tabs
// Each tab lists the models it can drive; a tab is shown only when at least one model qualifies.
// A new modality (image, music, molecule, ...) is a <section id="panel-NAME" role="tabpanel">, a tab
// button, and an entry here, e.g. {id: "image", accepts: (m) => modality(m) === "image"}.
const modality = (m) => String(m.genforge_modality || "text").toLowerCase();
const isChat = (m) => m.genforge_chat === true;
const TABS = [
  { id: "text", accepts: (m) => modality(m) === "text" },
  { id: "chat", accepts: (m) => modality(m) === "text" },
  { id: "images", accepts: (m) => modality(m) === "image" },
  { id: "molecules", accepts: (m) => modality(m) === "molecule" },
  { id: "sound", accepts: (m) => modality(m) === "music" || modality(m) === "speech" },
];
let images = null; // the Images tab (images.js)
let molecules = null; // the Molecules tab (molecules.js)
let sound = null; // the Sound tab (sound.js)

const state = {
  models: [],
  tab: null,
  text: { controller: null },
  chat: { controller: null, messages: [], bubbles: new Map(), epoch: 0 }, // bubbles: message -> its element
};

// ---------------------------------------------------------------- small helpers
function storageGet(key, fallback) {
  try {
    const v = localStorage.getItem(key);
    return v === null ? fallback : v;
  } catch {
    return fallback; // storage disabled (private mode, file policy): the page still works
  }
}

function storageSet(key, value) {
  try {
    if (value === "" || value === null || value === undefined) localStorage.removeItem(key);
    else localStorage.setItem(key, value);
  } catch {
    /* ignore */
  }
}

function headers() {
  const h = { "Content-Type": "application/json", Accept: "text/event-stream, application/json" };
  const key = $("api-key").value.trim();
  if (key) h.Authorization = `Bearer ${key}`;
  return h;
}

class StudioError extends Error {
  constructor(message, { status = 0, type = "", code = "" } = {}) {
    super(message);
    this.name = "StudioError";
    this.status = status;
    this.type = type;
    this.code = code;
  }
}

function apiError(err, status = 0) {
  const e = err && typeof err === "object" ? err : { message: String(err) };
  const parts = [];
  if (e.type) parts.push(e.type);
  if (e.param) parts.push(`param: ${e.param}`);
  const where = parts.length ? ` (${parts.join(", ")})` : "";
  return new StudioError(`${e.message || "unknown error"}${where}`, { status, type: e.type || "", code: e.code || "" });
}

async function httpError(res) {
  let body = null;
  const text = await res.text().catch(() => "");
  try {
    body = JSON.parse(text);
  } catch {
    /* not JSON */
  }
  let err;
  if (body && body.error) err = apiError(body.error, res.status);
  else if (body && body.detail !== undefined) {
    // FastAPI's own validation errors: {"detail": [{"loc": [...], "msg": "..."}]} or {"detail": "..."}
    const d = Array.isArray(body.detail)
      ? body.detail.map((x) => `${(x.loc || []).filter((p) => p !== "body").join(".")}: ${x.msg}`).join("; ")
      : String(body.detail);
    err = new StudioError(d, { status: res.status });
  } else err = new StudioError(text.trim().slice(0, 300) || res.statusText || "request failed", { status: res.status });
  err.message = `HTTP ${res.status}: ${err.message}`;
  return err;
}

function describeFailure(e) {
  if (e instanceof StudioError) {
    if (e.status === 401 || e.status === 403) {
      $("key-box").open = true;
      return `${e.message} — enter the server's API key at the top of the page.`;
    }
    return e.message;
  }
  if (e instanceof TypeError) return `Cannot reach the server (${e.message}). Is genforge serve still running?`;
  return String(e && e.message ? e.message : e);
}

function showError(box, e) {
  box.textContent = typeof e === "string" ? e : describeFailure(e);
  box.hidden = false;
}

function clearError(box) {
  box.textContent = "";
  box.hidden = true;
}

function fmtSeconds(ms) {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(2)} s`;
}

const FINISH = {
  stop: "stop (end of text or a stop sequence)",
  length: "length (max tokens reached)",
  content_filter: "content filter",
  aborted: "stopped by you",
  error: "error",
};

function statsLine(r) {
  if (!r) return "";
  const parts = [];
  const n = r.usage && Number.isFinite(r.usage.completion_tokens) ? r.usage.completion_tokens : r.pieces;
  const total = r.tEnd - r.tStart;
  parts.push(`${n} token${n === 1 ? "" : "s"} in ${fmtSeconds(total)}`);
  if (r.tFirst !== null) {
    const decode = (r.tLast - r.tFirst) / 1000;
    if (n > 1 && decode > 0) parts.push(`${((n - 1) / decode).toFixed(1)} tokens/s`);
    parts.push(`first token after ${fmtSeconds(r.tFirst - r.tStart)}`);
  }
  parts.push(`finish: ${FINISH[r.finish] || r.finish || "unknown"}`);
  return parts.join(" · ");
}

// ---------------------------------------------------------------- server-sent events
// Yields the data of each event. Network chunks may end anywhere (mid-line, mid-UTF-8 character), so
// bytes are decoded in streaming mode and only complete lines are parsed; an event is the data lines
// up to a blank line (several data lines join with "\n", as the SSE spec says).
export async function* sseEvents(body) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buf = "";
  let data = [];
  const line = function* (raw) {
    const l = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
    if (l === "") {
      if (data.length) yield data.join("\n");
      data = [];
      return;
    }
    if (l.startsWith(":")) return; // comment / keep-alive
    const i = l.indexOf(":");
    const field = i < 0 ? l : l.slice(0, i);
    let value = i < 0 ? "" : l.slice(i + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") data.push(value);
  };
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true });
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const raw = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        yield* line(raw);
      }
    }
    buf += decoder.decode();
    if (buf) yield* line(buf);
    yield* line(""); // a last event without its blank line
  } finally {
    reader.cancel().catch(() => {}); // left early ([DONE], Stop): let the connection go
  }
}

// POST a streaming request and hand each piece of text to onPiece. Returns timing and finish info.
// pick(choice) extracts the text of one choice (completions: .text; chat: .delta.content).
async function streamRequest(url, body, { signal, pick, onPiece }) {
  const r = { tStart: performance.now(), tFirst: null, tLast: null, tEnd: null, pieces: 0, finish: null, usage: null };
  const take = (msg) => {
    if (msg && msg.error) throw apiError(msg.error);
    const ch = msg && Array.isArray(msg.choices) ? msg.choices[0] : null;
    if (ch) {
      const piece = pick(ch);
      if (typeof piece === "string" && piece) {
        const now = performance.now();
        if (r.tFirst === null) r.tFirst = now;
        r.tLast = now;
        r.pieces += 1;
        onPiece(piece);
      }
      if (ch.finish_reason) r.finish = ch.finish_reason;
    }
    if (msg && msg.usage) r.usage = msg.usage;
    if (msg && msg.genforge_context) r.context = msg.genforge_context; // what the server fitted (chat)
    if (msg && msg.genforge_citations) r.citations = msg.genforge_citations; // retrieval: the numbered sources
    if (msg && msg.genforge_grounding) r.grounding = msg.genforge_grounding[0]; // each sentence's support
  };
  try {
    const res = await fetch(url, { method: "POST", headers: headers(), body: JSON.stringify(body), signal });
    if (!res.ok) throw await httpError(res);
    const ctype = res.headers.get("content-type") || "";
    if (!ctype.includes("text/event-stream")) {
      take(await res.json()); // a server that answers without streaming: show the whole text at once
    } else {
      let done = false;
      for await (const data of sseEvents(res.body)) {
        if (signal.aborted) break;
        if (data === "[DONE]") {
          done = true;
          break;
        }
        let msg;
        try {
          msg = JSON.parse(data);
        } catch {
          throw new StudioError(`The server sent an event that is not JSON: ${data.slice(0, 200)}`);
        }
        take(msg);
      }
      if (!done && !signal.aborted) throw new StudioError("The connection closed before the server finished the reply.");
    }
  } catch (e) {
    if (signal.aborted || (e && e.name === "AbortError")) r.finish = "aborted";
    else {
      r.finish = "error";
      r.error = e;
    }
  }
  if (signal.aborted) r.finish = "aborted";
  r.tEnd = performance.now();
  return r;
}

// ---------------------------------------------------------------- parameters
function decodeEscapes(s) {
  return s.replace(/\\(n|t|r|\\)/g, (_, c) => ({ n: "\n", t: "\t", r: "\r", "\\": "\\" })[c]);
}

function readParams() {
  // Only the type is checked here; the server checks the range and names a bad parameter.
  const p = {};
  const num = (id, key, label, whole = false) => {
    const raw = $(id).value.trim();
    if (raw === "") return; // empty: the server's default (max tokens: as many as fit the context)
    const v = Number(raw);
    if (!Number.isFinite(v) || (whole && !Number.isInteger(v))) {
      throw new StudioError(`${label} must be ${whole ? "a whole number" : "a number"} (or empty for the default).`);
    }
    p[key] = v;
  };
  num("max-tokens", "max_tokens", "Max tokens", true);
  num("temperature", "temperature", "Temperature");
  num("top-p", "top_p", "Top-p");
  num("seed", "seed", "Seed", true);
  const stops = $("stop-seqs").value.split("\n").filter((s) => s !== "").map(decodeEscapes);
  if (stops.length) p.stop = stops;
  return p;
}

const PARAM_FIELDS = { max_tokens: "max-tokens", temperature: "temperature", top_p: "top-p", seed: "seed", stop: "stop-seqs" };

function asField(v) {
  if (v === null || v === undefined) return "";
  return Array.isArray(v) ? v.join("\n") : String(v);
}

function savedParams() {
  try {
    return JSON.parse(storageGet(PARAMS_STORE, "{}")) || {};
  } catch {
    return {};
  }
}

function saveParams() {
  const o = {};
  for (const [k, id] of Object.entries(PARAM_FIELDS)) if ($(id).value !== DEFAULTS[k]) o[k] = $(id).value;
  storageSet(PARAMS_STORE, Object.keys(o).length ? JSON.stringify(o) : "");
}

function loadParams(values) {
  for (const [k, id] of Object.entries(PARAM_FIELDS)) {
    if (values[k] !== undefined && values[k] !== null) $(id).value = String(values[k]);
  }
  for (const id of ["temperature", "top-p"]) if ($(id).value !== "") $(`${id}-range`).value = $(id).value;
}

// The server's defaults and ranges for text models: fill the fields (the user's changes win) and bound the
// sliders and number fields.
function applySampling(sampling) {
  if (!sampling || !sampling.defaults) return;
  DEFAULTS = {};
  for (const k of Object.keys(PARAM_FIELDS)) DEFAULTS[k] = asField(sampling.defaults[k]);
  const limits = sampling.limits || {};
  for (const [k, id] of Object.entries(PARAM_FIELDS)) {
    const lim = limits[k];
    if (!lim) continue;
    const step = Number($(id).step) || 0;
    const lo = lim.minimum ?? (lim.exclusiveMinimum !== undefined ? lim.exclusiveMinimum + step : undefined);
    const hi = lim.maximum ?? (lim.exclusiveMaximum !== undefined ? lim.exclusiveMaximum - step : undefined);
    for (const el of [$(id), document.getElementById(`${id}-range`)]) {
      if (!el) continue;
      if (lo !== undefined) el.min = String(lo);
      if (hi !== undefined) el.max = String(hi);
    }
  }
  loadParams({ ...DEFAULTS, ...savedParams() });
  $("max-tokens").placeholder = DEFAULTS.max_tokens === "" ? "as many as fit" : "";
}

function setupParams() {
  loadParams(savedParams());
  for (const id of ["temperature", "top-p"]) {
    const num = $(id);
    const range = $(`${id}-range`);
    range.addEventListener("input", () => {
      num.value = range.value;
      saveParams();
    });
    num.addEventListener("input", () => {
      if (num.value !== "") range.value = num.value;
    });
  }
  $("params-form").addEventListener("input", saveParams);
  $("params-form").addEventListener("submit", (e) => e.preventDefault());
  $("reset-params").addEventListener("click", () => {
    loadParams(DEFAULTS);
    saveParams();
  });
  if (window.matchMedia && window.matchMedia("(max-width: 820px)").matches) $("params").open = false;
}

// ---------------------------------------------------------------- models
function fillSelect(select, groups, remembered) {
  select.replaceChildren();
  const useGroups = groups.filter((g) => g.models.length).length > 1;
  for (const g of groups) {
    if (!g.models.length) continue;
    const parent = useGroups ? select.appendChild(Object.assign(document.createElement("optgroup"), { label: g.label })) : select;
    for (const m of g.models) parent.appendChild(new Option(m.id, m.id));
  }
  const ids = groups.flatMap((g) => g.models.map((m) => m.id));
  if (remembered && ids.includes(remembered)) select.value = remembered;
}

function modelInfo(id, forChat = false) {
  const m = state.models.find((x) => x.id === id);
  if (!m) return "";
  const bits = [];
  if (Number.isFinite(m.genforge_context_length)) bits.push(`context ${m.genforge_context_length} tokens`);
  if (isChat(m)) bits.push("chat model");
  else if (forChat) bits.push("base model, no chat template: the reply continues the conversation as plain text");
  else bits.push("base model (continues text)");
  return bits.join(" · ");
}

function rememberedModels() {
  try {
    return JSON.parse(storageGet(MODEL_STORE, "{}")) || {};
  } catch {
    return {};
  }
}

function rememberModel(which, id) {
  const o = rememberedModels();
  o[which] = id;
  storageSet(MODEL_STORE, JSON.stringify(o));
}

function renderModels() {
  const textModels = state.models.filter(TABS[0].accepts);
  const chatModels = textModels.filter(isChat);
  const baseModels = textModels.filter((m) => !isChat(m));
  const remembered = rememberedModels();
  fillSelect($("model"), [{ label: "Models", models: textModels }], remembered.text);
  // Chat models first; base models stay usable (the server decides how to prompt them).
  fillSelect($("chat-model"), [{ label: "Chat models", models: chatModels }, { label: "Base models", models: baseModels }], remembered.chat);
  $("model-info").textContent = modelInfo($("model").value);
  updateChatModelInfo();
  images.setModels(state.models.filter((m) => modality(m) === "image"), remembered.images);
  molecules.setModels(state.models.filter((m) => modality(m) === "molecule"), remembered.molecules);
  sound.setModels(state.models.filter((m) => modality(m) === "music"), remembered.sound,
    state.models.filter((m) => modality(m) === "speech"), remembered.speech);

  let first = null;
  for (const t of TABS) {
    const available = state.models.some(t.accepts);
    const btn = $(`tab-${t.id}`);
    btn.hidden = !available;
    if (available && !first) first = t.id;
  }
  $("no-models").hidden = Boolean(first);
  const wanted = location.hash.slice(1);
  const tab = TABS.find((t) => t.id === wanted && !$(`tab-${t.id}`).hidden) ? wanted : state.tab && !$(`tab-${state.tab}`).hidden ? state.tab : first;
  selectTab(tab, false);
}

function updateChatModelInfo() {
  $("chat-model-info").textContent = modelInfo($("chat-model").value, true);
}

async function loadModels() {
  const status = $("server-status");
  status.dataset.state = "loading";
  status.textContent = "Connecting…";
  clearError($("global-error"));
  try {
    const h = headers();
    delete h["Content-Type"];
    const res = await fetch("v1/models", { headers: h });
    if (!res.ok) throw await httpError(res);
    const body = await res.json();
    state.models = Array.isArray(body.data) ? body.data : [];
    const textModel = state.models.find((m) => modality(m) === "text" && m.genforge_sampling);
    if (textModel) applySampling(textModel.genforge_sampling);
    const n = state.models.length;
    status.dataset.state = "ok";
    status.textContent = `Connected · ${n} model${n === 1 ? "" : "s"}`;
    renderModels();
  } catch (e) {
    status.dataset.state = "error";
    status.textContent = "Not connected";
    $("params").hidden = true;
    for (const t of TABS) $(`tab-${t.id}`).hidden = $(`panel-${t.id}`).hidden = true;
    showError($("global-error"), `Could not list models: ${describeFailure(e)}`);
    const retry = document.createElement("button");
    retry.type = "button";
    retry.className = "quiet inline";
    retry.textContent = "Retry";
    retry.addEventListener("click", loadModels);
    $("global-error").append(" ", retry);
  }
}

// ---------------------------------------------------------------- tabs
function selectTab(id, focus = true) {
  if (!id) {
    for (const t of TABS) $(`panel-${t.id}`).hidden = true;
    $("params").hidden = true;
    return;
  }
  state.tab = id;
  for (const t of TABS) {
    const on = t.id === id;
    const btn = $(`tab-${t.id}`);
    btn.setAttribute("aria-selected", String(on));
    btn.tabIndex = on ? 0 : -1;
    $(`panel-${t.id}`).hidden = !on;
    if (on && focus) btn.focus();
  }
  $("params").hidden = id === "images" || id === "molecules" || id === "sound"; // the text parameters; these tabs have their own
  if (location.hash.slice(1) !== id) history.replaceState(null, "", `#${id}`);
}

function setupTabs() {
  const list = $("tabs");
  list.addEventListener("click", (e) => {
    const btn = e.target.closest("[role=tab]");
    if (btn) selectTab(btn.dataset.tab);
  });
  list.addEventListener("keydown", (e) => {
    const tabs = [...list.querySelectorAll("[role=tab]:not([hidden])")];
    const i = tabs.indexOf(document.activeElement);
    if (i < 0) return;
    let j = null;
    if (e.key === "ArrowRight") j = (i + 1) % tabs.length;
    else if (e.key === "ArrowLeft") j = (i - 1 + tabs.length) % tabs.length;
    else if (e.key === "Home") j = 0;
    else if (e.key === "End") j = tabs.length - 1;
    if (j === null) return;
    e.preventDefault();
    selectTab(tabs[j].dataset.tab);
  });
  window.addEventListener("hashchange", () => {
    const id = location.hash.slice(1);
    if (TABS.some((t) => t.id === id) && !$(`tab-${id}`).hidden) selectTab(id, false);
  });
}

// ---------------------------------------------------------------- text tab
function nearBottom(el) {
  return el.scrollHeight - el.scrollTop - el.clientHeight < 40;
}

function setTextBusy(busy) {
  $("generate").disabled = busy;
  $("stop").disabled = !busy;
  $("model").disabled = busy;
  $("output-box").setAttribute("aria-busy", String(busy));
  $("output-box").classList.toggle("streaming", busy);
  const has = $("output").textContent.length > 0 || $("output-prompt").textContent.length > 0;
  $("copy-output").disabled = busy || !has;
  $("clear-output").disabled = busy || !has;
}

/** The shared parameters and the picked model, or null after showing why in ``errBox``. */
function readRequest(errBox, selectId) {
  clearError(errBox);
  let params;
  try {
    params = readParams();
  } catch (e) {
    showError(errBox, e);
    return null;
  }
  const model = $(selectId).value;
  if (!model) {
    showError(errBox, "Pick a model first.");
    return null;
  }
  return { model, params };
}

async function generate() {
  if (state.text.controller) return;
  const errBox = $("error");
  $("stats").textContent = "";
  const request = readRequest(errBox, "model");
  if (!request) return;
  const { model, params } = request;
  const prompt = $("prompt").value;
  // genforge_sliding_window: a max tokens past the model's context slides the window (keeps its newest tokens)
  const body = { model, prompt, ...params, stream: true, genforge_sliding_window: true };

  const box = $("output-box");
  const out = $("output");
  $("output-prompt").textContent = prompt;
  const textNode = document.createTextNode("");
  out.replaceChildren(textNode);
  const controller = new AbortController();
  state.text.controller = controller;
  setTextBusy(true);
  $("stats").textContent = "Generating…";

  const r = await streamRequest("v1/completions", body, {
    signal: controller.signal,
    pick: (ch) => ch.text,
    onPiece: (piece) => {
      const stick = nearBottom(box);
      textNode.appendData(piece);
      if (stick) box.scrollTop = box.scrollHeight;
    },
  });
  state.text.controller = null;
  setTextBusy(false);
  if (r.error) showError(errBox, r.error);
  $("stats").textContent = r.error && !r.pieces ? "" : statsLine(r);
  box.dataset.finish = r.finish || "";
}

function setupText() {
  $("text-form").addEventListener("submit", (e) => {
    e.preventDefault();
    generate();
  });
  $("prompt").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      generate();
    }
  });
  $("stop").addEventListener("click", () => state.text.controller?.abort());
  $("model").addEventListener("change", () => {
    $("model-info").textContent = modelInfo($("model").value);
    rememberModel("text", $("model").value);
  });
  $("clear-output").addEventListener("click", () => {
    $("output").replaceChildren();
    $("output-prompt").textContent = "";
    $("stats").textContent = "";
    clearError($("error"));
    setTextBusy(false);
  });
  $("copy-output").addEventListener("click", async () => {
    const text = $("output-prompt").textContent + $("output").textContent;
    const btn = $("copy-output");
    try {
      await navigator.clipboard.writeText(text);
      btn.textContent = "Copied";
    } catch {
      const sel = window.getSelection();
      sel.selectAllChildren($("output-box")); // clipboard API unavailable: select it for Ctrl+C
      btn.textContent = "Selected";
    }
    setTimeout(() => (btn.textContent = "Copy"), 1200);
  });
}

// ---------------------------------------------------------------- chat tab
function addBubble(role, text) {
  const log = $("chat-log");
  const msg = document.createElement("div");
  msg.className = `msg msg-${role}`;
  msg.dataset.role = role;
  msg.dataset.testid = `chat-${role}`;
  const who = document.createElement("div");
  who.className = "msg-role";
  who.textContent = role === "user" ? "You" : role === "assistant" ? "Assistant" : role;
  const body = document.createElement("div");
  body.className = "msg-body";
  body.textContent = text;
  msg.append(who, body);
  log.append(msg);
  log.scrollTop = log.scrollHeight;
  return { msg, body };
}

function setChatBusy(busy) {
  $("chat-send").disabled = busy;
  $("chat-stop").disabled = !busy;
  $("chat-model").disabled = busy;
  $("chat-log").setAttribute("aria-busy", String(busy));
}

async function sendChat() {
  if (state.chat.controller) return;
  const input = $("chat-input");
  const text = input.value.trim();
  if (!text) {
    input.focus();
    return;
  }
  const errBox = $("chat-error");
  const request = readRequest(errBox, "chat-model");
  if (!request) return;
  const { model, params } = request;
  const userMsg = { role: "user", content: text };
  state.chat.messages.push(userMsg);
  const userBubble = addBubble("user", text);
  state.chat.bubbles.set(userMsg, userBubble.msg);
  input.value = "";
  const sent = [...state.chat.messages];

  const messages = [];
  const system = $("system-prompt").value.trim();
  if (system) messages.push({ role: "system", content: system });
  messages.push(...state.chat.messages);

  const log = $("chat-log");
  const reply = addBubble("assistant", "");
  reply.msg.classList.add("pending");
  const textNode = document.createTextNode("");
  reply.body.append(textNode);
  const controller = new AbortController();
  const epoch = state.chat.epoch;
  state.chat.controller = controller;
  setChatBusy(true);
  $("chat-stats").textContent = "Generating…";

  // genforge_fit_context: the server leaves out the oldest messages that no longer fit the model's context
  // (never the system prompt) and says how many; an empty max tokens then means "what fits", and a larger
  // one slides the window past the context (genforge_sliding_window).
  const body = { model, messages, ...params, stream: true, genforge_fit_context: true, genforge_sliding_window: true };
  const sources = $("chat-sources").value; // "" = none, also when the server retrieves by default
  body.genforge_retrieve = sources ? { index: sources, k: 4 } : false;
  const r = await streamRequest("v1/chat/completions", body, {
    signal: controller.signal,
    pick: (ch) => (ch.delta ? ch.delta.content : ch.message ? ch.message.content : undefined),
    onPiece: (piece) => {
      const stick = nearBottom(log);
      reply.msg.classList.remove("pending");
      textNode.appendData(piece);
      if (stick) log.scrollTop = log.scrollHeight;
    },
  });
  if (epoch !== state.chat.epoch) return; // the conversation was reset while this reply streamed
  state.chat.controller = null;
  setChatBusy(false);
  reply.msg.classList.remove("pending");
  const content = textNode.data;
  if (r.error) {
    // The turn failed: take it back so the history stays user/assistant pairs, and give the text back.
    const i = state.chat.messages.lastIndexOf(userMsg);
    if (i >= 0) state.chat.messages.splice(i, 1);
    state.chat.bubbles.delete(userMsg);
    userBubble.msg.remove();
    reply.msg.remove();
    if (!input.value) input.value = text;
    showError(errBox, r.error);
  } else {
    if (r.finish === "aborted") reply.msg.classList.add("stopped");
    if (content) {
      const replyMsg = { role: "assistant", content };
      state.chat.messages.push(replyMsg);
      state.chat.bubbles.set(replyMsg, reply.msg);
    } else if (r.finish === "aborted") reply.body.textContent = "(stopped before any text)";
    else reply.body.textContent = "(empty reply)";
    reply.msg.dataset.finish = r.finish || "";
    if (r.citations) showGrounding(reply, content, r.citations, r.grounding);
  }
  $("chat-stats").textContent = r.error ? "" : statsLine(r);
  if (!r.error && r.context) showContextNote(sent, r.context, params.max_tokens);
  if (document.activeElement === document.body || document.activeElement === $("chat-send")) input.focus();
}

// Retrieval: mark each sentence with the source that supports it ([n]) or as unsupported, and list the sources.
function showGrounding(reply, content, citations, grounding) {
  const body = reply.body;
  body.textContent = "";
  let at = 0;
  for (const s of (grounding && grounding.sentences) || []) {
    body.append(document.createTextNode(content.slice(at, s.end)));
    at = s.end;
    if (s.supported === true && s.citation) {
      const sup = document.createElement("sup");
      sup.className = "cite";
      sup.textContent = `[${s.citation}]`;
      sup.title = `support ${Number(s.support).toFixed(2)}`;
      body.append(sup);
    } else if (s.supported === false) {
      const last = body.lastChild;
      const mark = document.createElement("mark");
      mark.className = "unsupported";
      mark.dataset.testid = "unsupported";
      mark.title = `Not supported by the sources (support ${Number(s.support).toFixed(2)})`;
      mark.textContent = content.slice(s.start, s.end);
      last.data = last.data.slice(0, last.data.length - (s.end - s.start));
      body.append(mark);
    }
  }
  body.append(document.createTextNode(content.slice(at)));
  const list = document.createElement("ol");
  list.className = "sources";
  list.dataset.testid = "sources";
  for (const c of citations) {
    const li = document.createElement("li");
    li.value = c.number;
    const file = String(c.source).split("/").pop();
    li.textContent = c.title && c.title !== c.source && c.title !== file ? `${c.title} (${file})` : file;
    li.title = `${c.source}\n\n${c.text}`; // the whole path and the passage as the model saw it
    list.append(li);
  }
  reply.msg.append(list);
}

async function loadIndexes() {
  try {
    const res = await fetch("v1/indexes", { headers: headers() });
    if (!res.ok) return;
    const data = await res.json();
    const select = $("chat-sources");
    for (const ix of data.data || []) {
      const opt = document.createElement("option");
      opt.value = ix.name;
      opt.textContent = `${ix.name}${Number.isFinite(ix.chunks) ? ` (${ix.chunks} passages)` : ""}`;
      select.append(opt);
    }
    if (data.default) select.value = data.default;
  } catch {
    // no retrieval on this server: the menu keeps "None"
  }
}

// Grey out the messages the server left out of the model's context, and say so.
function showContextNote(sent, ctx, askedMaxTokens) {
  const dropped = Number(ctx.dropped_messages) || 0;
  sent.forEach((m, i) => {
    const el = state.chat.bubbles.get(m);
    if (!el) return;
    el.classList.toggle("dropped", i < dropped);
    if (i < dropped) el.title = "Left out: no longer fits the model's context";
    else el.removeAttribute("title");
  });
  const notes = [];
  if (dropped) {
    notes.push(`The model's context holds ${ctx.context_length} tokens, so the ${dropped === 1 ? "oldest message" :
      `${dropped} oldest messages`} (greyed out) ${dropped === 1 ? "was" : "were"} left out of this reply; the system prompt is always kept.`);
  }
  if (askedMaxTokens && ctx.max_tokens < askedMaxTokens) {
    notes.push(`Only ${ctx.max_tokens} tokens of context were left for the reply (max tokens is ${askedMaxTokens}).`);
  }
  $("chat-note").textContent = notes.join(" ");
  $("chat-note").hidden = notes.length === 0;
}

function resetChat() {
  state.chat.epoch += 1;
  state.chat.controller?.abort();
  state.chat.controller = null;
  setChatBusy(false);
  state.chat.messages = [];
  state.chat.bubbles.clear();
  $("chat-note").textContent = "";
  $("chat-note").hidden = true;
  $("chat-log").replaceChildren();
  clearError($("chat-error"));
  $("chat-stats").textContent = "";
  $("chat-input").focus();
}

function setupChat() {
  $("chat-form").addEventListener("submit", (e) => {
    e.preventDefault();
    sendChat();
  });
  $("chat-input").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      sendChat();
    }
  });
  $("chat-stop").addEventListener("click", () => state.chat.controller?.abort());
  $("chat-reset").addEventListener("click", resetChat);
  $("chat-model").addEventListener("change", () => {
    updateChatModelInfo();
    rememberModel("chat", $("chat-model").value);
  });
}

// ---------------------------------------------------------------- start
function setupKey() {
  const key = $("api-key");
  key.value = storageGet(KEY_STORE, "");
  $("key-form").addEventListener("submit", (e) => e.preventDefault());
  key.addEventListener("change", () => {
    storageSet(KEY_STORE, key.value.trim());
    loadModels();
  });
}

function main() {
  setupKey();
  setupParams();
  setupTabs();
  setupText();
  setupChat();
  images = setupImages({ headers, httpError, showError, clearError, fmtSeconds, rememberModel });
  molecules = setupMolecules({ headers, httpError, showError, clearError, fmtSeconds, rememberModel });
  sound = setupSound({ headers, httpError, showError, clearError, fmtSeconds, rememberModel });
  loadModels();
  loadIndexes();
}

main();
