/* Charts drawn as inline SVG: line charts over epochs and per-class recall bars. No libraries. */
"use strict";

const Charts = (() => {
  const { el, svg, clear, fmtNum } = Plateau;
  const W = 440, H = 250;
  const M = { l: 54, r: 12, t: 12, b: 38 };
  const MAX_MARKERS = 200;

  function niceStep(range, count) {
    const raw = range / Math.max(1, count);
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const norm = raw / mag;
    return (norm >= 7.07 ? 10 : norm >= 3.16 ? 5 : norm >= 1.41 ? 2 : 1) * mag;
  }

  function linearTicks(lo, hi, count) {
    const step = niceStep(hi - lo, count);
    const ticks = [];
    for (let v = Math.ceil(lo / step - 1e-9) * step; v <= hi + step * 1e-9; v += step) ticks.push(Number(v.toPrecision(12)));
    return ticks;
  }

  function present(v, log) {
    return typeof v === "number" && Number.isFinite(v) && (!log || v > 0);
  }

  /** Replace what `figure` shows (its figcaption stays) with a line chart of `series` over `rows`. */
  function lineChart(figure, { title, rows, series, log = false, yMin = null, yMax = null, yLabel = "" }) {
    for (const node of Array.from(figure.children)) if (node.tagName.toLowerCase() !== "figcaption") figure.removeChild(node);
    const tf = (v) => (log ? Math.log10(v) : v);
    const points = series.map((s) => rows.filter((r) => present(r[s.key], log)).map((r) => [r.epoch, tf(r[s.key])]));
    const all = points.flat();
    const epochs = rows.map((r) => r.epoch);

    let x0 = epochs.length ? Math.min(...epochs) : 1, x1 = epochs.length ? Math.max(...epochs) : 1;
    if (x0 === x1) { x0 -= 0.5; x1 += 0.5; }
    let y0 = all.length ? Math.min(...all.map((p) => p[1])) : 0;
    let y1 = all.length ? Math.max(...all.map((p) => p[1])) : 1;
    if (yMin !== null) y0 = Math.min(y0, tf(yMin));
    if (yMax !== null) y1 = Math.max(y1, tf(yMax));
    if (log) { y0 = Math.floor(y0 + 1e-9); y1 = Math.ceil(y1 - 1e-9); }
    if (y0 === y1) { const d = log ? 1 : Math.abs(y0) * 0.1 || 1; y0 -= d; y1 += d; }
    if (!log && yMin === null && yMax === null) { const pad = (y1 - y0) * 0.05; y0 -= pad; y1 += pad; }

    const px = (x) => M.l + ((x - x0) / (x1 - x0)) * (W - M.l - M.r);
    const py = (y) => H - M.b - ((y - y0) / (y1 - y0)) * (H - M.t - M.b);
    const r2 = (v) => Math.round(v * 100) / 100;

    const labels = series.map((s) => s.label).join(", ");
    const chart = svg("svg", {
      viewBox: `0 0 ${W} ${H}`, class: "plot", role: "img", "data-testid": figure.id + "-svg",
      "aria-label": rows.length ? `${title}: ${labels}, epochs ${epochs[0]} to ${epochs[epochs.length - 1]}`
                                : `${title}: no epochs recorded yet`,
    });

    const grid = svg("g", { class: "grid", "aria-hidden": "true" });
    const yTicks = log ? Array.from({ length: y1 - y0 + 1 }, (_, i) => y0 + i) : linearTicks(y0, y1, 5);
    for (const t of yTicks) {
      const y = r2(py(t));
      grid.appendChild(svg("line", { x1: M.l, x2: W - M.r, y1: y, y2: y }));
      grid.appendChild(svg("text", { x: M.l - 6, y: y + 4, class: "tick y", text: log ? `1e${t}` : fmtNum(t) }));
    }
    if (epochs.length) {
      const step = Math.max(1, Math.ceil(niceStep(Math.max(1, x1 - x0), 8)));
      for (let e = Math.ceil(x0); e <= x1; e += 1) {
        if ((e - Math.ceil(x0)) % step !== 0) continue;
        const x = r2(px(e));
        grid.appendChild(svg("line", { class: "xgrid", x1: x, x2: x, y1: M.t, y2: H - M.b }));
        grid.appendChild(svg("text", { x, y: H - M.b + 15, class: "tick x", text: String(e) }));
      }
    }
    grid.appendChild(svg("text", { x: (M.l + W - M.r) / 2, y: H - 4, class: "axis-title", text: "epoch" }));
    if (yLabel) {
      grid.appendChild(svg("text", { x: 12, y: (M.t + H - M.b) / 2, class: "axis-title",
                                     transform: `rotate(-90 12 ${(M.t + H - M.b) / 2})`, text: yLabel }));
    }
    grid.appendChild(svg("rect", { class: "frame", x: M.l, y: M.t, width: W - M.l - M.r, height: H - M.t - M.b }));
    chart.appendChild(grid);

    series.forEach((s, i) => {
      const group = svg("g", { class: "series", "data-series": s.key, "data-points": points[i].length,
                               stroke: s.color, fill: s.color });
      // A gap in the data lifts the pen; a step series holds each value until the next epoch's.
      let d = "", lastY = null;
      for (const r of rows) {
        if (!present(r[s.key], log)) { lastY = null; continue; }
        const x = r2(px(r.epoch)), y = r2(py(tf(r[s.key])));
        if (lastY === null) d += `M${x},${y}`;
        else d += s.step && y !== lastY ? `L${x},${lastY}L${x},${y}` : `L${x},${y}`;
        lastY = y;
      }
      if (d) {
        group.appendChild(svg("path", { d, fill: "none", "stroke-width": s.width || 2,
                                        "stroke-dasharray": s.dash || null, "stroke-linejoin": "round",
                                        class: "line" }));
      }
      if (points[i].length <= MAX_MARKERS) {
        for (const r of rows) {
          if (!present(r[s.key], log)) continue;
          group.appendChild(svg("circle", { class: "pt", cx: r2(px(r.epoch)), cy: r2(py(tf(r[s.key]))), r: 2.6,
                                            "data-epoch": r.epoch },
                                svg("title", { text: `${s.label}, epoch ${r.epoch}: ${fmtNum(r[s.key])}` })));
        }
      }
      chart.appendChild(group);
    });
    if (!rows.length) {
      chart.appendChild(svg("text", { x: W / 2, y: H / 2, class: "empty", text: "no epochs recorded yet" }));
    }
    figure.appendChild(chart);

    const legend = el("ul", { class: "legend", "data-testid": figure.id + "-legend" });
    series.forEach((s, i) => {
      const swatch = svg("svg", { width: 26, height: 10, "aria-hidden": "true" },
                         svg("line", { x1: 1, x2: 25, y1: 5, y2: 5, stroke: s.color, "stroke-width": s.width || 2,
                                       "stroke-dasharray": s.dash || null }));
      legend.appendChild(el("li", { "data-series": s.key }, swatch, " ", s.label,
                            points[i].length ? null : el("span", { class: "muted", text: " (not recorded)" })));
    });
    figure.appendChild(legend);

    const table = el("table", { class: "data" },
      el("caption", { class: "sr-only", text: title }),
      el("thead", {}, el("tr", {}, el("th", { scope: "col", text: "epoch" }),
                                 series.map((s) => el("th", { scope: "col", text: s.label })))),
      el("tbody", {}, rows.map((r) => el("tr", {}, el("th", { scope: "row", text: String(r.epoch) }),
                                         series.map((s) => el("td", { class: "num", text: fmtNum(r[s.key]) }))))));
    figure.appendChild(el("details", { class: "data-table" }, el("summary", { text: "Data" }), table));
  }

  /** One bar per class for the newest epoch that has `val_recall`; returns that epoch or null. */
  function recallBars(list, rows) {
    clear(list);
    const row = [...rows].reverse().find((r) => r.val_recall && Object.keys(r.val_recall).length);
    if (!row) {
      list.appendChild(el("li", { class: "muted", text: "no per-class recall recorded yet" }));
      return null;
    }
    for (const [cls, recall] of Object.entries(row.val_recall)) {
      const support = row.val_support ? row.val_support[cls] : undefined;
      const known = typeof recall === "number" && Number.isFinite(recall);
      const fill = el("div", { class: "fill" + (known && recall < 0.5 ? " low" : "") });
      fill.style.width = known ? `${Math.max(0, Math.min(1, recall)) * 100}%` : "0";
      list.appendChild(el("li", { "data-testid": "recall-bar", "data-class": cls, "data-recall": known ? recall : "" },
        el("span", { class: "label", title: cls, text: cls }),
        el("div", { class: "track", "aria-hidden": "true" }, fill),
        el("span", { class: "value", text: (known ? `${Math.round(recall * 1000) / 10}%` : "no support") +
                                           (support !== undefined && support !== null ? ` (n=${support})` : "") })));
    }
    return row.epoch;
  }

  return { lineChart, recallBars };
})();
