"""A greeter isolate: the smallest program that speaks Direktiv's action protocol.

Standard library only; copy it and change ``act``.  isolde starts it with the
port to listen on in ``$PORT`` (8080 when run by hand), POSTs the action input
as JSON to ``/`` and stores the JSON reply at ``.return``.

    {"name": "Trent"}  ->  {"greeting": "Welcome to Direktiv, Trent!"}

A missing name is reported as a catchable error: the reply carries the headers
``Direktiv-ErrorCode`` (matched by ``catch``) and ``Direktiv-ErrorMessage``.
"""

from __future__ import annotations

import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def act(data: dict) -> dict:
    name = data.get("name") if isinstance(data, dict) else None
    if not isinstance(name, str) or not name:
        raise ActionError("greeter.noname", "the input needs a \"name\" string")
    return {"greeting": f"Welcome to Direktiv, {name}!"}


class ActionError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: isolde reuses the connection
    disable_nagle_algorithm = True  # reply without a 40 ms delayed-ACK stall

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {"Content-Type": "application/json"}
        try:
            reply = json.dumps(act(json.loads(body or b"{}"))).encode()
        except ActionError as exc:
            reply = b""
            headers["Direktiv-ErrorCode"] = exc.code
            headers["Direktiv-ErrorMessage"] = exc.message
        self.send_response(200)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def do_DELETE(self) -> None:  # the action timed out: nothing to stop here
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep isolde's stderr for the instance log


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "8080"))
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
