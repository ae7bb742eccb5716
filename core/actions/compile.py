"""Compiling the ``action`` mapping of a state (``action``, ``foreach``, ``parallel``, or a
third-party state) into an :class:`ActionSpec`, once, at load time."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Mapping

from ..workflow import Workflow, workflow_dir
from .spec import RETRY_DEFAULT_DELAY, ActionSpec, FileItem

if TYPE_CHECKING:
    from ..report import Report

DECLARATIONS = """
struct action "One call of a function." {
    function: funcid       "The id of a function declared in `functions` (required unless `workflow` is given)."
    workflow: string       "Direktiv <=0.3.4: a subflow called by its workflow id, in place of `function` (a document whose functions carry a `type` may not use it)."
    input: jx              "The input sent to the function, evaluated against the state data (default: the whole state data)."
    secrets: [string]      "Secrets placed at .secrets.NAME while `input` is evaluated (from [secrets] in isolde.toml or $ISOLDE_SECRET_NAME)."
    retries: retries       "Call again when the call fails with a matching error code."
    files: [file]          "Variables written into the action folder before the call (Knative era; added to the function's files)."
}
struct retries "Retry policy of an action." {
    max_attempts!: int     "How many times to call again after the first failure; then direktiv.retries.exceeded."
    delay: duration        "Wait before the first retry (default PT5S)."
    multiplier: number     "Each further retry waits this many times longer than the one before (default 1)."
    codes!: [string]       "Error codes to retry: regular expressions searched in the code (\\"*\\" or \\".*\\" match any)."
}
struct file "A variable written into the action folder before the call." {
    key!: varkey | string  "The variable's key (for scope file: a path relative to the workflow's directory)."
    scope: "instance" | "workflow" | "namespace" | "thread" | "file" = "instance"  "Where the variable lives; thread means instance; file is a file beside the workflow."
    as: relpath            "The file or directory name in the action folder (default: the key)."
    type: "plain" | "base64" | "tar" | "tar.gz" = "plain"  "plain: the bytes; base64: decoded; tar / tar.gz: unpacked into a directory."
    permissions: string    "Octal mode of the written file, e.g. \\"0755\\" (group/other write, setuid, setgid and sticky bits are dropped)."
}
"""
"""Declarations every state that calls functions shares (the engine adds them to the schema)."""


def compile_action(
    action: Mapping[str, Any], workflow: Workflow, report: Report | None = None, path: tuple[Any, ...] = ()
) -> ActionSpec:
    """Compile the validated fields of an ``action`` mapping (bad retry patterns are
    reported at ``path``)."""
    fid, function = _callee(action, workflow, report, path)
    files = [_file_item(f) for f in function.get("files") or ()]
    files += [_file_item(f) for f in action.get("files") or ()]
    spec = ActionSpec(
        function_id=fid,
        function=function,
        input=action.get("input"),
        secrets=tuple(action.get("secrets") or ()),
        files=tuple(files),
        base_dir=workflow_dir(workflow),
    )
    retries = action.get("retries")
    if retries:
        spec.retry_max = int(retries["max_attempts"])
        spec.retry_delay = float(retries.get("delay", RETRY_DEFAULT_DELAY))
        spec.retry_multiplier = float(retries.get("multiplier") or 1.0)
        codes = []
        for i, pattern in enumerate(retries["codes"]):
            text = ".*" if pattern == "*" else pattern
            try:
                codes.append(re.compile(text))
            except re.error as exc:
                if report is not None:
                    report.error(path + ("retries", "codes", i), f"invalid regular expression {pattern!r}: {exc}")
        spec.retry_codes = tuple(codes)
        if spec.retry_max < 0 and report is not None:
            report.error(path + ("retries", "max_attempts"), "max_attempts must be 0 or more")
    return spec


def _callee(
    action: Mapping[str, Any], workflow: Workflow, report: Report | None, path: tuple[Any, ...]
) -> tuple[str, Mapping[str, Any]]:
    """The function an action calls: ``function`` (declared), or, in Direktiv <=0.3.4
    documents, ``workflow: NAME`` (a subflow by its id, resolved like a ``subflow`` function)."""
    fid, name = action.get("function"), action.get("workflow")
    if name is None:
        if fid is None:
            if report is not None:
                report.error(path, "missing required field 'function' in action (or, in Direktiv <=0.3.4 documents, 'workflow')")
            return "", {"id": "", "type": "subflow", "workflow": ""}
        return str(fid), workflow.functions[fid]
    if fid is not None and report is not None:
        report.error(path + ("workflow",), "an action calls either a 'function' or a 'workflow', not both")
    typed = [f for f in workflow.document.value.get("functions") or () if isinstance(f, dict) and "type" in f]
    if typed and report is not None:
        report.error(path + ("workflow",), "'workflow:' in an action is the Direktiv <=0.3.4 form, and this document "
                     "declares typed functions (0.4.0+); declare a function of type subflow and call it with 'function:'")
    return f"workflow:{name}", {"id": f"workflow:{name}", "type": "subflow", "workflow": str(name)}


def _file_item(f: Mapping[str, Any]) -> FileItem:
    perms = f.get("permissions")
    mode: int | None = None
    if perms is not None:
        try:
            mode = int(str(perms), 8)
        except ValueError:
            mode = -1  # reported when the action runs (validation stays lenient, as Direktiv's)
    return FileItem(f["key"], f.get("scope") or "instance", f.get("as"), f.get("type") or "plain", mode)


__all__ = ["DECLARATIONS", "compile_action"]
