// Review page: works through the images of the review folder, one at a time.
// Every request goes to the /assist app, relative to the base path the server
// wrote into the page, so the page works wherever the app is mounted.
"use strict";

const BASE = document.querySelector('meta[name="assist-base"]').content;
const state = { items: [], position: -1, suggestion: null, options: [], activeOption: -1, busy: false };
const $ = (id) => document.getElementById(id);

function setStatus(message) {
  $("status").textContent = message || "";
}

async function api(path, options = {}) {
  const response = await fetch(BASE + path, options);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new Error(body.error || `HTTP ${response.status} for ${path}`);
  }
  return body;
}

function updateProgress() {
  const decided = state.items.filter((item) => item.decision).length;
  $("progress").textContent = `${decided} / ${state.items.length} decided`;
}

async function loadQueue() {
  const queue = await api("queue");
  state.items = queue.items;
  updateProgress();
}

function firstUndecided(from = 0) {
  for (let offset = 0; offset < state.items.length; offset++) {
    const index = (from + offset) % state.items.length;
    if (!state.items[index].decision) return index;
  }
  return -1;
}

function renderSuggestion(item) {
  const list = $("suggestions");
  list.innerHTML = "";
  const suggestion = item.suggestion;
  if (!suggestion) return;
  if (!suggestion.labels.length) {
    const entry = document.createElement("li");
    entry.textContent = "No suggestion: the model's answer matched no class. Type a label or reject.";
    list.appendChild(entry);
  }
  for (const label of suggestion.labels) {
    const entry = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "suggestion";
    button.dataset.rank = String(label.rank);
    button.title = `Accept ${label.name} (${label.rank})`;
    const percent = Math.round(label.confidence * 100);
    button.innerHTML = `<span class="rank"></span><span class="name"></span><span class="confidence"></span>` +
      `<span class="bar"><span style="width:${percent}%"></span></span>`;
    button.querySelector(".rank").textContent = String(label.rank);
    button.querySelector(".name").textContent = label.name;
    button.querySelector(".confidence").textContent = label.confidence.toFixed(2);
    if (item.decision && item.decision.rank === label.rank) button.classList.add("chosen");
    button.addEventListener("click", () => decide({ rank: label.rank }));
    entry.appendChild(button);
    list.appendChild(entry);
  }
  let confirmed = "";
  if (suggestion.confirmed === true) confirmed = ", confirmed";
  if (suggestion.confirmed === false) confirmed = ", not confirmed";
  $("answer").textContent = `Model answer: “${suggestion.raw_answer}” · uncertainty ${suggestion.uncertainty.toFixed(2)}${confirmed}`;
}

function renderDecision(item) {
  const decision = item.decision;
  if (!decision) {
    $("decision").textContent = "";
  } else if (decision.decision === "rejected") {
    $("decision").textContent = "Rejected";
  } else if (decision.decision === "accepted") {
    $("decision").textContent = `Accepted #${decision.rank}: ${decision.class_name}`;
  } else {
    $("decision").textContent = `Entered: ${decision.class_name}`;
  }
}

async function show(position) {
  if (position < 0 || position >= state.items.length) return;
  state.position = position;
  const item = state.items[position];
  $("image-name").textContent = item.name;
  $("image").src = BASE + "images/" + encodeURIComponent(item.name);
  $("image").alt = item.name;
  $("label-input").value = "";
  clearOptions();
  renderDecision(item);
  $("suggestions").innerHTML = "";
  $("answer").textContent = "";
  setStatus("");

  if (!item.suggestion) {
    setStatus("asking the model…");
    try {
      const confirm = $("confirm").checked ? "true" : "false";
      item.suggestion = await api(`queue/${encodeURIComponent(item.name)}/suggest?confirm=${confirm}`, { method: "POST" });
      setStatus("");
    } catch (error) {
      setStatus(`Suggestion failed: ${error.message}`);
      return;
    }
  }
  if (state.position === position) {
    state.suggestion = item.suggestion;
    renderSuggestion(item);
    document.body.dataset.ready = item.name;
  }
}

async function decide(choice) {
  const item = state.items[state.position];
  if (!item || !item.suggestion || state.busy) return;
  state.busy = true;
  const annotator = $("annotator").value.trim() || null;
  try {
    item.decision = await api("decisions", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ suggestion_id: item.suggestion.id, annotator, ...choice }),
    });
    renderDecision(item);
    renderSuggestion(item);
    updateProgress();
    document.body.dataset.lastDecision = String(item.decision.id);
    const next = firstUndecided(state.position + 1);
    if (next >= 0 && next !== state.position) await show(next);
  } catch (error) {
    setStatus(`Decision failed: ${error.message}`);
  } finally {
    state.busy = false;
  }
}

function clearOptions() {
  state.options = [];
  state.activeOption = -1;
  $("label-options").innerHTML = "";
}

function renderOptions() {
  const list = $("label-options");
  list.innerHTML = "";
  state.options.forEach((option, index) => {
    const entry = document.createElement("li");
    entry.setAttribute("role", "option");
    entry.dataset.id = option.id;
    entry.textContent = option.name;
    const id = document.createElement("span");
    id.className = "class-id";
    id.textContent = option.id;
    entry.appendChild(id);
    if (index === state.activeOption) entry.classList.add("active");
    entry.addEventListener("mousedown", (event) => {
      event.preventDefault();
      decide({ label: option.id });
    });
    list.appendChild(entry);
  });
}

let searchTimer = null;
function onLabelInput() {
  clearTimeout(searchTimer);
  const query = $("label-input").value.trim();
  if (!query) {
    clearOptions();
    return;
  }
  const taxonomy = state.suggestion ? `&taxonomy=${encodeURIComponent(state.suggestion.taxonomy)}` : "";
  searchTimer = setTimeout(async () => {
    try {
      const body = await api(`labels?q=${encodeURIComponent(query)}&limit=10${taxonomy}`);
      if ($("label-input").value.trim() !== query) return;
      state.options = body.labels;
      state.activeOption = state.options.length ? 0 : -1;
      renderOptions();
    } catch (error) {
      setStatus(`Autocomplete failed: ${error.message}`);
    }
  }, 120);
}

function onLabelKey(event) {
  if (event.key === "ArrowDown" || event.key === "ArrowUp") {
    if (!state.options.length) return;
    const step = event.key === "ArrowDown" ? 1 : -1;
    state.activeOption = (state.activeOption + step + state.options.length) % state.options.length;
    renderOptions();
    event.preventDefault();
  } else if (event.key === "Enter") {
    const option = state.options[state.activeOption];
    const typed = $("label-input").value.trim();
    if (option) decide({ label: option.id });
    else if (typed) decide({ label: typed });
    event.preventDefault();
  } else if (event.key === "Escape") {
    clearOptions();
    $("label-input").blur();
  }
}

function onKey(event) {
  if (event.target instanceof HTMLInputElement || event.ctrlKey || event.metaKey || event.altKey) return;
  if (/^[1-9]$/.test(event.key)) {
    const rank = Number(event.key);
    if (state.suggestion && rank <= state.suggestion.labels.length) decide({ rank });
  } else if (event.key === "r") {
    decide({ reject: true });
  } else if (event.key === "t" || event.key === "/") {
    $("label-input").focus();
    event.preventDefault();
  } else if (event.key === "ArrowRight") {
    show(Math.min(state.position + 1, state.items.length - 1));
  } else if (event.key === "ArrowLeft") {
    show(Math.max(state.position - 1, 0));
  }
}

// Suggest labels for every image without one, then reorder the queue hardest first.
async function hardestFirst() {
  const missing = state.items.filter((item) => !item.suggestion);
  const confirm = $("confirm").checked ? "true" : "false";
  for (let index = 0; index < missing.length; index++) {
    setStatus(`suggesting ${index + 1} / ${missing.length}…`);
    try {
      await api(`queue/${encodeURIComponent(missing[index].name)}/suggest?confirm=${confirm}`, { method: "POST" });
    } catch (error) {
      setStatus(`Suggestion for ${missing[index].name} failed: ${error.message}`);
      return;
    }
  }
  await loadQueue();
  const first = firstUndecided(0);
  await show(first >= 0 ? first : 0);
}

async function start() {
  $("annotator").value = localStorage.getItem("assist-annotator") || "";
  $("annotator").addEventListener("change", () => localStorage.setItem("assist-annotator", $("annotator").value.trim()));
  $("label-input").addEventListener("input", onLabelInput);
  $("label-input").addEventListener("keydown", onLabelKey);
  $("label-input").addEventListener("blur", () => setTimeout(clearOptions, 150));
  $("reject").addEventListener("click", () => decide({ reject: true }));
  $("next").addEventListener("click", () => show(Math.min(state.position + 1, state.items.length - 1)));
  $("previous").addEventListener("click", () => show(Math.max(state.position - 1, 0)));
  $("hardest").addEventListener("click", hardestFirst);
  document.addEventListener("keydown", onKey);

  try {
    await loadQueue();
  } catch (error) {
    setStatus(`Loading the queue failed: ${error.message}`);
    return;
  }
  if (!state.items.length) {
    setStatus("The review folder has no images (set MLLM_CLASSIFY_ASSIST__IMAGES_DIR).");
    return;
  }
  const first = firstUndecided(0);
  await show(first >= 0 ? first : 0);
}

start();
