// The kosearch search page: reads the form (or the URL: ?q=...&mode=...&k=...&filter=...),
// asks this server's POST /search and renders the hits. Every piece of text from the server
// enters the page as a text node (textContent), never as HTML.
"use strict";

(function () {
  const DEFAULT_K = "10";
  const $ = (id) => document.getElementById(id);
  const form = $("search");
  const fields = { q: $("q"), mode: $("mode"), k: $("k"), filter: $("filter"),
                   passages: $("passages") };
  let latest = 0; // the newest search; answers to older ones are dropped
  let described = false; // whether the index's description (/info) is shown

  // ------------------------------------------------------------------ building DOM nodes

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function codePoints(text) {
    // The server counts offsets in code points (Python str indices), JS strings in UTF-16
    // units: slice arrays of code points so that an emoji before a match cannot shift it.
    return Array.from(typeof text === "string" ? text : "");
  }

  function isOffset(value) {
    return Number.isInteger(value) && value >= 0;
  }

  function validHighlights(h) {
    return h !== null && typeof h === "object" && typeof h.snippet === "string" &&
      isOffset(h.start) && isOffset(h.end) && h.end >= h.start;
  }

  // The snippet as nodes: text, with each matched span (offsets in the passage) in <mark>.
  function snippetNodes(h) {
    const chars = codePoints(h.snippet);
    const nodes = [];
    let at = 0;
    const spans = Array.isArray(h.spans) ? h.spans : [];
    for (const span of spans) {
      if (!span || !isOffset(span.start) || !isOffset(span.end)) continue;
      const start = Math.max(span.start - h.start, at);
      const end = Math.min(span.end - h.start, chars.length);
      if (end <= start) continue;
      if (start > at) nodes.push(document.createTextNode(chars.slice(at, start).join("")));
      nodes.push(el("mark", null, chars.slice(start, end).join("")));
      at = end;
    }
    if (at < chars.length) nodes.push(document.createTextNode(chars.slice(at).join("")));
    return nodes;
  }

  function renderText(hit) {
    const text = typeof hit.text === "string" ? hit.text : "";
    const h = hit.highlights;
    const p = el("p", "snippet");
    if (!validHighlights(h)) { // no highlights (yet): the passage itself
      p.textContent = text;
      return [p];
    }
    if (h.start > 0) p.append("… ");
    p.append(...snippetNodes(h));
    if (h.end < codePoints(text).length) p.append(" …");
    if (h.start === 0 && h.end >= codePoints(text).length) return [p];
    const whole = el("details", "passage");
    whole.append(el("summary", null, "whole passage"), el("p", null, text));
    return [p, whole];
  }

  function formatValue(value) { // metadata: strings as they are, the rest as JSON
    return typeof value === "string" ? value : JSON.stringify(value);
  }

  function formatScore(value) {
    return typeof value === "number" ? value.toFixed(4) : formatValue(value);
  }

  // {"dense_rank": 1, "dense_score": 0.3, "lexical_rank": 2, ...} -> dense #1 0.3000 · ...
  function renderScores(scores) {
    const groups = new Map();
    for (const [key, value] of Object.entries(scores || {})) {
      const m = /^(.+)_(rank|score)$/.exec(key);
      const name = m ? m[1] : key;
      if (!groups.has(name)) groups.set(name, {});
      groups.get(name)[m ? m[2] : "score"] = value;
    }
    const box = el("p", "scores");
    for (const [name, part] of groups) {
      const item = el("span", "part");
      item.dataset.retriever = name;
      item.append(el("b", null, name));
      if (part.rank !== undefined) item.append(" #" + formatValue(part.rank));
      if (part.score !== undefined) item.append(" " + formatScore(part.score));
      box.append(item);
    }
    return box;
  }

  function renderMeta(meta) {
    const list = el("dl", "meta");
    for (const [key, value] of Object.entries(meta || {})) {
      list.append(el("dt", null, key), el("dd", null, formatValue(value)));
    }
    return list;
  }

  function renderHit(hit) {
    const item = el("li", "hit");
    item.dataset.id = String(hit.id);
    const head = el("div", "head");
    const title = el("h2", "title", hit.title || hit.id);
    if (!hit.title) title.classList.add("untitled");
    head.append(title, el("code", "id", hit.id));
    if (Number.isInteger(hit.chunk)) head.append(el("span", "chunk hint", "passage " + hit.chunk));
    head.append(el("span", "score", formatScore(hit.score)));
    item.append(head, ...renderText(hit));
    if (hit.meta && Object.keys(hit.meta).length) item.append(renderMeta(hit.meta));
    item.append(renderScores(hit.scores));
    return item;
  }

  // ------------------------------------------------------------------ the form and the URL

  function fromUrl() {
    const p = new URLSearchParams(location.search);
    fields.q.value = p.get("q") || "";
    fields.mode.value = p.get("mode") || "";
    fields.k.value = p.get("k") || DEFAULT_K;
    fields.filter.value = p.get("filter") || "";
    fields.passages.checked = p.get("passages") === "1";
    if (fields.filter.value) $("filter-box").open = true;
  }

  function toUrl() {
    const p = new URLSearchParams();
    p.set("q", fields.q.value);
    if (fields.mode.value) p.set("mode", fields.mode.value);
    if (fields.k.value && fields.k.value !== DEFAULT_K) p.set("k", fields.k.value);
    if (fields.filter.value.trim()) p.set("filter", fields.filter.value.trim());
    if (fields.passages.checked) p.set("passages", "1");
    return "?" + p.toString();
  }

  function headers() {
    const h = { "Content-Type": "application/json" };
    const key = $("key").value.trim();
    if (key) h.Authorization = "Bearer " + key;
    return h;
  }

  function setStatus(text, isError) {
    const status = $("status");
    status.textContent = text;
    status.classList.toggle("error", Boolean(isError));
  }

  function request() {
    const body = { query: fields.q.value, k: Number(fields.k.value || DEFAULT_K) };
    if (fields.mode.value) body.mode = fields.mode.value;
    if (fields.passages.checked) body.passages = true;
    const text = fields.filter.value.trim();
    if (text) {
      let filter;
      try {
        filter = JSON.parse(text);
      } catch (e) {
        throw new Error("the filter is not valid JSON (" + e.message + ")");
      }
      if (filter === null || typeof filter !== "object" || Array.isArray(filter)) {
        throw new Error('the filter must be a JSON object, like {"category": "법률"}');
      }
      body.filter = filter;
    }
    return body;
  }

  async function answer(response) {
    let data = null;
    try {
      data = await response.json();
    } catch (e) {
      data = null;
    }
    if (response.ok) return data;
    if (response.status === 401) {
      $("key-box").hidden = false;
      $("key-box").open = true;
      $("key").focus();
    }
    const reason = data && typeof data.error === "string" ? data.error : response.statusText;
    throw new Error(reason + " (HTTP " + response.status + ")");
  }

  async function search() {
    const hits = $("hits");
    if (!fields.q.value.trim()) {
      hits.replaceChildren();
      setStatus("");
      return;
    }
    const mine = ++latest;
    document.title = fields.q.value + " - kosearch";
    setStatus("Searching…");
    try {
      const body = request();
      const response = await fetch("search", {
        method: "POST", headers: headers(), body: JSON.stringify(body),
      });
      const data = await answer(response);
      if (mine !== latest) return;
      const found = Array.isArray(data && data.hits) ? data.hits : [];
      hits.replaceChildren(...found.map(renderHit));
      if (!described) describeIndex(); // the API key it may have needed is known now
      setStatus(found.length ? found.length + (found.length === 1 ? " hit" : " hits")
        : "No hits" + (body.filter ? " (no document matches the filter?)" : ""));
    } catch (e) {
      if (mine !== latest) return;
      hits.replaceChildren();
      setStatus("Error: " + e.message, true);
    }
    hits.dataset.searches = String(Number(hits.dataset.searches || 0) + 1); // finished ones
  }

  // What the index offers: its size, whether it has BM25, its filterable fields.
  async function describeIndex() {
    let info;
    try {
      const response = await fetch("info", { headers: headers() });
      if (!response.ok) return;
      info = await response.json();
    } catch (e) {
      return;
    }
    described = true;
    const counts = info.counts || {};
    const model = (info.model && info.model.name) || "?";
    $("about").textContent = (counts.documents ?? "?") + " documents, " +
      (counts.passages ?? "?") + " passages · " + model;
    if (!info.lexical) { // no BM25 part: dense is the only mode
      for (const option of fields.mode.options) {
        option.disabled = option.value === "hybrid" || option.value === "lexical";
      }
      $("about").append(" · dense only (no BM25)");
    }
    const known = Array.isArray(info.filter_fields) ? info.filter_fields : [];
    if (known.length) {
      const hint = $("fields");
      hint.replaceChildren("Fields: ");
      known.forEach((field, i) => {
        if (i) hint.append(", ");
        hint.append(el("code", null, field.name));
        const examples = Array.isArray(field.examples) ? field.examples.map(formatValue) : [];
        hint.append(" (" + field.type + (examples.length ? ": " + examples.join(", ") : "") + ")");
      });
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const url = toUrl();
    if (url !== location.search) history.pushState(null, "", url);
    search();
  });
  window.addEventListener("popstate", () => {
    fromUrl();
    search();
  });

  fromUrl();
  describeIndex();
  search();

  // for tests and for anyone scripting the page
  window.kosearchPage = { renderHit, snippetNodes };
})();
