// The web UI's router: hash routes (#/ns/NAME/...), breadcrumbs, polling that stops when the
// page changes, and the token form when the daemon wants one.

import { ApiError, errorBox, h, setToken, token } from "./api.js";
import { eventsPage, instancePage, instancesPage, namespacesPage, nsVariablesPage, workflowPage, workflowsPage } from "./pages.js";

const ROUTES = [
  [/^\/$/, "namespaces", namespacesPage, []],
  [/^\/ns\/([^/]+)$/, "workflows", workflowsPage, ["ns"]],
  [/^\/ns\/([^/]+)\/instances$/, "instances", instancesPage, ["ns"]],
  [/^\/ns\/([^/]+)\/variables$/, "variables", nsVariablesPage, ["ns"]],
  [/^\/ns\/([^/]+)\/events$/, "events", eventsPage, ["ns"]],
  [/^\/ns\/([^/]+)\/wf\/(.+)$/, "workflow", workflowPage, ["ns", "path"]],
  [/^\/ns\/([^/]+)\/i\/([^/]+)$/, "instance", instancePage, ["ns", "id"]],
];

const main = document.getElementById("main");
const crumbs = document.getElementById("crumbs");
const logout = document.getElementById("logout");
let generation = 0;

function setCrumbs(...items) {
  crumbs.replaceChildren(...items.flatMap(([text, hash]) => [h("span.sep", "/"), h("a", { href: "#" + hash }, text)]));
}

function tokenForm(again) {
  const input = h("input", { type: "password", autocomplete: "current-password", required: true, "aria-label": "API token" });
  const form = h("form.token", { on: { submit: (ev) => {
    ev.preventDefault();
    setToken(input.value.trim());
    render();
  } } },
  h("h1", "Token"),
  h("p", again ? "The token was not accepted. " : "", "This daemon needs its API token (",
    h("code", "--token"), ", ", h("code", "[daemon] token"), " or ", h("code", "$ISOLDE_API_TOKEN"),
    "). It is kept in this browser tab only."),
  h("label", "token ", input), h("button", { type: "submit" }, "continue"));
  setTimeout(() => input.focus(), 0);
  return form;
}

async function render() {
  const gen = ++generation;
  const t0 = performance.now();
  const raw = location.hash.slice(1) || "/";
  const cut = raw.indexOf("?");
  const path = decodeURIComponent(cut < 0 ? raw : raw.slice(0, cut));
  const qs = cut < 0 ? "" : raw.slice(cut + 1);
  delete document.body.dataset.ready;
  logout.hidden = !token();
  let page = null;
  for (const [re, name, fn, names] of ROUTES) {
    const m = re.exec(path);
    if (m) {
      page = { name, fn, params: Object.fromEntries(names.map((n, i) => [n, m[i + 1]])) };
      break;
    }
  }
  const ctx = {
    params: page ? page.params : {},
    query: new URLSearchParams(qs || ""),
    crumbs: setCrumbs,
    alive: () => gen === generation,
    // run fn every ms milliseconds while this page is shown (one run at a time)
    every(ms, fn) {
      const tick = async () => {
        if (gen !== generation) return;
        try {
          await fn();
        } catch (e) {
          if (gen === generation) console.warn("isolde ui: refresh failed", e);
        }
        if (gen === generation) setTimeout(tick, ms);
      };
      setTimeout(tick, ms);
    },
  };
  let node;
  let ready = page ? page.name : "error";
  try {
    if (!page) throw new ApiError(404, "isolde.ui.notFound", `no page ${path} (start at the namespaces)`);
    node = await page.fn(ctx);
  } catch (e) {
    if (gen !== generation) return;
    ready = "error";
    if (e instanceof ApiError && e.status === 401) {
      ++generation; // stop any polling the failed page started
      node = tokenForm(Boolean(token()));
    } else {
      node = h("section", errorBox(e), h("p", h("a", { href: "#/" }, "namespaces")));
    }
  }
  if (gen !== generation && !node.matches("form.token")) return;
  main.replaceChildren(node);
  document.title = `isolde · ${page ? page.name : "not found"}`;
  document.body.dataset.ready = ready;
  // how long this page took (benchmarks/bench_ui.py reads it): from t0, itself counted from
  // the document's navigation start
  performance.measure(`isolde:page:${ready}`, { start: t0, end: performance.now() });
}

logout.addEventListener("click", () => {
  setToken("");
  render();
});
window.addEventListener("hashchange", render);
render();
