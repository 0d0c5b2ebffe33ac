"use strict";
// The service's page: plain JavaScript over its own HTTP API (chat completions, collections, documents, jobs).
// No build step and nothing loaded from anywhere else.

const $ = (id) => document.getElementById(id);
const state = { collection: null, writable: false, history: [], controller: null };
const MAX_TURNS = 10; // earlier turns sent with a question: the service caps messages anyway

// ---- the API key: asked for once, kept for this tab, or on this computer if the user ticks "remember" -------------

function storedKey() {
  return sessionStorage.getItem("rag-key") || localStorage.getItem("rag-key");
}

function askForKey() {
  const dialog = $("key-dialog");
  $("key").value = "";
  dialog.showModal();
  return new Promise((resolve) => {
    const done = (given) => {
      $("key-form").onsubmit = null;
      $("key-cancel").onclick = null;
      dialog.close();
      resolve(given);
    };
    $("key-form").onsubmit = (event) => {
      event.preventDefault();
      sessionStorage.setItem("rag-key", $("key").value);
      if ($("remember").checked) localStorage.setItem("rag-key", $("key").value);
      else localStorage.removeItem("rag-key");
      done(true);
    };
    $("key-cancel").onclick = () => done(false);
  });
}

// ---- requests ---------------------------------------------------------------------------------------------------

async function problem(response) {
  let detail = response.statusText;
  try {
    const body = await response.json();
    detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
  } catch (_) { /* not JSON: the status text says enough */ }
  if (response.status === 503) {
    const wait = response.headers.get("Retry-After");
    return new Error(`The service is busy (503): ${detail}.` + (wait ? ` Retry in ${wait} s.` : ""));
  }
  return new Error(`${response.status}: ${detail}`);
}

async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  const key = storedKey();
  if (key) headers.set("Authorization", `Bearer ${key}`);
  const response = await fetch(path, { ...options, headers });
  if (response.status === 401) {
    sessionStorage.removeItem("rag-key");
    localStorage.removeItem("rag-key");
    if (await askForKey()) return api(path, options);
  }
  if (!response.ok) throw await problem(response);
  return response;
}

function say(element, text, isError = false) {
  element.textContent = text;
  element.classList.toggle("error", isError);
}

// ---- collections ------------------------------------------------------------------------------------------------

async function loadCollections() {
  const { data } = await (await api("/v1/collections")).json();
  const select = $("collection");
  select.replaceChildren(...data.map((c) => new Option(`${c.name} (${c.documents} documents)`, c.name)));
  const wanted = sessionStorage.getItem("rag-collection");
  state.collection = data.some((c) => c.name === wanted) ? wanted : data[0] && data[0].name;
  select.value = state.collection;
  state.writable = Boolean(data.find((c) => c.name === state.collection)?.writable);
  await loadDocuments();
}

// ---- chat -------------------------------------------------------------------------------------------------------

function addMessage(role, text) {
  const item = document.createElement("li");
  item.className = role;
  const label = document.createElement("div");
  label.className = "role";
  label.textContent = role === "user" ? "You" : "Answer";
  const body = document.createElement("div");
  body.className = "text";
  body.textContent = text;
  item.append(label, body);
  $("messages").append(item);
  return item;
}

function showSources(item, citations, retrieval) {
  const list = document.createElement("ol");
  list.className = "sources";
  list.setAttribute("aria-label", "Sources");
  for (const citation of citations) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = `${citation.file}, p. ${citation.page} (score ${citation.score.toFixed(3)})`;
    button.onclick = () => openSource(citation);
    const entry = document.createElement("li");
    entry.append(button);
    list.append(entry);
  }
  item.append(list);
  const applied = Object.entries(retrieval.filters || {}).map(([k, v]) => `${k}=${[].concat(v).join("|")}`);
  const note = document.createElement("p");
  note.className = "applied";
  note.textContent = `Searched ${retrieval.mode}` + (applied.length ? `, filtered by ${applied.join(", ")}` : "") +
    (retrieval.index_version ? ` (index ${retrieval.index_version})` : "");
  item.append(note);
}

// Why a figure was not found, as the check's rule says (rag/figures/report.py's WHY, in a reader's words).
const WHY = {
  not_found: "no source's line about what its sentence says holds it",
  other_period: "its sentence's figures are in the sources under another period",
  not_a_source_period: "no source reports on this period, or compares with it",
  compared_with_itself: "its sentence compares this period with itself",
  out_of_order: "told as later than the quarter named before it, but earlier",
  other_row: "the table's row of the amount beside it gives another percentage",
};

// Each figure of the answer marked as the service checked it: a supported one opens the source that holds it, with
// the line shown; one not found in the sources says so in words, not only in colour, and says why.
function markFigures(item, text, checks, summary, citations) {
  if (summary.refused || !checks.length) return;
  const words = text.textContent;
  const pieces = [];
  let at = 0;
  for (const check of checks) {
    if (check.start < at || words.slice(check.start, check.end) !== check.text) continue;
    pieces.push(words.slice(at, check.start));
    if (check.status === "supported" && check.source) {
      const figure = document.createElement("button");
      figure.type = "button";
      figure.className = "figure supported";
      figure.textContent = check.text;
      figure.title = `Found in ${check.file}, p. ${check.page}`;
      const citation = citations.find((c) => c.index === check.source);
      figure.onclick = () => openSource(citation, check);
      pieces.push(figure);
    } else {
      const figure = document.createElement("mark");
      figure.className = `figure ${check.status}`;
      figure.textContent = check.text;
      // A figure the answer computes (a change, a share, a total) stands on its operands, not on a source's line.
      const parts = check.derived_from;
      figure.title = check.status === "supported" ?
        `Computed from ${parts.slice(0, -1).join(", ")} and ${parts[parts.length - 1]}` :
        check.status === "cut_off" ? "Cut off by the length limit" :
        `Not found in the sources: ${WHY[check.why] || WHY.not_found}`;
      pieces.push(figure);
    }
    at = check.end;
  }
  pieces.push(words.slice(at));
  text.replaceChildren(...pieces);
  const missing = checks.filter((c) => c.status === "unsupported")
    .map((c) => (c.why && c.why !== "not_found" ? `${c.text} (${WHY[c.why]})` : c.text));
  const note = document.createElement("p");
  note.className = "figures" + (missing.length ? " error" : "");
  note.textContent = `${summary.supported} of ${summary.figures} figures found in the sources` +
    (missing.length ? `; not found in the sources: ${missing.join(", ")}` : "") +
    (summary.cut_off ? `; ${summary.cut_off} cut off by the length limit` : "");
  item.querySelector(".text").after(note);
}

async function* serverEvents(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = event.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
      if (data === "[DONE]") return;
      if (data) yield JSON.parse(data);
    }
  }
}

async function ask(question) {
  addMessage("user", question);
  const item = addMessage("assistant", "");
  const text = item.querySelector(".text");
  const messages = [...state.history.slice(-2 * MAX_TURNS), { role: "user", content: question }];
  state.controller = new AbortController();
  $("stop").disabled = false;
  $("send").disabled = true;
  say($("status"), "Searching and answering…");
  try {
    const response = await api("/v1/chat/completions", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ model: state.collection, collection: state.collection, messages, stream: true }),
      signal: state.controller.signal,
    });
    for await (const event of serverEvents(response)) {
      if (event.error) throw new Error(`${event.error.code}: ${event.error.message}`);
      const delta = event.choices[0] && event.choices[0].delta;
      if (delta && delta.content) text.textContent += delta.content;
      if (event.citations) {
        showSources(item, event.citations, event.retrieval);
        if (event.checks) markFigures(item, text, event.checks, event.figures, event.citations);
      }
    }
    state.history.push({ role: "user", content: question }, { role: "assistant", content: text.textContent });
    say($("status"), "");
  } catch (error) {
    if (error.name === "AbortError") {
      text.textContent += " [stopped]";
      say($("status"), "Stopped.");
    } else {
      item.querySelector(".role").classList.add("error");
      say($("status"), error.message, true);
    }
  } finally {
    state.controller = null;
    $("stop").disabled = true;
    $("send").disabled = false;
  }
}

// ---- a source: its passage, and the PDF at its page ---------------------------------------------------------------

function selectTab(name) {
  for (const tab of ["source", "documents"]) {
    $(`tab-${tab}`).setAttribute("aria-selected", String(tab === name));
    $(tab).hidden = tab !== name;
  }
}

async function openSource(citation, figure = null) {
  selectTab("source");
  const panel = $("source");
  const title = document.createElement("h2");
  title.textContent = `${citation.file}, page ${citation.page}`;
  const passage = document.createElement("blockquote");
  passage.textContent = citation.text;
  const status = document.createElement("p");
  status.setAttribute("role", "status");
  panel.replaceChildren(title, passage, status);
  if (figure) {
    const row = document.createElement("p");
    row.className = "holding";
    const label = document.createElement("strong");
    const where = figure.held_by === "period" ? "is a period this document reports on" : "stands here";
    label.textContent = `${figure.text} ${where}: `;
    row.append(label, figure.span);
    title.after(row);
  }
  const path = `/v1/collections/${encodeURIComponent(state.collection)}/documents/${encodeURIComponent(citation.file)}/pdf`;
  try {
    // Fetched with the key (a frame cannot send it), then shown by the browser's own viewer at the page.
    const blob = await (await api(path)).blob();
    const url = `${URL.createObjectURL(blob)}#page=${citation.page}`;
    const frame = document.createElement("iframe");
    frame.title = `${citation.file}, page ${citation.page}`;
    frame.src = url;
    const link = document.createElement("a");
    link.href = url;
    link.target = "_blank";
    link.textContent = "Open the PDF in a new tab";
    panel.append(link, frame);
  } catch (error) {
    say(status, error.message, true);
  }
}

// ---- documents --------------------------------------------------------------------------------------------------

async function loadDocuments() {
  if (!state.collection) return;
  const path = `/v1/collections/${encodeURIComponent(state.collection)}/documents`;
  const { data } = await (await api(path)).json();
  $("documents-caption").textContent = `Documents in ${state.collection} (${data.length})`;
  $("drop").hidden = !state.writable;
  $("document-rows").replaceChildren(...data.map((doc) => {
    const row = document.createElement("tr");
    const meta = doc.metadata || {};
    const about = [meta.company || meta.title, meta.form, meta.period_end && `period ended ${meta.period_end}`]
      .filter(Boolean).join(", ");
    const cells = [doc.file, doc.status + (doc.reason ? `: ${doc.reason}` : ""), about, doc.pages ?? "", doc.chunks ?? ""];
    for (const value of cells) {
      const cell = document.createElement("td");
      cell.textContent = value;
      row.append(cell);
    }
    row.children[1].className = doc.status;
    const actions = document.createElement("td");
    if (state.writable) {
      const remove = document.createElement("button");
      remove.type = "button";
      remove.textContent = "Delete";
      remove.setAttribute("aria-label", `Delete ${doc.file}`);
      remove.onclick = () => removeDocument(doc.file);
      actions.append(remove);
    }
    row.append(actions);
    return row;
  }));
}

async function followJob(job) {
  const line = $("job");
  while (job.state === "queued" || job.state === "running") {
    const p = job.progress;
    const progress = p && p.files_total
      ? `: ${p.files_parsed} of ${p.files_total} files read, ${p.pages_parsed} pages, ${p.chunks_embedded} chunks embedded` +
        (p.eta_s ? `, about ${p.eta_s < 90 ? `${Math.round(p.eta_s)} s` : `${Math.round(p.eta_s / 60)} min`} left` : "")
      : "";
    const waiting = job.waiting ? ` (${job.waiting})` : "";
    say(line, `Indexing (${job.state}${waiting})${progress}…`);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    job = await (await api(`/v1/jobs/${encodeURIComponent(job.id)}`)).json();
    await loadDocuments();
  }
  if (job.state === "failed") {
    say(line, `Indexing failed: ${job.error}`, true);
    return;
  }
  say(line, `Version ${job.version} published; waiting for the service to serve it…`);
  for (;;) {
    const view = await (await api(`/v1/collections/${encodeURIComponent(job.collection)}`)).json();
    const versions = Object.values(view.replicas);
    if (versions.length && versions.every((v) => v === job.version)) break;
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  const failed = Object.keys(job.result.failed);
  say(line, `Live: version ${job.version}, ${job.result.indexed} documents, ${job.result.chunks} chunks.` +
    (failed.length ? ` Not indexed: ${failed.join(", ")} (see the reasons below).` : ""));
  await loadCollections();
}

async function upload(files) {
  const form = new FormData();
  for (const file of files) form.append("files", file, file.name);
  try {
    const path = `/v1/collections/${encodeURIComponent(state.collection)}/documents`;
    const { job } = await (await api(path, { method: "POST", body: form })).json();
    await loadDocuments();
    await followJob(job);
  } catch (error) {
    say($("job"), error.message, true);
  }
}

async function removeDocument(file) {
  if (!confirm(`Delete ${file} from ${state.collection}? Its passages leave the answers once the new version is live.`)) {
    return;
  }
  try {
    const path = `/v1/collections/${encodeURIComponent(state.collection)}/documents/${encodeURIComponent(file)}`;
    const { job } = await (await api(path, { method: "DELETE" })).json();
    await loadDocuments();
    await followJob(job);
  } catch (error) {
    say($("job"), error.message, true);
  }
}

// ---- wiring -----------------------------------------------------------------------------------------------------

$("ask").onsubmit = (event) => {
  event.preventDefault();
  const question = $("question").value.trim();
  if (!question || state.controller) return;
  $("question").value = "";
  ask(question);
};
$("question").onkeydown = (event) => {
  if (event.key === "Enter" && !event.shiftKey) {
    event.preventDefault();
    $("ask").requestSubmit();
  }
};
$("stop").onclick = () => state.controller && state.controller.abort();
$("clear").onclick = () => {
  state.history = [];
  $("messages").replaceChildren();
};
$("collection").onchange = async (event) => {
  state.collection = event.target.value;
  sessionStorage.setItem("rag-collection", state.collection);
  state.history = [];
  $("messages").replaceChildren();
  await loadCollections();
};
$("key-button").onclick = async () => {
  if (await askForKey()) await loadCollections();
};
$("tab-source").onclick = () => selectTab("source");
$("tab-documents").onclick = () => selectTab("documents");
$("files").onchange = (event) => upload([...event.target.files]);
const drop = $("drop");
drop.ondragover = (event) => { event.preventDefault(); drop.classList.add("over"); };
drop.ondragleave = () => drop.classList.remove("over");
drop.ondrop = (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  upload([...event.dataTransfer.files]);
};
drop.onkeydown = (event) => {
  if (event.key === "Enter" || event.key === " ") {
    event.preventDefault();
    $("files").click();
  }
};

loadCollections().catch((error) => say($("status"), error.message, true));
