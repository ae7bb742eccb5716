"""The ``isolde`` console script: ``isolde vars list`` without the command-line stack.

Listing variables is the command most often run from scripts, and the one where the
start of the interpreter is most of the time: click alone (with what it imports) costs
more than reading ten thousand variables.  When the arguments are plainly those of
``isolde vars list`` (the documented options, each given once, values that cannot be
mistaken for options), and the LMDB store is the one the command would open (no
``[store] url``, no third-party plugin, none disabled), the rows are read and written
here; anything else, and any error before the first row is written, goes through the
full command line (``isolde.cli``), which then behaves exactly as it always does.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # (not typing's: a short command never imports typing; docs/performance.md)
if TYPE_CHECKING:
    from typing import Any

_VARS_LIST_OPTIONS = {
    "-n": "namespace", "--namespace": "namespace", "-w": "workflow", "--workflow": "workflow",
    "--instance": "instance", "--data-dir": "data_dir", "--config": "config_path",
}


def main() -> Any:
    args = sys.argv[1:]
    if args[:2] == ["vars", "list"]:
        given = _vars_list_args(args[2:])
        try:
            if given is not None and _vars_list(given):
                return 0
        except KeyboardInterrupt:  # as the full command line ends a command interrupted by Ctrl-C
            print("\nisolde: interrupted: vars stopped (exit 130)", file=sys.stderr)
            return 130
    from .cli import main as cli_main

    return cli_main()


def _vars_list_args(args: list[str]) -> dict[str, str] | None:
    """The options of ``vars list`` by parameter name, or None for anything the fast path
    leaves to click (help, unknown or repeated options, a value that starts with '-' or
    is empty, a --data-dir that is a file or a --config that is a directory)."""
    given: dict[str, str] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        name, eq, value = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        param = _VARS_LIST_OPTIONS.get(name)
        if param is None or param in given:
            return None
        if not eq:
            if i + 1 >= len(args):
                return None
            value = args[i + 1]
            i += 1
        if not value or value.startswith("-"):
            return None
        given[param] = value
        i += 1
    if "workflow" in given and "instance" in given:
        return None
    if os.path.isfile(given.get("data_dir", "")) or os.path.isdir(given.get("config_path", "")):
        return None
    return given


def _vars_list(given: dict[str, str]) -> bool:
    """List the variables as ``isolde vars list`` does; False (nothing written) when the
    full command line must do it."""
    if (getattr(sys.stdout, "encoding", None) or "").lower().replace("-", "").replace("_", "") != "utf8":
        return False
    try:
        rows = _read_rows(given)
        if rows is None:
            return False
    except KeyboardInterrupt:
        raise
    except Exception:  # the full command line reports it, as it always has
        return False
    from .varlisting import listing_lines

    text = listing_lines(rows)
    if "\x1b" in text:  # click strips escape sequences when stdout is not a terminal
        return False
    try:
        if text:
            sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:  # the reader went away (`isolde vars list | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
    return True


def _read_rows(given: dict[str, str]) -> list[tuple[str, int, str, float]] | None:
    from .config import load_config, resolve_data_dir
    from .entrypoints import entry_points
    from .names import check_name

    namespace = given.get("namespace", "default")
    check_name(namespace, "namespace")
    owner = given.get("workflow") or given.get("instance") or ""
    scope = "workflow" if "workflow" in given else "instance" if "instance" in given else "namespace"
    cfg = load_config(given.get("config_path"))
    table = cfg.data.get("store", {})
    if table.get("url") or cfg.disabled_plugins or entry_points("isolde"):
        return None
    from .store import LmdbStore

    store = LmdbStore(resolve_data_dir(given.get("data_dir"), cfg), durable=cfg.durable,
                      blob_threshold=table.get("blob_threshold", 1 << 20))
    try:
        store.sweep_orphans()
        return store.list_listing(namespace, scope, owner)
    finally:
        store.close()


__all__ = ["main"]
