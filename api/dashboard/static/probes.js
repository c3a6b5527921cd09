/* A job's probes (what each measured) and the label check's suspects as thumbnails. */
"use strict";

(() => {
  const { api, el, clear, fmtNum, statusBadge, root } = Plateau;
  const jobId = document.body.dataset.jobId;
  const base = "/jobs/" + encodeURIComponent(jobId);
  const ACTIVE = new Set(["queued", "running"]);
  const THUMBS = 24;
  let timer = null;

  /** Images need the API key too: fetch them as blobs rather than by <img src>. */
  async function thumbnail(n) {
    const headers = {};
    try {
      const key = localStorage.getItem("plateau.apiKey");
      if (key) headers.Authorization = "Bearer " + key;
    } catch (_) { /* no storage: no key */ }
    const response = await fetch(`${root}${base}/label-issues/${n}/image`, { headers, cache: "no-store" });
    if (!response.ok) return null;
    return URL.createObjectURL(await response.blob());
  }

  function renderProbes(items) {
    const rows = clear(document.getElementById("probes-rows"));
    for (const p of items) {
      const said = p.error || (p.result && p.result.statement) || "";
      rows.appendChild(el("tr", { "data-probe": p.name },
        el("td", { text: p.name }), el("td", {}, statusBadge(p.status)),
        el("td", { text: p.duration_seconds == null ? "" : fmtNum(p.duration_seconds) }), el("td", { text: said })));
    }
  }

  async function renderIssues() {
    const page = await api(`${base}/label-issues?limit=${THUMBS}`);
    document.getElementById("label-issues-count").textContent =
      page.probe_id ? `(${page.total}; estimated noise rate ${fmtNum(page.noise_rate)})` : "(no label check yet)";
    const list = clear(document.getElementById("label-issues"));
    for (const issue of page.items) {
      const img = el("img", { alt: `${issue.file}, labelled ${issue.given}` });
      list.appendChild(el("li", { "data-file": issue.file }, img,
        el("div", { class: "mono", text: issue.file }),
        el("div", { text: `${issue.given} → ${issue.suspected} (${fmtNum(issue.score)})` })));
      thumbnail(issue.n).then((url) => { if (url) img.src = url; });
    }
  }

  async function refresh() {
    try {
      const items = (await api(`${base}/probes`)).items;
      renderProbes(items);
      await renderIssues();
      const running = items.some((p) => ACTIVE.has(p.status));
      if (running && !timer) timer = setInterval(() => { if (!document.hidden) refresh(); }, 3000);
      if (!running && timer) { clearInterval(timer); timer = null; }
    } catch (err) {
      document.getElementById("probes-status").textContent = `Could not load the probes: ${err.message}`;
    }
  }

  document.getElementById("probes-run").addEventListener("click", async (event) => {
    const button = event.currentTarget;
    const status = document.getElementById("probes-status");
    button.disabled = true;
    try {
      const queued = await api(`${base}/probes`, { method: "POST", body: {} });
      status.textContent = `Queued ${queued.items.map((p) => p.name).join(", ")}.`;
      await refresh();
    } catch (err) {
      status.textContent = `Could not queue the probes: ${err.message}`;
    } finally {
      button.disabled = false;
    }
  });
  refresh();
})();
