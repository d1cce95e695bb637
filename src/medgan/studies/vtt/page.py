"""The reader page of a Visual Turing Test kit: one HTML file with everything inline.

No request leaves the page: images are ``data:`` URLs, CSS and JavaScript are inline, and the
Content-Security-Policy forbids any other source, so the file works from a USB stick on a
hospital PC without a network. The reader types an id, then sees each image alone with
Real / Synthetic buttons (keys R and S), a confidence 1-5 (keys 1-5) when the kit asks for one,
a progress bar, and Back / Next (arrow keys) to change an earlier answer or its confidence.
Every change is kept at once: answers are in the browser's localStorage under the kit id and
reader id, and the JSON answer file carries the history of every change. A reload resumes the
tab's reader where they stopped; a new tab, or the next person on a shared computer, starts at
the reader-id screen (typing an id that already has answers asks before continuing them), and
two tabs of one reader keep each other's answers. The images are sized to the window so that
every control stays in view down to a 1024 x 600 netbook. At the end the reader downloads the
answer file (JSON or CSV) named ``vtt_<kit>_<kit id>_<reader>``; the page also shows the JSON
as text, with that file name, for browsers that block downloads from files.
"""

from __future__ import annotations

import html
import json
from typing import Any

ANSWERS_FORMAT = "medgan-vtt-answers"

_CSS = """
*{box-sizing:border-box}
body{margin:0;font-family:system-ui,-apple-system,"Segoe UI",Arial,sans-serif;background:#1e1e1e;
color:#eee}
header{display:flex;align-items:center;gap:1rem;padding:.4rem 1rem;background:#111;min-height:3rem}
header .grow{flex:1}
#bar{height:.4rem;background:#333}#bar div{height:100%;background:#4a9;width:0}
main{padding:.6rem 1rem;text-align:center}
.screen{display:none}.screen.on{display:block}
.panels{display:flex;justify-content:center;gap:.5rem;margin:.3rem 0}
.panels figure{margin:0}.panels figcaption{font-size:.85rem;color:#bbb}
.panels img{display:block;image-rendering:pixelated;image-rendering:crisp-edges;background:#000}
.examples{display:flex;justify-content:center;gap:.3rem;align-items:center;font-size:.85rem}
.examples img{height:9vh;image-rendering:pixelated}.example{margin:0 .4rem;display:flex;gap:1px}
.clue{color:#fd8;margin:.2rem}
button{font-size:1.05rem;padding:.55rem 1.1rem;margin:.25rem;border-radius:.3rem;border:1px solid
#888;background:#333;color:#eee;cursor:pointer}
button.big{font-size:1.3rem;min-width:11rem}
button.chosen{background:#2a6;border-color:#6d9;color:#fff}
button:disabled{opacity:.4;cursor:default}
.conf button{min-width:3rem}
#msg{color:#f99;min-height:1.3rem}
input{font-size:1.1rem;padding:.4rem}
textarea{width:90%;height:8rem;font-family:monospace;font-size:.75rem}
.note{color:#aaa;font-size:.9rem;max-width:50rem;margin:.5rem auto}
"""

_JS = r"""
"use strict";
const KIT = JSON.parse(document.getElementById("kit").textContent);
const PREFIX = "medgan-vtt/" + KIT.kit_id;
const LEVELS = KIT.confidence_levels;
const steps = [];
KIT.rounds.forEach(function (r, ri) {
  if (ri > 0) steps.push({type: "intro", round: r.round, clue: r.clue});
  r.sets.forEach(function (s, si) {
    s.items.forEach(function (item, k) {
      steps.push({type: "item", round: r.round, clue: r.clue, set: s, si: si,
                  nSets: r.sets.length, k: k, item: item});
    });
  });
});
steps.push({type: "done"});
const ITEMS = steps.filter(function (s) { return s.type === "item"; });
let reader = null, state = null, pos = 0, conf = null, storageOk = true;
const $ = function (id) { return document.getElementById(id); };

function store(k, v) {
  try { localStorage.setItem(k, v); } catch (e) { storageOk = false; }
}
// the reader of this tab: kept across a reload of the tab, not given to a new tab or to the
// next person who opens the page on a shared computer
function setCurrent(r) {
  try { sessionStorage.setItem(PREFIX + "/current", r); } catch (e) { /* reload asks again */ }
}
function getCurrent() {
  try { return sessionStorage.getItem(PREFIX + "/current"); } catch (e) { return null; }
}
// a copy of each reader's answers in this tab's sessionStorage too: Chromium now and then hands
// a reloaded page an empty view of localStorage (a second reload shows the data again); the copy
// with the higher revision wins
function mirror(r, text) {
  try { sessionStorage.setItem(PREFIX + "/mirror/" + r, text); } catch (e) { /* one copy */ }
}
function fetchState(r) {
  let kept = null, copy = null;  // JSON.parse(null) is null: no copy
  try { kept = JSON.parse(localStorage.getItem(PREFIX + "/reader/" + r)); }
  catch (e) { storageOk = false; }
  try { copy = JSON.parse(sessionStorage.getItem(PREFIX + "/mirror/" + r)); }
  catch (e) { /* no copy */ }
  if (kept && copy) return (copy.rev || 0) > (kept.rev || 0) ? copy : kept;
  return kept || copy;
}
let syncing = false;
function save() {
  if (syncing) return;  // showing what another tab saved: nothing new to write
  state.pos = pos;
  state.rev = (state.rev || 0) + 1;
  const text = JSON.stringify(state);
  store(PREFIX + "/reader/" + reader, text);
  mirror(reader, text);
  setCurrent(reader);
  $("storage-warning").style.display = storageOk ? "none" : "block";
}
function record(s, a) {
  // every change is kept: the answer as it is now, and the change in the history
  state.answers[akey(s)] = a;
  state.history.push({round: s.round, item: s.item, answer: a.answer,
                      confidence: a.confidence, at: a.answered_at});
}
function akey(s) { return s.round + ":" + s.item; }
function nAnswered() {
  return ITEMS.filter(function (s) { return state.answers[akey(s)]; }).length;
}
function firstOpen() {
  for (let i = 0; i < steps.length; i++) {
    if (steps[i].type === "item" && !state.answers[akey(steps[i])]) return i;
  }
  return steps.length - 1;
}
function screen(name) {
  document.querySelectorAll(".screen").forEach(function (el) {
    el.classList.toggle("on", el.id === "screen-" + name);
  });
  $("switch").style.display = name === "start" ? "none" : "inline-block";
}
let pendingId = null;
function begin(id, resume) {
  id = (id || "").trim();
  if (!/^[A-Za-z0-9_.-]{1,40}$/.test(id)) {
    $("start-msg").textContent = "Reader id: 1-40 letters, digits, '.', '_' or '-'.";
    return;
  }
  const saved = fetchState(id);
  if (saved && !resume && pendingId !== id) {
    // on a shared computer another reader may have used this id: ask before continuing
    const n = ITEMS.filter(function (s) { return saved.answers[akey(s)]; }).length;
    pendingId = id;
    $("start-msg").textContent = "Reader id " + id + " already has " + n + " of " +
      ITEMS.length + " answers in this browser. Press Start again to continue them, or " +
      "type another id.";
    return;
  }
  pendingId = null;
  $("start-msg").textContent = "";
  reader = id;
  state = saved || {reader: id, answers: {}, pos: 0, started: new Date().toISOString()};
  if (!state.history) state.history = [];
  $("reader-label").textContent = "Reader " + id;
  show(Math.min(state.pos || 0, firstOpen()));
}
function panels(el, pngs, channels) {
  el.innerHTML = "";
  pngs.forEach(function (b64, c) {
    const fig = document.createElement("figure");
    const img = document.createElement("img");
    img.src = "data:image/png;base64," + b64;
    img.alt = "image " + (c + 1);
    img.className = "vtt-image";
    fig.appendChild(img);
    if (pngs.length > 1) {
      const cap = document.createElement("figcaption");
      cap.textContent = channels[c] || "";
      fig.appendChild(cap);
    }
    el.appendChild(fig);
  });
}
function fit() {
  // the images as large as the window allows with every control still in view (a 1024 x 600
  // netbook leaves a browser about 450 px of height)
  if (!$("screen-item").classList.contains("on")) return;
  const imgs = document.querySelectorAll("#panels img");
  if (!imgs.length) return;
  imgs.forEach(function (img) { img.style.width = "0px"; });
  const rest = $("screen-item").getBoundingClientRect().bottom + window.scrollY;
  const byHeight = Math.floor(window.innerHeight - rest - 16);
  const byWidth = Math.floor(0.94 * window.innerWidth / imgs.length) - 10;
  const size = Math.max(48, Math.min(byHeight, byWidth));
  imgs.forEach(function (img) { img.style.width = size + "px"; });
}
window.addEventListener("resize", fit);
function showItem(s) {
  const a = state.answers[akey(s)];
  conf = a ? a.confidence : null;
  $("where").textContent = "Round " + s.round + " \u00b7 Set " + (s.si + 1) + " of " + s.nSets +
    " (" + s.set.label + ") \u00b7 Image " + (s.k + 1) + " of " + s.set.items.length;
  const clue = s.clue;
  $("clue").textContent = clue && clue.text ? clue.text : "";
  const ex = $("examples");
  ex.innerHTML = "";
  if (clue && s.set.examples) {
    ex.appendChild(document.createTextNode("Real examples: "));
    s.set.examples.forEach(function (pngs) {
      const one = document.createElement("span");
      one.className = "example";
      pngs.forEach(function (b64) {
        const img = document.createElement("img");
        img.src = "data:image/png;base64," + b64;
        one.appendChild(img);
      });
      ex.appendChild(one);
    });
  }
  $("panels").dataset.item = s.item;
  $("panels").dataset.round = String(s.round);
  panels($("panels"), KIT.items[s.item].png, s.set.channels);
  $("btn-real").classList.toggle("chosen", !!a && a.answer === "real");
  $("btn-synthetic").classList.toggle("chosen", !!a && a.answer === "synthetic");
  $("btn-next").disabled = !a;
  $("btn-back").disabled = pos === 0;
  paintConf();
  screen("item");
  fit();
}
function paintConf() {
  document.querySelectorAll(".conf button").forEach(function (b) {
    b.classList.toggle("chosen", Number(b.dataset.level) === conf);
  });
}
function show(p) {
  pos = Math.max(0, Math.min(p, steps.length - 1));
  // a clicked button keeps the focus: Enter or Space would answer the next image with it
  const focused = document.activeElement;
  if (focused && focused.tagName === "BUTTON") focused.blur();
  $("msg").textContent = "";
  const s = steps[pos];
  if (s.type !== "item") $("where").textContent = "";
  const n = nAnswered();
  $("count").textContent = n + " of " + ITEMS.length + " answered";
  $("bar").firstElementChild.style.width = (100 * n / ITEMS.length) + "%";
  if (s.type === "item") showItem(s);
  else if (s.type === "intro") {
    $("intro-text").textContent = "Round " + s.round + ": the same images again, in a new " +
      "order. " + (s.clue && s.clue.text ? "Clue: " + s.clue.text : "") +
      (s.clue && s.clue.kind === "real_examples" ? " Real examples of each image type are " +
      "shown beside each image." : "");
    screen("intro");
  } else {
    const open = ITEMS.length - n;
    $("done-text").textContent = open ? open + " image(s) still unanswered." :
      "All " + ITEMS.length + " answers are in. Download the answer file and send it to the " +
      "study team; then press Change reader for the next reader on this computer.";
    $("downloads").style.display = open ? "none" : "block";
    $("btn-open").style.display = open ? "inline-block" : "none";
    if (!open) {
      $("answers-text").value = answersJSON();
      $("copy-name").textContent = fileName("json");
    }
    screen("done");
  }
  save();
}
function answer(which) {
  const s = steps[pos];
  if (s.type !== "item") return;
  if (LEVELS && !conf) {
    $("msg").textContent = "Choose a confidence (1-" + LEVELS + ") first.";
    return;
  }
  record(s, {answer: which, confidence: LEVELS ? conf : null,
             answered_at: new Date().toISOString()});
  show(pos + 1 < steps.length && steps[pos + 1].type === "done" ? firstOpen() : pos + 1);
}
function setConf(level) {
  if (!LEVELS || level < 1 || level > LEVELS) return;
  conf = level;
  paintConf();
  const s = steps[pos];
  const a = s && s.type === "item" ? state.answers[akey(s)] : null;
  if (a && a.confidence !== level) {  // a new confidence for an answered image is a change
    record(s, {answer: a.answer, confidence: level, answered_at: new Date().toISOString()});
    $("msg").textContent = "Confidence changed to " + level + ".";
    save();
  }
}
function rows() {
  return ITEMS.map(function (s) {
    const a = state.answers[akey(s)];
    return {round: s.round, set: s.si + 1, item: s.item, answer: a.answer,
            confidence: a.confidence, answered_at: a.answered_at};
  });
}
function answersJSON() {
  return JSON.stringify({format: "%(answers_format)s", version: 1, kit_id: KIT.kit_id,
    kit_name: KIT.name, reader: reader, started: state.started,
    saved_at: new Date().toISOString(), answers: rows(), history: state.history}, null, 1);
}
function answersCSV() {
  const head = "kit_id,kit_name,reader,round,set,item,answer,confidence,answered_at";
  return [head].concat(rows().map(function (r) {
    return [KIT.kit_id, KIT.name, reader, r.round, r.set, r.item, r.answer,
            r.confidence === null ? "" : r.confidence, r.answered_at].join(",");
  })).join("\n") + "\n";
}
function fileName(ext) { return "vtt_" + KIT.name + "_" + KIT.kit_id + "_" + reader + "." + ext; }
function download(text, ext, type) {
  const name = fileName(ext);
  const blob = new Blob([text], {type: type});
  if (window.navigator.msSaveOrOpenBlob) { window.navigator.msSaveOrOpenBlob(blob, name); return; }
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = name;
  document.body.appendChild(a);
  a.click();
  setTimeout(function () { URL.revokeObjectURL(a.href); a.remove(); }, 2000);
}
document.addEventListener("keydown", function (e) {
  if (e.target && e.target.tagName === "INPUT") {
    if (e.key === "Enter" && e.target.id === "reader-id") begin(e.target.value);
    return;
  }
  const s = reader ? steps[pos] : null;
  if (!s) return;
  const k = e.key;
  if (s.type === "item") {
    if (k === "r" || k === "R") answer("real");
    else if (k === "s" || k === "S") answer("synthetic");
    else if (/^[1-9]$/.test(k)) setConf(Number(k));
    else if (k === "ArrowLeft" || k === "Backspace") { if (pos > 0) show(pos - 1); }
    else if (k === "ArrowRight") { if (state.answers[akey(s)]) show(pos + 1); }
    else return;
    e.preventDefault();
  } else if (s.type === "intro" && (k === "Enter" || k === "ArrowRight")) show(pos + 1);
  else if (k === "ArrowLeft") show(pos - 1);
});
$("start").onclick = function () { begin($("reader-id").value); };
$("reader-id").oninput = function () { pendingId = null; $("start-msg").textContent = ""; };
$("btn-real").onclick = function () { answer("real"); };
$("btn-synthetic").onclick = function () { answer("synthetic"); };
$("btn-back").onclick = function () { show(pos - 1); };
$("btn-next").onclick = function () { show(pos + 1); };
$("btn-continue").onclick = function () { show(pos + 1); };
$("btn-review").onclick = function () { show(pos - 1); };
$("btn-open").onclick = function () { show(firstOpen()); };
$("download-json").onclick = function () {
  download(answersJSON(), "json", "application/json");
};
$("download-csv").onclick = function () { download(answersCSV(), "csv", "text/csv"); };
$("switch").onclick = function () {
  setCurrent("");
  reader = null;
  pendingId = null;
  $("reader-label").textContent = "";
  $("where").textContent = "";
  $("reader-id").value = "";  // the next reader types their own id
  $("start-msg").textContent = "";
  screen("start");
  $("reader-id").focus();
};
window.addEventListener("storage", function (e) {
  // the same reader in another tab of this browser: take over its answers, lose none
  if (reader && e.key === PREFIX + "/reader/" + reader && e.newValue) {
    state = JSON.parse(e.newValue);
    if (!state.history) state.history = [];
    mirror(reader, e.newValue);
    syncing = true;
    try { show(pos); } finally { syncing = false; }
  }
});
const confEl = $("conf");
for (let i = 1; i <= LEVELS; i++) {
  const b = document.createElement("button");
  b.textContent = String(i);
  b.dataset.level = String(i);
  b.id = "conf-" + i;
  b.onclick = function () { setConf(i); };
  confEl.appendChild(b);
}
confEl.style.display = LEVELS ? "block" : "none";
const current = getCurrent();
if (current && fetchState(current)) begin(current, true); else screen("start");
"""

_HTML = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data: blob:;
 style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>%(title)s</title><style>%(css)s</style></head>
<body>
<header><strong>%(title)s</strong><span class="grow" id="where"></span>
<span id="count"></span><span id="reader-label"></span><button id="switch">Change reader</button>
</header>
<div id="bar"><div></div></div>
<main>
<p id="storage-warning" class="note" style="display:none">This browser does not keep progress:
finish in one sitting, or progress is lost on reload.</p>
<section class="screen" id="screen-start">
<h2>%(title)s</h2><p class="note">%(instructions)s</p>
<p class="note">Kit %(kit_id)s &middot; %(n_items)s images. Each image is real or made by a
computer (synthetic). Answer with the buttons or the keys R (real) and S (synthetic)%(conf_note)s;
Back/Next or the arrow keys change an earlier answer. Progress is kept in this browser.</p>
<p><label>Reader id <input id="reader-id" autocomplete="off"></label>
<button id="start">Start</button></p><p id="start-msg" class="note"></p>
</section>
<section class="screen" id="screen-item">
<div class="clue" id="clue"></div><div class="examples" id="examples"></div>
<div class="panels" id="panels"></div>
<div class="conf" id="conf">Confidence: </div>
<div><button id="btn-back">&larr; Back</button>
<button class="big" id="btn-real">Real (R)</button>
<button class="big" id="btn-synthetic">Synthetic (S)</button>
<button id="btn-next">Next &rarr;</button></div><div id="msg"></div>
</section>
<section class="screen" id="screen-intro"><p id="intro-text"></p>
<button class="big" id="btn-continue">Continue</button></section>
<section class="screen" id="screen-done"><p id="done-text"></p>
<button id="btn-open">Go to the first unanswered image</button>
<div id="downloads"><button class="big" id="download-json">Download answers (JSON)</button>
<button class="big" id="download-csv">Download answers (CSV)</button>
<p class="note">If no download starts, copy this text into a file named
<strong id="copy-name"></strong>:</p>
<textarea id="answers-text" readonly></textarea></div>
<p><button id="btn-review">&larr; Back to the last image</button></p>
</section>
</main>
<script id="kit" type="application/json">%(payload)s</script>
<script>%(js)s</script>
</body></html>
"""


def render_page(payload: dict[str, Any]) -> str:
    """The page of a kit payload (:func:`medgan.studies.vtt.kit.assemble_kit`)."""
    data = json.dumps(payload, separators=(",", ":")).replace("<", "\\u003c")
    conf = payload["confidence_levels"]
    return _HTML % {
        "title": html.escape(payload["title"]),
        "instructions": html.escape(payload.get("instructions", "")),
        "kit_id": payload["kit_id"],
        "n_items": len(payload["items"]),
        "conf_note": f", after a confidence 1-{conf} (keys 1-{conf})" if conf else "",
        "css": _CSS,
        "payload": data,
        "js": _JS.replace("%(answers_format)s", ANSWERS_FORMAT),
    }
