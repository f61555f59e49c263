// corral dashboard: hash routes over one page, the JSON API polled every
// 2 s with the operator's API token, everything drawn with DOM calls (never
// innerHTML), charts as inline SVG. No dependencies, no build step.
"use strict";
(function () {
  const POLL_MS = 2000;
  const TOKEN_KEY = "corral.token";
  const SVG = "http://www.w3.org/2000/svg";
  const $ = (id) => document.getElementById(id);

  // h builds an element: h("td", {class: "x", "data-label": "State"}, "text", child).
  function h(tag, attrs, ...kids) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === false || v === null || v === undefined) continue;
      el.setAttribute(k, v === true ? "" : String(v));
    }
    for (const k of kids.flat()) {
      if (k === null || k === undefined || k === false) continue;
      el.append(k instanceof Node ? k : document.createTextNode(String(k)));
    }
    return el;
  }
  function s(tag, attrs) {
    const el = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
    return el;
  }

  // ---- session -------------------------------------------------------
  const token = () => sessionStorage.getItem(TOKEN_KEY) || "";
  class SignedOut extends Error {}

  async function api(path) {
    const res = await fetch("/api/v1/" + path, {
      headers: { "Authorization": "Bearer " + token(), "Accept": "application/json" },
      cache: "no-store", credentials: "omit",
    });
    if (res.status === 401) throw new SignedOut("the API refused the token (401)");
    let body = null;
    try { body = await res.json(); } catch (e) { /* not JSON */ }
    if (!res.ok) throw new Error((body && body.error) || ("HTTP " + res.status + " for " + path));
    return body;
  }

  function showSignIn(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    stopPolling();
    $("nav").hidden = true;
    $("session").hidden = true;
    $("view").replaceChildren();
    $("signin").hidden = false;
    setStatus(message || "", !!message);
    $("token").value = "";
    $("token").focus();
  }

  function showApp() {
    $("signin").hidden = true;
    $("nav").hidden = false;
    $("session").hidden = false;
    setStatus("");
    route();
  }

  function setStatus(text, error) {
    const el = $("status");
    el.textContent = text;
    el.classList.toggle("error", !!error);
  }

  // ---- polling -------------------------------------------------------
  let timer = null;
  let lastOK = 0;
  let gen = 0; // a route change makes older answers stale
  let lastData = "";

  function stopPolling() { clearTimeout(timer); timer = null; gen++; }

  async function tick(view, g) {
    try {
      const data = await view.load();
      if (g !== gen) return;
      lastOK = Date.now();
      $("updated").dataset.at = String(lastOK);
      showAge();
      setStatus("");
      const key = JSON.stringify(data);
      if (key !== lastData) { // draw only what changed: focus and scroll stay put
        lastData = key;
        const focused = document.activeElement && document.activeElement.id;
        view.draw(data);
        $("view").dataset.view = view.key;
        if (focused && $(focused)) $(focused).focus();
      }
    } catch (e) {
      if (g !== gen) return;
      if (e instanceof SignedOut) { showSignIn("Signed out: " + e.message + ". Sign in with a valid token."); return; }
      setStatus("Cannot update: " + e.message, true);
    }
    if (g === gen) timer = setTimeout(() => tick(view, g), view.every || POLL_MS);
  }

  function showAge() {
    if (!lastOK) return;
    const n = Math.max(0, Math.round((Date.now() - lastOK) / 1000));
    $("updated").textContent = "updated " + n + " s ago";
  }
  setInterval(showAge, 1000);

  // ---- formatting ----------------------------------------------------
  function ago(iso) {
    if (!iso) return "";
    const d = (Date.now() - Date.parse(iso)) / 1000;
    if (d < 60) return Math.max(0, Math.round(d)) + " s ago";
    if (d < 3600) return Math.round(d / 60) + " min ago";
    if (d < 86400) return Math.round(d / 3600) + " h ago";
    return new Date(iso).toLocaleString();
  }
  function secs(ms) {
    const v = ms / 1000;
    if (v < 10) return v.toFixed(2) + " s";
    if (v < 120) return v.toFixed(1) + " s";
    return (v / 60).toFixed(1) + " min";
  }
  const stateClass = (st) => ({ completed: "ok", running: "ok", idle: "ok", unroutable: "bad", failure: "bad" }[st] || "");

  // table draws a table whose cells carry their header (data-label) for
  // the stacked phone layout. cols: [{h: "Header", v: (row) => node|text}].
  function table(caption, cols, rows, rowAttrs) {
    const thead = h("thead", {}, h("tr", {}, cols.map((c) => h("th", { scope: "col" }, c.h))));
    const tbody = h("tbody", {}, rows.map((r) =>
      h("tr", rowAttrs ? rowAttrs(r) : {}, cols.map((c) => h("td", { "data-label": c.h }, c.v(r))))));
    if (!rows.length) tbody.append(h("tr", {}, h("td", { colspan: cols.length, "data-label": "" }, "None.")));
    return h("div", { class: "table-wrap" }, h("table", { class: "stack" }, h("caption", {}, caption), thead, tbody));
  }
  const jobLink = (j) => h("a", { href: "#/job/" + j.id }, "#" + j.id + " " + (j.name || ""));

  function meter(live, max) {
    const w = 100;
    const frac = max > 0 ? Math.min(1, live / max) : 0;
    const svg = s("svg", { width: w, height: 8, viewBox: "0 0 100 8", "aria-hidden": "true", focusable: "false" });
    svg.append(s("rect", { x: 0, y: 0, width: frac * w, height: 8, fill: "currentColor" }));
    return h("span", { class: "meter" + (frac >= 1 ? " bad" : "") }, svg);
  }

  // ---- views ---------------------------------------------------------
  const views = {
    overview: {
      title: "Overview",
      load: () => api("overview"),
      draw(o) {
        const counts = ["pending", "queued", "routed", "unroutable", "running"];
        const live = counts.map((k) => (o.jobs[k] || 0) + " " + k).join(", ");
        if ($("live").textContent !== "Jobs: " + live) $("live").textContent = "Jobs: " + live;
        render("Overview",
          h("section", { "aria-labelledby": "jobs-h" },
            h("h2", { id: "jobs-h" }, "Open jobs"),
            h("dl", { class: "cards" }, counts.map((k) =>
              h("div", { class: "card" }, h("dt", {}, k === "routed" ? "waiting (routed)" : k),
                h("dd", { "data-count": k, class: k === "unroutable" && o.jobs[k] ? "bad" : "" }, o.jobs[k] || 0))))),
          h("section", { "aria-labelledby": "cap-h" },
            h("h2", { id: "cap-h" }, "Capacity per pool"),
            table("Live instances against each pool's maximum", [
              { h: "Pool", v: (p) => h("a", { href: "#/pools" }, p.id) },
              { h: "Live / max", v: (p) => h("span", { "data-live": p.id }, meter(p.live, p.max_instances), p.live + " / " + (p.max_instances || "no cap")) },
              { h: "Busy", v: (p) => p.by_state.busy || 0 },
              { h: "Idle", v: (p) => p.by_state.idle || 0 },
              { h: "Starting", v: (p) => (p.by_state.pending || 0) + (p.by_state.starting || 0) },
              { h: "Waiting jobs", v: (p) => p.waiting },
              { h: "Provider", v: (p) => p.provider },
            ], o.pools, (p) => ({ "data-pool": p.id }))),
          h("section", { "aria-labelledby": "prov-h" },
            h("h2", { id: "prov-h" }, "Provider health"),
            table("From /readyz", [
              { h: "Provider", v: (p) => p.name },
              { h: "Health", v: (p) => h("span", { class: p.ok ? "ok" : "bad" }, p.ok ? "healthy" : "failing") },
              { h: "Detail", v: (p) => p.error || p.detail || "" },
            ], o.providers)),
          h("section", { "aria-labelledby": "lead-h" },
            h("h2", { id: "lead-h" }, "Leader"),
            h("p", { "data-leader": "" }, o.leader.leading ? "This replica (" + o.leader.replica + ") leads" + (o.leader.term ? ", term " + o.leader.term : "") + "."
              : o.leader.holder ? o.leader.holder + " leads; this is " + o.leader.replica + "." : "No replica leads yet.",
            o.leader.error ? h("span", { class: "bad" }, " " + o.leader.error) : null),
            h("p", { class: "muted" }, "Ready: " + (o.ready ? "yes" : "no") + " · catalog version " + o.catalog_version)));
      },
    },
    jobs: {
      title: "Jobs",
      load: () => api("jobs" + (param("state") ? "?state=" + encodeURIComponent(param("state")) : "")),
      draw(d) {
        const jobs = d.jobs.slice().reverse();
        const sel = h("select", { id: "state-filter" },
          ["", "pending", "queued", "routed", "unroutable", "running", "completed"].map((st) =>
            h("option", { value: st, selected: st === (param("state") || "") }, st || "every state")));
        sel.addEventListener("change", () => { location.hash = "#/jobs" + (sel.value ? "?state=" + sel.value : ""); });
        render("Jobs",
          h("div", { class: "filters" }, h("label", { for: "state-filter" }, "State"), sel,
            h("span", { class: "muted", "data-total": jobs.length }, jobs.length + " jobs")),
          table("Newest first", [
            { h: "Job", v: jobLink },
            { h: "Repository", v: (j) => j.repo || "" },
            { h: "State", v: (j) => h("span", { class: stateClass(j.conclusion || j.state) }, j.state + (j.conclusion ? " (" + j.conclusion + ")" : "")) },
            { h: "Pool", v: (j) => j.pool || (j.pools || []).join(", ") },
            { h: "Labels", v: (j) => h("span", { class: "labels" }, (j.labels || []).join(", ")) },
            { h: "Queued", v: (j) => ago(j.queued_at) },
          ], jobs, (j) => ({ "data-job-id": j.id, "data-state": j.state })));
      },
    },
    unroutable: {
      title: "Unroutable jobs",
      load: () => api("jobs?state=unroutable"),
      draw(d) {
        render("Unroutable jobs",
          h("p", { class: "muted" }, "Jobs no pool accepts, with the reason the matcher gave. They wait until a pool change routes them."),
          table("Unroutable jobs and why", [
            { h: "Job", v: jobLink },
            { h: "Repository", v: (j) => j.repo || "" },
            { h: "Labels", v: (j) => h("span", { class: "labels" }, (j.labels || []).join(", ")) },
            { h: "Reason", v: (j) => h("span", { class: "bad", "data-reason": "" }, j.reason || "") },
            { h: "Queued", v: (j) => ago(j.queued_at) },
          ], d.jobs, (j) => ({ "data-job-id": j.id })));
      },
    },
    job: {
      title: "Job",
      load: () => api("jobs/" + encodeURIComponent(routeArg())),
      draw(j) {
        const tl = (j.timeline || []).filter((e) => e.at);
        const t0 = tl.length ? Date.parse(tl[0].at) : 0;
        const span = tl.length ? Math.max(1, Date.parse(tl[tl.length - 1].at) - t0) : 1;
        const steps = tl.map((e, i) => {
          const at = Date.parse(e.at) - t0;
          const prev = i ? Date.parse(tl[i - 1].at) - t0 : 0;
          const svg = s("svg", { viewBox: "0 0 1000 14", preserveAspectRatio: "none", "aria-hidden": "true", focusable: "false" });
          svg.append(s("rect", { x: 0, y: 6, width: 1000, height: 2, class: "axis", fill: "currentColor", opacity: 0.15 }));
          svg.append(s("rect", { x: (prev / span) * 1000, y: 2, width: Math.max(4, ((at - prev) / span) * 1000), height: 10, class: "b1", fill: "currentColor" }));
          return h("li", { "data-stamp": e.kind },
            h("span", {}, e.kind.replaceAll("_", " ")), svg,
            h("span", { class: "at" }, "+" + secs(at)),
            (e.detail || e.instance) ? h("span", { class: "detail" }, [e.instance, e.detail].filter(Boolean).join(": ")) : null);
        });
        const facts = [["State", j.state + (j.conclusion ? " (" + j.conclusion + ")" : "")], ["Repository", j.repo], ["Target", j.target],
          ["Forge job id", j.forge_job_id], ["Labels", (j.labels || []).join(", ")], ["Pool", j.pool || (j.pools || []).join(", ")],
          ["Instance", j.instance], ["Runner", j.runner], ["Reason", j.reason]].filter((f) => f[1] !== undefined && f[1] !== "");
        render("Job #" + j.id + (j.name ? ": " + j.name : ""),
          h("dl", { class: "cards facts" }, facts.map(([k, v]) => h("div", { class: "card" }, h("dt", {}, k), h("dd", { class: "muted" }, String(v))))),
          h("section", { "aria-labelledby": "tl-h" },
            h("h2", { id: "tl-h" }, "Timeline"),
            tl.length ? h("p", { class: "muted" }, "Each bar spans from the stamp before to this one; times count from the first stamp.") : h("p", {}, "No stamps yet."),
            h("ol", { class: "waterfall", "aria-label": "Timeline of job " + j.id }, steps)));
      },
    },
    pools: {
      title: "Pools",
      load: async () => {
        const [p, r] = await Promise.all([api("pools"), api("rightsizing")]);
        return { pools: p.pools, rightsizing: r.jobs };
      },
      draw(d) {
        render("Pools", table("Pools in priority order", [
          { h: "Pool", v: (p) => p.id },
          { h: "Tenant", v: (p) => p.tenant },
          { h: "Labels", v: (p) => h("span", { class: "labels" }, p.labels.join(", ")) },
          { h: "Provider", v: (p) => p.provider },
          { h: "Flavor", v: (p) => p.flavor + (p.max_flavor ? " (up to " + p.max_flavor + ")" : "") },
          { h: "Live / max", v: (p) => [meter(p.live, p.max_instances), p.live + " / " + (p.max_instances || "no cap")] },
          { h: "Min idle", v: (p) => p.min_idle },
          { h: "Waiting", v: (p) => p.waiting },
          { h: "Back-off", v: (p) => p.backoff ? h("span", { class: "bad" }, p.backoff.kind + " ×" + p.backoff.failures + ": " + (p.backoff.last_error || "")) : "" },
        ], d.pools, (p) => ({ "data-pool": p.id })),
        table("Right-sizing: what jobs used (peaks sampled from their cgroups) and the size that would do", [
          { h: "Repository", v: (r) => r.repository },
          { h: "Workflow", v: (r) => r.workflow || "–" },
          { h: "Job", v: (r) => r.job },
          { h: "Pool", v: (r) => r.pool },
          { h: "Jobs", v: (r) => r.jobs },
          { h: "Advice", v: (r) => h("span", { class: r.smaller ? "warn" : "" }, r.advice) },
        ], d.rightsizing, (r) => ({ "data-rightsizing": r.repository + " " + r.workflow + " " + r.job })));
      },
    },
    instances: {
      title: "Instances",
      load: () => api("instances"),
      draw(d) {
        render("Instances", table("Live instances", [
          { h: "Name", v: (i) => i.name || i.id },
          { h: "Pool", v: (i) => i.pool },
          { h: "State", v: (i) => h("span", { class: stateClass(i.state) }, i.state) },
          { h: "Job", v: (i) => i.job_id ? h("a", { href: "#/job/" + i.job_id }, "#" + i.job_id) : "warm" },
          { h: "Created", v: (i) => ago(i.created_at) },
          { h: "Note", v: (i) => i.last_error || i.reason || "" },
        ], d.instances, (i) => ({ "data-instance": i.id })));
      },
    },
    usage: {
      title: "Usage",
      every: 10000,
      load: () => api("usage/hourly?hours=24"),
      draw(d) {
        const hrs = d.hours;
        const label = (u) => new Date(u.hour).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
        render("Usage over the last 24 hours",
          h("section", { "aria-labelledby": "u1-h" }, h("h2", { id: "u1-h" }, "Jobs finished per hour"),
            chart(hrs, (u) => u.finished, "b1", "Jobs finished per hour, last 24 hours", (v) => String(v))),
          h("section", { "aria-labelledby": "u2-h" }, h("h2", { id: "u2-h" }, "Runner minutes per hour"),
            chart(hrs, (u) => u.runner_minutes, "b2", "Runner minutes per hour, last 24 hours", (v) => v.toFixed(1))),
          h("details", {}, h("summary", {}, "The numbers as a table"),
            table("Per hour (runner minutes count in the hour a job completed)", [
              { h: "Hour", v: label },
              { h: "Finished", v: (u) => u.finished },
              { h: "Not successful", v: (u) => u.failed },
              { h: "Runner minutes", v: (u) => u.runner_minutes.toFixed(1) },
            ], hrs)));
      },
    },
    analytics: {
      title: "CI analytics",
      every: 10000,
      load: () => {
        const days = Number(param("days")) || 30;
        const to = new Date();
        const from = new Date(to.getTime() - days * 86400000);
        return api("analytics?from=" + encodeURIComponent(from.toISOString()) + "&to=" + encodeURIComponent(to.toISOString()));
      },
      draw(d) {
        const days = Number(param("days")) || 30;
        const sel = h("select", { id: "days-filter" }, [7, 30, 90].map((n) =>
          h("option", { value: n, selected: n === days }, "last " + n + " days")));
        sel.addEventListener("change", () => { location.hash = "#/analytics?days=" + sel.value; });
        const sec = (v) => (v === null || v === undefined) ? "–" : secs(v * 1000);
        const pct = (r) => Math.round(r * 100) + " %";
        const key = (g) => g.repository + " " + g.workflow + " " + g.job;
        const name = (g) => [g.repository, g.workflow, g.job].filter(Boolean).join(" · ");
        const dayLabels = { full: (x) => x.date, short: (x) => x.date.slice(5) };
        const every = Math.max(1, Math.ceil(d.days.length / 8));
        const shortDays = { full: dayLabels.full, short: (x) => (d.days.indexOf(x) % every === 0 ? dayLabels.short(x) : "") };
        render("CI analytics",
          h("div", { class: "filters" }, h("label", { for: "days-filter" }, "Window"), sel,
            h("span", { class: "muted", "data-runs": d.runs }, d.runs + " jobs completed" + (d.truncated ? " (more than counted)" : ""))),
          h("p", { class: "muted" }, "From the forges' completed events: duration is started to completed, queue time created to started, as the forge stamped them. p50 and p95 are nearest-rank percentiles."),
          h("section", { "aria-labelledby": "a1-h" }, h("h2", { id: "a1-h" }, "Jobs completed per day"),
            chart(d.days, (x) => x.count, "b1", "Jobs completed per day", (v) => (Number.isInteger(v) ? String(v) : v.toFixed(1)), shortDays),
            h("details", {}, h("summary", {}, "Per day as a table"),
              table("Per UTC day", [
                { h: "Day", v: (x) => x.date },
                { h: "Jobs", v: (x) => x.count },
                { h: "Success", v: (x) => x.count ? pct(x.success_rate) : "–" },
                { h: "p50 duration", v: (x) => sec(x.duration_p50_seconds) },
                { h: "p95 duration", v: (x) => sec(x.duration_p95_seconds) },
                { h: "p95 queue", v: (x) => sec(x.queue_p95_seconds) },
              ], d.days, (x) => ({ "data-day": x.date })))),
          h("section", { "aria-labelledby": "a2-h" }, h("h2", { id: "a2-h" }, "Per repository, workflow and job"),
            table("Every job name completed in the window", [
              { h: "Repository", v: (g) => g.repository },
              { h: "Workflow", v: (g) => g.workflow || "–" },
              { h: "Job", v: (g) => g.job },
              { h: "Runs", v: (g) => h("span", { "data-count": "" }, g.count) },
              { h: "Success", v: (g) => h("span", { class: g.success_rate < 1 ? "warn" : "ok", "data-rate": g.success_rate }, pct(g.success_rate)) },
              { h: "p50 / p95 duration", v: (g) => sec(g.duration_p50_seconds) + " / " + sec(g.duration_p95_seconds) },
              { h: "p50 / p95 queue", v: (g) => sec(g.queue_p50_seconds) + " / " + sec(g.queue_p95_seconds) },
              { h: "Last", v: (g) => h("span", { class: stateClass(g.last_conclusion) }, g.last_conclusion + " " + ago(g.last_at)) },
              { h: "Steps", v: (g) => (g.steps && g.steps.length) ? h("details", {}, h("summary", {}, g.steps.length + (g.steps.length === 1 ? " step" : " steps")),
                h("ol", { class: "steps" }, g.steps.map((st) => h("li", {}, st.name + ": p50 " + sec(st.duration_p50_seconds) +
                  ", p95 " + sec(st.duration_p95_seconds) + (st.failure ? ", " + st.failure + " failed" : ""))))) : "–" },
            ], d.jobs, (g) => ({ "data-analytics": key(g) }))),
          h("section", { "aria-labelledby": "a3-h" }, h("h2", { id: "a3-h" }, "Slowest jobs"),
            table("By p95 duration", [
              { h: "Job", v: name },
              { h: "p95 duration", v: (g) => sec(g.duration_p95_seconds) },
              { h: "Runs", v: (g) => g.count },
            ], d.slowest, (g) => ({ "data-slowest": key(g) }))),
          h("section", { "aria-labelledby": "a4-h" }, h("h2", { id: "a4-h" }, "Most failing jobs"),
            table("By failures", [
              { h: "Job", v: name },
              { h: "Failures", v: (g) => g.failure },
              { h: "Success", v: (g) => pct(g.success_rate) },
            ], d.most_failing, (g) => ({ "data-failing": key(g) }))));
      },
    },
    deliveries: {
      title: "Webhook deliveries",
      load: () => api("deliveries"),
      draw(d) {
        render("Recent webhook deliveries",
          h("p", { class: "muted" }, "The last deliveries this replica (" + d.replica + ") answered, newest first; kept in memory only."),
          table("Deliveries and their results", [
            { h: "When", v: (x) => ago(x.at) },
            { h: "Target", v: (x) => x.target + (x.routed ? " → " + x.routed : "") },
            { h: "Event", v: (x) => x.event || "" },
            { h: "Delivery", v: (x) => h("span", { class: "labels" }, x.delivery || "") },
            { h: "Result", v: (x) => h("span", { class: x.status >= 400 ? "bad" : "ok", "data-result": x.result }, x.result + " (" + x.status + ")") },
            { h: "Job", v: (x) => x.job_id ? h("a", { href: "#/job/" + x.job_id }, "#" + x.job_id) : "" },
            { h: "Took", v: (x) => x.took_ms.toFixed(1) + " ms" },
          ], d.deliveries, (x) => ({ "data-delivery": x.delivery })));
      },
    },
  };

  const hourLabels = {
    full: (u) => new Date(u.hour).toLocaleString(),
    short: (u) => new Date(u.hour).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }),
  };
  function chart(rows, val, cls, title, fmt, labels) {
    const lab = labels || hourLabels;
    const W = 720, H = 200, L = 40, B = 24, T = 10;
    const max = Math.max(1, ...rows.map(val));
    const bw = (W - L) / Math.max(1, rows.length);
    const svg = s("svg", { class: "chart", viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": title + "; peak " + fmt(max) });
    const t = s("title"); t.textContent = title; svg.append(t);
    svg.append(s("line", { x1: L, y1: H - B, x2: W, y2: H - B, class: "axis", stroke: "currentColor" }));
    for (const f of [0, 0.5, 1]) {
      const y = H - B - f * (H - B - T);
      const tx = s("text", { x: L - 6, y: y + 4, "text-anchor": "end" }); tx.textContent = fmt(f * max); svg.append(tx);
    }
    rows.forEach((u, i) => {
      const v = val(u);
      const bh = (v / max) * (H - B - T);
      const r = s("rect", { x: L + i * bw + 1, y: H - B - bh, width: Math.max(1, bw - 2), height: bh, class: cls, "data-value": v });
      const tt = s("title"); tt.textContent = lab.full(u) + ": " + fmt(v); r.append(tt);
      svg.append(r);
      if (i % 4 === 0) {
        const tx = s("text", { x: L + i * bw + bw / 2, y: H - 6, "text-anchor": "middle" });
        tx.textContent = lab.short(u);
        svg.append(tx);
      }
    });
    return svg;
  }

  function render(title, ...kids) {
    document.title = title + " · corral";
    $("view").replaceChildren(h("h1", { id: "view-h" }, title), ...kids);
  }

  // ---- routing -------------------------------------------------------
  function parts() {
    const raw = location.hash.replace(/^#\/?/, "");
    const [path, query] = raw.split("?");
    return { path: path.split("/"), query: new URLSearchParams(query || "") };
  }
  const param = (k) => parts().query.get(k) || "";
  const routeArg = () => parts().path[1] || "";

  function route() {
    if (!token()) { showSignIn(""); return; }
    let name = parts().path[0] || "overview";
    if (!views[name]) name = "overview";
    const view = views[name];
    view.key = name;
    const navName = name === "job" ? "jobs" : name;
    for (const a of document.querySelectorAll("nav a")) {
      if (a.getAttribute("href") === "#/" + navName) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    }
    stopPolling();
    lastData = "";
    $("live").textContent = "";
    delete $("view").dataset.view;
    const g = gen;
    tick(view, g);
  }

  window.addEventListener("hashchange", () => { route(); $("main").focus({ preventScroll: true }); });
  $("signin-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const v = $("token").value.trim();
    if (!v) return;
    sessionStorage.setItem(TOKEN_KEY, v);
    showApp();
  });
  $("signout").addEventListener("click", () => showSignIn("Signed out."));
  if (token()) showApp(); else showSignIn("");
})();
