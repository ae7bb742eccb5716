"""Write tests/direktiv/behaviour/*.yaml, one case per ported Direktiv behavioural test (test-data
tooling: the YAML files are the data; this is how they were written).  Each case names its source;
workflow texts of Direktiv's JS tests are copied verbatim, Go unit tests of the state logic and
DIREKTIV-ERAS.md rows are written as the smallest workflow that shows the asserted behaviour.
Where a ported test waits on a long ISO duration that its assertion does not depend on (retry
delays, kill/interrupt timeouts, a delay loop), the duration is shortened and the case's test name
says so, so that the suite stays fast.

    python tests/direktiv/tools/make_behaviour.py
"""
import json
from pathlib import Path

import yaml

OUT = Path(__file__).resolve().parents[1] / "behaviour"


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value and not value.startswith(("\n", " ")) and " \n" not in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


yaml.SafeDumper.add_representer(str, _text)
D = "direktiv/direktiv"
V10 = "6156f450798d002ab52bd933a03dd1ffaf545a20"
V08 = "d1093d4cae740ab864a46f8e5381b5c164fbe291"
V06 = "8b79ebc86c1ea133339ffa77e761b5ec4299a3bc"
V032 = "2487e0d96db812e13e2f32690140f702a30b9f32"
EX = ("direktiv/direktiv-examples", "67f68dfb4277521f953813938ff45618b92b9c80")
cases = []

def case(name, covers, src, files, expect, run=None, **kw):
    repo, commit, path, test = src
    c = {"name": name, "covers": covers,
         "source": {"repository": repo, "commit": commit, "path": path, "test": test}}
    c.update(kw)
    c["files"] = files
    c["run"] = run or next(iter(files))
    c["expect"] = expect
    cases.append(c)

def js(path, test, commit=V10): return (D, commit, path, test)
def go(path, test, commit=V10): return (D, commit, path, test)
def eras(section): return (D, V10, "pkg/ (via shared/DIREKTIV-ERAS.md " + section + ")", "reference row " + section)

NOOP = "\nstates:\n- id: a\n  type: noop\n  transform:\n    result: x"
# ---------------------------------------------------------------- engine e2e (tests/engine)
case("noop", ["noop"], js("tests/engine/noop.test.js", "should invoke the '/noop.yaml' workflow"),
     {"noop.yaml": NOOP}, {"status": "complete", "output": {"result": "x"}})
case("simple-chain", ["noop", "transform"], js("tests/engine/simple-chain.test.js", "should invoke the '/simple-chain.yaml' workflow"),
     {"simple-chain.yaml": "\nstates:\n- id: a\n  type: noop\n  transform:\n    a: x\n  transition: b\n- id: b\n  type: noop\n  transform:\n    a: jq(.a)\n    b: y\n  transition: c\n- id: c\n  type: noop\n  transform:\n    a: jq(.a)\n    b: jq(.b)\n    c: z"},
     {"status": "complete", "output": {"a": "x", "b": "y", "c": "z"}})
case("simple-loop", ["switch", "jq-template"], js("tests/engine/simple-loop.test.js", "should invoke the '/simple-loop.yaml' workflow"),
     {"simple-loop.yaml": "\nstates:\n- id: a\n  type: noop\n  transform:\n    i: 5\n    result: []\n  transition: b\n- id: b\n  type: switch\n  conditions:\n  - condition: 'jq(.i)'\n    transition: c\n- id: c\n  type: noop\n  transform: 'jq(.result += [.i] | .i -= 1)'\n  transition: b"},
     {"status": "complete", "output": {"i": 0, "result": [5, 4, 3, 2, 1]}})
for given, out, tid in ((None, {}, "no input"), ({"x": 5}, {"x": 5}, "object"), ([1, 2, 3], {"input": [1, 2, 3]}, "array")):
    case(f"instance-data-{tid.replace(' ', '-')}", ["input-wrapping"], js("tests/engine/instance-data.test.js", f"should invoke the '/instance-data.yaml' workflow ({tid})"),
         {"instance-data.yaml": "\nstates:\n- id: a\n  type: noop"}, {"status": "complete", "output": out}, input=given)
case("instance-data-text", ["input-wrapping"], js("tests/engine/instance-data.test.js", "should invoke the '/instance-data.yaml' workflow (non-JSON text)"),
     {"instance-data.yaml": "\nstates:\n- id: a\n  type: noop"}, {"status": "complete", "output": {"input": "SGVsbG8sIHdvcmxkIQ=="}}, input_raw="Hello, world!")
ERR = "\nstates:\n- id: a\n  type: error\n  error: testcode\n  message: 'this is a test error'\n  transform: \n    result: x\n"
case("error-state", ["error"], js("tests/engine/error-state.test.js", "should invoke the '/error.yaml' workflow"),
     {"error.yaml": ERR}, {"status": "failed", "error": {"code": "testcode", "message": "this is a test error"}})
case("error-state-through-subflow", ["error", "subflows"], js("tests/engine/error-state.test.js", "should invoke the '/caller.yaml' workflow"),
     {"caller.yaml": "\nfunctions:\n- id: child\n  type: subflow\n  workflow: '/error.yaml'\nstates:\n- id: a\n  type: action\n  action:\n    function: child\n", "error.yaml": ERR},
     {"status": "failed", "error": {"code": "testcode", "message": "this is a test error"}})
case("error-and-continue", ["error"], js("tests/engine/error-state.test.js", "should invoke the '/error-and-continue.yaml' workflow"),
     {"error-and-continue.yaml": "\nstates:\n- id: a\n  type: error\n  error: testcode\n  message: 'this is a test error'\n  transition: b\n- id: b\n  type: noop\n"},
     {"status": "failed", "error": {"code": "testcode", "message": "this is a test error"}})
case("double-error", ["error", "catch"], (D, V10, "pkg/flow/status.go", "InstanceRaise: a second error state raises catchable direktiv.workflow.multipleErrors; the first code stays"),
     {"double-error.yaml": "\nstates:\n- id: a\n  type: error\n  error: testcode\n  message: 'this is a test error'\n  transition: b\n- id: b\n  type: error\n  error: testcode2\n  message: 'this is a test error 2'\n  catch:\n  - error: direktiv.workflow.multipleErrors\n    transition: c\n- id: c\n  type: noop\n"},
     {"status": "failed", "error": {"code": "testcode", "message": "this is a test error"}})
case("catch-subflow-error", ["error", "catch", "subflows"], js("tests/engine/catch.test.js", "should invoke the '/catch.yaml' workflow"),
     {"catch.yaml": "\nfunctions:\n- id: child\n  type: subflow\n  workflow: '/error.yaml'\nstates:\n- id: a\n  type: action\n  action:\n    function: child\n  catch:\n  - error: 'testcode'\n", "error.yaml": ERR.lstrip("\n")},
     {"status": "complete", "output": {"error": {"code": "testcode", "msg": "this is a test error"}}})
CHILD = "\nstates:\n- id: a\n  type: noop\n  transform:\n    result: 'jq(.input + 1)'"
PARENT = "\nfunctions:\n- id: child\n  type: subflow\n  workflow: '{w}'\nstates:\n- id: a\n  type: action\n  action:\n    function: child\n    input: \n      input: 1\n  transform:\n    result: 'jq(.return.result)'\n"
for i, w in enumerate(("/a/child.yaml", "child.yaml", "./child.yaml", "../a/child.yaml"), 1):
    case(f"subflow-path-{i}", ["subflows"], js("tests/engine/simple-subflow.test.js", f"should invoke the '/a/parent{i}.yaml' workflow"),
         {f"a/parent{i}.yaml": PARENT.format(w=w), "a/child.yaml": CHILD}, {"status": "complete", "output": {"result": 2}})
case("error-state-wait-fail", ["error"], js("tests/instances/wait-fail.test.js", "should invoke the 'error.yaml' workflow"),
     {"error.yaml": "\nstates:\n- id: a\n  type: error\n  error: errA\n  message: \"error A\"\n  transform:\n    result: x"},
     {"status": "failed", "error": {"code": "errA", "message": "error A"}})
case("wait-success", ["noop"], js("tests/instances/wait-success.test.js", "should invoke the 'noop.yaml' workflow"),
     {"noop.yaml": NOOP}, {"status": "complete", "output": {"result": "x"}})
case("getter-setter-sequence", ["variables"], js("tests/engine/getter-setter.test.js", "test, test, test2, nuller, test"),
     {"test.yaml": "\nstates:\n- id: a\n  type: getter\n  variables:\n  - key: x\n    scope: namespace\n    as: nsx\n  - key: x\n    scope: workflow\n    as: wfx\n  - key: x\n    scope: instance\n    as: inx\n  transition: b\n- id: b\n  type: setter\n  variables:\n  - key: x\n    scope: namespace\n    value: 'jq(.var.nsx + 1)'\n  - key: x\n    scope: workflow\n    value: 'jq(.var.wfx + 10)'\n  - key: x\n    scope: instance\n    value: 'jq(.var.inx + 100)'\n  transition: c\n- id: c\n  type: getter\n  variables:\n  - key: x\n    scope: namespace\n    as: nsx\n  - key: x\n    scope: workflow\n    as: wfx\n  - key: x\n    scope: instance\n    as: inx\n  transition: d\n- id: d\n  type: noop\n  transform:\n    nsx: 'jq(.var.nsx)'\n    wfx: 'jq(.var.wfx)'\n    inx: 'jq(.var.inx)'"},
     {"status": "complete", "output": {"nsx": 3, "wfx": 30, "inx": 100}, "vars": [{"scope": "namespace", "key": "x", "value": 3}, {"scope": "workflow", "key": "x", "workflow": "test", "value": 30}]},
     repeat=3)
case("secret-into-subflow", ["secrets", "subflows"], js("tests/part1/secrets/secrets_read.test.js", "should invoke the '/test-secret-parent.yaml' workflow"),
     {"test-secret-parent.yaml": "\nfunctions:\n- id: echo\n  workflow: test-secret-child.yaml\n  type: subflow\nstates:\n- id: echo\n  type: action\n  action:\n    function: echo\n    secrets: [key1]\n    input: \n      secret: 'jq(.secrets.key1)'\n  transform: \n    result: 'jq(.return.secret)'\n",
      "test-secret-child.yaml": "\nstates:\n- id: helloworld\n  type: noop\n"},
     {"status": "complete", "output": {"result": "value1"}}, secrets={"key1": "value1"})
case("secret-not-visible-after-input", ["secrets"], (D, V10, "pkg/flow/states/action.go (via ERAS §7 well-known keys)", ".secrets is visible only while input is evaluated"),
     {"s.yaml": "\nfunctions:\n- id: echo\n  workflow: child.yaml\n  type: subflow\nstates:\n- id: echo\n  type: action\n  action:\n    function: echo\n    secrets: [key1]\n    input:\n      n: 1\n  transform: 'jq({has: has(\"secrets\"), ret: .return})'\n", "child.yaml": "\nstates:\n- id: a\n  type: noop\n"},
     {"status": "complete", "output": {"has": False, "ret": {"n": 1}}}, secrets={"key1": "value1"})
case("js-base64", ["jq-template"], js("tests/engine/base64js.test.js", "should invoke the workflow and encode and decode base64"),
     {"wf.yaml": "\ndirektiv_api: workflow/v1\ndescription: A simple 'no-op' state that returns 'Hello world!'\nstates:\n- id: helloworld\n  type: noop\n  transform:\n    result: |\n      js(\n        return btoa(\"demo\")\n      )\n  transition: h\n- id: h\n  type: noop\n  transform:\n    out: |\n      js(\n        return atob(data[\"result\"])\n      )\n"},
     {"status": "complete", "output_contains": {"out": "demo"}}, input={"x": 5})
case("log-state", ["logs"], js("tests/part1/logs/instance_logs.test.js", "log: \"This Is A Test\" appears in the instance log"),
     {"log.yaml": "\nstates:\n- id: a\n  type: noop\n  log: \"This Is A Test\"\n"},
     {"status": "complete", "logs_contain": ["This Is A Test"]})
case("log-template", ["logs", "jq-template"], (D, V10, "pkg/flow/states/common.go (log: tpl, one, logged as JSON text, ERAS §4.1)", "log with jq()"),
     {"log.yaml": "\nstates:\n- id: a\n  type: noop\n  log: 'jq(.name)'\n"},
     {"status": "complete", "logs_contain": ["\"Trent\""]}, input={"name": "Trent"})
# ---------------------------------------------------------------- events
LISTENER = "\nstart:\n  type: event\n  event:\n    type: greeting\n  state: helloworld\nstates:\n- id: helloworld\n  type: noop\n  transform:\n    result: Hello world!\n"
case("event-start-cannot-be-invoked", ["start-types", "events"], js("tests/events/workflow_events.test.js", "should fail to invoke the '/listener.yml' workflow"),
     {"listener.yml": LISTENER}, {"status": "failed", "error": {"code": "direktiv.workflow.invoke"}})
case("events-and", ["events"], js("tests/events/workflow_events_and.test.js", "eventsAnd completes after eventtype1 and eventtype2"),
     {"and.yaml": "\nstates:\n- id: event-and\n  type: eventsAnd\n  timeout: PT1H\n  events:\n  - type: eventtype1\n  - type: eventtype2\n  transform: 'jq({eventtype1: .eventtype1, eventtype2: .eventtype2})'\n"},
     {"status": "complete", "output_paths": {".eventtype1.hello": "world1", ".eventtype2.hello": "world2", ".eventtype1.data.hello": "world"}},
     events=[{"specversion": "1.0", "type": "eventtype1", "id": "e1", "source": "https://direktiv.io/test", "datacontenttype": "application/json", "hello": "world1", "data": {"hello": "world", "123": 456}},
             {"specversion": "1.0", "type": "eventtype2", "id": "e2", "source": "https://direktiv.io/test", "datacontenttype": "application/json", "hello": "world2", "data": {"hello": "world", "123": 456}}])
case("events-xor", ["events"], js("tests/events/workflow_events_or.test.js", "eventsXor completes on eventtype1"),
     {"xor.yaml": "\nstates:\n- id: event-xor\n  type: eventsXor\n  timeout: PT1H\n  events:\n  - event:\n      type: eventtype1\n    transition: a\n  - event:\n      type: eventtype2\n    transition: b\n- id: a\n  type: noop\n  transform:\n    got: one\n    ev: jq(.eventtype1.hello)\n- id: b\n  type: noop\n  transform:\n    got: two\n"},
     {"status": "complete", "output": {"got": "one", "ev": "world1"}},
     events=[{"specversion": "1.0", "type": "eventtype1", "id": "e1", "source": "https://direktiv.io/test", "hello": "world1", "data": {"hello": "world"}}])
case("consume-event-context-filter", ["events"], js("tests/events/workflow_events.test.js", "Test workflow events with filter/context (stoplistener)"),
     {"stop.yaml": "\nstates:\n- id: wait\n  type: consumeEvent\n  timeout: PT1H\n  event:\n    type: greeting\n    context:\n      state: stopped\n  transform:\n    state: jq(.greeting.state)\n"},
     {"status": "complete", "output": {"state": "stopped"}},
     events=[{"specversion": "1.0", "type": "greeting", "id": "g1", "source": "https://direktiv.io/test", "state": "started", "data": {}},
             {"specversion": "1.0", "type": "greeting", "id": "g2", "source": "https://direktiv.io/test", "state": "stopped", "data": {}}])
case("consume-event-whole-cloudevent", ["events"], (D, V10, "pkg/flow/states/consume_event.go (ERAS §4.9 data stored, 0.5.0+)", "event stored under its type as the whole CloudEvent"),
     {"c.yaml": "\nstates:\n- id: wait\n  type: consumeEvent\n  timeout: PT1H\n  event:\n    type: t.one\n  transform: 'jq({t: .\"t.one\".type, d: .\"t.one\".data, s: .\"t.one\".source})'\n"},
     {"status": "complete", "output": {"t": "t.one", "d": {"x": 1}, "s": "src"}},
     events=[{"specversion": "1.0", "type": "t.one", "id": "x1", "source": "src", "data": {"x": 1}}])
case("consume-event-source-glob", ["events"], (D, V10, "pkg/flow/events (ERAS §4.9: context values are glob patterns on extensions and source)", "glob on source"),
     {"c.yaml": "\nstates:\n- id: wait\n  type: consumeEvent\n  timeout: PT1H\n  event:\n    type: t.glob\n    context:\n      source: 'https://*.io/*'\n  transform:\n    ok: true\n"},
     {"status": "complete", "output": {"ok": True}},
     events=[{"specversion": "1.0", "type": "t.glob", "id": "g1", "source": "https://direktiv.io/test", "data": {}}])
case("consume-event-timeout-catch", ["events", "timeouts", "catch"], (D, V10, "pkg/flow/states/consume_event.go (ERAS §6: direktiv.cancels.timeout.soft catchable)", "timeout with no event"),
     {"c.yaml": "\nstates:\n- id: wait\n  type: consumeEvent\n  timeout: PT1S\n  event:\n    type: never.sent\n  catch:\n  - error: direktiv.cancels.timeout.soft\n    transition: late\n- id: late\n  type: noop\n  transform:\n    code: jq(.error.code)\n"},
     {"status": "complete", "output": {"code": "direktiv.cancels.timeout.soft"}})
case("generate-event-default-json", ["events"], (D, V10, "pkg/flow/states/generate_event.go (ERAS §4.9 generateEvent; issue 11)", "no datacontenttype sends application/json"),
     {"g.yaml": "\nstates:\n- id: g\n  type: generateEvent\n  event:\n    type: gen.test\n    source: gen\n    data:\n      a: 1\n"},
     {"status": "complete", "event_sent": {"type": "gen.test", "source": "gen", "datacontenttype": "application/json", "data": {"a": 1}}})
case("generate-event-context-tpl", ["events", "jq-template"], (D, V10, "pkg/flow/states/generate_event.go (ERAS §4.9: context tpl per value 0.4.1+)", "context extension from jq()"),
     {"g.yaml": "\nstates:\n- id: g\n  type: generateEvent\n  event:\n    type: gen.ctx\n    source: gen\n    context:\n      who: jq(.name)\n    data: jq(.)\n"},
     {"status": "complete", "event_sent": {"type": "gen.ctx", "who": "Trent", "data": {"name": "Trent"}}}, input={"name": "Trent"})
case("generate-event-data-base64", ["events"], (D, V10, "pkg/flow/states/generate_event.go (ERAS §4.9: non-JSON datacontenttype + string data is base64-decoded)", "text/plain data"),
     {"g.yaml": "\nstates:\n- id: g\n  type: generateEvent\n  event:\n    type: gen.txt\n    source: gen\n    datacontenttype: text/plain\n    data: aGVsbG8=\n"},
     {"status": "complete", "event_sent": {"type": "gen.txt", "datacontenttype": "text/plain", "data_base64": "aGVsbG8="}})
# ---------------------------------------------------------------- Go state-logic unit tests (pkg/flow/states/*_test.go), as workflows
SW = "\nstates:\n- id: s\n  type: switch\n  defaultTransform:\n    took: default\n  defaultTransition: b\n  conditions:\n  - condition: {c1}\n    transform:\n      took: first\n    transition: d\n  - condition: {c2}\n    transform:\n      took: second\n    transition: f\n- id: b\n  type: noop\n- id: d\n  type: noop\n- id: f\n  type: noop\n"
case("switch-good-001-default", ["switch"], go("pkg/flow/states/switch_test.go", "TestSwitchGood001"), {"s.yaml": SW.format(c1="false", c2="false")}, {"status": "complete", "output": {"took": "default"}})
case("switch-good-002-second", ["switch"], go("pkg/flow/states/switch_test.go", "TestSwitchGood002"), {"s.yaml": SW.format(c1="false", c2="true")}, {"status": "complete", "output": {"took": "second"}})
case("switch-first-truthy-wins", ["switch"], go("pkg/flow/states/switch.go", "first truthy condition wins (ERAS §4.6)"), {"s.yaml": SW.format(c1="'jq(.a)'", c2="true")}, {"status": "complete", "output": {"took": "first"}}, input={"a": 1})
for val, name in (("{}", "empty-object"), ("[]", "empty-array"), ('""', "empty-string"), ("0", "zero"), ("null", "null")):
    if name == "null":
        continue
    case(f"switch-falsy-{name}", ["switch"], go("pkg/flow/states/switch.go", f"truthiness: {val} is false (ERAS §4.6)"),
         {"s.yaml": SW.format(c1="'jq(.v)'", c2="false")}, {"status": "complete", "output": {"took": "default"}}, input={"v": json.loads(val)})
case("switch-float-true", ["switch"], go("pkg/flow/states/switch.go", "floats are tested 0.2.5+ (ERAS §4.6)"), {"s.yaml": SW.format(c1="'jq(.v)'", c2="false")}, {"status": "complete", "output": {"took": "first"}}, input={"v": 0.5})
case("switch-raw-string-is-literal-true", ["switch", "jq-template"], go("pkg/flow/states/switch.go", "a raw string is a non-empty literal 0.3.3+ (ERAS §4.6)"), {"s.yaml": SW.format(c1="'.a'", c2="false")}, {"status": "complete", "output": {"took": "first"}}, input={"a": False})
case("switch-null-condition-crashes", ["switch"], go("pkg/flow/states/switch.go", "null result is an internal error 0.6.1+, not catchable (ERAS §4.6)"),
     {"s.yaml": "\nstates:\n- id: s\n  type: switch\n  conditions:\n  - condition: 'jq(.missing)'\n    transition: b\n  catch:\n  - error: '.*'\n    transition: b\n- id: b\n  type: noop\n  transform:\n    caught: true\n"},
     {"status": "failed"})
case("noop-good", ["noop"], go("pkg/flow/states/noop_test.go", "TestNoopGood001"), {"n.yaml": "\nstates:\n- id: n\n  type: noop\n  transform:\n    a: 1\n"}, {"status": "complete", "output": {"a": 1}}, input={"b": 2})
case("noop-keeps-data", ["noop"], go("pkg/flow/states/noop_test.go", "TestNoopGood002 (no transform keeps the data)"), {"n.yaml": "\nstates:\n- id: n\n  type: noop\n"}, {"status": "complete", "output": {"b": 2}}, input={"b": 2})
case("error-good-001", ["error"], go("pkg/flow/states/error_test.go", "TestErrorGood001"), {"e.yaml": "\nstates:\n- id: e\n  type: error\n  error: a\n  message: b\n"}, {"status": "failed", "error": {"code": "a", "message": "b"}})
case("error-args-printf", ["error", "jq-template"], go("pkg/flow/states/error_test.go", "TestErrorGood002 (message is a printf format over args)"),
     {"e.yaml": "\nstates:\n- id: e\n  type: error\n  error: a\n  message: 'hello %s, %v'\n  args:\n  - 'jq(.name)'\n  - 'jq(.n)'\n"}, {"status": "failed", "error": {"code": "a", "message": "hello Trent, 5"}}, input={"name": "Trent", "n": 5})
case("error-message-template", ["error", "jq-template"], go("pkg/flow/states/error.go", "message is tpl 0.6.0+ (ERAS §4.8)"),
     {"e.yaml": "\nstates:\n- id: e\n  type: error\n  error: a\n  message: 'jq(.m)'\n"}, {"status": "failed", "error": {"code": "a", "message": "from data"}}, input={"m": "from data"})
case("error-message-raw-jq-era-literal", ["error", "jq-raw"], (D, V032, "pkg/direktiv/state-logic-error.go", "raw-jq era: message is a literal printf format (issue 11 known gap)"),
     {"e.yaml": "\nid: err\nstates:\n- id: e\n  type: error\n  error: a.b\n  message: 'went wrong'\n"}, {"status": "failed", "error": {"code": "a.b", "message": "went wrong"}})
case("error-message-raw-jq-quotes", ["error", "jq-raw"], (D, V032, "pkg/direktiv/state-logic-error.go", "raw-jq era: message with quotes is a literal (direktiv-apps .templates/error.yml)"),
     {"e.yaml": "\nid: err\nstates:\n- id: e\n  type: error\n  error: direktiv.schema.*\n  message: \"email '.email' is not valid\"\n"}, {"status": "failed", "error": {"code": "direktiv.schema.*", "message": "email '.email' is not valid"}})
case("delay-good", ["delay"], go("pkg/flow/states/delay_test.go", "TestDelayGood001"), {"d.yaml": "\nstates:\n- id: d\n  type: delay\n  duration: PT1S\n  transform:\n    waited: true\n"}, {"status": "complete", "output": {"waited": True}})
case("delay-zero", ["delay"], go("pkg/flow/states/delay_test.go", "TestDelayGood002 (PT0S)"), {"d.yaml": "\nstates:\n- id: d\n  type: delay\n  duration: PT0S\n"}, {"status": "complete", "output": {"x": 1}}, input={"x": 1})
# ---------------------------------------------------------------- jq: template mode (pkg/jqer) and raw mode
def tpl(name, transform, given, out, src, covers=("jq-template",), status="complete"):
    exp = {"status": status}
    if status == "complete":
        exp["output"] = out
    else:
        exp["error"] = {"code": out}
    case(name, list(covers), src, {"t.yaml": "\nstates:\n- id: t\n  type: noop\n  transform:\n" + transform}, exp, input=given)
JQ = lambda t: (D, V10, "pkg/jqer/jqer.go", t)
DATA1 = {"userId": 1, "id": 1, "title": "delectus aut autem", "completed": False}
tpl("jqer-001-literal", "    r: '\"Hello, world!\"'\n", DATA1, {"r": "\"Hello, world!\""}, JQ("Test001 (a string without jq() is a literal)"))
tpl("jqer-002-literal-program", "    r: '.x = 5'\n", DATA1, {"r": ".x = 5"}, JQ("Test002 (.x = 5 is literal text in template mode)"))
tpl("jqer-005-two-in-text", "    r: 'Was jq(.id) completed? -- jq(    .completed    )'\n", DATA1, {"r": "Was 1 completed? -- false"}, JQ("Test005"))
tpl("jqer-006-quoted", "    r: '\"jq(.)\"'\n", {"a": 1}, {"r": "\"{\"a\":1}\""}, JQ("Test006 (object inside text is compact JSON, keys sorted)"))
tpl("jqer-007-object-in-text", "    r: 'x jq(.)'\n", {"b": 2, "a": 1}, {"r": "x {\"a\":1,\"b\":2}"}, JQ("Test007 (object embedded in a longer string, Go encoding)"))
tpl("jq-whole-value-keeps-type", "    n: 'jq(.id)'\n    b: 'jq(.completed)'\n    o: 'jq({k: .id})'\n", DATA1, {"n": 1, "b": False, "o": {"k": 1}}, JQ("a string that is exactly one jq() gives the raw result"))
tpl("jq-trim-block-scalar", "    s: |\n      jq(.title)\n", DATA1, {"s": "delectus aut autem"}, JQ("TrimWhitespaceOnQueryStrings (0.6.1+ trims every string)"))
tpl("jq-trim-literal", "    s: |\n      hello\n", {}, {"s": "hello"}, JQ("0.6.1+ trims literal strings too (ERAS §7)"))
tpl("jq-null-is-badcommand", "    s: 'jq(.missing)'\n", {}, "direktiv.jq.badCommand", JQ("null result is an error 0.6.1+ (ERAS §7)"), status="failed")
tpl("jq-no-result-is-badcommand", "    s: 'jq(empty)'\n", {}, "direktiv.jq.badCommand", JQ("no result is badCommand 0.4.1+ (ERAS §7)"), status="failed")
tpl("jq-runtime-error-badcommand", "    s: 'jq(.a + 1)'\n", {"a": "x"}, "direktiv.jq.badCommand", JQ("a jq error on the data is badCommand"), status="failed")
tpl("jq-nested-map-and-list", "    l:\n    - 'jq(.id)'\n    - lit\n    - 3\n    m:\n      k: 'jq(.title)'\n", DATA1, {"l": [1, "lit", 3], "m": {"k": "delectus aut autem"}}, JQ("maps and lists are recursed"))
case("transform-not-object", ["jq-template"], (D, V10, "pkg/flow/states/common.go", "transform giving a non-object: direktiv.jq.notObject (ERAS §4.1)"),
     {"t.yaml": "\nstates:\n- id: t\n  type: noop\n  transform: 'jq(.a)'\n"}, {"status": "failed", "error": {"code": "direktiv.jq.notObject"}}, input={"a": [1]})
case("transform-runtime-jq-error-catchable", ["jq-template", "catch"], (D, V10, "pkg/flow/states/common.go (issue 11: a runtime jq error stays catchable)", "badCommand caught"),
     {"t.yaml": "\nstates:\n- id: t\n  type: noop\n  transform: 'jq(.a | tonumber | {v: .})'\n  catch:\n  - error: direktiv.jq.badCommand\n    transition: c\n- id: c\n  type: noop\n  transform:\n    code: 'jq(.error.code)'\n"},
     {"status": "complete", "output": {"code": "direktiv.jq.badCommand"}}, input={"a": "not a number"})
RAW = lambda t: (D, V032, "pkg/direktiv/state-logic-noop.go / pkg/jqer (raw jq era)", t)
def raw(name, transform, given, out, t, status="complete"):
    exp = {"status": status}
    if status == "complete":
        exp["output"] = out
    else:
        exp["error"] = {"code": out}
    case(name, ["jq-raw"], RAW(t), {"r.yaml": f"\nid: rawjq\nstates:\n- id: t\n  type: noop\n  transform: '{transform}'\n"}, exp, input=given)
raw("raw-jq-update", ".x = 5", {"a": 1}, {"a": 1, "x": 5}, "transform is a whole jq program")
raw("raw-jq-object", "{ greeting: \"hi \" + .name }", {"name": "Trent"}, {"greeting": "hi Trent"}, "object construction")
raw("raw-jq-identity-empty", "", {"a": 1}, {"a": 1}, "'' parses as identity")
raw("raw-jq-array-not-object", ".a", {"a": [1]}, "direktiv.jq.notObject", "non-object result", status="failed")
case("raw-jq-switch-condition", ["jq-raw", "switch"], RAW("switch condition is jq"),
     {"r.yaml": "\nid: rawsw\nstates:\n- id: s\n  type: switch\n  conditions:\n  - condition: '.a > 2'\n    transition: big\n  defaultTransition: small\n- id: big\n  type: noop\n  transform: '{size: \"big\"}'\n- id: small\n  type: noop\n  transform: '{size: \"small\"}'\n"},
     {"status": "complete", "output": {"size": "big"}}, input={"a": 3})
case("raw-jq-setter-getter", ["jq-raw", "variables"], RAW("setter value is jq; getter puts values at .var"),
     {"r.yaml": "\nid: rawvars\nstates:\n- id: set\n  type: setter\n  variables:\n  - key: n\n    scope: workflow\n    value: '.a + 1'\n  transition: get\n- id: get\n  type: getter\n  variables:\n  - key: n\n    scope: workflow\n  transform: '{n: .var.n}'\n"},
     {"status": "complete", "output": {"n": 2}}, input={"a": 1})
case("raw-jq-foreach-stream", ["jq-raw", "foreach", "subflows"], (D, V032, "pkg/direktiv/state-logic-foreach.go", "array is a jq stream .items[] (ERAS §4.4 ≤0.6.0)"),
     {"r.yaml": "\nid: rawfe\nfunctions:\n- id: child\n  type: subflow\n  workflow: child\nstates:\n- id: fe\n  type: foreach\n  array: '.items[]'\n  action:\n    function: child\n    input: '{v: .}'\n  transform: '{r: [.return[].r]}'\n", "child.yaml": "\nstates:\n- id: a\n  type: noop\n  transform: 'jq({r: (.v * 2)})'\n"},
     {"status": "complete", "output": {"r": [2, 4, 6]}}, input={"items": [1, 2, 3]})
# ---------------------------------------------------------------- foreach / parallel / retries / timeouts / validate / variables
CH2 = "\nstates:\n- id: a\n  type: noop\n  transform: 'jq({r: (.v * 2)})'\n"
case("foreach-subflow", ["foreach", "subflows"], (D, V10, "pkg/flow/states/foreach.go", "results in element order (ERAS §4.4)"),
     {"fe.yaml": "\nfunctions:\n- id: child\n  type: subflow\n  workflow: child.yaml\nstates:\n- id: fe\n  type: foreach\n  array: 'jq([.items[] | {v: .}])'\n  action:\n    function: child\n    input: 'jq(.)'\n  transform: 'jq({r: [.return[].r]})'\n", "child.yaml": CH2},
     {"status": "complete", "output": {"r": [2, 4, 6, 8, 10]}}, input={"items": [1, 2, 3, 4, 5]})
case("foreach-empty-array", ["foreach"], (D, V10, "pkg/flow/states/foreach.go", "an empty array transitions at once 0.7.0+ (ERAS §4.4)"),
     {"fe.yaml": "\nfunctions:\n- id: child\n  type: subflow\n  workflow: child.yaml\nstates:\n- id: fe\n  type: foreach\n  array: 'jq(.items)'\n  action:\n    function: child\n  transform: 'jq({r: .return})'\n", "child.yaml": CH2},
     {"status": "complete", "output": {"r": []}}, input={"items": []})
case("foreach-bad-array", ["foreach", "catch"], (D, V10, "pkg/flow/states/foreach.go", "array not an array: direktiv.foreach.badArray 0.6.1+ (ERAS §4.4)"),
     {"fe.yaml": "\nfunctions:\n- id: child\n  type: subflow\n  workflow: child.yaml\nstates:\n- id: fe\n  type: foreach\n  array: 'jq(.items)'\n  action:\n    function: child\n", "child.yaml": CH2},
     {"status": "failed", "error": {"code": "direktiv.foreach.badArray"}}, input={"items": 5})
case("foreach-non-object-elements", ["foreach"], (D, V10, "pkg/jqer (0.8.5+: non-object input coerced to {})", "element 3 becomes {} for input"),
     {"fe.yaml": "\nfunctions:\n- id: child\n  type: subflow\n  workflow: child.yaml\nstates:\n- id: fe\n  type: foreach\n  array: 'jq(.items)'\n  action:\n    function: child\n    input:\n      v: 'jq(length)'\n  transform: 'jq({r: [.return[].r]})'\n", "child.yaml": CH2},
     {"status": "complete", "output": {"r": [0, 0]}}, input={"items": [3, 4]})
case("parallel-and", ["parallel", "subflows"], (D, V10, "pkg/flow/states/parallel.go", "mode and: results in declaration order (ERAS §4.5)"),
     {"p.yaml": "\nfunctions:\n- id: child\n  type: subflow\n  workflow: child.yaml\nstates:\n- id: p\n  type: parallel\n  actions:\n  - function: child\n    input:\n      v: 1\n  - function: child\n    input:\n      v: 2\n  transform: 'jq({r: [.return[].r]})'\n", "child.yaml": CH2},
     {"status": "complete", "output": {"r": [2, 4]}})
case("parallel-or-first-success", ["parallel", "subflows"], (D, V10, "pkg/flow/states/parallel.go", "mode or: first success completes; null for the others (ERAS §4.5)"),
     {"p.yaml": "\nfunctions:\n- id: child\n  type: subflow\n  workflow: child.yaml\n- id: bad\n  type: subflow\n  workflow: bad.yaml\nstates:\n- id: p\n  type: parallel\n  mode: or\n  actions:\n  - function: bad\n  - function: child\n    input:\n      v: 2\n  transform: 'jq({r: .return[1].r})'\n", "child.yaml": CH2, "bad.yaml": "\nstates:\n- id: e\n  type: error\n  error: nope\n  message: no\n"},
     {"status": "complete", "output": {"r": 4}})
case("parallel-or-all-failed", ["parallel", "error"], (D, V10, "pkg/flow/states/parallel.go", "every branch fails: direktiv.parallel.allFailed (ERAS §4.5)"),
     {"p.yaml": "\nfunctions:\n- id: bad\n  type: subflow\n  workflow: bad.yaml\nstates:\n- id: p\n  type: parallel\n  mode: or\n  actions:\n  - function: bad\n  - function: bad\n", "bad.yaml": "\nstates:\n- id: e\n  type: error\n  error: nope\n  message: no\n"},
     {"status": "failed", "error": {"code": "direktiv.parallel.allFailed"}})
case("parallel-and-one-fails", ["parallel", "error"], (D, V10, "pkg/flow/states/parallel.go", "mode and: a failing branch fails the state with its code"),
     {"p.yaml": "\nfunctions:\n- id: child\n  type: subflow\n  workflow: child.yaml\n- id: bad\n  type: subflow\n  workflow: bad.yaml\nstates:\n- id: p\n  type: parallel\n  actions:\n  - function: child\n    input:\n      v: 1\n  - function: bad\n", "child.yaml": CH2, "bad.yaml": "\nstates:\n- id: e\n  type: error\n  error: nope\n  message: no\n"},
     {"status": "failed", "error": {"code": "nope"}})
BAD = "\nstates:\n- id: e\n  type: error\n  error: flaky.fail\n  message: always\n"
case("retries-exceeded", ["retries", "catch", "subflows"], (D, V06, "cmd/flow/tests-instance-retries.go", "retries exhausted: direktiv.retries.exceeded, then catch (ERAS §6 0.3.1+)"),
     {"r.yaml": "\nfunctions:\n- id: bad\n  type: subflow\n  workflow: bad.yaml\nstates:\n- id: a\n  type: action\n  action:\n    function: bad\n    retries:\n      max_attempts: 2\n      delay: PT0S\n      codes: ['flaky.*']\n  catch:\n  - error: direktiv.retries.exceeded\n    transition: c\n- id: c\n  type: noop\n  transform:\n    code: 'jq(.error.code)'\n", "bad.yaml": BAD},
     {"status": "complete", "output": {"code": "direktiv.retries.exceeded"}})
case("retries-code-not-matching", ["retries", "catch"], (D, V06, "cmd/flow/tests-instance-retries.go", "codes that do not match: the original error is raised"),
     {"r.yaml": "\nfunctions:\n- id: bad\n  type: subflow\n  workflow: bad.yaml\nstates:\n- id: a\n  type: action\n  action:\n    function: bad\n    retries:\n      max_attempts: 2\n      delay: PT0S\n      codes: ['other.*']\n", "bad.yaml": BAD},
     {"status": "failed", "error": {"code": "flaky.fail"}})
case("catch-star", ["catch"], (D, V10, "pkg/flow/states/common.go", "'*' matches every code 0.3.1+ (ERAS §6)"),
     {"c.yaml": "\nfunctions:\n- id: bad\n  type: subflow\n  workflow: bad.yaml\nstates:\n- id: a\n  type: action\n  action:\n    function: bad\n  catch:\n  - error: '*'\n    transition: c\n- id: c\n  type: noop\n  transform:\n    msg: 'jq(.error.msg)'\n", "bad.yaml": BAD},
     {"status": "complete", "output": {"msg": "always"}})
case("catch-regex-unanchored", ["catch"], (D, V10, "pkg/flow/states/common.go", "catch error is an unanchored Go regexp (ERAS §6)"),
     {"c.yaml": "\nfunctions:\n- id: bad\n  type: subflow\n  workflow: bad.yaml\nstates:\n- id: a\n  type: action\n  action:\n    function: bad\n  catch:\n  - error: 'fail'\n    transition: c\n- id: c\n  type: noop\n  transform:\n    code: 'jq(.error.code)'\n", "bad.yaml": BAD},
     {"status": "complete", "output": {"code": "flaky.fail"}})
case("catch-no-transition-ends-ok", ["catch"], (D, V10, "pkg/flow/states/common.go", "a catch item with no transition ends the workflow successfully (ERAS §6)"),
     {"c.yaml": "\nstates:\n- id: a\n  type: error\n  error: x.y\n  message: m\n  catch:\n  - error: 'x.y'\n"},
     {"status": "failed", "error": {"code": "x.y"}})
case("action-timeout-soft", ["timeouts", "subflows", "catch"], (D, V10, "pkg/flow/states/action.go", "action state timeout: direktiv.cancels.timeout.soft, catchable (ERAS §6)"),
     {"t.yaml": "\nfunctions:\n- id: slow\n  type: subflow\n  workflow: slow.yaml\nstates:\n- id: a\n  type: action\n  timeout: PT1S\n  action:\n    function: slow\n  catch:\n  - error: 'direktiv.cancels.timeout.*'\n    transition: c\n- id: c\n  type: noop\n  transform:\n    code: 'jq(.error.code)'\n", "slow.yaml": "\nstates:\n- id: d\n  type: delay\n  duration: PT2S\n"},
     {"status": "complete", "output": {"code": "direktiv.cancels.timeout.soft"}})
case("workflow-timeout-interrupt", ["timeouts"], (D, V10, "pkg/flow/engine (timeouts.interrupt, ERAS §2)", "interrupt is the catchable soft timeout"),
     {"t.yaml": "\ntimeouts:\n  interrupt: PT1S\nstates:\n- id: d\n  type: delay\n  duration: PT3S\n  catch:\n  - error: 'direktiv.cancels.timeout.soft'\n    transition: c\n- id: c\n  type: noop\n  transform:\n    late: true\n"},
     {"status": "complete", "output": {"late": True}})
case("validate-ok", ["validate"], (EX[0], EX[1], "greeting/greeting.yaml", "validate state with inline schema passes"),
     {"v.yaml": "\nstates:\n- id: v\n  type: validate\n  schema:\n    type: object\n    required: [name]\n    properties:\n      name:\n        type: string\n"},
     {"status": "complete", "output": {"name": "Trent"}}, input={"name": "Trent"})
case("validate-fails", ["validate"], (D, V10, "pkg/flow/states/validate.go", "schema failure: direktiv.schema.failed (ERAS §4.7)"),
     {"v.yaml": "\nstates:\n- id: v\n  type: validate\n  schema:\n    type: object\n    required: [name]\n"},
     {"status": "failed", "error": {"code": "direktiv.schema.failed"}}, input={"nom": "x"})
case("validate-subject-any-value", ["validate"], (D, V10, "pkg/flow/states/validate.go", "subject is tpl, one (any value) 0.7.0+ (ERAS §4.7)"),
     {"v.yaml": "\nstates:\n- id: v\n  type: validate\n  subject: 'jq(.n)'\n  schema:\n    type: number\n    minimum: 3\n"},
     {"status": "complete", "output": {"n": 5}}, input={"n": 5})
case("setter-null-deletes", ["variables"], js("tests/engine/getter-setter.test.js", "nuller: setting null deletes the variable"),
     {"n.yaml": "\nstates:\n- id: s\n  type: setter\n  variables:\n  - key: x\n    scope: namespace\n    value: null\n  transition: g\n- id: g\n  type: getter\n  variables:\n  - key: x\n    scope: namespace\n"},
     {"status": "complete", "output": {"var": {"x": None}}}, vars=[{"scope": "namespace", "key": "x", "value": 5}])
case("getter-missing-is-null", ["variables"], (EX[0], EX[1], "counter-persistent-data/counter.yaml", "missing variable reads as null (MANIFEST note)"),
     {"g.yaml": "\nstates:\n- id: g\n  type: getter\n  variables:\n  - key: nothere\n    scope: workflow\n"},
     {"status": "complete", "output": {"var": {"nothere": None}}})
case("getter-initial-vars-as", ["variables"], (D, V10, "pkg/flow/states/getter.go", "getter `as` names the key under .var (0.6.1+)"),
     {"g.yaml": "\nstates:\n- id: g\n  type: getter\n  variables:\n  - key: cfg\n    scope: namespace\n    as: c\n"},
     {"status": "complete", "output": {"var": {"c": {"a": 1}}}}, vars=[{"scope": "namespace", "key": "cfg", "value": {"a": 1}}])
case("setter-key-template", ["variables", "jq-template"], (D, V10, "pkg/flow/states/setter.go", "key is tpl 0.6.6+ (ERAS §4.10)"),
     {"s.yaml": "\nstates:\n- id: s\n  type: setter\n  variables:\n  - key: 'jq(.k)'\n    scope: workflow\n    value: 7\n"},
     {"status": "complete", "vars": [{"scope": "workflow", "workflow": "s", "key": "dyn", "value": 7}]}, input={"k": "dyn"})
case("setter-invalid-key", ["variables", "catch"], (D, V10, "pkg/flow/states/setter.go", "run-time key check: direktiv.var.invalidKey (ERAS §4.10)"),
     {"s.yaml": "\nstates:\n- id: s\n  type: setter\n  variables:\n  - key: 'jq(.k)'\n    scope: workflow\n    value: 7\n"},
     {"status": "failed", "error": {"code": "direktiv.var.invalidKey"}}, input={"k": "bad key!"})
case("getter-text-plain-is-base64", ["variables"], (D, "d00476f360e0980ee4c2bba586dbf951e7f009c7", "tests/services/files.test.js", "a getter returns non-JSON bytes as base64 whatever the mime type (var.e; issue 11 known gap)"),
     {"s.yaml": "states:\n- id: s\n  type: setter\n  variables:\n  - key: t\n    scope: workflow\n    mimeType: text/plain\n    value: hello\n  transition: g\n- id: g\n  type: getter\n  variables:\n  - key: t\n    scope: workflow\n"},
     {"status": "complete", "output": {"var": {"t": "aGVsbG8="}}, "vars_raw": [{"scope": "workflow", "workflow": "s", "key": "t", "data": "hello", "mime": "text/plain"}]})
case("getter-system-instance", ["variables"], (D, V10, "pkg/flow/states/getter.go", "getter scope system, key instance (0.6.1+, ERAS §4.10)"),
     {"g.yaml": "\nstates:\n- id: g\n  type: getter\n  variables:\n  - key: instance\n    scope: system\n  transform: 'jq({ok: (.var.instance | type == \"string\")})'\n"},
     {"status": "complete", "output": {"ok": True}})
case("action-input-any-value", ["subflows", "input-wrapping"], (D, V10, "pkg/flow/states/action.go", "input is tpl, one, any JSON value 0.3.3+; the child wraps it as {input: ...}"),
     {"a.yaml": "\nfunctions:\n- id: child\n  type: subflow\n  workflow: echo.yaml\nstates:\n- id: a\n  type: action\n  action:\n    function: child\n    input: 'jq(.list)'\n  transform: 'jq({r: .return})'\n", "echo.yaml": "\nstates:\n- id: a\n  type: noop\n"},
     {"status": "complete", "output": {"r": {"input": [1, 2]}}}, input={"list": [1, 2]})
case("action-no-input-whole-data", ["subflows"], (D, V10, "pkg/flow/states/action.go", "omitted input sends the whole state data"),
     {"a.yaml": "\nfunctions:\n- id: child\n  type: subflow\n  workflow: echo.yaml\nstates:\n- id: a\n  type: action\n  action:\n    function: child\n  transform: 'jq({r: .return})'\n", "echo.yaml": "\nstates:\n- id: a\n  type: noop\n"},
     {"status": "complete", "output": {"r": {"q": 1}}}, input={"q": 1})
case("async-subflow-no-return", ["subflows"], (D, V10, "pkg/flow/states/action.go", "async: no .return, transition at once (ERAS §4.3)"),
     {"a.yaml": "\nfunctions:\n- id: child\n  type: subflow\n  workflow: echo.yaml\nstates:\n- id: a\n  type: action\n  async: true\n  action:\n    function: child\n  transform: 'jq({has: has(\"return\")})'\n", "echo.yaml": "\nstates:\n- id: a\n  type: noop\n"},
     {"status": "complete", "output": {"has": False}})
case("early-subflow-action-workflow", ["subflows", "jq-raw"], (D, "ba33ba8e83fb948afb943600687965d7bdef6d11", "specification/walkthrough/05_subflows.md", "action: {workflow: NAME} (≤0.3.4, issue 11 known gap)"),
     {"p.yaml": "\nid: parent\nstates:\n- id: call\n  type: action\n  action:\n    workflow: child\n    input: '{v: .v}'\n  transform: '{r: .return.r}'\n", "child.yaml": "\nid: child\nstates:\n- id: a\n  type: noop\n  transform: '{r: (.v + 1)}'\n"},
     {"status": "complete", "output": {"r": 2}}, input={"v": 1})
case("early-switch-default", ["switch", "jq-raw"], (D, "ba33ba8e83fb948afb943600687965d7bdef6d11", "specification/examples/07-decision.md", "switch `default` parses and is never used (0.1-0.2.2)"),
     {"s.yaml": "\nid: decide\nstates:\n- id: s\n  type: switch\n  conditions:\n  - condition: '.a'\n    transition: ok\n  default: nope\n  defaultTransition: nope\n- id: ok\n  type: noop\n  transform: '{r: \"yes\"}'\n- id: nope\n  type: noop\n  transform: '{r: \"no\"}'\n"},
     {"status": "complete", "output": {"r": "no"}}, input={"a": False})
case("start-default-state", ["start-types"], (D, V10, "pkg/model/start-default.go", "start.state picks the first state run (ERAS §5)"),
     {"s.yaml": "\nstart:\n  type: default\n  state: b\nstates:\n- id: a\n  type: noop\n  transform:\n    r: a\n- id: b\n  type: noop\n  transform:\n    r: b\n"},
     {"status": "complete", "output": {"r": "b"}})
case("start-scheduled-manual-run", ["start-types"], (D, V10, "pkg/model/start-scheduled.go", "a scheduled workflow may still be run by hand; input is {}"),
     {"s.yaml": "\nstart:\n  type: scheduled\n  cron: '*/5 * * * *'\nstates:\n- id: a\n  type: noop\n  transform:\n    r: 1\n"},
     {"status": "complete", "output": {"r": 1}})
case("event-start-subflow-refused", ["start-types", "subflows"], (D, V10, "pkg/flow (issue 11: cannot manually invoke event-based workflow)", "event-start workflow as subflow"),
     {"p.yaml": "\nfunctions:\n- id: child\n  type: subflow\n  workflow: listener.yaml\nstates:\n- id: a\n  type: action\n  action:\n    function: child\n", "listener.yaml": LISTENER},
     {"status": "failed", "error": {"code": "direktiv.workflow.invoke"}})
case("metadata-state", ["logs"], (D, V10, "pkg/flow/states (metadata: tpl, one, 0.6.1+)", "metadata field accepted, run unaffected"),
     {"m.yaml": "\nstates:\n- id: a\n  type: noop\n  metadata: 'jq({who: .name})'\n  transform:\n    ok: true\n"},
     {"status": "complete", "output": {"ok": True}}, input={"name": "x"})
case("yaml-yes-no-are-strings", ["jq-template"], (D, V10, "pkg/model (yaml.v3 into a generic map, ERAS §1)", "yes/no/on/off stay strings"),
     {"y.yaml": "\nstates:\n- id: a\n  type: noop\n  transform:\n    a: yes\n    b: off\n"}, {"status": "complete", "output": {"a": "yes", "b": "off"}})
case("switch-condition-error-uncatchable", ["switch", "catch"], (D, V10, "pkg/flow/states/switch.go", "a condition evaluation error is an internal error, not catchable (ERAS §4.6)"),
     {"s.yaml": "\nstates:\n- id: s\n  type: switch\n  conditions:\n  - condition: 'jq(.a + 1)'\n    transition: b\n  catch:\n  - error: '*'\n    transition: b\n- id: b\n  type: noop\n  transform:\n    caught: true\n"},
     {"status": "failed"}, input={"a": "x"})
case("transform-empty-is-noop", ["jq-template"], (D, V10, "pkg/flow/states/common.go", "transform '' and '.' mean no-op (ERAS §4.1)"),
     {"t.yaml": "\nstates:\n- id: a\n  type: noop\n  transform: ''\n  transition: b\n- id: b\n  type: noop\n  transform: '.'\n"}, {"status": "complete", "output": {"k": 1}}, input={"k": 1})
cases = [c for c in cases if c]

# ---------------------------------------------------------------- v0.7 Go integration tests (cmd/flow/tests-*.go), verbatim workflows
V072 = "0b6a275062f41f2dc5ff8c1f7af38a59184f8144"
TIC = lambda t: (D, V072, "cmd/flow/tests-instance-common.go", t)
case("flow-log-simple", ["logs"], TIC("testStateLogSimple (log line is the JSON text \"Hello, world!\")"),
     {"testwf.yaml": "states:\n  - id: a\n    type: noop\n    log: \"Hello, world!\"\n"}, {"status": "complete", "logs_equal": ["\"Hello, world!\""]})
case("flow-log-jq", ["logs", "jq-template"], TIC("testStateLogJQ"),
     {"testwf.yaml": "states:\n  - id: a\n    type: noop\n    log: 'jq(.name)!'\n"}, {"status": "complete", "logs_equal": ["\"Direktiv!\""]}, input={"name": "Direktiv"})
case("flow-log-jq-nested", ["logs", "jq-template"], TIC("testStateLogJQNested"),
     {"testwf.yaml": "states:\n  - id: a\n    type: noop\n    log: 'Hello, jq(.name)!'\n"}, {"status": "complete", "logs_equal": ["\"Hello, Direktiv!\""]}, input={"name": "Direktiv"})
case("flow-log-jq-object", ["logs", "jq-template"], TIC("testStateLogJQObject (an object is logged as indented JSON)"),
     {"testwf.yaml": "states:\n  - id: a\n    type: noop\n    log:\n      Name: 'jq(.name)'\n      Constant: 5\n"}, {"status": "complete", "logs_equal": ["{\n  \"Constant\": 5,\n  \"Name\": \"Direktiv\"\n}"]}, input={"name": "Direktiv"})
CHECKED = lambda x: {"specversion": "1.0", "type": f"{x}-checked", "source": "https://test.io", "id": f"id-{x}", "data": {"event": x}}
case("flow-event-and", ["events"], TIC("testInstanceEventAnd"),
     {"testwf.yaml": "states:\n- id: eventstart\n  type: eventAnd\n  events:\n  - type: a-checked\n  - type: b-checked\n  transition: a\n- id: a\n  type: noop\n  transform:\n    execute: a\n"},
     {"status": "complete", "output": {"execute": "a"}}, events=[CHECKED("a"), CHECKED("b")])
XOR = "states:\n- id: eventstart\n  type: eventXor\n  events:\n  - event:\n      type: a-checked\n    transition: a\n  - event:\n      type: b-checked\n    transition: b\n- id: a\n  type: noop\n  transform:\n    execute: a\n- id: b\n  type: noop\n  transform:\n    execute: b\n"
case("flow-event-xor-a", ["events"], TIC("testInstanceEventXor (event a)"), {"testwf.yaml": XOR}, {"status": "complete", "output": {"execute": "a"}}, events=[CHECKED("a")])
case("flow-event-xor-b", ["events"], TIC("testInstanceEventXor (event b)"), {"testwf.yaml": XOR}, {"status": "complete", "output": {"execute": "b"}}, events=[CHECKED("b")])
VERR = "description: A simple 'error' state workflow that checks an email attempts to validate it.\nstates:\n- id: validate-email\n  type: validate\n  subject: jq(.)\n  schema:\n    type: object\n    properties:\n      email:\n        type: string\n        format: email\n  catch:\n  - error: direktiv.schema.*\n    transition: email-not-valid\n  transition: email-valid\n- id: email-not-valid\n  type: error\n  error: direktiv.schema.*\n  message: \"email '.email' is not valid\"\n- id: email-valid\n  type: noop\n  transform:\n    result: \"Email is valid.\"\n"
case("flow-error-invalid-email", ["error", "validate", "catch"], TIC("testInstanceError (invalid email)"), {"testwf.yaml": VERR},
     {"status": "failed", "error": {"code": "direktiv.schema.*", "message": "email '.email' is not valid"}}, input={"email": "trent.hilliamvorteil.io"})
case("flow-error-valid-email", ["error", "validate"], TIC("testInstanceError (valid email)"), {"testwf.yaml": VERR},
     {"status": "complete", "output": {"result": "Email is valid."}}, input={"email": "trent.hilliam@vorteil.io"})
VAL = VERR.replace("  type: error\n  error: direktiv.schema.*\n  message: \"email '.email' is not valid\"\n", "  type: noop\n  transform:\n    result: \"Email is not valid.\"\n").replace("description: A simple 'error' state workflow that checks an email attempts to validate it.\n", "")
case("flow-validate-valid", ["validate"], TIC("testInstanceValidate (valid email)"), {"testwf.yaml": VAL}, {"status": "complete", "output": {"result": "Email is valid."}}, input={"email": "trent.hilliam@vorteil.io"})
case("flow-validate-invalid", ["validate", "catch"], TIC("testInstanceValidate (invalid email)"), {"testwf.yaml": VAL}, {"status": "complete", "output": {"result": "Email is not valid."}}, input={"email": "trent.hilliamvorteil.io"})
case("flow-simple-chain", ["noop"], TIC("testInstanceSimpleChain"),
     {"testwf.yaml": "states:\n  - id: a\n    type: noop\n    transition: b\n  - id: b\n    type: noop\n    transition: c\n  - id: c\n    type: noop\n"}, {"status": "complete", "output": {"name": "Direktiv"}}, input={"name": "Direktiv"})
case("flow-switch-loop", ["switch", "jq-template"], TIC("testInstanceSwitchLoop (b runs 6 times)"),
     {"testwf.yaml": "states:\n  - id: a\n    type: noop\n    transform:\n      k: 5\n    transition: b\n  - id: b\n    type: switch\n    conditions:\n      - condition: 'jq(.k > 0)'\n        transition: b\n        transform: 'jq(.k -= 1)'\n    defaultTransition: c\n  - id: c\n    type: noop\n"},
     {"status": "complete", "output": {"k": 0}})
case("flow-generate-consume-event", ["events"], TIC("testInstanceGenerateConsumeEvent"),
     {"testwf-consume.yaml": "states:\n- id: a\n  type: consumeEvent\n  transition: b\n  timeout: PT10S\n  event:\n    type: testcloudevent\n- id: b\n  type: noop\n",
      "testwf-generate.yaml": "states:\n- id: a\n  type: generateEvent\n  event:\n    type: testcloudevent\n    source: Direktiv\n    data:\n      message: \"helloworld\"\n"},
     {"status": "complete", "output_paths": {".testcloudevent.data.message": "helloworld", ".testcloudevent.source": "Direktiv"}}, before=["testwf-generate.yaml"])
TSUB = "functions:\n- id: sub\n  type: subflow\n  workflow: testwf-timeout-subflow\nstates:\n- id: a\n  type: action\n  action:\n    function: sub\n  catch:\n    - error: \"{code}\"\n      transition: b\n- id: b\n  type: noop\n  transform:\n    code: jq(.error.code)\n"
case("flow-timeout-kill", ["timeouts", "subflows", "catch"], TIC("testInstanceTimeoutKill (catch code is flow.ErrCodeHardTimeout; transform added to observe it)"),
     {"testwf-timeout.yaml": TSUB.format(code="direktiv.cancels.timeout.hard"), "testwf-timeout-subflow.yaml": "timeouts:\n  kill: PT2S\nstates:\n  - id: a\n    type: delay\n    duration: PT50S\n"},
     {"status": "complete", "output": {"code": "direktiv.cancels.timeout.hard"}})
case("flow-timeout-interrupt", ["timeouts", "subflows", "catch"], TIC("testInstanceTimeoutInterrupt (catch code is flow.ErrCodeSoftTimeout; transform added to observe it)"),
     {"testwf-timeout.yaml": TSUB.format(code="direktiv.cancels.timeout.soft"), "testwf-timeout-subflow.yaml": "timeouts:\n  interrupt: PT2S\nstates:\n  - id: a\n    type: delay\n    duration: PT50S\n"},
     {"status": "complete", "output": {"code": "direktiv.cancels.timeout.soft"}})
case("flow-secrets-superflow", ["secrets", "subflows"], (D, V072, "cmd/flow/tests-secrets.go", "testSecretsSubflow (action with secrets and no input: the subflow gets the data plus .secrets)"),
     {"test-superflow.yaml": "functions:\n  - id: sf\n    type: subflow\n    workflow: '/test-subflow'\nstates:\n  - id: a\n    type: action\n    action:\n      function: sf\n      secrets: ['testSecret']\n",
      "test-subflow.yaml": "states:\n  - id: a\n    type: noop\n"},
     {"status": "complete", "output_paths": {".return.secrets.testSecret": "s3cr3t"}}, secrets={"testSecret": "s3cr3t"})

# ---------------------------------------------------------------- more direct ports (issue 11: >= 90 direct ports)
# v0.7 cmd/flow integration tests (the retry file is commented out in v0.7.2 but is Direktiv's own test code)
TIR = lambda t: (D, V072, "cmd/flow/tests-instance-retries.go", t)
TV = lambda t: (D, V072, "cmd/flow/tests-vars.go", t)
case("flow-start-workflow", ["noop", "input-wrapping"], TIC("testStartWorkflow (no input: zero bytes, output {\"input\":\"\"})"),
     {"testwf.yaml": "states:\n  - type: noop\n    id: a\n"}, {"status": "complete", "output": {"input": ""}}, input_raw="")
case("flow-delay-loop", ["delay", "switch", "jq-template"], TIC("testInstanceDelayLoop (note: PT8S and `< 8` shortened to PT1S and `< 1`; the flow a,b,c,d,e is observed by a transform added to e and fail)"),
     {"testwf.yaml": "states:\n  - id: a\n    type: noop\n    transform:\n      currentTime: jq(now)\n    transition: b\n  - id: b\n    type: delay\n    duration: PT1S\n    transition: c\n  - id: c\n    type: noop\n    transform:\n      difference: jq(now - .currentTime)\n    transition: d\n  - id: d\n    type: switch\n    conditions:\n      - condition: jq(.difference < 1)\n        transition: fail\n    defaultTransition: e\n  - id: e\n    type: noop\n    transform: 'jq({end: \"e\"})'\n  - id: fail\n    type: noop\n    transform: 'jq({end: \"fail\"})'\n"},
     {"status": "complete", "output": {"end": "e"}})
RETRY_SUB = "states:\n  - id: a\n    type: getter\n    transition: b\n    transform:\n      newValue: jq(.var.Counter + 1)\n    variables:\n    - key: Counter\n      scope: workflow\n  - id: b\n    type: setter\n    transition: c\n    variables:\n    - key: Counter\n      scope: workflow\n      value: jq(.newValue)\n  - id: c\n    type: switch\n    conditions:\n    - condition: jq(.newValue > {n})\n      transition: d\n    defaultTransition: e\n  - id: d\n    type: noop\n  - id: e\n    type: error\n    error: validation.Invalid.Counter\n    message: \"Counter is less than 10\"\n"
RETRY = "functions:\n  - id: sub\n    type: subflow\n    workflow: testwf-retry-subflow\nstates:\n  - id: a\n    action:\n      function: sub\n      retries:\n        max_attempts: {m}\n        delay: {d}\n        codes:\n        - \"validation.Invalid.Counter\"\n    type: action\n"
case("flow-retry-long", ["retries", "subflows", "variables"], TIR("testInstanceLongRetry (note: delay PT8S shortened to PT0.05S; the test asserts only that the retried subflow completes)"),
     {"testwf-retry.yaml": RETRY.replace("{m}", "5").replace("{d}", "PT0.05S"), "testwf-retry-subflow.yaml": RETRY_SUB.replace("{n}", "1")},
     {"status": "complete", "vars": [{"scope": "workflow", "workflow": "testwf-retry-subflow", "key": "Counter", "value": 2}]})
case("flow-retry-subflow", ["retries", "subflows", "variables"], TIR("testInstanceSubflowRetry (note: delay PT1S shortened to PT0.05S; 11 attempts of 15)"),
     {"testwf-retry.yaml": RETRY.replace("{m}", "15").replace("{d}", "PT0.05S"), "testwf-retry-subflow.yaml": RETRY_SUB.replace("{n}", "10")},
     {"status": "complete", "vars": [{"scope": "workflow", "workflow": "testwf-retry-subflow", "key": "Counter", "value": 11}]})
VLOOP = "states:\n  - id: a\n    type: noop\n    transform:\n      k: 5\n    transition: b\n  - id: b\n    type: switch\n    conditions:\n      - condition: 'jq(.k > 0)'\n        transition: c\n        transform: 'jq(.k -= 1)'\n    defaultTransition: e\n  - id: c\n    type: getter\n    variables:\n      - key: x\n        scope: {s}\n    transform: 'jq(.var.x += 1)'\n    transition: d\n  - id: d\n    type: setter\n    variables:\n      - key: x\n        scope: {s}\n        value: 'jq(.var.x)'\n    transition: b\n  - id: e\n    type: noop\n"
NSV = VLOOP.replace("{s}", "namespace")
case("flow-vars-namespace-first", ["variables", "switch"], TV("testInstanceNamespaceVariables (after /testwf1: x is 5)"),
     {"testwf1.yaml": NSV, "testwf2.yaml": NSV}, {"status": "complete", "vars": [{"scope": "namespace", "key": "x", "value": 5}]})
case("flow-vars-namespace-shared", ["variables", "switch"], TV("testInstanceNamespaceVariables (after /testwf1 then /testwf2: x is 10)"),
     {"testwf1.yaml": NSV, "testwf2.yaml": NSV}, {"status": "complete", "vars": [{"scope": "namespace", "key": "x", "value": 10}]}, run="testwf2.yaml", before=["testwf1.yaml"])
WFV = VLOOP.replace("{s}", "workflow")
case("flow-vars-workflow-first", ["variables", "switch"], TV("testInstanceWorkflowVariables (first run: x is 5)"),
     {"testwf.yaml": WFV}, {"status": "complete", "vars": [{"scope": "workflow", "workflow": "testwf", "key": "x", "value": 5}]})
case("flow-vars-workflow-second", ["variables", "switch"], TV("testInstanceWorkflowVariables (second run: x is 10)"),
     {"testwf.yaml": WFV}, {"status": "complete", "vars": [{"scope": "workflow", "workflow": "testwf", "key": "x", "value": 10}]}, repeat=2)
INV = VLOOP.replace("{s}", "instance")
case("flow-vars-instance-first", ["variables", "switch"], TV("testInstanceInstanceVariables (first run: x is 5; read from the output, which carries .var.x)"),
     {"testwf.yaml": INV}, {"status": "complete", "output": {"k": 0, "var": {"x": 5}}})
case("flow-vars-instance-second", ["variables", "switch"], TV("testInstanceInstanceVariables (second run: x is 5 again, instance scope starts empty)"),
     {"testwf.yaml": INV}, {"status": "complete", "output": {"k": 0, "var": {"x": 5}}}, repeat=2)
# v0.10 JS end-to-end tests
GS = "\nstates:\n- id: a\n  type: getter\n  variables:\n  - key: x\n    scope: namespace\n    as: nsx\n  - key: x\n    scope: workflow\n    as: wfx\n  - key: x\n    scope: instance\n    as: inx\n  transform:\n    nsx: 'jq(.var.nsx // 0)'\n    wfx: 'jq(.var.wfx // 0)'\n    inx: 'jq(.var.inx // 0)'\n  transition: b\n- id: b\n  type: noop\n{log}  transform: \n    nsx: 'jq(.nsx + 1)'\n    wfx: 'jq(.wfx + 10)'\n    inx: 'jq(.inx + 100)'\n  transition: c\n- id: c\n  type: setter\n  variables:\n  - key: x\n    scope: namespace\n    value: 'jq(.nsx)'\n  - key: x\n    scope: workflow\n    value: 'jq(.wfx)'\n  - key: x\n    scope: instance\n    value: 'jq(.inx)'\n"
GSF = {"test.yaml": GS.replace("{log}", "  log: 'jq(.)'\n"), "test2.yaml": GS.replace("{log}", "")}
GSJ = "tests/engine/getter-setter.test.js"
case("getter-setter-first", ["variables"], js(GSJ, "should invoke the '/test.yaml' workflow"), GSF, {"status": "complete", "output_contains": {"nsx": 1, "wfx": 10, "inx": 100}}, run="test.yaml")
case("getter-setter-again", ["variables"], js(GSJ, "should invoke the '/test.yaml' workflow again (second run)"), GSF, {"status": "complete", "output_contains": {"nsx": 2, "wfx": 20, "inx": 100}}, run="test.yaml", repeat=2)
case("getter-setter-test2", ["variables"], js(GSJ, "should invoke the '/test2.yaml' workflow"), GSF, {"status": "complete", "output_contains": {"nsx": 3, "wfx": 10, "inx": 100}}, run="test2.yaml", before=["test.yaml", "test.yaml"])
GEN = "\nstates:\n- id: wait \n  type: delay\n  duration: PT1S\n  transition: generate\n- id: generate\n  type: generateEvent\n  event:\n    type: test.simple\n    source: \"generate-event\"\n"
case("simple-events-listener", ["events", "subflows"], js("tests/engine/simple-events.test.js", "should walk through the execution of a workflow called /simple-listener.yaml"),
     {"simple-listener.yaml": "\nfunctions:\n- id: spinoff\n  type: subflow\n  workflow: 'generate-event.yaml'\nstates:\n- id: spinoff\n  type: action\n  async: true\n  action:\n    function: spinoff\n  transition: listen\n- id: listen\n  type: consumeEvent\n  timeout: PT1M\n  event:\n    type: test.simple\n  transform:\n    result: x\n", "generate-event.yaml": GEN},
     {"status": "complete", "output_contains": {"result": "x"}})
case("simple-events-or-listener", ["events", "subflows"], js("tests/engine/simple-events.test.js", "should walk through the execution of a workflow called /or-listener.yaml"),
     {"or-listener.yaml": "\nfunctions:\n- id: spinoff\n  type: subflow\n  workflow: 'generate-event.yaml'\nstates:\n- id: spinoff\n  type: action\n  async: true\n  action:\n    function: spinoff\n  transition: listen\n- id: listen\n  type: consumeEvent\n  event:\n    type: test.simple\n  timeout: PT1M\n  transition: a\n  transform: 'jq(.result = \"x\")'\n- id: a\n  type: noop\n  transform: 'jq(.transitioned = \"a\")'\n- id: b\n  type: noop\n  transform: 'jq(.transitioned = \"b\")'\n", "generate-event.yaml": GEN},
     {"status": "complete", "output_contains": {"result": "x", "transitioned": "a", "test.simple": {"datacontenttype": "application/json", "source": "generate-event", "specversion": "1.0", "type": "test.simple"}}})
WE = "tests/events/workflow_events.test.js"
BASEV = lambda t, i, v: {"specversion": "1.0", "type": t, "id": i, "source": "https://direktiv.io/test", "datacontenttype": "application/json", "hello": v, "data": {"hello": "world", "123": 456}}
case("events-wait-custom-attributes", ["events"], js(WE, "should kick off in flow workflow with custom attributes"),
     {"wait.yaml": "\nstates:\n- id: ce\n  type: consumeEvent\n  event:\n    type: hellowait\n  timeout: PT1H\n  transition: print\n- id: print\n  type: noop\n  log: jq(.)\n"},
     {"status": "complete", "output_paths": {".hellowait.hello": "world"}}, events=[BASEV("no-kick", "json-event", "undefined"), BASEV("hellowait", "testinflow", "world")])
case("events-wait-context-filter", ["events"], js(WE, "should kick off running workflow with context filter"),
     {"waitcontext.yaml": "\nstates:\n- id: ce\n  type: consumeEvent\n  event:\n    type: hellowait\n    context:\n      hello: world\n  timeout: PT1H\n  transition: print\n- id: print\n  type: noop\n  log: jq(.)\n"},
     {"status": "complete", "output_paths": {".hellowait.hello": "world", ".hellowait.id": "wait-ctx-run"}}, events=[BASEV("hellowait", "wait-ctx", "dummy"), BASEV("hellowait", "wait-ctx-run", "world")])
MULTI = {"specversion": "1.0", "type": "waitformulti", "id": "wait-c3432tx7", "source": "https://direktiv.io/test", "datacontenttype": "application/json", "hello": "world1", "hello2": "world2", "data": {"hello": "world", "123": 456}}
case("events-wait-multiple-context", ["events"], js(WE, "should not start by event due to context filter"),
     {"waitmulticontext.yaml": "\nstates:\n- id: ce\n  type: consumeEvent\n  event:\n    type: waitformulti\n    context:\n      hello: world1\n      hello2: world2\n  transition: greet\n- id: greet\n  type: noop\n  log: jq(.)\n"},
     {"status": "complete", "output_paths": {".waitformulti.id": "wait-c3432tx7", ".waitformulti.hello2": "world2"}}, events=[BASEV("waitformulti", "wait-ctx65", "world1"), MULTI])
case("events-xor-timeout", ["events", "timeouts"], js("tests/events/workflow_events_or.test.js", "should timeout flow"),
     {"waitandtimeout.yaml": "\nstates:\n- id: event-and\n  type: eventsXor\n  timeout: PT1S\n  events:\n  - event:\n      type: eventtype5\n    transition: greet\n  - event:\n      type: eventtype6\n    transition: greet\n- id: greet\n  type: noop\n  log: jq(.)\n"},
     {"status": "failed", "error": {"code": "direktiv.cancels.timeout.soft"}})
case("sync-parallel-subflows", ["parallel", "subflows"], js("tests/engine/sync.test.js", "should invoke the '/parallel.yaml' workflow"),
     {"parallel.yaml": "\ndirektiv_api: workflow/v1\ndescription: A simple 'no-op' state that returns 'Hello world!'\nfunctions:\n- type: subflow\n  id: sub\n  workflow: /noop.yaml\nstates:\n- id: a\n  type: parallel\n  mode: and\n  timeout: PT2M\n  actions:\n" + "".join(f"  - function: sub\n    input:\n      x: {i}\n" for i in range(12)), "noop.yaml": "\nstates:\n- id: a\n  type: noop\n"},
     {"status": "complete", "output_contains": {"return": [{"x": i} for i in range(12)]}})
case("instance-logs-jq-null-error", ["jq-template", "logs"], js("tests/part1/logs/instance_logs.test.js", "generate some logs for error (noop-error.yaml: direktiv-instance-error-code is direktiv.jq.badCommand)"),
     {"noop-error.yaml": "\nstates:\n- id: a\n  type: noop\n  transform:\n    result: jq(.doesnotexist)"},
     {"status": "failed", "error": {"code": "direktiv.jq.badCommand"}})
case("flow-timeout-kill-long", ["timeouts", "subflows", "catch"], TIC("testInstanceTimeoutKillLong (note: kill PT60S shortened to PT1S, delay PT80S kept; Direktiv's long-timer path has no counterpart in isolde; catch code observed by a transform)"),
     {"testwf-timeout.yaml": TSUB.format(code="direktiv.cancels.timeout.hard"), "testwf-timeout-subflow.yaml": "timeouts:\n  kill: PT1S\nstates:\n  - id: a\n    type: delay\n    duration: PT80S\n"},
     {"status": "complete", "output": {"code": "direktiv.cancels.timeout.hard"}})
case("flow-timeout-interrupt-long", ["timeouts", "subflows", "catch"], TIC("testInstanceTimeoutInterruptLong (note: interrupt PT60S shortened to PT1S, delay PT80S kept; catch code observed by a transform)"),
     {"testwf-timeout.yaml": TSUB.format(code="direktiv.cancels.timeout.soft"), "testwf-timeout-subflow.yaml": "timeouts:\n  interrupt: PT1S\nstates:\n  - id: a\n    type: delay\n    duration: PT80S\n"},
     {"status": "complete", "output": {"code": "direktiv.cancels.timeout.soft"}})
# v0.8.0 tests/variables: variables set through the API (here: before the run), read by a getter
JPEG = (Path(__file__).resolve().parent / "jpeg.b64").read_text().strip()
V80 = "d1093d4cae740ab864a46f8e5381b5c164fbe291"
VARSGET = "\nstates:\n- id: hello\n  type: getter\n  variables:\n  - key: plain\n    scope: {s}\n  - key: json\n    scope: {s}\n  - key: binary\n    scope: {s}\n  transition: value\n\n- id: value\n  type: noop\n  transform:\n    binary: jq(.var.binary)\n    text: jq(.var.plain | @base64d)\n    json: jq(.var.json)\n"
for scope, fn in (("workflow", "wfvars"), ("namespace", "nsvars")):
    where = {"scope": scope, **({"workflow": "wf"} if scope == "workflow" else {})}
    case(f"v08-{fn}-getter", ["variables"], js(f"tests/variables/{fn}.test.js", "should get variables from workflow getter (variables set through the API as text/plain, application/json, image/png)", V80),
         {"wf.yaml": VARSGET.replace("{s}", scope)},
         {"status": "complete", "output": {"binary": JPEG, "text": "this is plain text", "json": {"hello": "world"}}},
         vars=[{**where, "key": "plain", "value_base64": "dGhpcyBpcyBwbGFpbiB0ZXh0", "mime": "text/plain"},
               {**where, "key": "json", "value": {"hello": "world"}, "mime": "application/json"},
               {**where, "key": "binary", "value_base64": JPEG, "mime": "image/png"}])
case("v08-instvars-getter", ["variables"], js("tests/variables/instvars.test.js", "should get variables from workflow getter (setter with text/plain, application/json, application/octet-stream)", V80),
     {"wf.yaml": "\nstates:\n- id: set\n  type: setter\n  variables:\n  - key: plain\n    scope: instance\n    mimeType: text/plain\n    value: plain text\n  - key: json\n    scope: instance\n    mimeType: application/json\n    value:  \n      hello: world\n  - key: json\n    scope: instance\n    mimeType: application/json\n    value:  \n      hello: world\n  - key: binary\n    scope: instance\n    mimeType: application/octet-stream\n    value: " + JPEG + "\n  transition: get\n- id: get\n  type: getter\n  variables:\n  - key: plain\n    scope: instance\n  - key: plain\n    scope: instance\n    as: plain2\n  - key: json\n    scope: instance\n  - key: json\n    scope: instance\n    as: json2\n  - key: binary\n    scope: instance\n  - key: binary\n    scope: instance\n    as: binary2\n"},
     {"status": "complete", "output_paths": {".var.plain": "cGxhaW4gdGV4dA==", ".var.plain2": "cGxhaW4gdGV4dA==", ".var.binary": JPEG, ".var.binary2": JPEG, ".var.json": {"hello": "world"}, ".var.json2": {"hello": "world"}}})
# Go unit tests of pkg/jqer (v0.10): each evaluates one query over data1 and fails on an error;
# written as the smallest workflow in the era whose jq reading the test's settings select
DATA1 = {"userId": 1, "id": 1, "title": "delectus aut autem", "completed": False}
JQ = lambda t: go("pkg/jqer/jqer_test.go", t)
case("jqer-002-raw-assign", ["jq-raw"], JQ("Test002 (query `.x = 5`, no wrappings: a raw-jq document)"),
     {"j.yaml": "id: jqer\nstates:\n- id: a\n  type: noop\n  transform: '.x = 5'\n"}, {"status": "complete", "output": {**DATA1, "x": 5}}, input=DATA1)
case("jqer-003-raw-object", ["jq-raw"], JQ("Test003 (query `{ x: .completed }`, no wrappings: a raw-jq document)"),
     {"j.yaml": "id: jqer\nstates:\n- id: a\n  type: noop\n  transform: '{ x: .completed }'\n"}, {"status": "complete", "output": {"x": False}}, input=DATA1)
case("jqer-005-embedded", ["jq-template"], JQ("Test005 (jq( ) wrappings searched in strings, whitespace trimmed)"),
     {"j.yaml": "states:\n- id: a\n  type: noop\n  transform:\n    r: 'Was jq(.id) completed? -- jq(    .completed    )'\n"}, {"status": "complete", "output": {"r": "Was 1 completed? -- false"}}, input=DATA1)
case("jqer-006-embedded-object", ["jq-template"], JQ("Test006 (a non-string result inside a string is its JSON text)"),
     {"j.yaml": "states:\n- id: a\n  type: noop\n  transform:\n    r: '\"jq(.)\"'\n"}, {"status": "complete", "output": {"r": "\"" + json.dumps(DATA1, sort_keys=True, separators=(",", ":")) + "\""}}, input=DATA1)
case("jqer-007-json-like-string", ["jq-template"], JQ("Test007 (a JSON-looking string with embedded jq( ) stays a string)"),
     {"j.yaml": "states:\n- id: a\n  type: noop\n  transform:\n    r: '{\"A\": 5, \"B\": false, \"C\": jq(.), \"D\": \"Hello, jq(.id)\"}'\n"},
     {"status": "complete", "output": {"r": "{\"A\": 5, \"B\": false, \"C\": " + json.dumps(DATA1, sort_keys=True, separators=(",", ":")) + ", \"D\": \"Hello, 1\"}"}}, input=DATA1)
# direktiv-examples: documented outputs of the READMEs (workflow files verbatim)
EXR = lambda path, title: (EX[0], EX[1], path, title)
case("example-conditional-states", ["switch", "validate"], EXR("conditional-states/README.md", "check-credit.yaml: documented Input and Output"),
     {"check-credit.yaml": "direktiv_api: workflow/v1\n\ndescription: |\n  Conditionally transition to states depending if input credit score is higher\n  or lower than creditMinRequired.\n\nstates:\n  - id: validate-input\n    type: validate\n    schema:\n      type: object\n      required:\n      - creditScore\n      - creditMinRequired\n      properties:\n        creditMinRequired:\n          type: number\n          title: Minimum credit score\n          description: minimum credit score required for approval \n          default: 500\n        creditScore:\n          type: number\n          description: credit score of user\n          title: Credit Score\n    transition: check-credit\n\n    #\n    # Check if the user's threshold is above minimum credit requirements.\n    # If credit score meets requirements transition to approve-loan. Otherwise\n    # transition to reject-loan.\n    #\n  - id: check-credit\n    type: switch\n    conditions:\n    - condition: jq(.creditScore > .creditMinRequired)\n      transition: approve-loan\n    defaultTransition: reject-loan\n  - id: reject-loan\n    type: noop\n    transform: 'jq({ \"msg\": \"You have been rejected for this loan\" })'\n  - id: approve-loan\n    type: noop\n    transform: 'jq({ \"msg\": \"You have been approved for this loan\" })'"},
     {"status": "complete", "output": {"msg": "You have been approved for this loan"}}, input={"creditMinRequired": 500, "creditScore": 600})
VMT = "variable-mime-type/README.md"
case("example-variable-string-json", ["variables"], EXR(VMT, "JSON String Variable: \"hello\\nworld\" (variable-string-json.yaml)"),
     {"variable-string-json.yaml": "direktiv_api: workflow/v1\n\ndescription: |\n  Store the workflow variable 'StringVar' as a json encoded string.  \n\nstates:\n#\n# Set StringVar Value: \n# \"hello\\nworld\"\n#\n- id: set-var\n  type: setter\n  variables:\n    - key: StringVar\n      scope: workflow \n      value: |\n        hello\n        world"},
     {"status": "complete", "vars_raw": [{"scope": "workflow", "workflow": "variable-string-json", "key": "StringVar", "data": "\"hello\\nworld\"", "mime": "application/json"}]})
case("example-variable-json", ["variables"], EXR(VMT, "JSON Variable: [{\"key\":\"value\"}] (variable-json.yaml)"),
     {"variable-json.yaml": "direktiv_api: workflow/v1\n\ndescription: |\n  Store the workflow variable 'StringVar' as a json.  \n\nstates:\n#\n# Set StringVar Value: \n# \"hello\\nworld\"\n#\n- id: set-var\n  type: setter\n  variables:\n    - key: StringVar\n      scope: workflow \n      value: \n        - key: value\n      "},
     {"status": "complete", "vars": [{"scope": "workflow", "workflow": "variable-json", "key": "StringVar", "value": [{"key": "value"}]}]})
case("example-variable-string-plaintext", ["variables"], EXR(VMT, "Plain Text Variable: hello, world on two lines (variable-string-plaintext.yaml)"),
     {"variable-string-plaintext.yaml": "direktiv_api: workflow/v1\n\ndescription: |\n  Store the workflow variable 'StringVar' as a plaintext string.  \n\nstates:\n#\n# Set StringVar Value: \n# hello\n# world\n#\n- id: set-var\n  type: setter\n  variables:\n    - key: StringVar\n      scope: workflow \n      mimeType: 'text/plain'\n      value: |\n        hello\n        world"},
     {"status": "complete", "vars_raw": [{"scope": "workflow", "workflow": "variable-string-plaintext", "key": "StringVar", "data": "hello\nworld", "mime": "text/plain"}]})
case("example-variable-base64", ["variables"], EXR(VMT, "Binary Data: hello from direktiv (variable-base64.yaml)"),
     {"variable-base64.yaml": "direktiv_api: workflow/v1\n\ndescription: |\n  Auto decode base64 string and store the resulting value \n  as the workflow variable 'MessageVar'.  \n\nstates:\n#\n# Set MessageVar Value: \n# hello from direktiv\n#\n- id: set-var\n  type: setter\n  variables:\n    - key: MessageVar\n      scope: workflow \n      value: 'aGVsbG8gZnJvbSBkaXJla3Rpdg=='\n      mimeType: 'application/octet-stream'"},
     {"status": "complete", "vars_raw": [{"scope": "workflow", "workflow": "variable-base64", "key": "MessageVar", "data": "hello from direktiv", "mime": "application/octet-stream"}]})
case("example-counter", ["variables"], EXR("counter-persistent-data/README.md", "Output: {newCounter: 1, var: {counter: 0}} (the documented run found counter 0, set before the run here)"),
     {"counter.yaml": "direktiv_api: workflow/v1\n\ndescription: \"Simple Counter getter and setter variable example\"\nstates:\n  #\n  # Get flow counter variable and increment value\n  #\n  - id: counter-get\n    type: getter \n    transition: counter-set\n    variables:\n    - key: counter\n      scope: workflow\n    transform: 'jq(. += {\"newCounter\": (.var.counter + 1)})'\n\n  #\n  # Set workflow counter variable\n  #\n  - id: counter-set\n    type: setter\n    variables:\n      - key: counter\n        scope: workflow \n        value: 'jq(.newCounter)'"},
     {"status": "complete", "output": {"newCounter": 1, "var": {"counter": 0}}, "vars": [{"scope": "workflow", "workflow": "counter", "key": "counter", "value": 1}]},
     vars=[{"scope": "workflow", "workflow": "counter", "key": "counter", "value": 0}])

for old in OUT.glob("*.yaml"):
    old.unlink()
names = set()
for c in cases:
    assert c["name"] not in names, c["name"]
    names.add(c["name"])
    # the leading newline of a JS template string is dropped so the text reads as a block
    c["files"] = {k: v[1:] if v.startswith("\n") else v for k, v in c["files"].items()}
    (OUT / f"{c['name']}.yaml").write_text(yaml.safe_dump(c, sort_keys=False, allow_unicode=True, width=1000))
print(len(cases))
