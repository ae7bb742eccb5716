"""Stand-in isolates for the container images the Direktiv corpus calls.

``python standins.py NAME`` serves Direktiv's action protocol on ``$PORT``
(stdlib only), behaving as the image ``NAME`` does for the inputs the corpus
sends.  The conformance suite maps each image to one of these through an
``[images."..."]`` table of isolde.toml, so isolde starts them as real
processes, exactly as a user would map a real image.

``bash``      direktiv/bash: runs each ``commands[i].command`` (split like a shell
              would, no shell) in the action folder (``Direktiv-TempDir``) and
              answers ``{"bash": [{"result": ..., "success": true}, ...]}``; a
              result is the command's stdout parsed as JSON when it parses, else
              the trimmed text.  A failing command is the catchable
              ``io.direktiv.command.error`` unless its entry says ``continue: true``.
``greeting``  direktiv/greeting, vorteil/greeting: ``{"greeting": "Welcome to Direktiv, NAME!"}``
              (a missing or non-string name is empty, as Go's decoder leaves it).
``fastapi``   direktiv/fastapi-example: ``{"msg": "Hello NAME"}``; a name shorter
              than 3 is ``greeter.shortname``, no name ``greeter.missing``; logs
              "I got the name NAME" through the sidecar, as the example does.
``request``   direktiv/request, vorteil/request: performs ``method`` ``url`` (loopback
              addresses only: a test never reaches the network) and answers
              ``{"status-code", "status", "headers": {name: [values]}, "body" | "data"}``.
``solve``     direktiv/solve: evaluates the arithmetic expression ``x`` and answers
              the number as text (``20``), as the Go app prints it; a bad
              expression is ``com.solve.error``.
"""

from __future__ import annotations

import ast
import base64
import json
import operator
import os
import shlex
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

Reply = tuple[int, bytes, dict[str, str]]


def error(code: str, msg: str) -> Reply:
    return 200, msg.encode(), {"Direktiv-ErrorCode": code, "Direktiv-ErrorMessage": msg}


def ok(value: Any) -> Reply:
    return 200, json.dumps(value).encode(), {}


def _result(stdout: str) -> Any:
    try:
        return json.loads(stdout)
    except ValueError:
        return stdout.strip()


def bash(body: Any, headers: dict[str, str]) -> Reply:
    folder = headers.get("direktiv-tempdir") or os.getcwd()
    out = []
    for entry in (body or {}).get("commands") or []:
        try:
            argv = shlex.split(str(entry.get("command", "")))
            proc = subprocess.run(argv, cwd=folder, capture_output=True, text=True, timeout=60)
        except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
            if not entry.get("continue"):
                return error("io.direktiv.command.error", f"{entry.get('command')!r}: {exc}")
            out.append({"result": str(exc), "success": False})
            continue
        if proc.returncode != 0 and not entry.get("continue"):
            return error("io.direktiv.command.error", f"{entry.get('command')!r} exited {proc.returncode}: {proc.stderr.strip()}")
        out.append({"result": _result(proc.stdout), "success": proc.returncode == 0})
    return ok({"bash": out})


def greeting(body: Any, headers: dict[str, str]) -> Reply:
    if not isinstance(body, dict):
        return error("com.greeting-bad-json.error", "input is not a JSON object")
    name = body.get("name")
    return ok({"greeting": f"Welcome to Direktiv, {name if isinstance(name, str) else ''}!"})


def _sidecar_log(headers: dict[str, str], text: str) -> None:
    address = headers.get("direktiv-sidecar") or os.environ.get("DIREKTIV_SIDECAR", "")
    aid = headers.get("direktiv-actionid", "")
    if not address or not aid:
        return
    req = urllib.request.Request(f"http://{address}/log?aid={urllib.parse.quote(aid)}", data=text.encode(), method="POST")
    try:
        urllib.request.urlopen(req, timeout=5).close()
    except OSError:
        pass  # a log line is not worth failing the call


def fastapi(body: Any, headers: dict[str, str]) -> Reply:
    if not isinstance(body, dict) or "name" not in body:
        return error("greeter.missing", "name is missing")
    name = body["name"]
    _sidecar_log(headers, f"I got the name {name}")
    if len(str(name)) < 3:
        return error("greeter.shortname", "name is too short")
    return ok({"msg": f"Hello {name}"})


def request(body: Any, headers: dict[str, str]) -> Reply:
    if not isinstance(body, dict) or not body.get("method") or not body.get("url"):
        return error("com.request-input.error", "method and url are required")
    url = str(body["url"])
    host = urllib.parse.urlsplit(url).hostname or ""
    if host not in ("127.0.0.1", "localhost", "::1"):
        return error("com.request-input.error", f"this stand-in only reaches loopback addresses, not {host!r}")
    if body.get("params"):
        url += ("&" if "?" in url else "?") + urllib.parse.urlencode(body["params"])
    data = body.get("body")
    raw = None if data is None else (data.encode() if isinstance(data, str) else json.dumps(data).encode())
    req = urllib.request.Request(url, data=raw, method=str(body["method"]).upper(), headers=body.get("headers") or {})
    try:
        resp = urllib.request.urlopen(req, timeout=30)
    except urllib.error.HTTPError as exc:
        resp = exc
    except OSError as exc:
        return error("com.request-perform.error", str(exc))
    with resp:
        content = resp.read()
        hdrs: dict[str, list[str]] = {}
        for name, value in resp.headers.items():
            hdrs.setdefault("-".join(p.capitalize() for p in name.split("-")), []).append(value)
        out: dict[str, Any] = {"status-code": resp.status, "status": f"{resp.status} {resp.reason}", "headers": hdrs}
    try:
        out["body"] = json.loads(content)
    except ValueError:
        out["data"] = base64.b64encode(content).decode()
    return ok(out)


_OPS: dict[type, Callable[..., Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.Mod: operator.mod, ast.Pow: operator.pow, ast.USub: operator.neg, ast.UAdd: operator.pos,
}


def _arith(node: ast.AST) -> float:
    if isinstance(node, ast.Expression):
        return _arith(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return float(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        return float(_OPS[type(node.op)](_arith(node.left), _arith(node.right)))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _OPS:
        return float(_OPS[type(node.op)](_arith(node.operand)))
    raise ValueError(f"unsupported expression element {type(node).__name__}")


def solve(body: Any, headers: dict[str, str]) -> Reply:
    expr = body.get("x") if isinstance(body, dict) else None
    if not isinstance(expr, str):
        return error("com.solve.error", "x must be an expression string")
    try:
        value = _arith(ast.parse(expr, mode="eval"))
    except (SyntaxError, ValueError, ZeroDivisionError, OverflowError) as exc:
        return error("com.solve.error", str(exc))
    text = str(int(value)) if value.is_integer() else repr(value)  # Go's %v of a float64
    return 200, text.encode(), {}


APPS: dict[str, Callable[[Any, dict[str, str]], Reply]] = {
    "bash": bash, "greeting": greeting, "fastapi": fastapi, "request": request, "solve": solve,
}


def make_handler(app: Callable[[Any, dict[str, str]], Reply]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_DELETE(self) -> None:  # a cancelled action: nothing to stop in these apps
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = None
            status, payload, extra = app(body, {k.lower(): v for k, v in self.headers.items()})
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for k, v in extra.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(payload)

    return Handler


def main() -> None:
    if len(sys.argv) != 2 or sys.argv[1] not in APPS:
        sys.exit(f"usage: standins.py {{{','.join(APPS)}}}")
    server = ThreadingHTTPServer(("127.0.0.1", int(os.environ.get("PORT", "8080"))), make_handler(APPS[sys.argv[1]]))
    server.daemon_threads = True
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
