// The variables of one scope (namespace, workflow or instance): browse (filtered, a page at a
// time), download, upload, create, edit and delete.

import { api, enc, errorBox, fill, h, pager, size, toast, when } from "./api.js";

const PAGE = 50;
const EDIT_MAX = 1024 * 1024; // larger values are downloaded and uploaded, not edited here

function isText(mime) {
  return !mime || /^text\/|json|yaml|xml|javascript|csv/.test(mime);
}

// base: the API path of the scope's variables ("/api/namespaces/ns/variables", ...).
// `writable` false shows them read-only (an ended instance has none anyway).
export function variablesPanel(base, { title = "Variables", writable = true } = {}) {
  const panel = h("section.variables", { dataset: { base } });
  const body = h("div");
  const filter = h("input", { type: "search", placeholder: "filter by key", "aria-label": "filter variables by key" });
  let rows = [];
  let offset = 0;
  let editing = null; // {key, el}: an open editor, kept across redraws (a reload may come while it loads)

  async function load() {
    try {
      rows = (await api("GET", base)).variables;
      draw();
    } catch (e) {
      body.replaceChildren(errorBox(e));
    }
  }

  function draw() {
    const f = filter.value.trim().toLowerCase();
    const shown = f ? rows.filter((r) => r.key.toLowerCase().includes(f)) : rows;
    if (offset >= shown.length) offset = Math.max(0, Math.floor((shown.length - 1) / PAGE) * PAGE);
    const page = shown.slice(offset, offset + PAGE);
    body.replaceChildren(
      h("table.vars",
        h("thead", h("tr", h("th", "key"), h("th", "size"), h("th", "mime type"), h("th", "updated"), h("th", ""))),
        h("tbody", page.map((v) => [row(v), editing && editing.key === v.key ? editing.el : null]))),
      shown.length ? pager(offset, PAGE, shown.length, (o) => { offset = o; draw(); }) : h("p.muted", rows.length ? "no variable matches" : "no variables"));
  }

  function row(v) {
    const actions = h("td.actions",
      h("button", { type: "button", on: { click: () => download(v) } }, "download"),
      writable && v.size <= EDIT_MAX && isText(v.mime) ? h("button", { type: "button", on: { click: () => edit(v, tr) } }, "edit") : null,
      writable ? h("button.danger", { type: "button", on: { click: (ev) => remove(v, ev.target) } }, "delete") : null);
    const tr = h("tr", { dataset: { key: v.key } }, h("td", h("code", v.key)), h("td", size(v.size)), h("td", v.mime), h("td", when(v.updated)), actions);
    return tr;
  }

  async function download(v) {
    try {
      const r = await api("GET", `${base}/${enc(v.key)}`, { raw: true });
      const url = URL.createObjectURL(await r.blob());
      const a = h("a", { href: url, download: v.key });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60000);
    } catch (e) {
      toast(e.message, "error");
    }
  }

  async function remove(v, button) {
    if (button.dataset.armed !== "1") { // a second click confirms
      button.dataset.armed = "1";
      button.textContent = "confirm delete";
      return;
    }
    try {
      await api("DELETE", `${base}/${enc(v.key)}`);
      toast(`deleted ${v.key}`);
      await load();
    } catch (e) {
      toast(e.message, "error");
    }
  }

  async function edit(v, tr) {
    let text = "";
    try {
      text = await (await api("GET", `${base}/${enc(v.key)}`, { raw: true })).text();
    } catch (e) {
      toast(e.message, "error");
      return;
    }
    const area = h("textarea.value", { rows: 8, "aria-label": `value of ${v.key}` });
    area.value = text;
    const mime = h("input", { type: "text", value: v.mime || "", "aria-label": "mime type" });
    const close = () => {
      editor.remove();
      if (editing && editing.el === editor) editing = null;
    };
    const editor = h("tr.editor", h("td", { colspan: 5 },
      h("form", { on: { submit: async (ev) => {
        ev.preventDefault();
        if (await save(v.key, area.value, mime.value)) {
          close();
          await load();
        }
      } } }, area, h("div.row", h("label", "mime type ", mime),
        h("button", { type: "submit" }, "save"),
        h("button", { type: "button", on: { click: close } }, "cancel")))));
    if (editing) editing.el.remove();
    editing = { key: v.key, el: editor };
    const current = [...body.querySelectorAll("tr[data-key]")].find((r) => r.dataset.key === v.key) || tr;
    current.after(editor);
    area.focus();
  }

  async function save(key, data, mime) {
    try {
      await api("PUT", `${base}/${enc(key)}`, { body: data, type: mime || "application/octet-stream" });
      toast(`saved ${key}`);
      return true;
    } catch (e) {
      toast(e.message, "error");
      return false;
    }
  }

  function addForm() {
    const key = h("input", { type: "text", required: true, placeholder: "key", "aria-label": "new variable key" });
    const file = h("input", { type: "file", "aria-label": "file to upload" });
    const text = h("textarea", { rows: 3, placeholder: "value (or choose a file)", "aria-label": "new variable value" });
    const mime = h("input", { type: "text", value: "application/json", "aria-label": "new variable mime type" });
    file.addEventListener("change", () => {
      const f = file.files[0];
      if (f && !key.value) key.value = f.name.replace(/[^a-zA-Z0-9_.-]/g, "_").replace(/^[^a-zA-Z]+/, "") || "file";
      if (f) mime.value = f.type || "application/octet-stream";
    });
    return h("details.add", h("summary", "add or upload a variable"),
      h("form", { on: { submit: async (ev) => {
        ev.preventDefault();
        const f = file.files[0];
        if (await save(key.value.trim(), f || text.value, mime.value)) {
          ev.target.reset();
          await load();
        }
      } } }, h("div.row", key, mime), file, text, h("button", { type: "submit" }, "save")));
  }

  filter.addEventListener("input", () => { offset = 0; draw(); });
  fill(panel, h("h2", title), h("div.row", filter, h("button", { type: "button", on: { click: load } }, "reload")),
    writable ? addForm() : null, body);
  panel.reload = load;
  panel.ready = load();
  return panel;
}
