/* The job list: GET /jobs, newest first, with epochs done from /ui/api/progress; refreshes itself. */
"use strict";

(() => {
  const { api, el, clear, timeEl, statusBadge, showError, root } = Plateau;
  const PAGE = 50;
  const REFRESH_MS = 5000;
  const PROGRESS_CHUNK = 100;
  const state = { limit: PAGE, timer: null, loading: false };

  const body = document.getElementById("jobs-body");
  const table = document.getElementById("jobs-table");
  const empty = document.getElementById("jobs-empty");
  const more = document.getElementById("more");
  const filter = document.getElementById("status-filter");
  const auto = document.getElementById("auto-refresh");
  const updated = document.getElementById("last-updated");

  function row(job, done) {
    const planned = job.spec && job.spec.epochs;
    const epochs = done === undefined ? "?" : String(done);
    return el("tr", { "data-testid": "job-row", "data-job-id": job.id, "data-status": job.status },
      el("td", { "data-testid": "job-name" },
        el("a", { href: `${root}/ui/jobs/${encodeURIComponent(job.id)}`, text: job.name || "(unnamed)" }),
        job.parent_id ? el("span", { class: "muted small", title: "forked from " + job.parent_id, text: " ↳ fork" }) : null),
      el("td", {}, statusBadge(job.status, { "data-testid": "job-status" })),
      el("td", { "data-testid": "job-created" }, timeEl(job.created_at)),
      el("td", { class: "num", "data-testid": "epochs-done", "data-epochs-done": done === undefined ? null : done },
        planned ? `${epochs} / ${planned}` : epochs),
      el("td", { class: "mono small", title: job.id }, job.id.slice(0, 8)));
  }

  /** Epochs finished per job id, asked in chunks that keep the URL short; {} when the call fails. */
  async function epochsDone(ids) {
    const done = {};
    try {
      for (let i = 0; i < ids.length; i += PROGRESS_CHUNK) {
        const chunk = ids.slice(i, i + PROGRESS_CHUNK).join(",");
        Object.assign(done, (await api("/ui/api/progress?ids=" + encodeURIComponent(chunk))).items);
      }
    } catch (_) { /* the list still shows; epochs read "?" */ }
    return done;
  }

  async function load() {
    if (state.loading) return;
    state.loading = true;
    table.setAttribute("aria-busy", "true");
    try {
      const params = new URLSearchParams({ limit: String(state.limit) });
      if (filter.value) params.set("status", filter.value);
      const page = await api("/jobs?" + params);
      const progress = await epochsDone(page.items.map((j) => j.id));
      clear(body);
      for (const job of page.items) body.appendChild(row(job, progress[job.id]));
      empty.hidden = page.items.length > 0;
      more.hidden = !page.next_cursor || state.limit >= 1000;
      showError("");
      updated.textContent = "updated " + new Date().toLocaleTimeString();
      document.body.dataset.loaded = "true";
    } catch (err) {
      showError("Could not load jobs: " + err.message);
    } finally {
      state.loading = false;
      table.setAttribute("aria-busy", "false");
    }
  }

  function schedule() {
    clearInterval(state.timer);
    state.timer = auto.checked ? setInterval(() => { if (!document.hidden) load(); }, REFRESH_MS) : null;
  }

  filter.addEventListener("change", () => { state.limit = PAGE; load(); });
  auto.addEventListener("change", schedule);
  document.getElementById("refresh-now").addEventListener("click", load);
  more.addEventListener("click", () => { state.limit = Math.min(1000, state.limit + PAGE); load(); });
  Plateau.initKeyForm(load);
  load();
  schedule();
})();
