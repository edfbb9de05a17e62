// patchswarm run viewer: plain DOM, no libraries, works from file:// and offline.
// Text from the run (completions, logs, patches) is only ever set as textContent.
"use strict";

const MODE = JSON.parse(document.getElementById("run-mode").textContent);
let DATA = JSON.parse(document.getElementById("run-data").textContent);
const STATE = { problem: null, group: null, cand: null, filter: "all", search: "",
  openGroups: new Set(), openCands: new Set() };
const STATUSES = ["all", "passed", "failed", "error", "unparsable", "pending"];

// ------------------------------------------------------------------ helpers
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const kid of kids.flat(Infinity)) {
    if (kid === null || kid === undefined || kid === false) continue;
    e.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return e;
}
const fmt = (x, d = 0) => (x === null || x === undefined) ? "-" :
  (typeof x === "number" ? x.toLocaleString("en-US", { maximumFractionDigits: d }) : String(x));
const badge = (s) => el("span", { class: `badge b-${s}`, "data-status": s, text: s });
const kv = (pairs) => el("table", { class: "kv" }, pairs.map(([k, v]) =>
  el("tr", {}, el("th", { text: k }), el("td", {}, v))));
function card(label, value, key) {
  return el("div", { class: "card", "data-stat": key || label },
    el("div", { class: "v", text: fmt(value, 3) }), el("div", { class: "l", text: label }));
}
function setHash(parts) {
  const q = Object.entries(parts).filter(([, v]) => v !== null && v !== undefined)
    .map(([k, v]) => `${k}=${encodeURIComponent(v)}`).join("&");
  if (location.hash.slice(1) !== q) history.replaceState(null, "", q ? `#${q}` : " ");
}
function readHash() {
  const out = {};
  for (const part of location.hash.slice(1).split("&")) {
    const i = part.indexOf("=");
    if (i > 0) out[part.slice(0, i)] = decodeURIComponent(part.slice(i + 1));
  }
  return out;
}

// ------------------------------------------------------------------ code
function codeBlock(text, lang) {
  const box = el("pre", { class: `code lang-${lang}` });
  for (const line of (text || "").split("\n")) {
    let cls = "";
    if (lang === "diff") {
      if (line.startsWith("+++") || line.startsWith("---") || line.startsWith("diff ")) cls = "diff-file";
      else if (line.startsWith("@@")) cls = "diff-hunk";
      else if (line.startsWith("+")) cls = "diff-add";
      else if (line.startsWith("-")) cls = "diff-del";
    }
    const span = el("span", { class: cls });
    if (lang === "coq") {
      const parts = line.split(/\b(Theorem|Lemma|Proof|Qed|Admitted|intros|apply|rewrite|reflexivity|simpl|lia|nia|auto|induction|destruct|Require|Import|exact)\b/);
      parts.forEach((p, i) => span.append(i % 2 ? el("b", { class: "coq-kw", text: p }) : p));
    } else span.textContent = line;
    box.append(span);
  }
  return box;
}

// ------------------------------------------------------------------ charts
function lineChart(spec) {
  const W = 420, H = 240, L = 46, R = 12, T = 12, B = 38;
  const NS = "http://www.w3.org/2000/svg";
  const s = (tag, attrs) => { const e = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v); return e; };
  const svg = s("svg", { class: "chart", width: W, height: H, viewBox: `0 0 ${W} ${H}`,
    "data-chart": spec.label });
  const pts = spec.series.flatMap((x) => x.points);
  if (!pts.length) {
    const t = s("text", { x: 20, y: H / 2 }); t.textContent = "no data yet"; svg.append(t);
    return svg;
  }
  const xs = pts.map((p) => p[0]);
  const xmin = Math.min(...xs), xmax = Math.max(...xs);
  const logx = xmin > 0 && xmax / xmin > 16;
  const fx = logx ? Math.log2 : (v) => v;
  const x0 = fx(xmin), x1 = fx(xmax) === x0 ? x0 + 1 : fx(xmax);
  const X = (v) => L + (fx(v) - x0) / (x1 - x0) * (W - L - R);
  const Y = (v) => T + (1 - v) * (H - T - B);
  for (const g of [0, 0.25, 0.5, 0.75, 1]) {
    svg.append(s("line", { class: "grid", x1: L, x2: W - R, y1: Y(g), y2: Y(g) }));
    const t = s("text", { x: L - 6, y: Y(g) + 4, "text-anchor": "end" });
    t.textContent = g.toFixed(2); svg.append(t);
  }
  const ticks = [...new Set(xs)].sort((a, b) => a - b);
  const step = Math.max(1, Math.ceil(ticks.length / 10));
  ticks.forEach((v, i) => { if (i % step && i !== ticks.length - 1) return;
    const t = s("text", { x: X(v), y: H - B + 16, "text-anchor": "middle" });
    t.textContent = fmt(v, 2); svg.append(t); });
  svg.append(s("line", { class: "axis", x1: L, x2: W - R, y1: H - B, y2: H - B }));
  svg.append(s("line", { class: "axis", x1: L, x2: L, y1: T, y2: H - B }));
  const xl = s("text", { x: (L + W - R) / 2, y: H - 6, "text-anchor": "middle" });
  xl.textContent = spec.xlabel; svg.append(xl);
  const yl = s("text", { x: 12, y: (T + H - B) / 2, transform: `rotate(-90 12 ${(T + H - B) / 2})`,
    "text-anchor": "middle" });
  yl.textContent = spec.ylabel; svg.append(yl);
  const colors = ["#0969da", "#cf222e", "#1a7f37", "#8250df", "#bf8700", "#57606a"];
  const tip = document.getElementById("tooltip");
  spec.series.forEach((ser, i) => {
    const c = colors[i % colors.length];
    svg.append(s("polyline", { fill: "none", stroke: c, "stroke-width": 2,
      points: ser.points.map((p) => `${X(p[0])},${Y(p[1])}`).join(" ") }));
    for (const p of ser.points) {
      const dot = s("circle", { cx: X(p[0]), cy: Y(p[1]), r: 4, fill: c, class: "pt",
        "data-x": p[0], "data-y": p[1] });
      const label = `${ser.name}: ${spec.xlabel.split(" ")[0]}=${fmt(p[0], 3)}, ` +
        `${spec.ylabel}=${p[1].toFixed(3)}`;
      const title = s("title", {}); title.textContent = label; dot.append(title);
      dot.addEventListener("mouseenter", (ev) => { tip.textContent = label;
        tip.style.display = "block"; tip.style.left = `${ev.clientX + 12}px`;
        tip.style.top = `${ev.clientY - 28}px`; dot.setAttribute("r", 6); });
      dot.addEventListener("mouseleave", () => { tip.style.display = "none";
        dot.setAttribute("r", 4); });
      svg.append(dot);
    }
  });
  return svg;
}

// ------------------------------------------------------------------ overview
function timingsTable(t) {
  const keys = Object.keys(t || {});
  if (!keys.length) return el("span", { class: "muted", text: "no stage finished yet" });
  return el("table", { class: "kv timings" }, keys.map((k) =>
    el("tr", {}, el("th", { text: k }), el("td", { class: "num", text: `${fmt(t[k], 1)} s` }))));
}
function costView(c) {
  if (!c || c.lambda === null || c.lambda === undefined)
    return el("div", { class: "cost muted", text: `C(S,V): S=${fmt(c && c.S)} samples; ` +
      "λ unknown until sampling and verification times are in" });
  const share = c.sampling_share;
  return el("div", { class: "cost" },
    el("div", {}, `C(S,V) = S·(1 + λ·V) = ${fmt(c.S)}·(1 + ${fmt(c.lambda, 3)}·${fmt(c.V, 3)})` +
      ` = ${fmt(c.C, 2)} sample-units`),
    el("div", { class: "bar", title: `sampling ${(share * 100).toFixed(0)}%, verification ` +
      `${((1 - share) * 100).toFixed(0)}%` },
      el("div", { class: "s", style: `width:${share * 100}%` }),
      el("div", { class: "v", style: `width:${(1 - share) * 100}%` })),
    el("div", { class: "muted", text: `sampling ${(share * 100).toFixed(0)}% · verification ` +
      `${((1 - share) * 100).toFixed(0)}% (λ: one check's sandbox seconds over one sample's ` +
      `share of sampling time; ${fmt(c.verifications)} checks of distinct changes)` }));
}
function overviewSection() {
  const o = DATA.overview, c = o.counts || {};
  const sec = el("section", { id: "overview" }, el("h2", { text: "Overview" }));
  if (DATA.kind === "solve") {
    sec.append(el("div", { class: "cards" }, card("problems", o.problems, "problems"),
      card("strategies", Object.keys(o.strategies || {}).length, "strategies")),
    kv([["model", o.model || "-"], ["dataset", o.dataset || "-"]]));
  } else {
    sec.append(el("div", { class: "cards" },
      card("problems", o.problems, "problems"), card("solved", o.solved, "solved"),
      card("running", o.running, "running"), card("errors", o.errors, "errors"),
      card("samples", c.samples, "samples"), card("usable edits", c.parsed, "parsed"),
      card("distinct", c.distinct, "distinct"), card("checked", c.checked, "checked"),
      card("verified", c.verified, "verified"),
      card("passing samples", c.passed_samples, "passed_samples"),
      card("prompt tokens", o.tokens.prompt, "prompt_tokens"),
      card("completion tokens", o.tokens.completion, "completion_tokens")));
  }
  const charts = el("div", { class: "row2" });
  for (const ch of DATA.curves) charts.append(el("div", {}, el("h3", { text: ch.label }),
    lineChart(ch)));
  if (DATA.kind !== "solve") charts.append(el("div", {},
    el("h3", { text: "time per stage" }), timingsTable(o.timings),
    el("h3", { text: "cost split" }), costView(o.cost)));
  sec.append(charts);
  return sec;
}
function problemsSection() {
  const sec = el("section", { id: "problems" }, el("h2", { text: `Problems (${DATA.problems.length})` }));
  const solve = DATA.kind === "solve";
  const head = solve ? ["problem", "result", "rows"] :
    ["problem", "result", "samples", "distinct", "verified", "tokens", "seconds"];
  const t = el("table", {}, el("tr", {}, head.map((h, i) => el("th", { class: i > 1 ? "num" : "", text: h }))));
  for (const p of DATA.problems) {
    const secs = Object.values(p.timings || {}).reduce((a, b) => a + b, 0);
    const cells = solve ? [p.rows.length] : [p.counts.samples, p.counts.distinct,
      p.counts.verified, p.tokens.prompt + p.tokens.completion, fmt(secs, 1)];
    t.append(el("tr", { class: `click problem-row${STATE.problem === p.id ? " sel" : ""}`,
      "data-problem": p.id, onclick: () => { STATE.problem = p.id; STATE.group = null;
        STATE.cand = null; render(); document.getElementById("problem")?.scrollIntoView(); } },
    el("td", {}, el("a", { href: `#p=${encodeURIComponent(p.id)}`, text: p.id })),
    el("td", {}, badge(p.status), p.error ? el("span", { class: "muted", text: ` ${p.error}` }) : null),
    cells.map((v) => el("td", { class: "num", text: fmt(v) }))));
  }
  sec.append(t);
  return sec;
}

// ------------------------------------------------------------------ one problem
function groupDetail(p, g) {
  const box = el("div", { class: "detail", "data-detail": g.key });
  box.append(el("h3", { text: p.lang === "coq" ? "proof" : "change" }), codeBlock(g.text, g.lang));
  if (g.detail) box.append(el("h3", { text: p.lang === "coq" ? "checker" : "verdict" }),
    el("pre", { class: "checker", text: g.detail }));
  const tests = Object.entries(g.tests || {});
  if (tests.length) box.append(el("h3", { text: `tests (${tests.length})` }),
    el("table", { class: "tests" }, tests.map(([name, out]) =>
      el("tr", {}, el("td", {}, el("code", { text: name })),
        el("td", {}, badge(out === "PASSED" || out === "XFAIL" ? "passed" :
          out === "SKIPPED" ? "pending" : "failed"), ` ${out}`)))));
  if (g.eval) box.append(el("h3", { text: "evaluation with the hidden tests" }),
    kv([["status", g.eval.status], ["resolved", String(g.eval.resolved)],
      ["error", g.eval.error || "-"]]));
  if (g.log) box.append(el("details", {}, el("summary", { text: "sandbox log" }),
    el("pre", { class: "code log", text: g.log })));
  const members = p.candidates.filter((c) => c.key === g.key);
  box.append(el("h3", { text: `members (${members.length})` }),
    el("table", {}, el("tr", {}, ["candidate", "seed", "tokens", "finish"].map((h) => el("th", { text: h }))),
      members.map((c) => el("tr", {},
        el("td", {}, el("a", { href: `#p=${encodeURIComponent(p.id)}&c=${encodeURIComponent(c.id)}`,
          onclick: (ev) => { ev.preventDefault(); openCand(p, c.id); }, text: c.id })),
        el("td", { text: fmt(c.seed) }), el("td", { class: "num", text: fmt(c.completion_tokens) }),
        el("td", { text: c.finish_reason || "-" })))));
  return box;
}
function openCand(p, cid) {
  STATE.cand = cid; STATE.openCands.add(cid); STATE.filter = "all"; STATE.search = "";
  render();
  document.querySelector(`[data-cand="${CSS.escape(cid)}"]`)?.scrollIntoView({ block: "center" });
}
function groupsTable(p) {
  const t = el("table", { id: "groups" }, el("tr", {}, ["rank", "votes", "verdict", "judge",
    "lines", "why this rank", "detail"].map((h) => el("th", { text: h }))));
  for (const g of p.groups) {
    const open = STATE.openGroups.has(g.key);
    t.append(el("tr", { class: `click group-row${open ? " sel" : ""}`, "data-key": g.key,
      "data-status": g.status, id: `g-${g.key}`, onclick: () => {
        if (open) STATE.openGroups.delete(g.key); else STATE.openGroups.add(g.key);
        STATE.group = open ? null : g.key; render(); } },
    el("td", { class: "num", text: g.rank }), el("td", { class: "num", text: g.votes }),
    el("td", {}, badge(g.status), g.cached ? el("span", { class: "muted", text: " cached" }) : null),
    el("td", { class: "num", text: g.judge === null ? "-" : g.judge.toFixed(3) }),
    el("td", { class: "num", text: g.lang === "diff" ? g.diff_size : "-" }),
    el("td", { class: "why", text: g.why }),
    el("td", { class: "muted", text: (g.detail || "").slice(0, 140) })));
    if (open) t.append(el("tr", {}, el("td", { colspan: 7 }, groupDetail(p, g))));
  }
  return t;
}
function candidatesBlock(p) {
  const counts = {};
  for (const c of p.candidates) counts[c.status] = (counts[c.status] || 0) + 1;
  const filters = el("div", { class: "filters" }, STATUSES.map((s) => el("button", {
    class: STATE.filter === s ? "on" : "", "data-filter": s,
    onclick: () => { STATE.filter = s; render(); },
    text: `${s} (${s === "all" ? p.candidates.length : counts[s] || 0})` })),
  el("input", { id: "search", type: "search", placeholder: "search in completions",
    value: STATE.search, oninput: (ev) => { STATE.search = ev.target.value; renderCands(p); } }));
  return el("div", {}, el("h3", { text: `candidates (${p.candidates.length})` }), filters,
    el("table", { id: "cands" }));
}
function renderCands(p) {
  const t = document.getElementById("cands");
  if (!t) return;
  t.replaceChildren(el("tr", {}, ["candidate", "verdict", "seed", "tokens", "finish", "why no edit"]
    .map((h) => el("th", { text: h }))));
  const q = STATE.search.toLowerCase();
  for (const c of p.candidates) {
    const hidden = (STATE.filter !== "all" && c.status !== STATE.filter) ||
      (q && !c.text.toLowerCase().includes(q));
    const open = STATE.openCands.has(c.id);
    const link = `#p=${encodeURIComponent(p.id)}&c=${encodeURIComponent(c.id)}`;
    t.append(el("tr", { class: `click cand-row${hidden ? " hidden" : ""}${STATE.cand === c.id ? " sel" : ""}`,
      "data-cand": c.id, "data-status": c.status, onclick: (ev) => {
        if (ev.target.tagName === "A") return;
        if (open) STATE.openCands.delete(c.id); else STATE.openCands.add(c.id);
        STATE.cand = open ? null : c.id; render(); } },
    el("td", {}, el("a", { href: link, text: c.id, title: "link to this candidate" })),
    el("td", {}, badge(c.status)), el("td", { text: fmt(c.seed) }),
    el("td", { class: "num", text: fmt(c.completion_tokens) }),
    el("td", { text: c.finish_reason || "-" }), el("td", { class: "muted", text: c.error || "" })));
    if (open && !hidden) {
      const g = p.groups.find((x) => x.key === c.key);
      t.append(el("tr", {}, el("td", { colspan: 6 }, el("div", { class: "detail", "data-detail": c.id },
        g ? el("div", {}, "group: ", el("a", { href: "#", onclick: (ev) => { ev.preventDefault();
          STATE.openGroups.add(g.key); render();
          document.getElementById(`g-${g.key}`)?.scrollIntoView(); },
        text: `rank ${g.rank} (${g.votes} votes, ${g.status})` })) : null,
        el("h3", { text: "raw completion" }), el("pre", { class: "code completion", text: c.text })))));
    }
  }
}
function reproTable(p) {
  if (!p.repro || !p.repro.length) return null;
  const keys = p.groups.map((g) => g.key);
  return el("div", {}, el("h3", { text: "reproduction tests: before and after each change" }),
    el("table", { class: "repro" }, el("tr", {}, el("th", { text: "test" }),
      el("th", { text: "on the unpatched code" }),
      p.groups.map((g) => el("th", { text: `after rank ${g.rank}` }))),
    p.repro.map((r) => el("tr", {}, el("td", {}, el("details", {},
      el("summary", { text: `#${r.index}` }), el("pre", { class: "code", text: r.script }))),
    el("td", { text: r.before }), keys.map((k) => el("td", { text: r.after[k] || "-" }))))));
}
function problemSection(p) {
  const sec = el("section", { id: "problem", "data-problem": p.id },
    el("h2", {}, `Problem ${p.id} `, badge(p.status)));
  if (DATA.kind === "solve") return solveProblem(sec, p);
  const c = p.counts;
  sec.append(el("div", { class: "cards" }, card("samples", c.samples, "p-samples"),
    card("usable edits", c.parsed, "p-parsed"), card("distinct", c.distinct, "p-distinct"),
    card("checked", c.checked, "p-checked"), card("verified", c.verified, "p-verified"),
    card("completion tokens", p.tokens.completion, "p-tokens")));
  const info = Object.entries(p.info || {});
  sec.append(el("div", { class: "row2" },
    el("div", {}, info.length ? kv(info) : null, el("h3", { text: "time per stage" }),
      timingsTable(p.timings), el("h3", { text: "cost split" }), costView(p.cost)),
    el("div", {}, el("h3", { text: "pass@k of this problem" }), lineChart({ label: "pass@k",
      xlabel: "k (samples)", ylabel: "pass@k", series: [{ name: p.id, points: p.curve }] }))));
  if (p.error) sec.append(el("pre", { class: "checker", text: p.error }));
  if (p.issue) sec.append(el("details", {}, el("summary", { text: "issue" }),
    el("pre", { class: "code", text: p.issue })));
  sec.append(reproTable(p) || "");
  sec.append(el("h3", { text: `distinct ${p.lang === "coq" ? "proofs" : "changes"}, best first (${p.groups.length})` }),
    groupsTable(p), candidatesBlock(p));
  return sec;
}
function solveProblem(sec, p) {
  sec.append(el("table", {}, el("tr", {}, ["strategy", "budget", "answer", "gold", "accuracy",
    "cost", "tokens"].map((h) => el("th", { text: h }))),
  p.rows.map((r) => [el("tr", { class: "solve-row", "data-status": r.accuracy === 1 ? "passed" : "failed" },
    el("td", { text: r.strategy }), el("td", { class: "num", text: r.budget }),
    el("td", {}, el("code", { text: r.answer ?? "-" })), el("td", {}, el("code", { text: r.gold ?? "-" })),
    el("td", { class: "num", text: fmt(r.accuracy, 3) }), el("td", { class: "num", text: fmt(r.cost, 2) }),
    el("td", { class: "num", text: fmt(r.tokens) })),
  r.candidates.length ? el("tr", {}, el("td", { colspan: 7 }, el("details", {},
    el("summary", { text: `${r.candidates.length} candidates` }),
    r.candidates.map((c) => el("div", {}, el("b", { text: `answer ${c.answer ?? "-"}` }),
      c.score !== null && c.score !== undefined ? ` score ${fmt(c.score, 3)}` : "",
      el("pre", { class: "code completion", text: c.text })))))) : null])));
  return sec;
}

// ------------------------------------------------------------------ page
function render() {
  document.getElementById("title").textContent = `patchswarm ${DATA.title}`;
  document.getElementById("path").textContent = DATA.path;
  const live = document.getElementById("live");
  live.className = DATA.done ? "done" : "running";
  live.textContent = (DATA.done ? "finished" : "running") +
    (MODE.live ? ` · live, updated ${new Date().toLocaleTimeString()}` : " · static export");
  if (!STATE.problem && DATA.problems.length === 1) STATE.problem = DATA.problems[0].id;
  const p = DATA.problems.find((x) => x.id === STATE.problem);
  const y = window.scrollY;
  const app = document.getElementById("app");
  const focused = document.activeElement && document.activeElement.id === "search";
  app.replaceChildren(overviewSection(), problemsSection(), p ? problemSection(p) : "");
  if (p && DATA.kind !== "solve") renderCands(p);
  if (focused) { const s = document.getElementById("search"); s.focus();
    s.setSelectionRange(s.value.length, s.value.length); }
  window.scrollTo(0, y);
  setHash({ p: STATE.problem, c: STATE.cand, g: STATE.cand ? null : STATE.group });
}
function fromHash() {
  const h = readHash();
  if (h.p) STATE.problem = h.p;
  if (h.c) { STATE.cand = h.c; STATE.openCands.add(h.c); }
  if (h.g) { STATE.group = h.g; STATE.openGroups.add(h.g); }
}
async function poll() {
  try {
    const st = await (await fetch("api/state", { cache: "no-store" })).json();
    if (st.version !== DATA.version) {
      const r = await fetch("api/data", { cache: "no-store" });
      if (r.ok) { DATA = await r.json(); render(); }
    } else {
      document.getElementById("live").textContent = (DATA.done ? "finished" : "running") +
        ` · live, checked ${new Date().toLocaleTimeString()}`;
    }
  } catch (e) {
    document.getElementById("live").textContent = "viewer server gone: showing the last state";
  }
  setTimeout(poll, MODE.interval_ms || 2000);
}
fromHash();
render();
if (STATE.cand) document.querySelector(`[data-cand="${CSS.escape(STATE.cand)}"]`)?.scrollIntoView({ block: "center" });
window.addEventListener("hashchange", () => { fromHash(); render(); });
if (MODE.live) setTimeout(poll, MODE.interval_ms || 2000);
