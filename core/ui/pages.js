// The pages: namespaces, a namespace's workflows, instances, variables and events, one
// workflow (its graph, errors, start form and variables), one instance (live status,
// timeline, log, cancel, variables).  Each page is an async function (ctx) -> Node.

import { api, badge, duration, enc, errorBox, fill, h, json, pager, toast, when, wfPath } from "./api.js";
import { variablesPanel } from "./variables.js";

const LIVE = new Set(["pending", "running"]);
const PAGE = 50;
const nsApi = (ns) => `/api/namespaces/${enc(ns)}`;
const link = (hash, ...text) => h("a", { href: "#" + hash }, ...text);
const nsHash = (ns) => `/ns/${enc(ns)}`;
const wfHash = (ns, path) => `${nsHash(ns)}/wf/${wfPath(path)}`;
const iHash = (ns, id) => `${nsHash(ns)}/i/${enc(id)}`;

function tabs(ns, active) {
  const items = [["workflows", nsHash(ns)], ["instances", `${nsHash(ns)}/instances`],
    ["variables", `${nsHash(ns)}/variables`], ["events", `${nsHash(ns)}/events`]];
  return h("nav.tabs", items.map(([name, hash]) =>
    h("a", { href: "#" + hash, class: name === active ? "active" : null, "aria-current": name === active ? "page" : null }, name)));
}

function errorList(errors) {
  return errors.length ? h("ul.errors", { "aria-label": "validation errors" }, errors.map((e) => h("li", h("code", e)))) : null;
}

// ------------------------------------------------------------------ namespaces
export async function namespacesPage(ctx) {
  ctx.crumbs();
  const { namespaces } = await api("GET", "/api/namespaces");
  return h("section",
    h("h1", "Namespaces"),
    namespaces.length ? h("table",
      h("thead", h("tr", h("th", "namespace"), h("th", "workflows"), h("th", ""))),
      h("tbody", namespaces.map((n) => h("tr",
        h("td", link(nsHash(n.name), n.name)), h("td.num", n.workflows),
        h("td.links", link(`${nsHash(n.name)}/instances`, "instances"), " ", link(`${nsHash(n.name)}/variables`, "variables"),
          " ", link(`${nsHash(n.name)}/events`, "send event"))))))
      : h("p.muted", "No namespaces: a namespace is a folder of workflow files in the served directory."));
}

// ------------------------------------------------------------------ workflows of a namespace
export async function workflowsPage(ctx) {
  const { ns } = ctx.params;
  ctx.crumbs([ns, nsHash(ns)]);
  const { workflows } = await api("GET", `${nsApi(ns)}/workflows`);
  const rows = [];
  for (const w of workflows) {
    const state = w.valid ? "valid" : w.serving ? "invalid, serving the last valid version" : "invalid";
    rows.push(h("tr", { dataset: { path: w.path } },
      h("td", link(wfHash(ns, w.path), w.path)),
      h("td", h("span.badge", { dataset: { status: w.valid ? "valid" : "invalid" } }, state)),
      h("td", w.start || ""), h("td", w.cron || ""), h("td", when(w.next_run)), h("td", when(w.updated))));
    if (!w.valid) rows.push(h("tr.errors-row", h("td", { colspan: 6 }, errorList(w.errors))));
  }
  return h("section",
    h("h1", "Namespace ", h("code", ns)), tabs(ns, "workflows"),
    workflows.length ? h("table.workflows",
      h("thead", h("tr", h("th", "workflow"), h("th", "status"), h("th", "start"), h("th", "cron"), h("th", "next run"), h("th", "file updated"))),
      h("tbody", rows)) : h("p.muted", "No workflows in this namespace."));
}

// ------------------------------------------------------------------ instances of a namespace
function instanceRow(ns, i) {
  return h("tr", { dataset: { id: i.id, status: i.status } },
    h("td", link(iHash(ns, i.id), h("code", i.id.slice(0, 8)))),
    h("td", link(wfHash(ns, i.workflow), i.workflow)),
    h("td", badge(i.status)), h("td", i.state || ""),
    h("td", when(i.created)), h("td", duration(i.started, i.ended)),
    h("td", i.error ? h("code", typeof i.error === "object" ? i.error.code : i.error) : (i.error_code ? h("code", i.error_code) : "")));
}

export async function instancesPage(ctx) {
  const { ns } = ctx.params;
  ctx.crumbs([ns, nsHash(ns)], ["instances", `${nsHash(ns)}/instances`]);
  const status = ctx.query.get("status") || "";
  const workflow = ctx.query.get("workflow") || "";
  const offset = Math.max(0, parseInt(ctx.query.get("offset") || "0", 10) || 0);
  const go = (o, s = status, w = workflow) => {
    const q = new URLSearchParams();
    if (s) q.set("status", s);
    if (w) q.set("workflow", w);
    if (o) q.set("offset", String(o));
    location.hash = `${nsHash(ns)}/instances${q.size ? "?" + q : ""}`;
  };

  async function fetchPage() {
    const q = new URLSearchParams({ limit: String(PAGE), offset: String(offset) });
    if (status) q.set("status", status);
    if (workflow) q.set("workflow", workflow);
    const data = await api("GET", `${nsApi(ns)}/instances?${q}`);
    let list = data.instances;
    let total = data.total;
    if (total === undefined) { // an API without paging: filter and page here
      list = list.filter((i) => (!status || i.status === status) && (!workflow || i.workflow === workflow));
      total = list.length;
      list = list.slice(offset, offset + PAGE);
    }
    return { list, total };
  }

  const statusSel = h("select", { name: "status", "aria-label": "status" },
    ["", "pending", "running", "complete", "failed", "cancelled"].map((s) => h("option", { value: s, selected: s === status }, s || "any status")));
  const wfInput = h("input", { type: "text", name: "workflow", value: workflow, placeholder: "workflow", "aria-label": "workflow" });
  const form = h("form.filters.row", { on: { submit: (ev) => { ev.preventDefault(); go(0, statusSel.value, wfInput.value.trim()); } } },
    statusSel, wfInput, h("button", { type: "submit" }, "filter"));
  const tbody = h("tbody");
  const foot = h("div");

  function draw({ list, total }) {
    tbody.replaceChildren(...list.map((i) => instanceRow(ns, i)));
    foot.replaceChildren(total ? pager(offset, PAGE, total, (o) => go(o), ["‹ newer", "older ›"]) : h("p.muted", "no instances"));
    return list.some((i) => LIVE.has(i.status));
  }

  let live = draw(await fetchPage());
  ctx.every(1500, async () => { // live status while something on this page runs
    if (!live) return;
    live = draw(await fetchPage());
  });
  return h("section",
    h("h1", "Namespace ", h("code", ns)), tabs(ns, "instances"), form,
    h("table.instances",
      h("thead", h("tr", h("th", "id"), h("th", "workflow"), h("th", "status"), h("th", "state"), h("th", "created"), h("th", "took"), h("th", "error"))),
      tbody), foot);
}

// ------------------------------------------------------------------ namespace variables
export async function nsVariablesPage(ctx) {
  const { ns } = ctx.params;
  ctx.crumbs([ns, nsHash(ns)], ["variables", `${nsHash(ns)}/variables`]);
  const panel = variablesPanel(`${nsApi(ns)}/variables`, { title: "Namespace variables" });
  await panel.ready;
  return h("section", h("h1", "Namespace ", h("code", ns)), tabs(ns, "variables"), panel);
}

// ------------------------------------------------------------------ events
export async function eventsPage(ctx) {
  const { ns } = ctx.params;
  ctx.crumbs([ns, nsHash(ns)], ["events", `${nsHash(ns)}/events`]);
  const type = h("input", { type: "text", name: "type", required: true, placeholder: "com.example.thing", "aria-label": "event type" });
  const source = h("input", { type: "text", name: "source", required: true, value: "isolde-ui", "aria-label": "event source" });
  const data = h("textarea", { name: "data", rows: 6, "aria-label": "event data (JSON)" });
  data.value = "{}";
  const result = h("div.result", { "aria-live": "polite" });
  const form = h("form.event", { on: { submit: async (ev) => {
    ev.preventDefault();
    let payload;
    try {
      payload = data.value.trim() ? JSON.parse(data.value) : undefined;
    } catch (e) {
      result.replaceChildren(errorBox({ code: "isolde.ui.badJson", message: `data is not JSON: ${e.message}` }));
      return;
    }
    const event = { specversion: "1.0", type: type.value.trim(), source: source.value.trim() };
    if (payload !== undefined) Object.assign(event, { datacontenttype: "application/json", data: payload });
    try {
      const r = await api("POST", `${nsApi(ns)}/events`, { body: JSON.stringify(event), type: "application/cloudevents+json" });
      result.replaceChildren(h("p.ok", "Event ", h("code", r.id), " accepted; ",
        r.instances.length ? ["started ", r.instances.map((id, n) => [n ? ", " : "", link(iHash(ns, id), h("code", id.slice(0, 8)))])]
          : "it started no instance (waiting instances may have received it)", "."));
    } catch (e) {
      result.replaceChildren(errorBox(e));
    }
  } } },
  h("label", "type ", type), h("label", "source ", source), h("label.block", "data (JSON) ", data),
  h("button", { type: "submit" }, "send event"));
  return h("section", h("h1", "Namespace ", h("code", ns)), tabs(ns, "events"), h("h2", "Send a CloudEvent"), form, result);
}

// ------------------------------------------------------------------ one workflow
export async function workflowPage(ctx) {
  const { ns, path } = ctx.params;
  ctx.crumbs([ns, nsHash(ns)], [path, wfHash(ns, path)]);
  const base = `${nsApi(ns)}/workflows/${wfPath(path)}`;
  const g = await api("GET", `${base}/graph?format=json`);
  const drawing = h("div.graph", { role: "img", "aria-label": `graph of workflow ${path}` });
  if (g.graph) {
    const r = await api("GET", `${base}/graph?format=svg`, { raw: true });
    drawing.innerHTML = await r.text(); // made by isolde's graph module: every text escaped
  }
  const input = h("textarea", { name: "input", rows: 6, "aria-label": "instance input (JSON)" });
  input.value = "{}";
  const result = h("div.result", { "aria-live": "polite" });
  const start = h("form.start", { on: { submit: async (ev) => {
    ev.preventDefault();
    try {
      const r = await api("POST", `${base}/instances`, { body: input.value, type: "application/json" });
      toast(`started ${r.id}`);
      location.hash = iHash(ns, r.id);
    } catch (e) {
      result.replaceChildren(errorBox(e));
    }
  } } }, h("label.block", "input (JSON) ", input), h("button", { type: "submit", disabled: !g.serving }, "start instance"));
  const vars = variablesPanel(`${base}/variables`, { title: "Workflow variables" });
  await vars.ready;
  return h("section",
    h("h1", "Workflow ", h("code", path), " ",
      h("span.badge", { dataset: { status: g.valid ? "valid" : "invalid" } }, g.valid ? "valid" : g.serving ? "invalid, serving the last valid version" : "invalid")),
    h("p", link(`${nsHash(ns)}/instances?workflow=${enc(path)}`, "instances of this workflow")),
    errorList(g.errors),
    g.graph ? [h("div.legend", h("span.next", "transition"), h("span.default", "default transition"), h("span.catch", "catch")), drawing]
      : h("p.muted", "No valid version to draw."),
    h("h2", "Start an instance"), g.serving ? null : h("p.muted", "The workflow has no valid version: fix its errors to start it."),
    start, result, vars);
}

// ------------------------------------------------------------------ one instance
// " (cut)" when the history kept only the start of this value (its size cap)
const cut = (s, what) => (s.truncated && s.truncated.includes(what) ? h("span.muted", " (cut)") : null);

function timelineView(timeline) {
  if (!timeline) return h("p.muted", "No timeline for this instance.");
  if (!timeline.length) return h("p.muted", "No state has run yet.");
  return h("ol.timeline", timeline.map((s) => h("li", { dataset: { state: s.state } }, h("details",
    h("summary", h("code", s.state), " ", h("span.muted", s.type || ""), " ", duration(s.started, s.ended), " ",
      s.error ? h("span.badge", { dataset: { status: "failed" } }, s.error.code || "error") : s.ended ? h("span.badge", { dataset: { status: "complete" } }, "done") : badge("running")),
    h("dl",
      h("dt", "started"), h("dd", when(s.started)), h("dt", "ended"), h("dd", when(s.ended)),
      s.input !== undefined ? [h("dt", "data in", cut(s, "input")), h("dd", h("pre", json(s.input)))] : null,
      s.output !== undefined ? [h("dt", "data out", cut(s, "output")), h("dd", h("pre", json(s.output)))] : null,
      s.error ? [h("dt", "error"), h("dd", h("pre", json(s.error)))] : null,
      s.variables && s.variables.length ? [h("dt", "variables written"), h("dd", s.variables.map((v) => h("code.var", `${v.scope}:${v.key}`)))] : null,
      s.logs && s.logs.length ? [h("dt", "log"), h("dd", h("pre", s.logs.map((l) => typeof l === "string" ? l : l.message).join("\n")))] : null)))));
}

// The workflow's graph (the version served now) with the states this instance went through,
// the one it is in, and the one it failed in, marked.
async function instanceGraph(ns, workflow) {
  try {
    const r = await api("GET", `${nsApi(ns)}/workflows/${wfPath(workflow)}/graph?format=svg`, { raw: true });
    const div = h("div.graph.marked", { role: "img", "aria-label": `graph of workflow ${workflow} with this instance's states` });
    div.innerHTML = await r.text(); // made by isolde's graph module: every text escaped
    return div;
  } catch (_) {
    return null; // the workflow is gone or has no valid version: no picture
  }
}

function markGraph(div, rec) {
  if (!div) return;
  const visited = new Set((rec.timeline || []).map((s) => s.state));
  if (rec.state) visited.add(rec.state);
  for (const g of div.querySelectorAll("g.state")) {
    const id = g.dataset.id;
    g.classList.toggle("visited", visited.has(id));
    g.classList.toggle("current", LIVE.has(rec.status) && rec.state === id);
    g.classList.toggle("failed", Boolean(rec.error && rec.error.state === id));
  }
}

export async function instancePage(ctx) {
  const { ns, id } = ctx.params;
  ctx.crumbs([ns, nsHash(ns)], ["instances", `${nsHash(ns)}/instances`], [id.slice(0, 8), iHash(ns, id)]);
  const base = `${nsApi(ns)}/instances/${enc(id)}`;
  let rec = await api("GET", base);
  const head = h("div.summary");
  const timeline = h("div");
  const logBox = h("pre.log", { "aria-label": "instance log" });
  let logNext = 0;
  let logCount = 0;
  const vars = variablesPanel(`${base}/variables`, { title: "Instance variables", writable: LIVE.has(rec.status) });

  function drawHead() {
    const live = LIVE.has(rec.status);
    fill(head,
      h("h1", "Instance ", h("code", rec.id), " ", badge(rec.status)),
      h("dl.facts",
        h("dt", "workflow"), h("dd", link(wfHash(ns, rec.workflow), rec.workflow)),
        rec.state ? [h("dt", "state"), h("dd", h("code", rec.state))] : null,
        rec.trigger ? [h("dt", "trigger"), h("dd", rec.trigger)] : null,
        h("dt", "created"), h("dd", when(rec.created)),
        h("dt", "started"), h("dd", when(rec.started)),
        h("dt", "ended"), h("dd", when(rec.ended)),
        h("dt", "took"), h("dd", duration(rec.started, rec.ended))),
      live ? h("button.danger.cancel", { type: "button", on: { click: cancel } }, "cancel instance") : null,
      rec.input !== undefined ? [h("h2", "Input", rec.input_truncated ? h("span.muted", " (cut)") : null), h("pre.input", json(rec.input))] : null,
      rec.error ? [h("h2", "Error"), h("pre.error-out", json(rec.error))] : null,
      rec.status === "complete" ? [h("h2", "Output"), h("pre.output", json(rec.output))] : null);
    timeline.replaceChildren(timelineView(rec.timeline));
    markGraph(graph, rec);
  }

  async function cancel() {
    try {
      await api("POST", `${base}/cancel`);
      toast(`cancelling ${id}`);
      await refresh();
    } catch (e) {
      toast(e.message, "error");
    }
  }

  async function logs() {
    const r = await api("GET", `${base}/logs${logNext ? "?after=" + logNext : ""}`);
    const fresh = r.next === undefined ? r.logs.slice(logCount) : r.logs; // an API without `after`: the new tail
    logCount += fresh.length;
    if (r.next !== undefined) logNext = r.next;
    if (fresh.length) logBox.append(fresh.map((l) => `${when(l.time)}  ${l.state || "-"}  ${l.message}\n`).join(""));
  }

  async function refresh() {
    const was = LIVE.has(rec.status);
    rec = await api("GET", base);
    drawHead();
    await logs();
    if (was && !LIVE.has(rec.status)) vars.reload(); // its variables went with it
  }

  const [graph] = await Promise.all([instanceGraph(ns, rec.workflow), logs(), vars.ready]);
  drawHead();
  ctx.every(1000, async () => {
    if (LIVE.has(rec.status)) await refresh();
  });
  return h("section.instance", head,
    graph ? [h("h2", "Path"), graph] : null,
    h("h2", "Timeline"), timeline,
    h("h2", "Log"), logBox, vars);
}
