"""In-process callables for ``type: python`` functions in the tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from isolde import WorkflowError


def greet(data: Any, request: Any) -> dict[str, Any]:
    """Greets ``name``; writes ``out/instance/greeted`` and reports what it was given."""
    folder = Path(request.temp_dir)
    (folder / "out" / "instance" / "greeted").write_text(data.get("name", ""))
    return {
        "greeting": f"Hello {data.get('name')}",
        "aid": request.action_id,
        "sidecar": request.sidecar,
        "files": sorted(p.name for p in folder.iterdir()),
    }


def fail(data: Any, request: Any) -> None:
    raise WorkflowError("py.failed", f"cannot handle {data.get('name')}")


def crash(data: Any, request: Any) -> None:
    raise RuntimeError("boom")


def wait(data: Any, request: Any) -> dict[str, Any]:
    request.cancelled.wait(10)
    return {"waited": True}
