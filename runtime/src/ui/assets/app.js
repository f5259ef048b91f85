// Spate's web UI: renders each page from the JSON API (/api/v1/...) and refreshes it when the
// server's event stream says a job changed. Text from jobs (names, keys, errors) is only ever
// set as textContent, never parsed as HTML.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const main = document.getElementById("main");
const page = document.body.dataset.page;
// Where the UI's addresses start: empty at the root, `/tenants/<name>` in spate serve.
const base = document.body.dataset.base || "";
const parts = location.pathname.slice(base.length).split("/").filter(Boolean)
  .map(decodeURIComponent);

function el(tag, attrs, ...children) {
  const node = tag.startsWith("svg:")
    ? document.createElementNS(SVG, tag.slice(4))
    : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const c of children) node.append(c instanceof Node ? c : String(c));
  return node;
}

function link(href, text) {
  return el("a", { href: base + href }, text);
}

function ms(v) {
  if (v >= 1000) return (v / 1000).toFixed(2) + " s";
  return v.toFixed(1) + " ms";
}

function when(t) {
  return new Date(t).toISOString().replace("T", " ").replace("Z", "");
}

function duration(msTotal) {
  const s = Math.floor(msTotal / 1000);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
  return (h ? h + "h " : "") + (h || m ? m + "m " : "") + (s % 60) + "s";
}

async function get(path) {
  // A request the server does not answer must not hold the page's refreshes forever.
  const response = await fetch(base + path, { cache: "no-store", signal: AbortSignal.timeout(10000) });
  if (!response.ok) throw new Error((await response.json()).error || response.statusText);
  return response.json();
}

function table(id, headings, rows) {
  const t = el("table", { id });
  t.append(el("thead", {}, el("tr", {}, ...headings.map((h) => el("th", {}, h)))));
  const body = el("tbody");
  for (const row of rows) body.append(el("tr", {}, ...row.map((c) => el("td", {}, c))));
  t.append(body);
  return t;
}

function state(job) {
  return job.state + (job.error ? ": " + job.error : "");
}

// A line chart: `series` is [{name, values}] over `xs`; `guide` draws a dashed line at a y
// (the batch interval on a delay chart: Spark's stability line).
function lineChart(id, title, xs, series, unit, guide) {
  const W = 640, H = 180, L = 56, B = 22, T = 8, R = 8;
  const svg = el("svg:svg", { id, viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img" });
  svg.append(el("svg:title", {}, title));
  const all = series.flatMap((s) => s.values.filter((v) => v !== null));
  const top = Math.max(1e-9, guide || 0, ...all) * 1.1;
  const x0 = xs.length ? xs[0] : 0, x1 = xs.length ? xs[xs.length - 1] : 1;
  const X = (x) => L + ((x - x0) / Math.max(1, x1 - x0)) * (W - L - R);
  const Y = (y) => T + (1 - y / top) * (H - T - B);
  svg.append(el("svg:line", { x1: L, y1: Y(0), x2: W - R, y2: Y(0), class: "axis" }));
  svg.append(el("svg:text", { x: L - 4, y: T + 10, class: "tick", "text-anchor": "end" },
    unit === "ms" ? ms(top) : Math.round(top)));
  svg.append(el("svg:text", { x: L - 4, y: Y(0), class: "tick", "text-anchor": "end" }, "0"));
  if (guide) {
    svg.append(el("svg:line", { x1: L, y1: Y(guide), x2: W - R, y2: Y(guide), class: "guide" }));
  }
  series.forEach((s, i) => {
    const points = [];
    s.values.forEach((v, j) => {
      if (v !== null) points.push(`${X(xs[j]).toFixed(1)},${Y(v).toFixed(1)}`);
    });
    const line = el("svg:polyline", { points: points.join(" "), class: "series s" + (i % 8) });
    line.dataset.name = s.name;
    line.dataset.points = points.length;
    line.append(el("svg:title", {}, s.name));
    svg.append(line);
  });
  const box = el("figure", { class: "timeline" }, el("figcaption", {}, title), svg);
  if (series.length > 1) {
    box.append(el("div", { class: "legend" },
      ...series.map((s, i) => el("span", { class: "key s" + (i % 8) }, s.name))));
  }
  return box;
}

// A histogram of `values` in 10 bins; `unit` "ms" for times, anything else for counts.
function histogram(id, title, values, unit) {
  const show = (v) => (unit === "ms" ? ms(v) : v.toFixed(1));
  const W = 300, H = 180, B = 22, T = 8, bins = 10;
  const svg = el("svg:svg", { id, viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img" });
  const hi = Math.max(1e-9, ...values);
  const counts = new Array(bins).fill(0);
  for (const v of values) counts[Math.min(bins - 1, Math.floor((v / hi) * bins))]++;
  const most = Math.max(1, ...counts);
  counts.forEach((c, i) => {
    const h = (c / most) * (H - T - B);
    const bar = el("svg:rect", { x: 4 + i * ((W - 8) / bins), y: H - B - h,
      width: (W - 8) / bins - 2, height: h, class: "bar" });
    bar.append(el("svg:title", {}, `${show((i * hi) / bins)} - ${show(((i + 1) * hi) / bins)}: ${c}`));
    svg.append(bar);
  });
  svg.append(el("svg:text", { x: W - 4, y: H - 6, class: "tick", "text-anchor": "end" }, show(hi)));
  return el("figure", { class: "histogram" }, el("figcaption", {}, title), svg);
}

function barChart(id, title, rows) {
  const W = 640, row = 22, L = 160;
  const H = Math.max(1, rows.length) * row + 8;
  const svg = el("svg:svg", { id, viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img" });
  const hi = Math.max(1e-9, ...rows.map((r) => r.number || 0));
  rows.forEach((r, i) => {
    const w = ((r.number || 0) / hi) * (W - L - 60);
    svg.append(el("svg:text", { x: L - 6, y: i * row + 19, class: "label", "text-anchor": "end" },
      r.key.length > 24 ? r.key.slice(0, 23) + "…" : r.key));
    const bar = el("svg:rect", { x: L, y: i * row + 6, width: Math.max(1, w), height: row - 6, class: "bar" });
    bar.dataset.key = r.key;
    bar.dataset.value = r.value;
    svg.append(bar);
    svg.append(el("svg:text", { x: L + w + 4, y: i * row + 19, class: "tick" }, r.value));
  });
  return el("figure", {}, el("figcaption", {}, title), svg);
}


function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + units[i];
}

function jobBase(name) {
  return "/api/v1/jobs/" + encodeURIComponent(name);
}

// The links between a job's pages; `current` is not a link.
function nav(name, current) {
  const pagesOf = [["", "Streaming"], ["/sources", "Sources"], ["/operators", "Operators"],
    ["/checkpoints", "Checkpoints"]];
  const items = pagesOf.map(([path, title]) => title === current
    ? el("strong", {}, title)
    : link("/jobs/" + encodeURIComponent(name) + path, title));
  const out = el("nav", { class: "tabs" }, link("/", "Jobs"));
  for (const item of items) out.append(" · ", item);
  return out;
}

// Busy time (ms) per plan node in a batch's tasks.
function busyPerNode(tasks) {
  const busy = {};
  for (const t of tasks || []) busy[t.node] = (busy[t.node] || 0) + t.micros / 1000;
  return busy;
}

// The plan as a graph: a column per depth, each node a box coloured by its busy time in
// `busy` (ms per node; darker is busier), edges from inputs (dashed through a shuffle).
function planGraph(id, graph, busy) {
  const depth = [];
  for (const n of graph) depth[n.id] = n.inputs.length ? 1 + Math.max(...n.inputs.map((i) => depth[i])) : 0;
  const columns = [];
  for (const n of graph) (columns[depth[n.id]] = columns[depth[n.id]] || []).push(n.id);
  const BW = 190, BH = 46, GX = 50, GY = 14;
  const rows = Math.max(1, ...columns.map((c) => c.length));
  const W = columns.length * (BW + GX), H = rows * (BH + GY) + GY;
  const at = {};
  columns.forEach((c, x) => c.forEach((n, y) => { at[n] = { x: 8 + x * (BW + GX), y: GY + y * (BH + GY) }; }));
  // At its own size (scaled down only to fit), so that text stays text-sized.
  const svg = el("svg:svg", { id, viewBox: `0 0 ${W} ${H}`, width: W, height: H, class: "graph",
    role: "img" });
  const most = Math.max(1e-9, ...Object.values(busy || {}));
  for (const n of graph) {
    for (const i of n.inputs) {
      const edge = el("svg:line", { x1: at[i].x + BW, y1: at[i].y + BH / 2, x2: at[n.id].x,
        y2: at[n.id].y + BH / 2, class: n.shuffle ? "edge shuffle" : "edge" });
      svg.append(edge);
    }
  }
  for (const n of graph) {
    const share = ((busy || {})[n.id] || 0) / most;
    const g = el("svg:g", { class: "node " + n.kind });
    g.dataset.node = n.id;
    g.dataset.busyMs = ((busy || {})[n.id] || 0).toFixed(3);
    const light = Math.round(95 - share * 45);
    g.append(el("svg:rect", { x: at[n.id].x, y: at[n.id].y, width: BW, height: BH, rx: 4,
      style: `fill: hsl(210, 70%, ${light}%)` }));
    const label = `${n.id}: ${n.label}`;
    // Light text on the darker (busier) nodes.
    const ink = light < 65 ? "fill: #fff" : "";
    g.append(el("svg:text", { x: at[n.id].x + 6, y: at[n.id].y + 18, class: "label", style: ink },
      label.length > 30 ? label.slice(0, 29) + "…" : label));
    const detail = (n.shuffle ? `shuffle into ${n.partitions} · ` : n.kind + " · ") +
      ms((busy || {})[n.id] || 0) + " busy";
    g.append(el("svg:text", { x: at[n.id].x + 6, y: at[n.id].y + 36, class: "tick", style: ink },
      detail));
    g.append(el("svg:title", {}, `${label}\nwrites ${n.streams.join(", ")}\n${detail}`));
    svg.append(g);
  }
  return el("figure", { class: "plan" }, el("figcaption", {},
    "Plan (nodes coloured by busy time in the last batch; dashed: through a shuffle)"), svg);
}

function usageRow(u) {
  return [u.calls, ms(u.wasm_ms), u.fuel, bytes(u.peak_memory), u.traps, u.limit_hits];
}
const USAGE_HEADINGS = ["Calls", "Wasm time", "Fuel", "Peak memory", "Traps", "Limit hits"];

const pages = {
  async jobs() {
    const [jobs, boards] = await Promise.all([get("/api/v1/jobs"), get("/api/v1/dashboards")]);
    const now = Date.now();
    const rows = jobs.map((j) => [
      link("/jobs/" + encodeURIComponent(j.name), j.name), j.tenant, state(j),
      duration((j.ended_ms || now) - j.started_ms), ms(j.batch_interval_ms), j.trigger,
      j.batches_done, j.totals.task_retries + j.totals.skipped_tasks + j.totals.traps,
    ]);
    const out = [el("h1", {}, "Jobs"), table("jobs", ["Job", "Tenant", "State", "Uptime",
      "Batch interval", "Trigger", "Batches done", "Failures (retries, skipped tasks, traps)"], rows)];
    out.push(el("h2", {}, "Dashboards"));
    out.push(boards.length
      ? el("ul", { id: "dashboards" }, ...boards.map((b) => el("li", {},
        link("/dashboards/" + encodeURIComponent(b.name), b.title), ` (job ${b.job})`)))
      : el("p", {}, "No dashboard output in these jobs."));
    if (base) {
      // Under spate serve: what the tenant has consumed, against its quota.
      const t = await get("/api/v1/tenant");
      const limit = (v) => (v === null || v === undefined ? "none" : v);
      out.push(el("h2", {}, `Usage of tenant ${t.tenant}`));
      out.push(table("usage", ["Amount", "Used", "Quota", "Quota per batch"],
        t.rows.map((r) => [r.amount, r.used, limit(r.most), limit(r.per_batch)])));
    }
    return out;
  },

  async job() {
    const name = parts[1];
    const api = jobBase(name);
    const [job, batches] = await Promise.all([get(api), get(api + "/batches?limit=300")]);
    const last = batches.length ? await get(`${api}/batches/${batches[batches.length - 1].time_ms}`) : null;
    const xs = batches.map((b) => b.time_ms);
    const interval = job.batch_interval_ms;
    const col = (f) => batches.map(f);
    const records = batches.reduce((n, b) => n + b.input_records, 0);
    const span = batches.length ? (xs[xs.length - 1] - xs[0]) / 1000 + interval / 1000 : 0;
    const rate = (b, i) => (b.source_records[i] || 0) / (interval / 1000);
    const active = [];
    if (job.running) {
      active.push([when(job.running.time_ms), job.running.input_records, "processing",
        ms(Date.now() - job.running.started_ms)]);
    }
    if (job.queued_batches) active.push([`${job.queued_batches} more`, "", "queued", ""]);
    const out = [
      nav(name, "Streaming"),
      el("h1", {}, "Streaming: " + job.name),
      el("p", { class: "facts" }, `tenant ${job.tenant} · ${state(job)} · batch interval `,
        ms(interval), ` · ${job.batches_done} batches done · started ${when(job.started_ms)}`,
        ` · ${batches.length ? (records / Math.max(span, 1e-3)).toFixed(1) : 0} records/s over the last ${batches.length} batches`,
        ` · buffered ${job.buffered_bytes} bytes`),
      el("div", { class: "row" },
        lineChart("input-rate", "Input rate (records/s, per source)", xs,
          job.sources.map((s, i) => ({ name: s, values: batches.map((b) => rate(b, i)) })), "n"),
        histogram("input-rate-hist", "Input records per batch", col((b) => b.input_records), "n")),
      el("div", { class: "row" },
        lineChart("scheduling-delay", "Scheduling delay", xs,
          [{ name: "scheduling delay", values: col((b) => b.scheduling_delay_ms) }], "ms"),
        histogram("scheduling-delay-hist", "Scheduling delay", col((b) => b.scheduling_delay_ms), "ms")),
      el("div", { class: "row" },
        lineChart("processing-time", "Processing time (dashed: the batch interval)", xs,
          [{ name: "processing time", values: col((b) => b.processing_time_ms) }], "ms", interval),
        histogram("processing-time-hist", "Processing time", col((b) => b.processing_time_ms), "ms")),
      el("div", { class: "row" },
        lineChart("total-delay", "Total delay", xs,
          [{ name: "total delay", values: col((b) => b.total_delay_ms) }], "ms"),
        histogram("total-delay-hist", "Total delay", col((b) => b.total_delay_ms), "ms")),
      el("h2", {}, "Active batches"),
      active.length
        ? table("active", ["Batch time", "Input records", "Status", "For"], active)
        : el("p", { id: "active" }, "None."),
      el("h2", {}, `Completed batches (last ${Math.min(batches.length, 100)})`),
      table("batches", ["Batch time", "Input records", "Scheduling delay", "Processing time",
        "Total delay", "Output records", "Wasm time", "Retries", "Dead-lettered"],
        batches.slice(-100).reverse().map((b) => [
          link(`/jobs/${encodeURIComponent(name)}/batches/${b.time_ms}`, when(b.time_ms)),
          b.input_records, ms(b.scheduling_delay_ms), ms(b.processing_time_ms),
          ms(b.total_delay_ms), b.output_records, ms(b.wasm_ms), b.task_retries,
          b.dead_lettered_records])),
      el("h2", {}, "Outputs"),
      table("outputs", ["Output", "Records written", "Write time", "Retries", "Last retried error"],
        job.outputs.map((o, i) => {
          const g = (job.output_gauges || [])[i] || {};
          return [o, job.totals.output_writes[i] || 0, ms(job.totals.output_ms[i] || 0),
            g.retries || 0, g.last_error || ""];
        })),
      el("h2", {}, "Plan"),
      planGraph("plan-graph", job.graph, busyPerNode(last && last.tasks)),
      el("pre", { id: "plan" }, job.plan),
    ];
    return out;
  },

  async batch() {
    const [name, time] = [parts[1], parts[3]];
    const b = await get(`/api/v1/jobs/${encodeURIComponent(name)}/batches/${time}`);
    const job = await get("/api/v1/jobs/" + encodeURIComponent(name));
    const rows = [
      ["Batch time", `${when(b.time_ms)} (${b.time_ms} ms)`],
      ["Input", `${b.input_records} records, ${b.input_bytes} bytes, ${b.partitions} partitions`],
      ...job.sources.map((s, i) => [`Source ${s}`, `${b.source_records[i] || 0} records`]),
      ["Scheduling delay", ms(b.scheduling_delay_ms)],
      ["Processing time", ms(b.processing_time_ms)],
      ["Total delay", ms(b.total_delay_ms)],
      ["Output records", b.output_records],
      ["Output bytes", bytes(b.output_bytes)],
      ["Wasm", `${b.wasm_calls} calls, ${ms(b.wasm_ms)}, fuel ${b.fuel}, peak memory ${b.peak_memory} B, ${b.traps} traps, ${b.limit_hits} limit hits`],
      ["Tasks", `${b.task_retries} retries, ${b.skipped_tasks} skipped (${b.dead_lettered_records} records dead-lettered)`],
      ["Dead letters", b.dead_letters.join(", ") || "none"],
      ["Late records", b.late_records],
      ["Bad lines skipped", b.skipped_lines],
      ["Records in state", b.state_records],
      ["State in memory", bytes(b.state_bytes)],
    ];
    const out = [nav(name, ""), el("h1", {}, "Batch " + when(b.time_ms)),
      el("p", {}, link("/jobs/" + encodeURIComponent(name), "job " + name)),
      table("batch", ["", ""], rows)];
    out.push(el("h2", {}, "Outputs"));
    out.push(table("outputs", ["Output", "Records", "Time", "Retries"], job.outputs.map((o, i) => {
      const w = b.outputs[i];
      return [o, w ? w.records : "no batch at this time", w ? ms(w.micros / 1000) : "",
        (b.output_retries || [])[i] || 0];
    })));
    out.push(el("h2", {}, "Operators"));
    out.push(table("operators", ["Operator", ...USAGE_HEADINGS],
      job.operators.map((o, i) => [o.name, ...usageRow(b.operators[i] || {})])));
    out.push(el("h2", {}, "Tasks per stage"));
    if (!b.tasks) {
      out.push(el("p", {}, "Task figures are kept for the last batches only."));
      return out;
    }
    out.push(planGraph("plan-graph", job.graph, busyPerNode(b.tasks)));
    const PHASES = { narrow: "tasks", map: "map side (before the shuffle)",
      reduce: "reduce side (after the shuffle)", combine: "partial and final values" };
    for (const n of job.graph) for (const [phase, title] of Object.entries(PHASES)) {
      const tasks = b.tasks.filter((t) => t.node === n.id && t.phase === phase);
      if (!tasks.length) continue;
      const sum = (f) => tasks.reduce((a, t) => a + f(t), 0);
      out.push(el("h3", {}, `Stage ${n.id}: ${n.label}, ${title}`));
      const shuffle = phase === "map" ? ` · shuffle write ${bytes(sum((t) => t.bytes_out))}`
        : phase === "reduce" ? ` · shuffle read ${bytes(sum((t) => t.bytes_in))}` : "";
      out.push(el("p", { class: "facts" }, `${tasks.length} tasks · ${ms(sum((t) => t.micros) / 1000)} busy · ` +
        `${ms(sum((t) => t.wasm_micros) / 1000)} in Wasm · ${sum((t) => t.records_in)} records in · ` +
        `${sum((t) => t.records_out)} out` + shuffle +
        (n.shuffle ? ` · shuffled into ${n.partitions} partitions` : "")));
      const t = table(`tasks-${n.id}-${phase}`, ["Partition", "Time", "Wasm time", "Records in", "Records out",
        "Bytes in", "Bytes out", "Attempts", "Dead-lettered"], tasks.map((t) => [
        t.partitions > 1 ? `${t.partition} (+${t.partitions - 1}, one worker's share)` : t.partition,
        ms(t.micros / 1000), ms(t.wasm_micros / 1000), t.records_in, t.records_out,
        bytes(t.bytes_in), bytes(t.bytes_out), t.attempts, t.skipped ? "yes" : "no"]));
      t.classList.add("tasks");
      out.push(t);
    }
    return out;
  },

  async sources() {
    const name = parts[1];
    const [job, sources] = await Promise.all([get(jobBase(name)), get(jobBase(name) + "/sources")]);
    const out = [nav(name, "Sources"), el("h1", {}, "Sources: " + name)];
    const seconds = ((job.ended_ms || Date.now()) - job.started_ms) / 1000;
    for (const s of sources) {
      out.push(el("h2", {}, `${s.name} (${s.type})`));
      out.push(el("p", { class: "facts" }, s.description || "(being described)"));
      const g = s.gauges;
      out.push(table("source-" + s.name, ["", ""], [
        ["Records read", s.records], ["Bytes read", bytes(s.bytes)],
        ["Average rate", (s.records / Math.max(seconds, 1e-3)).toFixed(1) + " records/s"],
        ["Known input", g.known_bytes ? bytes(g.known_bytes) : "unknown"],
        ["Reconnects", g.reconnects], ["Errors", g.errors + (g.last_error ? " (last: " + g.last_error + ")" : "")],
      ]));
      const rows = [];
      const rate = (part) => {
        const r = s.rates[part];
        return r ? `${r.per_second.toFixed(1)} ${r.unit}/s` : "";
      };
      if (s.position.stream) rows.push(["stream", s.position.stream, rate("stream"), "", ""]);
      for (const [file, offset] of Object.entries(s.position.files || {})) rows.push([file, offset, rate(file), "", ""]);
      const partsSeen = new Set([...Object.keys(s.position.parts || {}), ...Object.keys(g.ends)]);
      for (const part of [...partsSeen].sort()) {
        rows.push([part, (s.position.parts || {})[part] ?? "", rate(part), g.ends[part] ?? "", s.lag[part] ?? ""]);
      }
      const t = table("positions-" + s.name, ["Part", "Position (safe)", "Rate (last 10 batches)", "End", "Lag (records)"], rows);
      t.classList.add("positions");
      out.push(t);
    }
    return out;
  },

  async operators() {
    const name = parts[1];
    const operators = await get(jobBase(name) + "/operators?limit=50");
    const out = [nav(name, "Operators"), el("h1", {}, "Operators: " + name)];
    if (!operators.length) out.push(el("p", {}, "This job has no Wasm operators."));
    for (const o of operators) {
      out.push(el("h2", {}, o.name));
      out.push(table("operator-" + o.name, ["", ""], [
        ["Plugin", o.plugin], ["Version (blake3)", o.hash], ["Size", bytes(o.wasm_bytes)],
        ["World", o.export], ["Says it does", o.description],
        ["Params", Object.entries(o.params).map(([k, v]) => k + "=" + v).join(", ") || "none"],
        ["Grants", o.grants], ["Limits", o.limits],
        ["Over the run", USAGE_HEADINGS.map((h, i) => h + " " + usageRow(o.totals)[i]).join(" · ")],
      ]));
      out.push(table("usage-" + o.name, ["Batch", ...USAGE_HEADINGS],
        o.recent.slice().reverse().map(([t, u]) => [when(t), ...usageRow(u)])));
    }
    return out;
  },

  async checkpoints() {
    const name = parts[1];
    const c = await get(jobBase(name) + "/checkpoints");
    const out = [nav(name, "Checkpoints"), el("h1", {}, "Checkpoints: " + name),
      el("p", { class: "facts" }, `${c.count} checkpoints written in this run`)];
    const last = c.recent[c.recent.length - 1];
    if (last) {
      out.push(table("last-checkpoint", ["", ""], [
        ["Last", `${last.path} after batch ${when(last.batch_time_ms)}`],
        ["Written", when(last.written_ms)], ["State", bytes(last.state_bytes)],
        ["Duration", `${ms(last.copy_ms)} copying (holds batches up), ${ms(last.write_ms)} compressing and writing`],
      ]));
      out.push(lineChart("checkpoint-durations", "Checkpoint durations (copy + write)",
        c.recent.map((r) => r.batch_time_ms),
        [{ name: "copy", values: c.recent.map((r) => r.copy_ms) },
          { name: "write", values: c.recent.map((r) => r.write_ms) }], "ms"));
    } else {
      out.push(el("p", {}, "No checkpoint written yet (a job without checkpoint-dir writes none)."));
    }
    out.push(el("h2", {}, "History"));
    out.push(table("checkpoints", ["Batch", "Written", "File", "State", "Copy", "Write"],
      c.recent.slice().reverse().map((r) => [when(r.batch_time_ms), when(r.written_ms), r.path,
        bytes(r.state_bytes), ms(r.copy_ms), ms(r.write_ms)])));
    out.push(el("h2", {}, "Recoveries"));
    out.push(c.recoveries.length
      ? table("recoveries", ["At", "From", "Batches replayed", "Bytes replayed"],
        c.recoveries.map((r) => [when(r.at_ms), r.from, r.replayed_batches, bytes(r.replayed_bytes)]))
      : el("p", { id: "recoveries" }, "This run started fresh."));
    return out;
  },

  async dashboard() {
    const v = await get("/api/v1/dashboards/" + encodeURIComponent(parts[1]));
    const out = [el("h1", {}, v.title),
      el("p", { class: "facts" }, `job ${v.job} · `,
        v.batch_time_ms ? `batch ${when(v.batch_time_ms)} · ${v.records} records` : "no batch yet")];
    if (v.chart !== "line") out.push(barChart("bars", `Top ${v.top}`, v.rows.filter((r) => r.number !== null)));
    if (v.chart !== "bar") {
      out.push(lineChart("lines", "Over the last batches", v.times,
        Object.entries(v.series).map(([name, values]) => ({ name, values })), "n"));
    }
    out.push(table("rows", ["Key", "Value"], v.rows.map((r) => [r.key, r.value])));
    out.batchTime = v.batch_time_ms;
    return out;
  },
};

// One render at a time; a change that comes during one renders again after it.
let version = 0;
let pending = false;
let again = false;
async function render() {
  if (pending) {
    again = true;
    return;
  }
  pending = true;
  try {
    const content = await pages[page]();
    main.replaceChildren(...content);
    main.dataset.batchTime = content.batchTime || "";
    document.body.dataset.version = ++version;
  } catch (e) {
    main.replaceChildren(el("p", { class: "error" }, String(e.message || e)));
  } finally {
    pending = false;
    if (again) {
      again = false;
      render();
    }
  }
}

render();
const live = document.getElementById("live");
const events = new EventSource(base + "/api/v1/events");
events.addEventListener("change", render);
events.onopen = () => { live.textContent = "● live"; live.className = "on"; };
events.onerror = () => { live.textContent = "○ not connected"; live.className = "off"; };
