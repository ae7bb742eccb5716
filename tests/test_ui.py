"""The web UI (``/ui/``) in a real browser: headless Chromium (Debian's ``chromium``) driven by
Playwright, against a real ``isolde serve`` process on a free port.

One daemon and one browser serve the whole module; each test gets its own browser context.
Synchronisation is Playwright's auto-waiting (``expect``), never a sleep.  Without Chromium
the browser tests are skipped with the reason, unless ``ISOLDE_REQUIRE_BROWSER=1`` (CI), in
which case they fail.  A screenshot of a workflow graph is kept in ``$ISOLDE_TEST_ARTIFACTS``
(default: a folder under pytest's tmp).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import textwrap
from pathlib import Path
from typing import Any, Iterator

import pytest

from test_daemon import Served, eventually

FLOWS = {
    "greet.yaml": """
        direktiv_api: workflow/v1
        description: Greets by name and remembers the last greeting.
        states:
        - id: check
          type: switch
          conditions:
          - condition: jq(.name != null)
            transition: greet
          defaultTransition: anonymous
        - id: greet
          type: noop
          log: jq("hello " + .name)
          transform:
            greeting: jq("hello " + .name)
          transition: remember
          catch:
          - error: "direktiv.jq.*"
            transition: anonymous
        - id: remember
          type: setter
          variables:
          - key: last
            scope: workflow
            mimeType: text/plain
            value: jq(.greeting)
        - id: anonymous
          type: noop
          transform:
            greeting: hello nobody
    """,
    "broken.yaml": """
        direktiv_api: workflow/v1
        states:
        - id: a
          type: noop
          transition: missing
    """,
    "slow.yaml": """
        direktiv_api: workflow/v1
        states:
        - id: note
          type: setter
          variables:
          - key: progress
            scope: instance
            mimeType: text/plain
            value: started
          transition: wait
        - id: wait
          type: delay
          duration: PT1H
    """,
    "on-ping.yaml": """
        direktiv_api: workflow/v1
        start:
          type: event
          event:
            type: ui.ping
        states:
        - id: got
          type: noop
          transform:
            got: jq(.["ui.ping"].data)
    """,
    "quick.yaml": """
        direktiv_api: workflow/v1
        states:
        - id: a
          type: noop
          transform:
            n: jq(.n)
    """,
    "fails.yaml": """
        direktiv_api: workflow/v1
        states:
        - id: boom
          type: error
          error: app.boom
          message: it went boom
    """,
}

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 30_000  # a hang guard for a loaded machine; expect() returns as soon as it holds


def chromium_path() -> str | None:
    """Debian's Chromium (``$ISOLDE_CHROMIUM`` to use another build)."""
    for candidate in (os.environ.get("ISOLDE_CHROMIUM"), shutil.which("chromium"), "/usr/bin/chromium"):
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def _no_browser(reason: str) -> None:
    if os.environ.get("ISOLDE_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (ISOLDE_REQUIRE_BROWSER=1: the UI tests must run)")
    pytest.skip(f"{reason}: the web UI's browser tests need it (apt-get install chromium; pip install playwright)")


def _write_flows(root: Path) -> None:
    for name, text in FLOWS.items():
        path = root / "ns1" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
    (root / "empty").mkdir()


def _env(base: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ISOLDE_")}
    env["PYTHONPATH"] = str(base)
    return env


def _serve(base: Path, *args: str) -> Served:
    root = base / "flows"
    _write_flows(root)
    cfg = base / "isolde.toml"
    cfg.write_text("[daemon]\nstop_grace = 0\n")  # a test's slow instances need not be waited for
    return Served(root, base / "data", ("--config", str(cfg), *args), _env(base), base).ready()


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    d = _serve(tmp_path_factory.mktemp("ui"))
    try:
        yield d
    finally:
        assert d.stop() == 0


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    exe = chromium_path()
    if exe is None:
        _no_browser("no Chromium found")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _no_browser("Playwright is not installed")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any, daemon: Served) -> Iterator[Any]:
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    context = browser.new_context(base_url=daemon.url, accept_downloads=True, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield pg
    finally:
        context.close()
    assert not errors, f"errors in the page's script: {errors}"


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = os.environ.get("ISOLDE_TEST_ARTIFACTS")
    path = Path(given) if given else tmp_path_factory.mktemp("artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


def open_page(pg: Any, hash_: str, ready: str) -> None:
    """Go to ``/ui/#<hash_>`` and wait until that page has drawn (``body[data-ready]``; the
    marker of the page shown before is removed first, as a hash change keeps the document)."""
    if "/ui/" in pg.url:
        pg.evaluate("delete document.body.dataset.ready")
    pg.goto(f"/ui/#{hash_}")
    pg.wait_for_selector(f"body[data-ready='{ready}']")


# --------------------------------------------------------------------------- pages


def test_namespaces_lead_to_workflows_with_their_errors(page: Any) -> None:
    from playwright.sync_api import expect

    page.goto("/")  # redirects to /ui/
    expect(page).to_have_url(re.compile(r"/ui/$"))
    expect(page.locator("main h1")).to_have_text("Namespaces")
    row = page.locator("main tr", has_text="ns1")
    expect(row.locator("td.num")).to_have_text(str(len(FLOWS)))
    expect(page.locator("main tr", has_text="empty")).to_be_visible()
    row.get_by_role("link", name="ns1").click()
    expect(page).to_have_url(re.compile(r"#/ns/ns1$"))
    table = page.locator("table.workflows")
    expect(table.locator("tr[data-path]")).to_have_count(len(FLOWS))
    expect(table.locator("tr[data-path='greet'] .badge")).to_have_text("valid")
    expect(table.locator("tr[data-path='broken'] .badge")).to_have_text("invalid")
    # the invalid workflow's located error, right under it
    expect(table.locator("ul.errors")).to_contain_text(re.compile(r"broken\.yaml:5:15: state 'a': transition to unknown state 'missing'"))


def test_workflow_graph_marks_default_and_catch_edges(page: Any, artifacts: Path) -> None:
    from playwright.sync_api import expect

    open_page(page, "/ns/ns1/wf/greet", "workflow")
    graph = page.locator(".graph svg")
    expect(graph.locator("g.state")).to_have_count(4)
    expect(graph.locator("g.state[data-id='check'] rect")).to_have_attribute("stroke-width", "3")  # the start
    expect(graph.locator("g.edge.default")).to_have_count(1)
    expect(graph.locator("g.edge.default")).to_have_attribute("data-to", "anonymous")
    expect(graph.locator("g.edge.catch")).to_have_count(1)
    expect(graph.locator("g.edge.catch path")).to_have_attribute("stroke-dasharray", "5,4")
    expect(graph.locator("text.label.catch")).to_have_text("catch direktiv.jq.*")
    expect(graph.locator("g.edge.next")).to_have_count(2)
    expect(page.locator(".legend")).to_contain_text("catch")
    shot = artifacts / "workflow-graph.png"  # the page down to the end of the graph
    box = page.locator(".graph").bounding_box()
    page.screenshot(path=str(shot), clip={"x": 0, "y": 0, "width": 1280, "height": box["y"] + box["height"] + 16})
    assert shot.stat().st_size > 1000


def test_an_invalid_workflow_shows_its_located_errors_and_cannot_start(page: Any) -> None:
    from playwright.sync_api import expect

    open_page(page, "/ns/ns1/wf/broken", "workflow")
    expect(page.locator("main h1 .badge")).to_have_text("invalid")
    expect(page.locator("ul.errors li")).to_have_count(1)
    expect(page.locator("ul.errors")).to_contain_text("broken.yaml:5:15: state 'a': transition to unknown state 'missing'")
    expect(page.get_by_text("No valid version to draw.")).to_be_visible()
    expect(page.locator(".graph svg")).to_have_count(0)
    expect(page.get_by_role("button", name="start instance")).to_be_disabled()


def test_start_an_instance_and_see_it_complete(page: Any, daemon: Served) -> None:
    from playwright.sync_api import expect

    open_page(page, "/ns/ns1/wf/greet", "workflow")
    page.get_by_label("instance input (JSON)").fill('{"name": "ada"}')
    page.get_by_role("button", name="start instance").click()
    expect(page).to_have_url(re.compile(r"#/ns/ns1/i/[0-9a-f-]{36}$"))
    page.wait_for_selector("body[data-ready='instance']")
    expect(page.locator(".summary h1 .badge")).to_have_text("complete")  # polled live until it ends
    expect(page.locator("pre.output")).to_contain_text('"greeting": "hello ada"')
    expect(page.locator("pre.log")).to_contain_text("hello ada")
    expect(page.get_by_role("button", name="cancel instance")).to_have_count(0)
    expect(page.locator("section.variables")).to_contain_text("no variables")  # they ended with it
    expect(page.locator("main")).not_to_contain_text(re.compile(r"\bnull\b|undefined|\[object"))
    iid = page.url.rsplit("/", 1)[1]
    assert daemon.get(f"/api/namespaces/ns1/instances/{iid}").json["status"] == "complete"
    # the setter wrote the workflow variable; the workflow page lists it
    page.locator("dl.facts").get_by_role("link", name="greet").click()
    page.wait_for_selector("body[data-ready='workflow']")
    expect(page.locator("section.variables tr[data-key='last']")).to_contain_text("text/plain")


def test_instances_page_filters_pages_and_links(page: Any, daemon: Served) -> None:
    from playwright.sync_api import expect

    for n in range(55):
        assert daemon.start("ns1", "quick", {"n": n}).status == 200
    failed = daemon.start("ns1", "fails").json
    assert failed["status"] == "failed"
    listed = daemon.get("/api/namespaces/ns1/instances?limit=1").json
    total = listed.get("total", len(listed["instances"]))
    open_page(page, "/ns/ns1/instances", "instances")
    rows = page.locator("table.instances tbody tr")
    expect(rows).to_have_count(50)  # a page, not every instance
    expect(page.locator(".pager .range")).to_have_text(f"1–50 of {total}")
    page.get_by_role("button", name="older ›").click()
    expect(page.locator(".pager .range")).to_have_text(f"51–{min(100, total)} of {total}")
    expect(rows).to_have_count(min(100, total) - 50)
    page.get_by_label("status").select_option("failed")
    page.get_by_role("button", name="filter").click()
    expect(page).to_have_url(re.compile(r"instances\?status=failed$"))
    expect(rows.first.locator(".badge")).to_have_text("failed")
    expect(rows.first).to_contain_text("app.boom")
    page.get_by_label("status").select_option("")
    page.get_by_label("workflow").fill("quick")
    page.get_by_role("button", name="filter").click()
    expect(page.locator(".pager .range")).to_have_text(re.compile(r"^1–50 of 5[5-9]$"))
    rows.first.locator("a").first.click()
    page.wait_for_selector("body[data-ready='instance']")
    expect(page.locator(".summary h1 .badge")).to_have_text("complete")


def test_send_an_event_that_starts_an_instance(page: Any) -> None:
    from playwright.sync_api import expect

    open_page(page, "/ns/ns1/events", "events")
    page.get_by_label("event type").fill("ui.ping")
    page.get_by_label("event data (JSON)").fill('{"hello": "from the browser"}')
    page.get_by_role("button", name="send event").click()
    result = page.locator(".result p.ok")
    expect(result).to_contain_text("accepted; started")
    result.locator("a").click()
    page.wait_for_selector("body[data-ready='instance']")
    expect(page.locator(".summary h1 .badge")).to_have_text("complete")
    expect(page.locator("pre.output")).to_contain_text('"hello": "from the browser"')


def test_an_event_with_bad_json_data_is_refused_in_the_page(page: Any) -> None:
    from playwright.sync_api import expect

    open_page(page, "/ns/ns1/events", "events")
    page.get_by_label("event type").fill("ui.ping")
    page.get_by_label("event data (JSON)").fill("{not json")
    page.get_by_role("button", name="send event").click()
    expect(page.locator(".result p.error")).to_contain_text("data is not JSON")


def test_namespace_variables_upload_edit_download_delete(page: Any, daemon: Served) -> None:
    from playwright.sync_api import expect

    open_page(page, "/ns/ns1/variables", "variables")
    panel = page.locator("section.variables")
    expect(panel).to_contain_text("no variables")
    # upload a file
    panel.get_by_text("add or upload a variable").click()
    panel.get_by_label("file to upload").set_input_files(
        files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"first line\n"}])
    expect(panel.get_by_label("new variable key")).to_have_value("notes.txt")
    panel.get_by_label("new variable key").fill("notes")
    panel.get_by_role("button", name="save").click()
    row = panel.locator("tr[data-key='notes']")
    expect(row).to_contain_text("11 B")
    expect(row).to_contain_text("text/plain")
    r = daemon.get("/api/namespaces/ns1/variables/notes")
    assert (r.status, r.body, r.headers["content-type"]) == (200, b"first line\n", "text/plain")
    # edit it
    row.get_by_role("button", name="edit").click()
    editor = panel.get_by_label("value of notes")
    expect(editor).to_have_value("first line\n")
    editor.fill("second version")
    panel.locator("tr.editor").get_by_role("button", name="save").click()
    expect(row).to_contain_text("14 B")
    assert daemon.get("/api/namespaces/ns1/variables/notes").body == b"second version"
    # download it
    with page.expect_download() as got:
        row.get_by_role("button", name="download").click()
    download = got.value
    assert re.fullmatch(r"notes(\.txt)?", download.suggested_filename)  # the browser may add the type's extension
    assert Path(download.path()).read_bytes() == b"second version"
    # a typed value through the form (still open)
    panel.get_by_label("new variable key").fill("config")
    panel.get_by_label("new variable value").fill('{"retries": 3}')
    panel.locator("details.add").get_by_role("button", name="save").click()
    expect(panel.locator("tr[data-key='config']")).to_contain_text("application/json")
    assert json.loads(daemon.get("/api/namespaces/ns1/variables/config").body) == {"retries": 3}
    # a bad key is refused with the API's message
    panel.get_by_label("new variable key").fill("bad key!")
    panel.get_by_label("new variable value").fill("1")
    panel.locator("details.add").get_by_role("button", name="save").click()
    expect(page.locator("#toast")).to_contain_text("bad key!")
    # delete asks for a second click
    row.get_by_role("button", name="delete").click()
    row.get_by_role("button", name="confirm delete").click()
    expect(row).to_have_count(0)
    assert daemon.get("/api/namespaces/ns1/variables/notes").status == 404
    daemon.request("DELETE", "/api/namespaces/ns1/variables/config")


def test_long_variable_lists_are_filtered_and_paged(page: Any, daemon: Served) -> None:
    from playwright.sync_api import expect

    for n in range(120):
        assert daemon.request("PUT", f"/api/namespaces/ns1/workflows/quick/variables/v{n:03d}", str(n),
                              headers={"Content-Type": "application/json"}).status == 201
    open_page(page, "/ns/ns1/wf/quick", "workflow")
    panel = page.locator("section.variables")
    expect(panel.locator("tbody tr")).to_have_count(50)
    expect(panel.locator(".pager .range")).to_have_text("1–50 of 120")
    panel.get_by_role("button", name="next ›").click()
    expect(panel.locator("tbody tr").first).to_have_attribute("data-key", "v050")
    panel.get_by_label("filter variables by key").fill("v11")
    expect(panel.locator("tbody tr")).to_have_count(10)
    expect(panel.locator(".pager .range")).to_have_text("1–10 of 10")


def test_a_running_instance_live_its_variables_and_cancel(page: Any, daemon: Served) -> None:
    from playwright.sync_api import expect

    iid = daemon.start("ns1", "slow", wait=False).json["id"]
    open_page(page, f"/ns/ns1/i/{iid}", "instance")
    expect(page.locator(".summary h1 .badge")).to_have_text("running")
    expect(page.locator("dl.facts")).to_contain_text("wait")  # the state it is in, polled
    expect(page.locator(".graph.marked g.state[data-id='wait']")).to_have_class(re.compile(r"\bcurrent\b"))
    panel = page.locator("section.variables")
    panel.get_by_role("button", name="reload").click()
    row = panel.locator("tr[data-key='progress']")
    expect(row).to_contain_text("text/plain")
    row.get_by_role("button", name="edit").click()
    panel.get_by_label("value of progress").fill("halfway")
    panel.locator("tr.editor").get_by_role("button", name="save").click()
    expect(page.locator("#toast")).to_contain_text("saved progress")
    assert daemon.get(f"/api/namespaces/ns1/instances/{iid}/variables/progress").body == b"halfway"
    page.get_by_role("button", name="cancel instance").click()
    expect(page.locator(".summary h1 .badge")).to_have_text("cancelled")
    expect(page.locator("pre.error-out")).to_contain_text("direktiv.cancels.api")
    expect(page.get_by_role("button", name="cancel instance")).to_have_count(0)
    expect(panel).to_contain_text("no variables")  # they ended with the instance


def test_instance_timeline(page: Any, daemon: Served) -> None:
    from playwright.sync_api import expect

    view = daemon.start("ns1", "greet", {"name": "bo"}).json
    open_page(page, f"/ns/ns1/i/{view['id']}", "instance")
    steps = page.locator("ol.timeline > li")
    expect(steps).to_have_count(3)
    assert steps.evaluate_all("els => els.map(e => e.dataset.state)") == ["check", "greet", "remember"]
    # the path through the workflow's graph
    expect(page.locator(".graph.marked g.state[data-id='remember']")).to_have_class(re.compile(r"\bvisited\b"))
    expect(page.locator(".graph.marked g.state[data-id='anonymous']")).not_to_have_class(re.compile(r"\bvisited\b"))
    steps.nth(1).locator("summary").click()
    expect(steps.nth(1)).to_contain_text('"greeting": "hello bo"')
    expect(steps.nth(2)).to_contain_text("workflow:last")


def test_unknown_pages_and_instances_say_so(page: Any) -> None:
    from playwright.sync_api import expect

    open_page(page, "/nowhere", "error")
    expect(page.locator("p.error")).to_contain_text("no page /nowhere")
    open_page(page, "/ns/ns1/i/0000", "error")
    expect(page.locator("p.error code")).to_have_text("isolde.instance.notFound")
    open_page(page, "/ns/nope", "error")
    expect(page.locator("p.error code")).to_have_text("isolde.namespace.notFound")


def test_with_a_token_the_page_asks_for_it(browser: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    d = _serve(tmp_path, "--token", "s3cret")
    try:
        context = browser.new_context(base_url=d.url)
        context.set_default_timeout(TIMEOUT_MS)
        try:
            pg = context.new_page()
            pg.goto("/ui/")  # the page itself is static: served without the token
            pw = pg.get_by_label("API token")
            pw.fill("wrong")
            pg.get_by_role("button", name="continue").click()
            expect(pg.locator("form.token")).to_contain_text("The token was not accepted.")
            pg.get_by_label("API token").fill("s3cret")
            pg.get_by_role("button", name="continue").click()
            expect(pg.locator("main h1")).to_have_text("Namespaces")
            expect(pg.locator("main tr", has_text="ns1")).to_be_visible()
            pg.get_by_role("button", name="forget token").click()
            expect(pg.get_by_label("API token")).to_be_visible()
        finally:
            context.close()
    finally:
        assert d.stop() == 0


# --------------------------------------------------------------------------- HTTP (no browser)


def test_ui_files_and_their_headers(daemon: Served) -> None:
    r = daemon.get("/")
    assert r.status == 302 and r.headers["location"] == "/ui/"
    r = daemon.get("/ui")
    assert r.status == 302 and r.headers["location"] == "/ui/"
    r = daemon.get("/ui/")
    assert r.status == 200 and r.headers["content-type"] == "text/html; charset=utf-8"
    assert b'<script type="module" src="app.js">' in r.body
    assert "default-src 'self'" in r.headers["content-security-policy"] and r.headers["x-frame-options"] == "DENY"
    for name, ctype in (("app.js", "text/javascript"), ("style.css", "text/css")):
        r = daemon.get(f"/ui/{name}")
        assert r.status == 200 and r.headers["content-type"].startswith(ctype)
    # every file the page loads is one of ours (no CDN)
    index = daemon.get("/ui/").body.decode()
    assert not re.search(r"(src|href)=\"(https?:)?//", index)
    for path in ("/ui/nothing.js", "/ui/../pyproject.toml", "/ui/__init__.py", "/ui/%2e%2e/graph.py", "/favicon.ico"):
        r = daemon.get(path)
        assert r.status == 404 and r.json["error"]["code"] == "isolde.api.notFound", path
    r = daemon.request("POST", "/ui/")
    assert r.status == 405 and r.headers["allow"] == "GET"
    # the DNS-rebinding rule holds for the pages as for the API
    r = daemon.get("/ui/", headers={"Host": "evil.example:80"})
    assert r.status == 403


def test_browser_requests_to_the_api_only_from_its_own_pages(daemon: Served) -> None:
    host = f"127.0.0.1:{daemon.port}"
    ok = daemon.get("/api/namespaces", headers={"Host": host, "Sec-Fetch-Site": "same-origin"})
    assert ok.status == 200
    ok = daemon.request("POST", "/api/namespaces/ns1/workflows/quick/instances?wait=true", "{}",
                        headers={"Host": host, "Sec-Fetch-Site": "same-origin", "Origin": f"http://{host}"})
    assert ok.status == 200
    for headers in ({"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"},
                    {"Sec-Fetch-Site": "same-origin", "Origin": "http://evil.example"},
                    {"Origin": f"http://127.0.0.1:{daemon.port + 1}"}, {"Origin": "null"}):
        r = daemon.request("POST", "/api/namespaces/ns1/workflows/quick/instances", "{}", headers={"Host": host, **headers})
        assert r.status == 403 and r.json["error"]["code"] == "isolde.api.forbidden", headers


def test_graph_route(daemon: Served) -> None:
    g = daemon.get("/api/namespaces/ns1/workflows/greet/graph").json
    assert (g["valid"], g["serving"], g["errors"]) == (True, True, [])
    assert g["graph"]["start"] == "check"
    assert {(e["from"], e["to"], e["kind"]) for e in g["graph"]["edges"]} == {
        ("check", "greet", "next"), ("check", "anonymous", "default"), ("greet", "remember", "next"),
        ("greet", "anonymous", "catch")}
    r = daemon.get("/api/namespaces/ns1/workflows/greet.yaml/graph?format=svg")
    assert r.status == 200 and r.headers["content-type"] == "image/svg+xml" and r.body.startswith(b"<svg")
    r = daemon.get("/api/namespaces/ns1/workflows/greet/graph?format=mermaid")
    assert r.status == 200 and r.body.startswith(b"flowchart TD")
    bad = daemon.get("/api/namespaces/ns1/workflows/broken/graph").json
    assert (bad["valid"], bad["serving"], bad["graph"]) == (False, False, None)
    assert bad["errors"][0].endswith("broken.yaml:5:15: state 'a': transition to unknown state 'missing'")
    r = daemon.get("/api/namespaces/ns1/workflows/broken/graph?format=svg")
    assert r.status == 409 and r.json["error"]["code"] == "isolde.workflow.invalid" and "missing" in r.json["error"]["message"]
    r = daemon.get("/api/namespaces/ns1/workflows/greet/graph?format=png")
    assert r.status == 400 and "png" in r.json["error"]["message"]
    assert daemon.get("/api/namespaces/ns1/workflows/nope/graph").status == 404


def test_instance_variable_routes(daemon: Served) -> None:
    iid = daemon.start("ns1", "slow", wait=False).json["id"]
    base = f"/api/namespaces/ns1/instances/{iid}/variables"
    listed = eventually(lambda: daemon.get(base).json["variables"], timeout=30)
    assert [v["key"] for v in listed] == ["progress"] and daemon.get(base).json["instance"] == iid
    assert daemon.request("PUT", f"{base}/extra", "1", headers={"Content-Type": "application/json"}).status == 201
    assert daemon.get(f"{base}/extra").body == b"1"
    assert daemon.request("DELETE", f"{base}/extra").status == 204
    assert daemon.get(f"{base}/extra").status == 404
    assert daemon.get("/api/namespaces/ns1/instances/no-such/variables").json["error"]["code"] == "isolde.instance.notFound"
    done = daemon.start("ns1", "quick", {"n": 1}).json["id"]
    r = daemon.request("PUT", f"/api/namespaces/ns1/instances/{done}/variables/x", "1")
    assert r.status == 409 and r.json["error"]["code"] == "isolde.instance.ended"
    assert daemon.get(f"/api/namespaces/ns1/instances/{done}/variables").json["variables"] == []
    assert daemon.request("POST", f"/api/namespaces/ns1/instances/{iid}/cancel").status == 202
