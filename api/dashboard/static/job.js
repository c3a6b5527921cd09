/* One job: metadata, curves, per-class recall, the diagnosis with evidence and remedies, fork buttons. */
"use strict";

(() => {
  const { api, el, clear, timeEl, fmtNum, humanize, statusBadge, showError, root } = Plateau;
  const jobId = document.body.dataset.jobId;
  const base = "/jobs/" + encodeURIComponent(jobId);
  const REFRESH_MS = 3000;
  const ACTIVE = new Set(["queued", "running"]);
  const state = { job: null, rows: [], lastEpoch: null, analysedAt: null, timer: null, busy: false, forking: false };

  const COLORS = { train: "#1f6fb4", trainEval: "#d9730d", val: "#2a8c3c" };
  const TRAIN = (key) => ({ key, label: "train", color: COLORS.train, width: 1.8 });
  const TRAIN_EVAL = (key) => ({ key, label: "train-eval", color: COLORS.trainEval, dash: "6 3", width: 1.8 });
  const VAL = (key) => ({ key, label: "validation", color: COLORS.val, width: 2.6 });

  function metaItem(list, label, value, attrs = {}) {
    list.appendChild(el("dt", { text: label }));
    list.appendChild(el("dd", attrs, value));
  }

  function jobLink(id) {
    return el("a", { href: `${root}/ui/jobs/${encodeURIComponent(id)}`, class: "mono", title: id, text: id.slice(0, 8) });
  }

  function renderJob(job) {
    document.title = `${job.name || "Job"} · Plateau`;
    document.getElementById("job-title").textContent = job.name || "(unnamed job)";
    const badge = document.getElementById("job-status");
    badge.className = "status status-" + job.status;
    badge.textContent = job.status;
    badge.dataset.status = job.status;

    const meta = clear(document.getElementById("job-meta"));
    metaItem(meta, "Job id", el("span", { class: "mono", text: job.id }), { "data-testid": "job-id" });
    const planned = job.spec && job.spec.epochs;
    const done = state.lastEpoch || 0;
    metaItem(meta, "Epochs done", planned ? `${done} / ${planned}` : String(done), { "data-testid": "epochs-done" });
    metaItem(meta, "Created", timeEl(job.created_at));
    metaItem(meta, "Started", timeEl(job.started_at));
    metaItem(meta, "Finished", timeEl(job.finished_at));
    metaItem(meta, "Attempts", String(job.attempts));
    if (job.ancestors && job.ancestors.length) {
      metaItem(meta, "Forked from", job.ancestors.map((a, i) => [i ? " ← " : "", jobLink(a)]), { "data-testid": "ancestors" });
    }
    if (job.children && job.children.length) {
      metaItem(meta, "Forks", job.children.map((c, i) => [i ? ", " : "", jobLink(c)]), { "data-testid": "children" });
    }
    if (job.stop_reason) metaItem(meta, "Stopped", job.stop_reason);
    if (job.error) metaItem(meta, "Error", el("span", { class: "error-text", text: job.error }), { "data-testid": "job-error" });

    const events = clear(document.getElementById("events"));
    for (const ev of job.events || []) {
      const change = ev.from_status || ev.to_status ? `${ev.from_status || "·"} → ${ev.to_status || "·"}` : "";
      events.appendChild(el("tr", {}, el("td", {}, timeEl(ev.at)), el("td", { text: ev.kind }),
                            el("td", { text: change }), el("td", { text: ev.reason || "" })));
    }
    document.getElementById("spec").textContent = JSON.stringify(job.spec, null, 2);
  }

  function renderCurves() {
    const rows = state.rows;
    Charts.lineChart(document.getElementById("chart-loss"), {
      title: "Loss", rows, yLabel: "loss",
      series: [TRAIN("loss"), TRAIN_EVAL("train_eval_loss"), VAL("val_loss")],
    });
    Charts.lineChart(document.getElementById("chart-accuracy"), {
      title: "Accuracy", rows, yLabel: "accuracy", yMin: 0, yMax: 1,
      series: [TRAIN("accuracy"), TRAIN_EVAL("train_eval_accuracy"), VAL("val_accuracy")],
    });
    Charts.lineChart(document.getElementById("chart-lr"), {
      title: "Learning rate", rows, yLabel: "learning rate (log)", log: true,
      series: [{ key: "learning_rate", label: "learning rate", color: "#6b4fbb", width: 2, step: true }],
    });
    const epoch = Charts.recallBars(document.getElementById("recall-bars"), rows);
    document.getElementById("recall-epoch").textContent = epoch === null ? "" : `(epoch ${epoch})`;
  }

  function evidenceList(title, values, testid) {
    const entries = Object.entries(values || {});
    if (!entries.length) return null;
    const dl = el("dl", { class: "kv", "data-testid": testid });
    for (const [k, v] of entries) {
      dl.appendChild(el("dt", { text: k }));
      dl.appendChild(el("dd", { class: "num", "data-key": k, text: fmtNum(v) }));
    }
    return el("div", { class: "evidence-part" }, el("h4", { text: title }), dl);
  }

  function remedyItem(remedy, index, findingIndex) {
    const textId = `remedy-${findingIndex}-${index}`;
    const patch = remedy.patch && Object.keys(remedy.patch).length
      ? el("code", { class: "patch", "data-testid": "remedy-patch", text: JSON.stringify(remedy.patch) })
      : el("span", { class: "muted", text: "advice outside the spec: the fork reruns the same spec" });
    const button = el("button", { type: "button", class: "fork", "data-testid": "fork-button",
                                  "data-remedy": remedy.id, "aria-describedby": textId,
                                  text: "Fork with this remedy" });
    button.addEventListener("click", () => fork(remedy.id, button));
    return el("li", { class: "remedy", "data-testid": "remedy", "data-remedy-id": remedy.id },
      el("div", { class: "remedy-text" },
        el("span", { id: textId, text: remedy.text }), " ",
        el("span", { class: "muted mono small", text: `(${remedy.id})` })),
      el("div", { class: "remedy-actions" }, patch,
         el("span", { class: "fork-side" }, el("span", { class: "fork-note error-text small", "data-testid": "fork-note" }),
            button)));
  }

  function findingCard(f, i) {
    const pct = Math.round(f.confidence * 100);
    return el("article", { class: "finding", "data-testid": "finding", "data-cause": f.cause, "data-rule": f.rule,
                           "aria-labelledby": `finding-${i}-h` },
      el("h3", { id: `finding-${i}-h` }, humanize(f.cause),
         el("span", { class: "muted small", text: ` rule ${f.rule}` }),
         f.diverging ? el("span", { class: "status status-failed small", text: "diverging" }) : null),
      el("p", { class: "confidence" }, "Confidence ",
         el("meter", { min: 0, max: 1, value: f.confidence, "aria-label": `confidence ${pct}%` }),
         el("span", { "data-testid": "confidence", text: ` ${pct}%` })),
      el("p", { text: f.summary }),
      el("div", { class: "evidence", "data-testid": "evidence" },
        evidenceList("Thresholds", f.thresholds, "thresholds"),
        evidenceList("Observed", f.observed, "observed"),
        f.epochs && f.epochs.length
          ? el("div", { class: "evidence-part" }, el("h4", { text: "Epochs" }),
               el("p", { class: "mono", "data-testid": "finding-epochs", text: f.epochs.join(", ") }))
          : null),
      f.remedies && f.remedies.length
        ? [el("h4", { text: "Remedies" }), el("ol", { class: "remedies" }, f.remedies.map((r, j) => remedyItem(r, j, i)))]
        : el("p", { class: "muted", text: "No remedy offered." }));
  }

  function renderAnalysis(a) {
    const verdict = document.getElementById("verdict");
    verdict.textContent = humanize(a.verdict);
    verdict.className = "verdict verdict-" + a.verdict;
    verdict.dataset.verdict = a.verdict;
    const cause = document.getElementById("primary-cause");
    cause.textContent = a.primary_cause ? humanize(a.primary_cause) : "none";
    cause.dataset.cause = a.primary_cause || "";
    document.getElementById("epochs-analysed").textContent = `${a.epochs_analysed} epochs analysed`;
    document.getElementById("diagnosis-summary").textContent = a.summary || "";

    const findings = clear(document.getElementById("findings"));
    (a.findings || []).forEach((f, i) => findings.appendChild(findingCard(f, i)));

    const pre = clear(document.getElementById("pre-training"));
    if (a.pre_training && a.pre_training.length) {
      pre.appendChild(el("h3", { text: "Found before training" }));
      pre.appendChild(el("ul", {}, a.pre_training.map((p) => el("li", { text: p.summary || JSON.stringify(p) }))));
    }

    const box = document.getElementById("abstentions-box");
    const list = clear(document.getElementById("abstentions"));
    for (const ab of a.abstentions || []) {
      list.appendChild(el("li", { "data-rule": ab.rule }, el("strong", { text: ab.rule }), `: ${ab.reason}`,
        ab.missing && ab.missing.length ? el("span", { class: "muted", text: ` (missing: ${ab.missing.join(", ")})` }) : null));
    }
    document.getElementById("abstentions-count").textContent = String((a.abstentions || []).length);
    box.hidden = !(a.abstentions || []).length;
  }

  async function fork(remedyId, button) {
    if (state.forking) return;
    state.forking = true;
    const status = document.getElementById("fork-status");
    const buttons = document.querySelectorAll("[data-testid=fork-button]");
    buttons.forEach((b) => { b.disabled = true; });
    document.querySelectorAll("[data-testid=fork-note]").forEach((n) => { n.textContent = ""; });
    status.className = "notice";
    status.textContent = `Forking with “${remedyId}”…`;
    try {
      const child = await api(base + "/fork", { method: "POST", body: { apply: [remedyId] } });
      status.textContent = `Queued job ${child.id}; opening it…`;
      window.location.assign(`${root}/ui/jobs/${encodeURIComponent(child.id)}`);
    } catch (err) {
      status.className = "notice error";
      status.textContent = `Fork failed: ${err.message}`;
      const note = button.parentElement.querySelector("[data-testid=fork-note]");
      if (note) note.textContent = `Fork failed: ${err.message}`;
      buttons.forEach((b) => { b.disabled = false; });
      state.forking = false;
      button.focus();
    }
  }

  async function fetchNewRows() {
    const fresh = [];
    for (let guard = 0; guard < 100; guard += 1) {
      const params = new URLSearchParams({ limit: "1000" });
      if (state.lastEpoch !== null) params.set("after_epoch", String(state.lastEpoch));
      const page = await api(`${base}/metrics?${params}`);
      fresh.push(...page.items);
      if (page.items.length) state.lastEpoch = page.items[page.items.length - 1].epoch;
      if (page.items.length < 1000) break;
    }
    return fresh;
  }

  async function refresh() {
    if (state.busy) return;
    state.busy = true;
    try {
      const job = await api(base);
      const fresh = await fetchNewRows();
      if (fresh.length) {
        const byEpoch = new Map(state.rows.map((r) => [r.epoch, r]));
        for (const r of fresh) byEpoch.set(r.epoch, r);
        state.rows = [...byEpoch.values()].sort((a, b) => a.epoch - b.epoch);
      }
      const changed = !state.job || fresh.length > 0 || state.job.status !== job.status;
      state.job = job;
      renderJob(job);
      if (changed) {
        renderCurves();
        renderAnalysis(await api(`${base}/analysis`));
      }
      showError("");
      document.body.dataset.loaded = "true";
      if (!ACTIVE.has(job.status)) stop();
    } catch (err) {
      showError(err.status === 404 ? `Job ${jobId} was not found.` : `Could not load the job: ${err.message}`);
      if (err.status === 404) stop();
    } finally {
      state.busy = false;
    }
  }

  function stop() {
    clearInterval(state.timer);
    state.timer = null;
  }

  Plateau.initKeyForm(() => { state.job = null; state.rows = []; state.lastEpoch = null; refresh(); });
  refresh().then(() => {
    if (!state.job || ACTIVE.has(state.job.status)) {
      state.timer = setInterval(() => { if (!document.hidden) refresh(); }, REFRESH_MS);
    }
  });
})();
