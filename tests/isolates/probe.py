"""A test isolate: a stdlib HTTP server speaking Direktiv's action protocol.

Started by the tests as a real process (``$PORT``), it does what the action
input's ``op`` asks, so one program covers every case:

``echo``      reply ``{"input": ..., "headers": {Direktiv-* headers}, "pid": ...}``
``tree``      reply ``{"tree": {relative path: text | "<dir>"}}`` of ``Direktiv-TempDir``
``out``       write ``files`` ({"instance/a": "text"}) and ``dirs`` ({"workflow/d": {"x": "text"}})
              under the folder's ``out/``, then answer like ``echo`` (or ``error`` when ``code`` is given)
``error``     reply with ``Direktiv-ErrorCode: code`` / ``Direktiv-ErrorMessage: msg``
``message``   reply with only ``Direktiv-ErrorMessage``
``status``    reply HTTP ``status`` with a plain body and no error headers
``text``      reply a non-JSON body
``hang``      wait (up to ``seconds``) until a ``DELETE`` for this action id arrives
``sidecar``   run ``calls`` against the sidecar (``[method, "/var?scope=..&key=..", body]``, optionally
              with a fourth item of request headers; ``aid`` is added) and reply their statuses and
              bodies (each also recorded as it comes); a call ``["WAIT", path, seconds]`` instead
              waits until the file ``path`` exists
``symlink``   create ``out/<scope>/<name>`` as a symlink to ``target``

Every request (method, action id, op) is appended as a JSON line to ``$RECORD``
when set, so a test can tell whether the isolate was called and got its DELETE.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

RECORD = os.environ.get("RECORD")
_lock = threading.Lock()
_cancelled: dict[str, threading.Event] = {}


def record(entry: dict[str, Any]) -> None:
    if not RECORD:
        return
    with _lock, open(RECORD, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(entry) + "\n")


def cancel_event(aid: str) -> threading.Event:
    with _lock:
        return _cancelled.setdefault(aid, threading.Event())


def tree(root: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            out[rel] = "<link>"
        elif path.is_dir():
            out[rel] = "<dir>"
        else:
            data = path.read_bytes()
            try:
                out[rel] = data.decode("utf-8")
            except UnicodeDecodeError:
                out[rel] = "base64:" + base64.b64encode(data).decode()
    return out


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def reply(self, status: int, body: bytes, headers: dict[str, str] | None = None, mime: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", mime)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_DELETE(self) -> None:
        aid = self.headers.get("Direktiv-ActionID", "")
        record({"method": "DELETE", "aid": aid})
        cancel_event(aid).set()
        self.reply(200, b"")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        data = json.loads(raw) if raw else {}
        op = data.get("op", "echo") if isinstance(data, dict) else "echo"
        aid = self.headers.get("Direktiv-ActionID", "")
        record({"method": "POST", "aid": aid, "op": op})
        temp = Path(self.headers.get("Direktiv-TempDir", "."))
        hdrs = {k: v for k, v in self.headers.items() if k.lower().startswith("direktiv-")}
        hdrs["Content-Type"] = self.headers.get("Content-Type", "")
        if op == "tree":
            self.reply(200, json.dumps({"tree": tree(temp)}).encode())
        elif op == "out":
            for rel, text in (data.get("files") or {}).items():
                target = temp / "out" / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text)
            for rel, members in (data.get("dirs") or {}).items():
                for name, text in members.items():
                    target = temp / "out" / rel / name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_text(text)
            if data.get("code"):
                self.reply(200, b"{}", {"Direktiv-ErrorCode": data["code"], "Direktiv-ErrorMessage": data.get("msg", "")})
            else:
                self.reply(200, json.dumps({"written": True}).encode())
        elif op == "error":
            self.reply(200, b"", {"Direktiv-ErrorCode": data.get("code", ""), "Direktiv-ErrorMessage": data.get("msg", "")})
        elif op == "message":
            self.reply(500, b"", {"Direktiv-ErrorMessage": data.get("msg", "it broke")})
        elif op == "status":
            self.reply(int(data.get("status", 500)), b"something went wrong", mime="text/plain")
        elif op == "text":
            self.reply(200, b"hello, not json", mime="text/plain")
        elif op == "hang":
            got = cancel_event(aid).wait(float(data.get("seconds", 30)))
            record({"method": "HANG-END", "aid": aid, "cancelled": got})
            self.reply(200, b"{}")
        elif op == "sidecar":
            address = self.headers.get("Direktiv-Sidecar") or os.environ.get("DIREKTIV_SIDECAR", "")
            results = []
            for method, path, body, *more in data.get("calls", []):
                if method == "WAIT":
                    gate = Path(path)
                    ends = time.monotonic() + float(body)
                    while not gate.exists() and time.monotonic() < ends:
                        time.sleep(0.02)
                    continue
                sep = "&" if "?" in path else "?"
                url = f"http://{address}{path}{sep}aid={aid}"
                req = urllib.request.Request(url, data=None if body is None else body.encode(), method=method,
                                             headers=more[0] if more else {})
                try:
                    with urllib.request.urlopen(req, timeout=30) as resp:
                        results.append([resp.status, resp.read().decode("utf-8", "replace")])
                except urllib.error.HTTPError as exc:
                    results.append([exc.code, exc.read().decode("utf-8", "replace")])
                record({"method": "SIDECAR", "aid": aid, "call": [method, path], "result": results[-1]})
            self.reply(200, json.dumps({"results": results, "aid": aid, "env": os.environ.get("DIREKTIV_SIDECAR")}).encode())
        elif op == "symlink":
            link = temp / "out" / data.get("scope", "instance") / data["name"]
            os.symlink(data["target"], link)
            self.reply(200, b"{}")
        else:
            self.reply(200, json.dumps({"input": data, "headers": hdrs, "pid": os.getpid()}).encode())


def main() -> None:
    port = int(os.environ.get("PORT") or (sys.argv[1] if len(sys.argv) > 1 else 8080))
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    server.handle_error = lambda request, address: None  # type: ignore[method-assign]  # a cancelled client hung up
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
