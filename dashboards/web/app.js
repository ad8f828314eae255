// Sightline dashboard: streams with their latest picture, the live event feed, search that jumps
// to the moment, and a per-stream timeline. Plain DOM, no build step.
"use strict";
const $ = (id) => document.getElementById(id);
const esc = (s) => String(s ?? "").replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]));
const secs = (ms) => (ms / 1000).toFixed(1) + " s";

// The API key: from ?key= once (then remembered), or typed into the header.
const params = new URLSearchParams(location.search);
if (params.get("key")) {
  localStorage.setItem("sightline-key", params.get("key"));
  // Out of the address bar and the history: the key stays in this browser's storage only.
  history.replaceState(null, "", location.pathname);
}
let key = localStorage.getItem("sightline-key") || "";
$("key").value = key;
$("key").onchange = () => { key = $("key").value.trim(); localStorage.setItem("sightline-key", key); refresh(); reconnect(); };
// Only the live feed takes the key in its URL (a browser cannot set headers on a websocket);
// every other request sends it as a header, pictures included.
const token = () => (key ? `access_token=${encodeURIComponent(key)}` : "");
async function loadImage(img, url) {
  try {
    const r = await fetch(url, { headers: key ? { authorization: "Bearer " + key } : {} });
    if (!r.ok) { img.onerror && img.onerror(); return; }
    const blob = URL.createObjectURL(await r.blob());
    if (img.dataset.blob) URL.revokeObjectURL(img.dataset.blob);
    img.dataset.blob = blob;
    img.src = blob;
  } catch (_) { img.onerror && img.onerror(); }
}

async function api(path, opts = {}) {
  const headers = Object.assign({ "content-type": "application/json" }, opts.headers || {});
  if (key) headers.authorization = "Bearer " + key;
  const r = await fetch(path, Object.assign({}, opts, { headers }));
  const body = r.status === 204 ? null : await r.json().catch(() => null);
  if (!r.ok) throw new Error(body?.error?.message || `${r.status} ${r.statusText}`);
  return body;
}
const showError = (e) => { $("err").textContent = e ? String(e.message || e) : ""; };

// ---- streams ---------------------------------------------------------------------------------
const names = {};
let picturesAt = 0;
async function refresh() {
  try {
    const j = await api("/v1/streams");
    const now = Date.now();
    const newPictures = now - picturesAt > 4000;
    if (newPictures) picturesAt = now;
    $("count").textContent = `${j.streams.length}`;
    const seen = new Set();
    for (const s of j.streams) {
      names[s.id] = s.name;
      seen.add(s.id);
      let card = document.querySelector(`.card[data-id="${CSS.escape(s.id)}"]`);
      if (!card) {
        card = document.createElement("div");
        card.className = "card";
        card.dataset.id = s.id;
        card.innerHTML = `<img alt="latest keyframe"><div class="noimg">no picture yet</div><div class="body"></div>`;
        const img = card.querySelector("img");
        img.onload = () => { img.hidden = false; card.querySelector(".noimg").hidden = true; };
        img.onerror = () => { img.hidden = true; card.querySelector(".noimg").hidden = false; };
        img.hidden = true;
        $("grid").append(card);
      }
      if (newPictures || !card.dataset.pic) {
        card.dataset.pic = "1";
        loadImage(card.querySelector("img"), `/v1/streams/${encodeURIComponent(s.id)}/thumbnail?t=${now}`);
      }
      const d = s.detail || {};
      const paused = s.status === "paused";
      card.querySelector(".body").innerHTML =
        `<div class="title"><span title="${esc(s.url)}" data-act="timeline">${esc(s.name)}</span><span class="state ${esc(s.status)}">${esc(s.status)}</span></div>` +
        `<div>${(d.decoded_fps ?? 0).toFixed(1)} fps decoded · ${(d.sampled_fps ?? 0).toFixed(1)}/${(d.sample_fps_target ?? 0).toFixed(2)} sampled</div>` +
        `<div>lag ${d.backlog_frames ?? 0} frames · dropped ${d.dropped_frames ?? 0} · reconnects ${d.reconnects ?? 0}</div>` +
        (d.last_error ? `<div class="err" title="${esc(d.last_error)}">${esc(d.last_error)}</div>` : "") +
        `<div class="actions"><button class="small" data-act="${paused ? "resume" : "pause"}">${paused ? "resume" : "pause"}</button>` +
        `<button class="small" data-act="timeline">timeline</button><button class="small" data-act="delete">delete</button></div>`;
    }
    for (const card of document.querySelectorAll(".card")) if (!seen.has(card.dataset.id)) card.remove();
    showError(null);
  } catch (e) { showError(e); }
}
$("grid").onclick = async (ev) => {
  const act = ev.target.dataset.act;
  const id = ev.target.closest(".card")?.dataset.id;
  if (!act || !id) return;
  try {
    if (act === "timeline") return openTimeline(id, null);
    if (act === "delete" && !confirm(`Delete ${names[id] || id}?`)) return;
    await api(`/v1/streams/${encodeURIComponent(id)}${act === "delete" ? "" : "/" + act}`, { method: act === "delete" ? "DELETE" : "POST" });
    refresh();
  } catch (e) { showError(e); }
};
$("add").onsubmit = async (e) => {
  e.preventDefault();
  try {
    await api("/v1/streams", { method: "POST", body: JSON.stringify({ url: $("url").value, name: $("name").value || undefined }) });
    $("url").value = ""; $("name").value = ""; refresh();
  } catch (err) { showError(err); }
};

// ---- nodes (membership: GET /v1/nodes) ---------------------------------------------------------
async function refreshNodes() {
  try {
    const j = await api("/v1/nodes");
    $("node-count").textContent = `${j.nodes.length} live · ${j.streams_ingested} streams ingested`;
    $("nodes").innerHTML = "<tr><th>node</th><th>roles</th><th>streams</th><th>CPU</th><th>memory</th><th></th></tr>" +
      j.nodes.map((n) => {
        const ingest = n.roles.includes("ingest");
        const streams = ingest ? `${n.streams.length}/${n.max_streams}` : "–";
        const state = n.draining ? `<span class="state degraded">draining</span>` :
          (ingest && n.streams.length ? `<button class="small" data-node="${esc(n.id)}">drain</button>` : "");
        return `<tr><td title="${esc(n.host)} · v${esc(n.version)}">${esc(n.id)}</td><td>${esc(n.roles.join(", "))}</td>` +
          `<td title="${esc(n.streams.map((s) => names[s] || s).join(", "))}">${streams}</td>` +
          `<td>${n.cpu_percent.toFixed(0)} %</td><td>${n.rss_mb.toFixed(0)} MB</td><td>${state}</td></tr>`;
      }).join("");
  } catch (e) { $("node-count").textContent = String(e.message || e); }
}
$("nodes").onclick = async (ev) => {
  const id = ev.target.dataset.node;
  if (!id || !confirm(`Drain ${id}? Its streams move to the other ingest nodes.`)) return;
  try { await api(`/v1/nodes/${encodeURIComponent(id)}/drain`, { method: "POST" }); refreshNodes(); } catch (e) { showError(e); }
};

// ---- live feed ---------------------------------------------------------------------------------
let lastSeq = null, ws = null;
function describe(e) {
  switch (e.kind) {
    case "scene": return `cut (score ${e.score.toFixed(2)})`;
    case "frame": return e.frame?.keyframe ? "keyframe" : "frame changed";
    case "duplicate": return `same picture as ${esc(names[e.duplicate?.other_stream_id] || e.duplicate?.other_stream_id)} @${secs(e.duplicate?.other_pts_ms ?? 0)}`;
    default: return esc(e.text);
  }
}
function connect() {
  const q = [lastSeq ? `since=${lastSeq}` : "", token()].filter(Boolean).join("&");
  ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/v1/feed${q ? "?" + q : ""}`);
  ws.onopen = () => { $("feed-state").textContent = "connected"; };
  ws.onmessage = (m) => {
    const e = JSON.parse(m.data);
    lastSeq = e.seq;
    const div = document.createElement("div");
    div.className = `ev ${e.kind}`;
    div.innerHTML = `<span class="t">#${e.seq} ${esc(names[e.stream_id] || e.stream_id)} @${secs(e.pts_ms)}</span> <span class="kind">${esc(e.kind)}</span> ${describe(e)}`;
    div.onclick = () => openTimeline(e.stream_id, e.pts_ms);
    $("feed").prepend(div);
    while ($("feed").childNodes.length > 300) $("feed").lastChild.remove();
  };
  ws.onclose = () => { $("feed-state").textContent = "reconnecting…"; ws = null; setTimeout(connect, 1000); };
}
function reconnect() { if (ws) ws.close(); }

// ---- search ------------------------------------------------------------------------------------
$("search").onsubmit = async (e) => {
  e.preventDefault();
  const q = $("q").value.trim();
  if (!q) return;
  try {
    const j = await api(`/v1/search?q=${encodeURIComponent(q)}&k=10`);
    $("results-box").hidden = false;
    $("results").innerHTML = j.hits.length ? j.hits.map((h, i) =>
      `<li class="hit" data-i="${i}">${h.frame_id ? `<img data-src="${esc(`/v1/frames/${encodeURIComponent(h.frame_id)}/image`)}" alt="">` : ""}` +
      `<b>${esc(names[h.stream_id] || h.stream_id)}</b> @${secs(h.pts_ms)} — ${esc(h.text)} <span class="score">${h.score.toFixed(3)}</span></li>`).join("")
      : "<li>nothing found</li>";
    for (const img of $("results").querySelectorAll("img[data-src]")) loadImage(img, img.dataset.src);
    for (const li of $("results").querySelectorAll(".hit")) {
      const h = j.hits[+li.dataset.i];
      li.onclick = () => openTimeline(h.stream_id, h.pts_ms);
    }
  } catch (err) { showError(err); }
};
$("close-results").onclick = () => { $("results-box").hidden = true; };

// ---- timeline ----------------------------------------------------------------------------------
// A moment found by search (Redis) or on the live feed may not be in ClickHouse yet (the sinks
// write independently): until a line at that moment is there, look again, once a second, 15 times.
async function openTimeline(id, focusMs, tries = 0) {
  try {
    const j = await api(`/v1/streams/${encodeURIComponent(id)}/events?limit=5000`);
    const evs = j.events.filter((e) => e.kind === "scene" || e.kind === "transcript" || e.kind === "ocr");
    $("timeline-box").hidden = false;
    $("timeline-name").textContent = names[id] || id;
    const end = Math.max(1, ...j.events.map((e) => e.end_ms ?? e.pts_ms), focusMs ?? 0);
    const start = Math.max(0, Math.min(...j.events.map((e) => e.pts_ms), focusMs ?? end));
    const x = (ms) => (100 * (ms - start) / Math.max(1, end - start)).toFixed(2) + "%";
    let marks = evs.map((e) => e.kind === "scene"
      ? `<div class="mark" style="left:${x(e.pts_ms)}" title="cut @${secs(e.pts_ms)}"></div>`
      : e.kind === "ocr"
      ? `<div class="ocr" style="left:${x(e.pts_ms)}" title="on screen: ${esc(e.text)}"></div>`
      : `<div class="speech" style="left:${x(e.pts_ms)};width:calc(${x(e.end_ms ?? e.pts_ms)} - ${x(e.pts_ms)} + 2px)" title="${esc(e.text)}"></div>`).join("");
    if (focusMs != null) marks += `<div class="focus" style="left:${x(focusMs)}"></div>`;
    $("timeline").innerHTML = marks;
    const lines = evs.filter((e) => e.kind !== "scene");
    let best = null;
    if (focusMs != null) best = lines.reduce((b, e) => (b == null || Math.abs(e.pts_ms - focusMs) < Math.abs(b.pts_ms - focusMs) ? e : b), null);
    $("timeline-lines").innerHTML = lines.map((e) =>
      `<li class="${e === best ? "focused" : ""} ${e.kind}">@${secs(e.pts_ms)} ${e.kind === "ocr" ? "▣ " : ""}${esc(e.text)}</li>`).join("") || "<li>no transcript or on-screen text yet</li>";
    $("timeline-lines").querySelector(".focused")?.scrollIntoView({ block: "nearest" });
    const landed = best != null && Math.abs(best.pts_ms - focusMs) <= 1000;
    if (focusMs != null && !landed && tries < 15 && !$("timeline-box").hidden) {
      setTimeout(() => openTimeline(id, focusMs, tries + 1), 1000);
    }
  } catch (e) { showError(e); }
}
$("close-timeline").onclick = () => { $("timeline-box").hidden = true; };

refresh();
setInterval(refresh, 2000);
refreshNodes();
setInterval(refreshNodes, 3000);
connect();
