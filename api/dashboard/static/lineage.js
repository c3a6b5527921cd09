/* The job's lineage: one card per fork (autopilot round or manual), parent and child curves overlaid. */
"use strict";

(() => {
  const { api, el, clear, fmtNum, statusBadge } = Plateau;
  const jobId = document.body.dataset.jobId;
  const REFRESH_MS = 5000;
  const ACTIVE = new Set(["queued", "running"]);
  const PARENT = "#8a94a0", CHILD = "#2a8c3c";
  let timer = null, shown = "";

  async function rowsOf(id) {
    const page = await api(`/jobs/${encodeURIComponent(id)}/metrics?limit=1000`);
    return page.items;
  }

  function overlay(parentRows, childRows, metric) {
    const byEpoch = new Map();
    for (const r of parentRows) byEpoch.set(r.epoch, { epoch: r.epoch, parent: r[metric], child: null });
    for (const r of childRows) {
      const row = byEpoch.get(r.epoch) || { epoch: r.epoch, parent: null };
      row.child = r[metric];
      byEpoch.set(r.epoch, row);
    }
    return [...byEpoch.values()].sort((a, b) => a.epoch - b.epoch);
  }

  function gainText(step) {
    if (step.gain === null || step.gain === undefined) return ACTIVE.has(step.status) ? "measured when it ends" : "—";
    return (step.gain >= 0 ? "+" : "") + fmtNum(step.gain);
  }

  function comparisonText(step) {
    const c = step.comparison;
    if (!c) return "";
    return ` · ${c.direction} than its parent (${c.test})` + (step.start ? ` · ${step.start} start` : "");
  }

  async function card(step, parent, metric, keep) {
    const title = step.round ? `Round ${step.round}` : "Fork";
    const remedy = step.remedies.length ? step.remedies.join(" + ") : "patch only";
    const figure = el("figure", { class: "chart", id: `lineage-chart-${step.job_id}`, "data-testid": "lineage-chart" },
                      el("figcaption", { text: `${metric}: parent and child` }));
    const node = el("article", { class: "panel lineage-card", "data-testid": "lineage-card", "data-job-id": step.job_id },
      el("h3", {}, `${title}: `, el("a", { href: `${Plateau.root}/ui/jobs/${step.job_id}`, text: step.job_id.slice(0, 8) }),
         " ", statusBadge(step.status), keep ? el("strong", { class: "keep", text: " · the job to keep" }) : ""),
      el("p", {}, el("strong", { text: step.cause || "no cause named" }), " → ", el("code", { text: remedy })),
      el("p", { class: "muted", text: `best ${fmtNum(step.best)} vs parent ${fmtNum(step.parent_best)} · gain ` +
                                      `${gainText(step)} · ${step.epochs} epochs · ${step.diagnosis.verdict}${comparisonText(step)}` }),
      figure);
    const rows = overlay(await rowsOf(parent), await rowsOf(step.job_id), metric);
    Charts.lineChart(figure, { title: `${metric}, parent and child`, rows, series: [
      { key: "parent", label: "parent", color: PARENT, dash: "6 3", width: 1.8 },
      { key: "child", label: "child", color: CHILD, width: 2.6 }] });
    return node;
  }

  async function refresh() {
    const section = document.getElementById("lineage");
    try {
      const body = await api(`/jobs/${encodeURIComponent(jobId)}/lineage`);
      const forks = body.steps.filter((s) => s.parent_id && (s.round !== 0));
      const ap = body.autopilot;
      const key = JSON.stringify([body.steps.map((s) => [s.job_id, s.status, s.epochs, s.gain]), ap && ap.state]);
      const live = (ap && ap.state === "active") || body.steps.some((s) => ACTIVE.has(s.status));
      if (!live && timer) { clearInterval(timer); timer = null; }
      if (key === shown) return;
      shown = key;
      section.hidden = !forks.length && !ap;
      const status = document.getElementById("lineage-state");
      status.textContent = ap ? (ap.state === "active"
        ? `Autopilot active: round ${ap.rounds_done} of at most ${ap.config.max_rounds}.`
        : `Autopilot ended (${ap.end_reason}) after ${ap.rounds_done} round(s). ${ap.end_detail || ""}`)
        : `Forks from ${body.root_id.slice(0, 8)}.`;
      if (body.best_job_id) status.textContent += ` Keep job ${body.best_job_id.slice(0, 8)} (best ${body.metric} ${fmtNum(body.best)}).`;
      const list = document.getElementById("lineage-cards");
      const cards = [];
      for (const step of forks) cards.push(await card(step, step.parent_id, body.metric, step.job_id === body.best_job_id));
      clear(list);
      for (const c of cards) list.appendChild(c);
    } catch (err) {
      section.hidden = true;
    }
  }

  refresh().then(() => { timer = setInterval(() => { if (!document.hidden) refresh(); }, REFRESH_MS); });
})();
