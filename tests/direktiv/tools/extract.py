"""Re-extract the Direktiv workflow corpus of tests/direktiv/corpus from fetched repositories.

Test-data tooling, not product code.  Usage:

    python tests/direktiv/tools/extract.py MIRRORS_DIR [OUT_DIR]

MIRRORS_DIR holds bare git directories named ``owner+name/repo`` (as the search tool's
``fetch`` lays them out): direktiv+direktiv, direktiv+direktiv-examples, direktiv+direktiv-apps.
OUT_DIR defaults to tests/direktiv/corpus.  The run is deterministic: the same mirrors give
the same files and MANIFEST.tsv.

Sources scanned:
* direktiv/direktiv at every release tag v0.1 ... v0.10.0 (markdown, YAML, JS/TS/Go strings
  holding ``states:``), each distinct blob cited at the first tag that holds it;
* direktiv/direktiv-examples and direktiv/direktiv-apps over their whole first-parent history
  (oldest first), each distinct blob cited at the first commit that holds it.

Block locators are those of shared/corpus/MANIFEST.md: ``file``, ``md-block#N@L`` (N-th
opening fence, 0-based, of language yaml/yml/none), ``str#N@L`` (N-th backtick string that
contains ``states:``; ``${...}`` becomes ``TEMPLATE``).  Documents are deduplicated on the
parsed YAML; the 36 documents of shared/corpus are left out.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHARED = ROOT.parents[2] / "shared" / "corpus"
if not SHARED.is_dir():
    SHARED = Path("/work/shared/corpus")

EXTS = (".md", ".yaml", ".yml", ".js", ".ts", ".go")
SKIP_DIRS = ("node_modules/", "vendor/", "/testdata/charts", "ui/node_modules")

V = tuple[int, int, int]
LOW: V = (0, 1, 0)
HIGH: V = (0, 10, 0)


def ver(text: str) -> V:
    parts = [int(p) for p in re.findall(r"\d+", text)[:3]]
    while len(parts) < 3:
        parts.append(0)
    return (parts[0], parts[1], parts[2])


def vtext(v: V) -> str:
    return ".".join(str(p) for p in v)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "--git-dir", str(repo), *args], check=True, capture_output=True).stdout.decode("utf-8", "replace")


# --------------------------------------------------------------------------- blocks


@dataclass
class Block:
    locator: str
    text: str


def md_blocks(text: str) -> Iterator[Block]:
    lines = text.split("\n")
    n = -1
    i = 0
    while i < len(lines):
        m = re.match(r"^(\s*)(```+|~~~+)\s*([\w+-]*)", lines[i])
        if not m:
            i += 1
            continue
        n += 1
        indent, fence, lang = m.group(1), m.group(2), m.group(3).lower()
        start = i + 1
        j = start
        while j < len(lines) and not lines[j].strip().startswith(fence[:3]):
            j += 1
        body = "\n".join(line[len(indent):] if line.startswith(indent) else line for line in lines[start:j])
        if lang in ("yaml", "yml", "") and "states:" in body:
            yield Block(f"md-block#{n}@{i + 1}", textwrap.dedent(body))
        i = j + 1


def str_blocks(text: str) -> Iterator[Block]:
    n = -1
    for m in re.finditer(r"`([^`]*)`", text):
        body = m.group(1)
        if "states:" not in body:
            continue
        n += 1
        line = text.count("\n", 0, m.start()) + 1
        body = re.sub(r"\$\{[^}]*\}", "TEMPLATE", body).strip("\n")
        yield Block(f"str#{n}@{line}", textwrap.dedent(body))


def blocks(path: str, text: str) -> Iterator[Block]:
    if path.endswith((".yaml", ".yml")):
        if re.search(r"^states:", text, re.M):
            yield Block("file", text)
    elif path.endswith(".md"):
        yield from md_blocks(text)
    else:
        yield from str_blocks(text)


# --------------------------------------------------------------------------- era and acceptance

STATE_TYPES: dict[str, tuple[V, V]] = {
    **{t: (LOW, HIGH) for t in ("action", "consumeEvent", "delay", "error", "foreach", "generateEvent",
                                "noop", "parallel", "switch", "validate", "eventAnd", "eventXor")},
    "getter": ((0, 2, 3), HIGH), "setter": ((0, 2, 3), HIGH),
    "eventsAnd": ((0, 6, 1), HIGH), "eventsXor": ((0, 6, 1), HIGH),
    "callback": (LOW, (0, 7, 0)),
}
FUNCTION_TYPES: dict[str, tuple[V, V]] = {
    "reusable": ((0, 4, 0), HIGH), "knative-workflow": ((0, 6, 1), HIGH),
    "isolated": ((0, 3, 4), (0, 6, 0)), "knative-namespace": ((0, 4, 0), HIGH),
    "knative-global": ((0, 4, 0), (0, 7, 0)), "knative-system": ((0, 8, 6), HIGH),
    "subflow": ((0, 4, 0), HIGH), "default": ((0, 3, 4), (0, 3, 4)),
}
EXPR_FIELDS = ("transform", "condition", "defaultTransform", "value", "input", "array", "log", "subject", "data")


@dataclass
class Verdict:
    status: str = "valid"  # or "bad: <reason>"
    lo: V = LOW
    hi: V = HIGH
    signals: list[str] = field(default_factory=list)
    raw_jq: bool = False

    def need(self, lo: V, hi: V, why: str) -> None:
        self.signals.append(f"{why}[{vtext(lo)}-{vtext(hi)}]")
        self.lo = max(self.lo, lo)
        self.hi = min(self.hi, hi)

    def bad(self, reason: str) -> None:
        if self.status == "valid":
            self.status = "bad: " + reason


def walk(node: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield str(k), v
            yield from walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from walk(v)


def actions_of(state: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    if isinstance(state.get("action"), dict):
        out.append(state["action"])
    for a in state.get("actions") or []:
        if isinstance(a, dict):
            out.append(a)
    return out


def judge(doc: Any) -> Verdict:
    v = Verdict()
    text = json.dumps(doc, default=str)
    if "jq(" in text:
        v.need((0, 3, 3), HIGH, "jq()")
    if "js(" in text:
        v.need((0, 6, 1), HIGH, "js()")
    if "id" in doc:
        v.need(LOW, (0, 6, 0), "top-level id")
    if "url" in doc:
        v.need((0, 6, 1), HIGH, "url")
    if "direktiv_api" in doc:
        v.need((0, 8, 0), HIGH, "direktiv_api")
    if "version" in doc:
        v.need((0, 2, 4), (0, 6, 0), "version")
    if "schemas" in doc:
        v.need(LOW, (0, 5, 10), "schemas")
    states = doc["states"]
    ids = [s.get("id") for s in states if isinstance(s, dict)]
    if len(ids) != len(set(ids)):
        v.bad("duplicate state id")
    fids = []
    for f in doc.get("functions") or []:
        if not isinstance(f, dict):
            v.bad("function is not a mapping")
            continue
        fids.append(f.get("id"))
        t = f.get("type")
        if t is None:
            v.need(LOW, (0, 3, 4), "function without type")
        elif t in FUNCTION_TYPES:
            v.need(*FUNCTION_TYPES[t], f"function type {t}")
        else:
            v.bad(f"unknown function type {t!r}")
        if "files" in f:
            v.need((0, 2, 4), (0, 6, 0), "function files")
        if "envs" in f or "patches" in f:
            v.need((0, 8, 1), HIGH, "function envs/patches")
        if "scale" in f and t is not None:
            v.need(LOW, (0, 6, 99), "function scale")
        if isinstance(f.get("service"), str) and t in ("knative-namespace", "knative-global"):
            if f["service"].startswith("/"):
                v.need((0, 8, 1), HIGH, "service path")
            else:
                v.need(LOW, (0, 8, 0), "service name")
    if len(fids) != len(set(fids)):
        v.bad("duplicate function id")
    start = doc.get("start")
    if isinstance(start, dict):
        if start.get("state") is not None and start.get("state") not in ids:
            v.bad(f"start state {start.get('state')!r} does not exist")
        ev = start.get("event")
        if isinstance(ev, dict):
            if "filters" in ev:
                v.need(LOW, (0, 6, 0), "start.event.filters")
            if "context" in ev:
                v.need((0, 6, 1), HIGH, "start.event.context")
        if "correlate" in start:
            v.need(LOW, (0, 6, 0), "start.correlate")
        if start.get("type") == "default" and "state" not in start:
            pass
    for s in states:
        if not isinstance(s, dict):
            v.bad("state is not a mapping")
            continue
        sid, t = s.get("id"), s.get("type")
        if sid is None:
            v.bad("state without id")
        if t not in STATE_TYPES:
            v.bad(f"state {sid!r}: unknown state type {t!r}")
        else:
            v.need(*STATE_TYPES[t], f"state type {t}")
        for key in ("transition", "defaultTransition"):
            if s.get(key) and s[key] not in ids:
                v.bad(f"state {sid!r}: {key} to unknown state {s[key]!r}")
        for sub in (s.get("conditions") or []) + (s.get("events") or []) + (s.get("catch") or []):
            if isinstance(sub, dict) and sub.get("transition") and sub["transition"] not in ids:
                v.bad(f"state {sid!r}: transition to unknown state {sub['transition']!r}")
        if "metadata" in s:
            v.need((0, 6, 1), HIGH, "state metadata")
        if "retries" in s:
            v.need((0, 2, 3), (0, 3, 0), "state retries")
        if "default" in s and t == "switch":
            v.need(LOW, (0, 2, 2), "switch default")
        for c in s.get("catch") or []:
            if isinstance(c, dict) and "retry" in c:
                v.need(LOW, (0, 2, 2), "catch retry")
        for a in actions_of(s):
            fn = a.get("function")
            if "workflow" in a:
                v.need(LOW, (0, 3, 4), "action.workflow")
            if fn and fn not in fids and "TEMPLATE" not in str(fn):
                v.bad(f"state {sid!r}: function {fn!r} is not declared")
            if "files" in a:
                v.need((0, 6, 1), HIGH, "action.files")
            r = a.get("retries")
            if isinstance(r, dict):
                if "max_attempts" in r:
                    v.need((0, 3, 1), HIGH, "retries.max_attempts")
                if "maxAttempts" in r:
                    v.need(LOW, (0, 3, 0), "retries.maxAttempts")
        if t == "error" and ("error" not in s or "message" not in s):
            v.bad(f"state {sid!r}: error state needs error and message")
        if t == "delay" and "duration" not in s:
            v.bad(f"state {sid!r}: delay needs duration")
        if t == "validate" and "schema" not in s:
            v.bad(f"state {sid!r}: validate needs schema")
        if t == "switch" and not s.get("conditions"):
            v.bad(f"state {sid!r}: switch needs conditions")
        if t in ("getter", "setter"):
            for var in s.get("variables") or []:
                if isinstance(var, dict):
                    if "as" in var:
                        v.need((0, 6, 1), HIGH, "getter as")
                    if var.get("scope") == "file":
                        v.need((0, 8, 0), HIGH, "scope file")
                    if var.get("scope") == "thread":
                        v.need((0, 6, 0), HIGH, "scope thread")
                    if "mimeType" in var:
                        v.need((0, 5, 9), HIGH, "mimeType")
        if t in ("getter", "setter", "parallel", "foreach") and not (s.get("variables") or s.get("actions") or s.get("action")):
            v.bad(f"state {sid!r}: {t} needs its list/action")
        # raw-jq: an expression field that is a plain string without jq(
        for k in ("transform", "condition"):
            for key, val in walk(s):
                if key == k and isinstance(val, str) and val.strip() not in ("", ".") and "jq(" not in val and "js(" not in val:
                    v.raw_jq = True
    if v.status == "valid" and v.lo > v.hi:
        v.bad("no release accepts this mix: " + ", ".join(v.signals))
    return v


def canonical(doc: Any) -> str:
    return json.dumps(doc, sort_keys=True, default=str, separators=(",", ":"))


def era_folder(v: Verdict, hint: V) -> str:
    if v.status != "valid":
        return "invalid"
    if v.lo >= (0, 6, 1):
        return "v06-v10-knative"
    if v.hi <= (0, 3, 4) or (v.raw_jq and "jq()" not in " ".join(v.signals)):
        return "v01-v03-raw-jq"
    if v.hi <= (0, 6, 0):
        return "v04-v06-structured"
    return "v06-v10-knative" if hint >= (0, 6, 1) else "v04-v06-structured"


# --------------------------------------------------------------------------- sources


@dataclass
class Found:
    repo: str
    commit: str
    ref: str
    path: str
    block: Block
    hint: V


def candidate(path: str) -> bool:
    return path.endswith(EXTS) and not any(s in path for s in SKIP_DIRS)


def from_refs(repo_name: str, gitdir: Path, refs: list[tuple[str, V]]) -> Iterator[Found]:
    seen_blobs: set[str] = set()
    for ref, hint in refs:
        commit = git(gitdir, "rev-parse", ref + "^{commit}").strip()
        for line in git(gitdir, "ls-tree", "-r", commit).splitlines():
            meta, path = line.split("\t", 1)
            _, kind, blob = meta.split()
            if kind != "blob" or blob in seen_blobs or not candidate(path):
                continue
            seen_blobs.add(blob)
            data = subprocess.run(["git", "--git-dir", str(gitdir), "cat-file", "blob", blob], capture_output=True).stdout
            if b"states:" not in data or len(data) > 400_000:
                continue
            text = data.decode("utf-8", "replace")
            for b in blocks(path, text):
                yield Found(repo_name, commit, ref, path, b, hint)


def date_hint(gitdir: Path, commit: str) -> V:
    day = git(gitdir, "show", "-s", "--format=%cs", commit).strip()
    if day < "2021-09-01":
        return (0, 3, 0)
    if day < "2022-04-03":
        return (0, 5, 0)
    if day < "2023-01-01":
        return (0, 7, 0)
    return (0, 9, 0)


def sources(mirrors: Path) -> Iterator[Found]:
    d = mirrors / "direktiv+direktiv" / "repo"
    tags = [t for t in git(d, "tag").split() if re.fullmatch(r"v\d+\.\d+(\.\d+)?", t)]
    tags.sort(key=ver)
    yield from from_refs("direktiv/direktiv", d, [(t, ver(t)) for t in tags])
    for name in ("direktiv-examples", "direktiv-apps"):
        g = mirrors / f"direktiv+{name}" / "repo"
        commits = git(g, "rev-list", "--first-parent", "--reverse", "HEAD").split()
        yield from from_refs(f"direktiv/{name}", g, [(c, date_hint(g, c)) for c in commits])


def slug(path: str, locator: str) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", path.lower().rsplit(".", 1)[0]).strip("-")[-60:].strip("-")
    if locator != "file":
        base += "-" + re.sub(r"[^a-z0-9]+", "", locator.split("@")[0].split("#")[1])
    return base


def main() -> None:
    mirrors = Path(sys.argv[1])
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else ROOT / "corpus"
    shared = set()
    for p in SHARED.rglob("*.yaml"):
        try:
            shared.add(canonical(yaml.safe_load(p.read_text())))
        except yaml.YAMLError:
            shared.add("raw:" + hashlib.sha256(p.read_bytes()).hexdigest())
    overrides = {}
    ov = HERE / "overrides.tsv"
    if ov.exists():
        for line in ov.read_text().splitlines():
            if line and not line.startswith("#"):
                key, status = line.split("\t", 1)
                overrides[key] = status
    seen: set[str] = set()
    rows = []
    names: set[str] = set()
    for f in sources(mirrors):
        try:
            doc = yaml.safe_load(f.block.text)
            key = canonical(doc)
        except yaml.YAMLError as exc:
            if f.block.locator != "file" and not re.search(r"^states:", f.block.text, re.M):
                continue
            doc, key = None, "raw:" + hashlib.sha256(f.block.text.encode()).hexdigest()
            mark = getattr(exc, "problem_mark", None)
            reason = f"bad: YAML parse error at {mark.line + 1}:{mark.column + 1}" if mark else "bad: YAML parse error"
        if key in seen or key in shared:
            continue
        if doc is not None:
            if not isinstance(doc, dict) or not isinstance(doc.get("states"), list) or not doc["states"]:
                continue
            v = judge(doc)
            reason = v.status
            folder = era_folder(v, f.hint)
            lo, hi = (v.lo, v.hi) if v.lo <= v.hi else (f.hint, f.hint)
            era = f"{vtext(lo)}-{vtext(hi)}"
        else:
            folder, era = "invalid", f"~{vtext(f.hint)}"
        seen.add(key)
        cite = f"{f.repo}:{f.path}:{f.block.locator}"
        if cite in overrides:
            reason = overrides[cite]
            if reason.startswith("bad") and folder != "invalid":
                folder = "invalid"
        name = slug(f.path, f.block.locator)
        n = 2
        base = name
        while f"{folder}/{name}" in names:
            name = f"{base}-{n}"
            n += 1
        names.add(f"{folder}/{name}")
        rows.append((f"{folder}/{name}.yaml", f.repo, f.commit, f.ref, f.path, f.block.locator, era, reason, f.block.text))
    if out.exists():
        for p in out.rglob("*.yaml"):
            p.unlink()
    for rel, *_rest, text in rows:
        p = out / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    head = "file\trepository\tcommit\tref\tpath\tblock\tera\tstatus\n"
    (out / "MANIFEST.tsv").write_text(head + "".join("\t".join(r[:8]) + "\n" for r in rows))
    print(f"{len(rows)} documents written to {out}")


if __name__ == "__main__":
    main()
