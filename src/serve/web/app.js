// The web page of `airback serve`: a small single-page app over the service's JSON API.
// No framework and no network beyond the service itself. Every text from the repository is
// put in the page with textContent (never as HTML), so a cell cannot inject markup.
"use strict";

const state = { csrf: null, timer: null, route: 0, confirm: 0 };

// ---------------------------------------------------------------------------------------
// Helpers

/** An element: h("a", {href: "#/"}, "text", child, ...). */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(method, path, body, retried) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") {
    headers["Content-Type"] = "application/json";
    if (state.csrf) headers["X-CSRF-Token"] = state.csrf;
  }
  const res = await fetch(path, {
    method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = null;
  try { data = await res.json(); } catch (_) { /* not JSON */ }
  if (res.status === 401) { showLogin(); throw new ApiError(401, "the service needs its access token"); }
  if (res.status === 403 && method !== "GET" && !retried && data && /CSRF/.test(data.error || "")) {
    // The service restarted since this page loaded: its CSRF token is new.
    state.csrf = (await api("GET", "/api/session")).csrf_token;
    return api(method, path, body, true);
  }
  if (!res.ok) throw new ApiError(res.status, (data && data.error) || `HTTP ${res.status}`);
  return data;
}

function fmtTime(t) {
  if (!t) return "—";
  const d = new Date(t);
  if (isNaN(d)) return t;
  return d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

function ago(t) {
  if (!t) return "";
  const s = (Date.now() - new Date(t).getTime()) / 1000;
  const f = (n, u) => `${Math.round(n)} ${u}${Math.round(n) === 1 ? "" : "s"}`;
  const a = Math.abs(s);
  const txt = a < 90 ? f(a, "second") : a < 5400 ? f(a / 60, "minute") : a < 129600 ? f(a / 3600, "hour") : f(a / 86400, "day");
  return s >= 0 ? `${txt} ago` : `in ${txt}`;
}

function bytes(n) {
  if (n === null || n === undefined) return "—";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return `${i ? n.toFixed(1) : n} ${u[i]}`;
}

/** A cell value as short text: links (by the names in `links`, when given), attachments and
 * collaborators by their names. */
function cellText(v, links) {
  if (v === null || v === undefined) return "";
  if (v === true) return "✓";
  if (typeof v === "string" && links && Object.hasOwn(links, v)) return links[v] || v;
  if (Array.isArray(v)) return v.map((x) => cellText(x, links)).join(", ");
  if (typeof v === "object") {
    return v.filename || v.name || v.email || v.label || v.id || JSON.stringify(v);
  }
  const s = String(v);
  return s.length > 160 ? s.slice(0, 157) + "…" : s;
}

function badge(kind, text) {
  const label = text || (kind === "never" ? "no runs yet" : kind);
  return h("span", { class: `badge ${kind}`, "data-testid": "badge" }, label);
}

function qs(params) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") p.set(k, v);
  const s = p.toString();
  return s ? `?${s}` : "";
}

/** Thrown by mount() when the user has moved on: the old view's answer is dropped. */
class Stale extends Error {}

function mount(...nodes) {
  if (state.mounting !== state.route) throw new Stale();
  const main = document.getElementById("main");
  main.replaceChildren(...nodes.flat(Infinity).filter((n) => n !== null && n !== undefined && n !== false));
}

function failure(e) {
  return h("div", { class: "error-box", role: "alert", "data-testid": "error" }, e.message || String(e));
}

function every(ms, fn) {
  if (state.mounting !== state.route) return;
  stopTimer();
  state.timer = setInterval(fn, ms);
}
function stopTimer() { if (state.timer) clearInterval(state.timer); state.timer = null; }

// ---------------------------------------------------------------------------------------
// Login (only when the service has an access token)

function showLogin(message) {
  stopTimer();
  const input = h("input", { type: "password", name: "token", placeholder: "access token", autocomplete: "current-password", "data-testid": "login-token" });
  const note = h("p", { class: "muted" }, message || "This service needs its access token (the contents of --auth-token-file).");
  const form = h("form", {
    class: "card",
    onsubmit: async (ev) => {
      ev.preventDefault();
      const res = await fetch("/login", {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ token: input.value }),
      });
      if (!res.ok) { showLogin("Wrong access token."); return; }
      state.csrf = (await res.json()).csrf_token;
      route();
    },
  }, h("h3", {}, "Sign in"), note, h("div", { class: "row" }, input, h("button", {}, "Sign in")));
  mount(h("h1", {}, "airback"), form);
}

// ---------------------------------------------------------------------------------------
// Views

async function viewBases() {
  const [{ bases }, { jobs }] = await Promise.all([api("GET", "/api/bases"), api("GET", "/api/jobs?limit=8")]);
  const cards = bases.map((b) => {
    const health = b.running_job ? "running" : b.health;
    const last = b.last_run;
    const snap = b.latest_snapshot;
    return h("section", { class: "card", "data-testid": "base-card", "data-base": b.id },
      h("div", { class: "row" }, h("h3", {}, h("a", { href: `#/base/${b.id}` }, baseName(b))), badge(health)),
      h("div", { class: "id muted" }, b.id),
      h("dl", {},
        h("dt", {}, "Latest snapshot"), h("dd", {}, snap ? [h("a", { href: `#/snapshot/${snap.id}` }, fmtTime(snap.time)), `, ${snap.records} records`] : "none yet"),
        h("dt", {}, "Last run"), h("dd", {}, last ? `${fmtTime(last.ended || last.started)} (${last.outcome})` : "never"),
        h("dt", {}, "Last success"), h("dd", {}, b.last_success ? `${fmtTime(b.last_success)}, ${ago(b.last_success)}` : "—"),
        h("dt", {}, "Next run"), h("dd", {}, b.next_run ? `${fmtTime(b.next_run)}, ${ago(b.next_run)}` : "not scheduled"),
        h("dt", {}, "Schedule"), h("dd", {}, b.schedule ? `${b.schedule} (${b.time_zone})` : "—"),
      ),
      last && last.error ? h("p", { class: "error-box" }, last.error) : null,
      h("div", { class: "row" },
        h("a", { class: "button secondary small", href: `#/base/${b.id}` }, "Snapshots"),
        snapshotNowButton(b.id)));
  });
  mount(
    h("h1", {}, "Bases"),
    bases.length ? h("div", { class: "cards" }, cards) : h("p", { class: "muted" }, "The configuration file lists no bases."),
    h("h2", {}, "Recent jobs"), jobsTable(jobs),
    h("p", {}, h("a", { href: "#/jobs" }, "All jobs →")));
  if (bases.some((b) => b.running_job) || jobs.some((j) => !isFinal(j.outcome))) every(2000, () => refresh(viewBases));
}

function baseName(b) {
  return b.name || (b.latest_snapshot && b.latest_snapshot.base_name) || b.id;
}

function isFinal(outcome) { return !["queued", "running"].includes(outcome); }

function snapshotNowButton(base) {
  return h("button", {
    class: "small", "data-testid": "snapshot-now",
    onclick: async (ev) => {
      ev.target.disabled = true;
      try {
        const r = await api("POST", `/api/bases/${encodeURIComponent(base)}/snapshot`);
        location.hash = `#/job/${r.job_id}`;
      } catch (e) { ev.target.disabled = false; alert(e.message); }
    },
  }, "Snapshot now");
}

async function viewBase(base) {
  const [{ snapshots }, { bases }] = await Promise.all([
    api("GET", `/api/bases/${encodeURIComponent(base)}/snapshots`), api("GET", "/api/bases")]);
  const info = bases.find((b) => b.id === base);
  const picked = new Set();
  const compare = h("button", { class: "small", disabled: true, "data-testid": "compare" }, "Compare selected");
  compare.addEventListener("click", () => {
    const ids = snapshots.filter((s) => picked.has(s.id));
    if (ids.length !== 2) return;
    location.hash = `#/diff${qs({ from: ids[1].id, to: ids[0].id })}`; // older → newer
  });
  const rows = snapshots.map((s, i) => {
    const box = h("input", { type: "checkbox", "aria-label": `select snapshot ${s.short_id}`, "data-testid": "pick" });
    box.addEventListener("change", () => {
      box.checked ? picked.add(s.id) : picked.delete(s.id);
      compare.disabled = picked.size !== 2;
    });
    const older = snapshots[i + 1];
    return h("tr", { "data-testid": "snapshot-row", "data-snapshot": s.id },
      h("td", {}, box),
      h("td", {}, h("a", { href: `#/snapshot/${s.id}` }, fmtTime(s.time)), h("div", { class: "id muted" }, s.short_id)),
      h("td", {}, s.records), h("td", { class: "hide-narrow" }, s.attachments), h("td", { class: "hide-narrow" }, s.tables),
      h("td", {}, s.partial ? badge("partial") : null, s.tags.map((t) => h("span", { class: "badge" }, t))),
      h("td", {}, h("div", { class: "row" },
        older ? h("a", { href: `#/diff${qs({ from: older.id, to: s.id })}`, class: "button secondary small" }, "Changes") : null,
        h("a", { href: `#/diff${qs({ from: s.id, to: "live" })}`, class: "button secondary small" }, "vs live"))));
  });
  mount(
    h("div", { class: "crumbs" }, h("a", { href: "#/" }, "Bases"), " › "),
    h("div", { class: "row" }, h("h1", {}, info ? baseName(info) : base), info ? badge(info.running_job ? "running" : info.health) : null),
    h("div", { class: "row" }, info ? snapshotNowButton(base) : null, compare),
    snapshots.length
      ? h("div", { class: "scroll" }, h("table", { "data-testid": "snapshots" },
        h("thead", {}, h("tr", {}, h("th", {}, ""), h("th", {}, "Taken"), h("th", {}, "Records"),
          h("th", { class: "hide-narrow" }, "Files"), h("th", { class: "hide-narrow" }, "Tables"), h("th", {}, ""), h("th", {}, ""))),
        h("tbody", {}, rows)))
      : h("p", { class: "muted" }, "No snapshot of this base yet."));
}

async function viewSnapshot(id) {
  const s = await api("GET", `/api/snapshots/${encodeURIComponent(id)}`);
  const rows = s.table_list.map((t) => h("tr", { "data-testid": "table-row" },
    h("td", {}, h("a", { href: `#/snapshot/${s.id}/table/${t.id}` }, t.name), h("div", { class: "id muted" }, t.id)),
    h("td", {}, t.records), h("td", { class: "hide-narrow" }, t.fields.length),
    h("td", {}, h("button", { class: "secondary small", onclick: () => confirmRestore(s, { table: t.id }, `table “${t.name}”`) }, "Restore table…"))));
  mount(
    h("div", { class: "crumbs" }, h("a", { href: "#/" }, "Bases"), " › ", h("a", { href: `#/base/${s.base_id}` }, s.base_name || s.base_id), " › "),
    h("h1", {}, `Snapshot ${s.short_id}`),
    h("p", { class: "muted" }, `${fmtTime(s.time)} · ${s.records} records · ${s.attachments} files (${bytes(s.attachment_bytes)}) · ` +
      (s.comments_skipped ? `comments not backed up (${s.comments_skipped.replace(/_/g, " ")})` : `${s.comments} comments`) + ` · host ${s.hostname}`),
    s.partial ? h("div", { class: "notice" }, "Partial: ", s.problems.join("; ")) : null,
    h("div", { class: "row" },
      h("a", { class: "button secondary small", href: `/api/snapshots/${s.id}/export?format=zip`, download: "", "data-testid": "export-zip" }, "Download zip"),
      h("a", { class: "button secondary small", href: `/api/snapshots/${s.id}/export?format=sqlite`, download: "", "data-testid": "export-sqlite" }, "Download SQLite"),
      h("a", { class: "button secondary small", href: `#/diff${qs({ from: s.id, to: "live" })}` }, "Compare with live")),
    h("h2", {}, "Tables"),
    h("div", { class: "scroll" }, h("table", {},
      h("thead", {}, h("tr", {}, h("th", {}, "Table"), h("th", {}, "Records"), h("th", { class: "hide-narrow" }, "Fields"), h("th", {}, ""))),
      h("tbody", {}, rows))));
}

async function viewTable(id, table, params) {
  const offset = Number(params.get("offset") || 0);
  const q = params.get("q") || "";
  const [s, page] = await Promise.all([
    api("GET", `/api/snapshots/${encodeURIComponent(id)}`),
    api("GET", `/api/snapshots/${encodeURIComponent(id)}/tables/${encodeURIComponent(table)}/records${qs({ q, offset, limit: 50 })}`)]);
  const primary = page.fields.find((f) => f.id === page.primary_field);
  const shown = [primary, ...page.fields.filter((f) => f !== primary)].filter(Boolean).slice(0, 5);
  const search = h("input", { type: "search", value: q, placeholder: "Search records", "aria-label": "search records", "data-testid": "search" });
  const form = h("form", {
    class: "row", onsubmit: (ev) => {
      ev.preventDefault();
      location.hash = `#/snapshot/${s.id}/table/${page.table}${qs({ q: search.value })}`;
    },
  }, search, h("button", { class: "small" }, "Search"));
  const rows = page.records.map((r) => h("tr", { "data-testid": "record-row", "data-record": r.id },
    shown.map((f, i) => h("td", { class: i ? "val hide-narrow" : "val" },
      cellText(r.fields[f.id], f.type === "multipleRecordLinks" ? page.links : null))),
    h("td", { class: "hide-narrow" }, h("span", { class: "id" }, r.id)),
    h("td", {}, h("div", { class: "row nowrap" },
      h("a", { class: "button secondary small", href: `#/record/${r.id}${qs({ base: s.base_id })}` }, "History"),
      h("button", { class: "secondary small", onclick: () => confirmRestore(s, { record: r.id, table: page.table }, `record “${cellText(r.fields[page.primary_field]) || r.id}”`) }, "Restore…")))));
  const to = offset + page.records.length;
  const nav = h("div", { class: "pager" },
    h("span", { class: "muted" }, !page.matched ? "no records"
      : page.records.length ? `${offset + 1}–${to} of ${page.matched}${q ? ` matching (${page.total} in all)` : ""}`
        : `nothing on this page: ${page.matched} record(s) in all`),
    offset > 0 && !page.records.length ? h("a", { class: "button secondary small", href: `#/snapshot/${s.id}/table/${page.table}${qs({ q })}` }, "First page") : null,
    offset > 0 ? h("a", { class: "button secondary small", href: `#/snapshot/${s.id}/table/${page.table}${qs({ q, offset: Math.max(0, offset - page.limit) })}` }, "← Previous") : null,
    to < page.matched ? h("a", { class: "button secondary small", href: `#/snapshot/${s.id}/table/${page.table}${qs({ q, offset: to })}` }, "Next →") : null);
  mount(
    h("div", { class: "crumbs" }, h("a", { href: "#/" }, "Bases"), " › ", h("a", { href: `#/base/${s.base_id}` }, s.base_name || s.base_id), " › ",
      h("a", { href: `#/snapshot/${s.id}` }, `Snapshot ${s.short_id}`), " › "),
    h("h1", {}, page.name), form, nav,
    h("div", { class: "scroll" }, h("table", { "data-testid": "records", "data-query": q },
      h("thead", {}, h("tr", {}, shown.map((f, i) => h("th", { class: i ? "hide-narrow" : null }, f.name)), h("th", { class: "hide-narrow" }, "Id"), h("th", {}, ""))),
      h("tbody", {}, rows))), nav.cloneNode(true));
}

function changeTable(fields, labels) {
  return h("div", { class: "scroll" }, h("table", {},
    h("thead", {}, h("tr", {}, h("th", {}, "Field"), h("th", {}, labels[0]), h("th", {}, labels[1]))),
    h("tbody", {}, fields.map((f) => h("tr", {},
      h("td", {}, f.name, f.computed ? h("span", { class: "muted" }, " (computed)") : null),
      h("td", { class: "val before" }, cellText(f.before)), h("td", { class: "val after" }, cellText(f.after)))))));
}

async function viewHistory(record, params) {
  const base = params.get("base") || "";
  const hist = await api("GET", `/api/records/${encodeURIComponent(record)}/history${qs({ base })}`);
  const items = hist.changes.slice().reverse().map((c) => h("section", { class: "change", "data-testid": "history-change", "data-event": c.event },
    h("div", { class: "row" }, badge(c.event), h("a", { href: `#/snapshot/${c.snapshot}` }, fmtTime(c.time)),
      h("span", { class: "id muted" }, c.snapshot.slice(0, 8)),
      c.event !== "removed" ? h("button", { class: "secondary small", onclick: () => confirmRestore({ id: c.snapshot, base_id: hist.base }, { record: hist.record, table: hist.table }, `this version of record ${hist.record}`) }, "Restore this version…") : null),
    c.fields.length ? changeTable(c.fields, ["Before", "After"]) : h("p", { class: "muted" }, "No visible change.")));
  mount(
    h("div", { class: "crumbs" }, h("a", { href: "#/" }, "Bases"), " › ", h("a", { href: `#/base/${hist.base}` }, hist.base), " › "),
    h("h1", {}, `Record ${hist.record}`),
    h("p", { class: "muted" }, `Table ${hist.table_name} · ${hist.changes.length} change(s) across ${hist.snapshots} snapshot(s), newest first`),
    items);
}

function diffView(d, restoreFrom) {
  const out = [];
  const s = d.summary;
  out.push(h("p", { "data-testid": "diff-summary" }, `${s.added} added · ${s.removed} removed · ${s.changed} changed`));
  const schemaLines = [];
  const sc = d.schema || {};
  for (const [k, v] of Object.entries(sc)) {
    if (Array.isArray(v) && v.length) schemaLines.push(h("li", {}, `${k.replace(/_/g, " ")}: `, v.map((x) => x.name || x.id || JSON.stringify(x)).join(", ")));
  }
  if (schemaLines.length) out.push(h("h2", {}, "Schema"), h("ul", {}, schemaLines));
  if (!d.tables.length && !schemaLines.length) out.push(h("p", { class: "muted", "data-testid": "diff-empty" }, "No differences."));
  for (const t of d.tables) {
    out.push(h("h2", {}, t.name));
    const restore = (rec) => restoreFrom ? h("button", { class: "secondary small", onclick: () => confirmRestore(restoreFrom, { record: rec, table: t.id }, `record ${rec}`) }, "Restore…") : null;
    for (const id of t.removed) {
      out.push(h("div", { class: "change rec-removed", "data-testid": "diff-removed", "data-record": id },
        h("div", { class: "row" }, badge("removed"), h("a", { href: `#/record/${id}${qs({ base: d.base })}`, class: "id" }, id), restore(id))));
    }
    for (const id of t.added) {
      out.push(h("div", { class: "change rec-added", "data-testid": "diff-added", "data-record": id },
        h("div", { class: "row" }, badge("added"), h("a", { href: `#/record/${id}${qs({ base: d.base })}`, class: "id" }, id))));
    }
    for (const c of t.changed) {
      out.push(h("div", { class: "change rec-changed", "data-testid": "diff-changed", "data-record": c.id },
        h("div", { class: "row" }, badge("changed"), h("a", { href: `#/record/${c.id}${qs({ base: d.base })}`, class: "id" }, c.id), restore(c.id)),
        changeTable(c.fields, ["Before", "After"])));
    }
  }
  return out;
}

async function viewDiff(params) {
  const from = params.get("from");
  const to = params.get("to");
  mount(h("h1", {}, "Changes"), h("p", { class: "muted" }, to === "live" ? "Reading the live base through the Airtable API…" : "Comparing…"));
  const d = await api("GET", `/api/diff${qs({ from, to })}`);
  mount(
    h("div", { class: "crumbs" }, h("a", { href: "#/" }, "Bases"), " › ", h("a", { href: `#/base/${d.base}` }, d.base), " › "),
    h("h1", {}, "Changes"),
    h("p", { class: "muted" }, "From snapshot ", h("a", { href: `#/snapshot/${d.from}` }, d.from.slice(0, 8)), " to ",
      d.to === "live" ? "the live base" : h("a", { href: `#/snapshot/${d.to}` }, d.to.slice(0, 8)),
      ". “Restore…” brings a record back as it was in the older snapshot."),
    diffView(d, { id: d.from, base_id: d.base }));
}

function jobsTable(jobs) {
  if (!jobs.length) return h("p", { class: "muted" }, "No jobs yet.");
  return h("div", { class: "scroll" }, h("table", { "data-testid": "jobs" },
    h("thead", {}, h("tr", {}, h("th", {}, "Job"), h("th", {}, "Base"), h("th", {}, "Started"), h("th", {}, "Outcome"), h("th", { class: "hide-narrow" }, "Records"), h("th", { class: "hide-narrow" }, "Requests"))),
    h("tbody", {}, jobs.map((j) => h("tr", { "data-testid": "job-row", "data-job": j.id },
      h("td", {}, h("a", { href: `#/job/${j.id}` }, `#${j.id} ${j.kind}`), h("div", { class: "muted" }, j.trigger)),
      h("td", { class: "id" }, j.base || "all"),
      h("td", {}, fmtTime(j.started || j.queued)),
      h("td", {}, badge(j.outcome)),
      h("td", { class: "hide-narrow" }, j.figures.records),
      h("td", { class: "hide-narrow" }, j.figures.requests))))));
}

async function viewJobs() {
  const { jobs } = await api("GET", "/api/jobs?limit=200");
  mount(h("h1", {}, "Jobs"), jobsTable(jobs));
  if (jobs.some((j) => !isFinal(j.outcome))) every(2000, () => refresh(viewJobs));
}

async function viewJob(id) {
  const j = await api("GET", `/api/jobs/${encodeURIComponent(id)}`);
  const f = j.figures;
  mount(
    h("div", { class: "crumbs" }, h("a", { href: "#/jobs" }, "Jobs"), " › "),
    h("div", { class: "row" }, h("h1", {}, `Job #${j.id}: ${j.kind}`), h("span", { "data-testid": "job-outcome", "data-outcome": j.outcome }, badge(j.outcome))),
    h("p", { class: "muted" }, `${j.base || "whole repository"} · ${j.trigger} · queued ${fmtTime(j.queued)}`,
      j.started ? ` · started ${fmtTime(j.started)}` : "", j.ended ? ` · ended ${fmtTime(j.ended)}` : ""),
    j.error ? h("div", { class: "error-box" }, j.error) : null,
    h("p", {}, `${f.records} records · ${f.attachments_downloaded} files downloaded · ${bytes(f.bytes_added)} added · ${f.requests} API requests · ${f.rate_limited} rate-limited`),
    j.snapshot ? h("p", {}, j.kind === "restore" ? "Safety snapshot " : "Snapshot ", h("a", { href: `#/snapshot/${j.snapshot}`, "data-testid": "job-snapshot" }, j.snapshot.slice(0, 8)),
      j.base ? [" · ", h("a", { href: `#/base/${j.base}` }, "all snapshots of the base")] : null) : null,
    h("h2", {}, "Log"),
    j.log && j.log.length
      ? h("div", { class: "log", "data-testid": "job-log" }, j.log.map((l) => h("div", { class: l.level }, `${l.level}: ${l.text}`)))
      : h("p", { class: "muted" }, "No log lines."));
  if (!isFinal(j.outcome)) every(1500, () => refresh(() => viewJob(id)));
}

// ---------------------------------------------------------------------------------------
// Restore in place, behind a confirmation that shows the plan

async function confirmRestore(snapshot, what, label) {
  // A ticket per confirmation: the answer to one the user closed is dropped, never shown in
  // (or confirmed by) a later one.
  const ticket = ++state.confirm;
  const dialog = document.getElementById("confirm");
  const body = document.getElementById("confirm-body");
  const ok = document.getElementById("confirm-ok");
  ok.disabled = true;
  body.replaceChildren(h("p", {}, `Restore ${label} in the live base ${snapshot.base_id} as it was in snapshot ${snapshot.id.slice(0, 8)}.`),
    h("p", { class: "muted" }, "Reading the live base to plan the changes…"));
  dialog.returnValue = "";
  dialog.showModal();
  let plan;
  try {
    plan = await api("POST", `/api/snapshots/${encodeURIComponent(snapshot.id)}/restore/plan`, what);
  } catch (e) {
    if (ticket === state.confirm && dialog.open) body.append(failure(e));
    return;
  }
  if (ticket !== state.confirm || !dialog.open) return;
  const p = plan.plan;
  const nothing = p.changes.summary.added + p.changes.summary.removed + p.changes.summary.changed === 0 && !p.fields_created && !p.tables_created;
  body.replaceChildren(...[
    h("p", {}, `Restore ${label} in the live base ${plan.base} as it was in snapshot ${plan.request.snapshot.slice(0, 8)}.`),
    h("p", { "data-testid": "plan-summary" },
      nothing ? "The live base already matches the snapshot: nothing to write."
        : `This will create ${p.changes.summary.added} record(s), update ${p.changes.summary.changed} and delete ${p.changes.summary.removed}` +
          (p.tables_created || p.fields_created ? `, and create ${p.tables_created} table(s) and ${p.fields_created} field(s) again` : "") +
          `, in ${p.write_requests} write request(s). Records added since the snapshot are kept. A snapshot of the live base is taken first (tagged before-undo), so the cells written can be put back; records created again stay until deleted.`),
    p.problems.length ? h("div", { class: "notice" }, p.problems.join("; ")) : null,
    h("div", { "data-testid": "plan-changes" }, diffPlan(p.changes, plan.created))].filter(Boolean));
  ok.disabled = nothing;
  const choice = await new Promise((resolve) => dialog.addEventListener("close", () => resolve(dialog.returnValue), { once: true }));
  if (choice !== "ok" || ticket !== state.confirm) return;
  try {
    const r = await api("POST", `/api/snapshots/${encodeURIComponent(plan.request.snapshot)}/restore`, what);
    location.hash = `#/job/${r.job_id}`;
  } catch (e) {
    alert(e.message);
  }
}

/** The plan's changes: from the live base (before) to the snapshot (after). */
function diffPlan(changes, created) {
  const out = [];
  const cells = new Map((created || []).map((r) => [r.id, r.fields]));
  for (const t of changes.tables) {
    out.push(h("h3", {}, t.name));
    for (const id of t.added) {
      const fields = cells.get(id);
      out.push(h("div", { class: "change rec-added" }, h("div", {}, badge("added", "create again"), " ", h("span", { class: "id" }, id)),
        fields ? h("div", { class: "scroll" }, h("table", {}, h("tbody", {}, fields.map((f) =>
          h("tr", {}, h("td", {}, f.name), h("td", { class: "val after" }, cellText(f.value))))))) : null));
    }
    for (const id of t.removed) out.push(h("div", { class: "change rec-removed" }, badge("removed", "delete"), " ", h("span", { class: "id" }, id)));
    for (const c of t.changed) {
      out.push(h("div", { class: "change rec-changed" }, h("div", {}, badge("changed", "write back"), " ", h("span", { class: "id" }, c.id)),
        changeTable(c.fields, ["Live now", "After restore"])));
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// Routing

async function refresh(view) {
  // Re-render without flicker or losing scroll when polling.
  const y = window.scrollY;
  const ticket = state.route;
  state.mounting = ticket;
  try { await view(); } catch (e) {
    if (e instanceof Stale) return;
    if (e.status !== 401 && ticket === state.route) { stopTimer(); mount(failure(e)); }
  }
  window.scrollTo(0, y);
}

async function route() {
  stopTimer();
  // Each navigation gets a ticket; a slower earlier view finding another ticket gives up.
  const ticket = ++state.route;
  state.mounting = ticket;
  try {
    const hash = location.hash.replace(/^#/, "") || "/";
    const [path, query] = hash.split("?");
    const params = new URLSearchParams(query || "");
    const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
    for (const a of document.querySelectorAll("nav a")) {
      a.classList.toggle("active", (a.dataset.nav === "jobs") === (parts[0] === "jobs" || parts[0] === "job"));
    }
    if (!state.csrf) state.csrf = (await api("GET", "/api/session")).csrf_token;
    if (parts.length === 0) await viewBases();
    else if (parts[0] === "base" && parts[1]) await viewBase(parts[1]);
    else if (parts[0] === "snapshot" && parts[2] === "table") await viewTable(parts[1], parts[3], params);
    else if (parts[0] === "snapshot" && parts[1]) await viewSnapshot(parts[1]);
    else if (parts[0] === "record" && parts[1]) await viewHistory(parts[1], params);
    else if (parts[0] === "diff") await viewDiff(params);
    else if (parts[0] === "jobs") await viewJobs();
    else if (parts[0] === "job" && parts[1]) await viewJob(parts[1]);
    else mount(h("h1", {}, "Not found"), h("p", {}, h("a", { href: "#/" }, "Back to the bases")));
  } catch (e) {
    if (!(e instanceof Stale) && e.status !== 401 && ticket === state.route) {
      state.mounting = ticket;
      mount(failure(e));
    }
  }
}

window.addEventListener("hashchange", route);
window.addEventListener("DOMContentLoaded", route);
