"""An isolate that reads and writes variables and logs through the sidecar.

Standard library only.  While its action runs, an isolate may call isolde's
sidecar, a loopback HTTP server whose address comes in the header
``Direktiv-Sidecar`` (and ``$DIREKTIV_SIDECAR`` for programs isolde starts;
Direktiv's own ``localhost:8889`` is the default).  Every request carries the
action id from ``Direktiv-ActionID`` as ``aid``:

* ``GET  /var?aid=&scope=&key=``  the variable's bytes (empty when missing)
* ``POST /var?aid=&scope=&key=``  store the body (an empty body deletes it)
* ``POST /log?aid=``              one line in the instance log

This one keeps a visit counter in the namespace variable ``visits``, remembers
the last visitor in the workflow variable ``last``, and logs both.  Writes are
committed when the sidecar answers, so the next state already sees them.
"""

from __future__ import annotations

import json
import os
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Sidecar:
    def __init__(self, address: str, aid: str) -> None:
        self.base = f"http://{address}"
        self.aid = aid

    def _url(self, path: str, **query: str) -> str:
        return f"{self.base}{path}?{urllib.parse.urlencode({'aid': self.aid, **query})}"

    def get(self, scope: str, key: str) -> bytes:
        with urllib.request.urlopen(self._url("/var", scope=scope, key=key), timeout=10) as resp:
            return resp.read()

    def set(self, scope: str, key: str, data: bytes, mime: str = "application/json") -> None:
        req = urllib.request.Request(self._url("/var", scope=scope, key=key), data=data, method="POST",
                                     headers={"Content-Type": mime})
        urllib.request.urlopen(req, timeout=10).close()

    def log(self, message: str) -> None:
        req = urllib.request.Request(self._url("/log"), data=message.encode(), method="POST")
        urllib.request.urlopen(req, timeout=10).close()


def act(data: dict, sidecar: Sidecar) -> dict:
    visitor = data.get("name", "someone") if isinstance(data, dict) else "someone"
    raw = sidecar.get("namespace", "visits")
    visits = (json.loads(raw) if raw else 0) + 1
    sidecar.set("namespace", "visits", json.dumps(visits).encode())
    previous = sidecar.get("workflow", "last").decode() or None
    sidecar.set("workflow", "last", visitor.encode(), mime="text/plain")
    sidecar.log(f"visit {visits}: {visitor} (previous visitor: {previous})")
    return {"visits": visits, "previous": previous}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        address = self.headers.get("Direktiv-Sidecar") or os.environ.get("DIREKTIV_SIDECAR", "localhost:8889")
        sidecar = Sidecar(address, self.headers["Direktiv-ActionID"])
        reply = json.dumps(act(json.loads(body or b"{}"), sidecar)).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: object) -> None:
        pass


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "8080"))
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
