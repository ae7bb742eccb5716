"""An isolate that reads ``files`` and writes variables back through ``out/<scope>/``.

Standard library only.  Each call gets its own folder, named in the header
``Direktiv-TempDir``; the workflow's ``files:`` entries are already in it (a
variable as a file, a tar.gz variable as a directory).  Whatever the isolate
leaves in ``out/instance``, ``out/workflow`` or ``out/namespace`` becomes a
variable of that scope once the call returns: a file by its name, a directory
as a tar.gz of its contents.

This one counts the words of ``notes.txt`` (a file variable), lists the
``templates`` directory (a tar.gz variable), then writes:

* ``out/workflow/wordcount``  - the count, a workflow variable;
* ``out/instance/summary``    - a JSON summary, an instance variable;
* ``out/namespace/report/``   - a directory, stored as the tar.gz variable ``report``.
"""

from __future__ import annotations

import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def act(folder: Path) -> dict:
    notes = folder / "notes.txt"
    words = len(notes.read_text().split()) if notes.is_file() else 0
    templates = folder / "templates"
    names = sorted(p.relative_to(templates).as_posix() for p in templates.rglob("*") if p.is_file())

    out = folder / "out"
    (out / "workflow" / "wordcount").write_text(str(words))
    (out / "instance" / "summary").write_text(json.dumps({"words": words, "templates": names}))
    report = out / "namespace" / "report"
    (report / "parts").mkdir(parents=True)
    (report / "README").write_text(f"{words} words\n")
    (report / "parts" / "templates.txt").write_text("\n".join(names) + "\n")
    return {"words": words, "templates": names}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        reply = json.dumps(act(Path(self.headers["Direktiv-TempDir"]))).encode()
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
