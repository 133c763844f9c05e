"""docs/protocol.md cannot drift from the code: its JSON examples and its close-code table are checked.

- Every ```json block must be directly preceded by `<!-- model: dotted.path.Model -->`; the
  example must validate against that model in strict mode (a wrong type fails) and have
  exactly the model's fields, at every level (re-dumping the validated model gives back
  the same keys: an unknown field or a missing one fails, optional ones included). The
  events inside an `EventsOut` example are checked against their own event models.
- Every message type the server sends has an example.
- Every close code the code base uses is in the close-code table.

Each checker also gets a small broken input to show it can fail.
"""

from __future__ import annotations

import ast
import importlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

REPO = Path(__file__).resolve().parents[2]
PROTOCOL_DOC = REPO / "docs" / "protocol.md"

FENCE = re.compile(r"^(?P<fence>`{3,}|~{3,})\s*(?P<lang>[\w+-]*)")
MODEL_COMMENT = re.compile(r"^<!--\s*model:\s*(?P<model>[\w.]+)\s*-->$")
SERVER_MESSAGE_TYPES = {"snapshot", "progress", "log", "state", "error"}
EVENT_MODELS = {"progress": "ProgressEvent", "log": "LogEvent", "state": "StateEvent"}


@pytest.fixture(autouse=True)
def redis():
    """These tests read files and import models only: no Redis (replaces the conftest's autouse fixture)."""
    return None


# --- the JSON examples --------------------------------------------------------------------------

@dataclass(frozen=True)
class Example:
    line: int  # of the opening fence, 1-based
    model: str | None  # the dotted name in the comment on the line before, if any
    text: str


def json_examples(markdown: str) -> list[Example]:
    """Every fenced ```json block, with the model its preceding comment names."""
    lines = markdown.splitlines()
    examples, i = [], 0
    while i < len(lines):
        opening = FENCE.match(lines[i].strip())
        if not opening:
            i += 1
            continue
        fence, body, j = opening["fence"], [], i + 1
        while j < len(lines) and not (lines[j].strip().startswith(fence) and set(lines[j].strip()) == {fence[0]}):
            body.append(lines[j])
            j += 1
        if opening["lang"].lower() == "json":
            comment = MODEL_COMMENT.match(lines[i - 1].strip()) if i > 0 else None
            examples.append(Example(i + 1, comment["model"] if comment else None, "\n".join(body)))
        i = j + 1
    return examples


def resolve_model(dotted: str) -> type[BaseModel]:
    """The pydantic model class a `<!-- model: ... -->` comment names."""
    module_name, _, name = dotted.rpartition(".")
    model = getattr(importlib.import_module(module_name), name, None)
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise LookupError(f"{dotted} is not a pydantic model")
    return model


def key_differences(example, dumped, path: str = "$") -> list[str]:
    """Where the example's keys differ from the validated model's own dump, at every level."""
    if isinstance(example, dict) and isinstance(dumped, dict):
        problems = []
        if missing := sorted(dumped.keys() - example.keys()):
            problems.append(f"{path}: missing the model's field(s) {missing}")
        if extra := sorted(example.keys() - dumped.keys()):
            problems.append(f"{path}: field(s) the model does not have {extra}")
        for key in example.keys() & dumped.keys():
            problems += key_differences(example[key], dumped[key], f"{path}.{key}")
        return problems
    if isinstance(example, list) and isinstance(dumped, list) and len(example) == len(dumped):
        return [p for i, (a, b) in enumerate(zip(example, dumped)) for p in key_differences(a, b, f"{path}[{i}]")]
    return []


def validation_problems(text: str, model: type[BaseModel]) -> list[str]:
    """Strict validation against `model`, then the example's keys against the re-dumped model."""
    try:
        validated = model.model_validate_json(text, strict=True)
    except ValidationError as exc:
        return [f"does not validate as {model.__name__}: {exc}"]
    return key_differences(json.loads(text), validated.model_dump(mode="json"))


def example_problems(example: Example) -> list[str]:
    """Everything wrong with one ```json block (empty when it is right)."""
    where = f"docs/protocol.md line {example.line}"
    if example.model is None:
        return [f"{where}: a ```json block needs `<!-- model: <dotted.path.Model> -->` on the line before it"]
    try:
        data = json.loads(example.text)
    except ValueError as exc:
        return [f"{where}: not JSON: {exc}"]
    try:
        model = resolve_model(example.model)
    except (ImportError, LookupError) as exc:
        return [f"{where}: cannot find the model {example.model}: {exc}"]
    problems = validation_problems(example.text, model)
    if model.__name__ == "EventsOut" and not problems:
        schema = importlib.import_module("jobcast.events.schema")
        for i, event in enumerate(data["events"]):
            event_model = getattr(schema, EVENT_MODELS.get(event.get("type"), ""), None)
            if event_model is None:
                problems.append(f"events[{i}]: no event type {event.get('type')!r}")
            else:
                problems += [f"events[{i}]: {p}" for p in validation_problems(json.dumps(event), event_model)]
    return [f"{where} ({example.model}): {p}" for p in problems]


def server_message_types() -> set[str]:
    """The message types the server sends: the listed ones, and every model in jobcast.events.schema
    whose `type` has a default (the client's CancelRequest has none: it must be given)."""
    schema = importlib.import_module("jobcast.events.schema")
    found = set()
    for value in vars(schema).values():
        if isinstance(value, type) and issubclass(value, BaseModel) and value.__module__ == schema.__name__:
            field = value.model_fields.get("type")
            if field is not None and isinstance(field.default, str):
                found.add(field.default)
    return SERVER_MESSAGE_TYPES | found


def message_types_without_example(examples: list[Example], wanted: set[str]) -> set[str]:
    """The wanted message types that no example of a jobcast.events.schema model shows."""
    shown = set()
    for example in examples:
        if example.model and example.model.startswith("jobcast.events.schema."):
            try:
                data = json.loads(example.text)
            except ValueError:
                continue
            if isinstance(data, dict) and isinstance(data.get("type"), str):
                shown.add(data["type"])
    return wanted - shown


def test_every_json_example_matches_its_model():
    examples = json_examples(PROTOCOL_DOC.read_text())
    assert len(examples) >= 15, "the protocol page lost its examples"
    problems = [p for example in examples for p in example_problems(example)]
    assert problems == [], "\n".join(problems)


def test_every_server_message_type_has_an_example():
    examples = json_examples(PROTOCOL_DOC.read_text())
    assert message_types_without_example(examples, server_message_types()) == set()


def test_the_client_message_has_an_example():
    examples = json_examples(PROTOCOL_DOC.read_text())
    assert any(e.model == "jobcast.events.schema.CancelRequest" for e in examples)


# --- the example checker can fail ----------------------------------------------------------------

PROGRESS = {"seq": 3, "job_id": "0b0c4a1e-3f8e-4f5c-9a57-2a6f0f7f3a11", "ts": 1749720581.5, "type": "progress",
            "current": 2, "total": 4, "percent": 50.0, "message": "two"}


def block(model: str | None, data) -> str:
    comment = f"<!-- model: {model} -->\n" if model else ""
    return f"Some text.\n\n{comment}```json\n{json.dumps(data, indent=2)}\n```\n"


def problems_in(markdown: str) -> list[str]:
    return [p for example in json_examples(markdown) for p in example_problems(example)]


def test_a_correct_example_passes():
    assert problems_in(block("jobcast.events.schema.ProgressEvent", PROGRESS)) == []


@pytest.mark.parametrize(
    "markdown, expected",
    [
        (block(None, PROGRESS), "needs `<!-- model:"),
        ("<!-- model: jobcast.events.schema.ProgressEvent -->\n\n```json\n{}\n```\n", "needs `<!-- model:"),
        (block("jobcast.events.schema.ProgressEvent", {**PROGRESS, "colour": "red"}), "ProgressEvent"),
        (block("jobcast.events.schema.ProgressEvent", {k: v for k, v in PROGRESS.items() if k != "current"}),
         "ProgressEvent"),
        (block("jobcast.events.schema.ProgressEvent", {**PROGRESS, "seq": "3"}), "ProgressEvent"),
        (block("jobcast.events.schema.ProgressEvent", {k: v for k, v in PROGRESS.items() if k != "message"}),
         "missing the model's field(s) ['message']"),
        (block("jobcast.events.schema.LogEvent", PROGRESS), "LogEvent"),
        (block("jobcast.events.schema.NoSuchModel", PROGRESS), "cannot find the model"),
        (block("jobcast.events.schema.ErrorOut", {"detail": "x"}), "missing the model's field(s) ['errors']"),
        (block("jobcast.events.schema.ErrorOut", {"detail": "x", "errors": [], "code": 1}),
         "field(s) the model does not have ['code']"),
        (block("jobcast.events.schema.EventsOut", {"events": [{**PROGRESS, "seq": 3.5}], "complete": True}),
         "events[0]"),
        ("<!-- model: jobcast.events.schema.ErrorOut -->\n```json\n{\"detail\": \"x\", \"errors\": [\n```\n", "not JSON"),
    ],
    ids=["no-comment", "comment-not-directly-before", "unknown-field", "missing-required", "wrong-type",
         "missing-optional", "wrong-model", "unknown-model", "http-missing", "http-unknown-field", "nested-event",
         "not-json"],
)
def test_the_example_checker_fails_on_broken_examples(markdown, expected):
    problems = problems_in(markdown)
    assert problems and expected in problems[0], problems


def test_a_nested_unknown_field_fails():
    """A field the job document does not have, inside a snapshot."""
    (job, *_) = [json.loads(e.text) for e in json_examples(PROTOCOL_DOC.read_text())
                 if e.model == "jobcast.events.schema.JobDocument"]
    snapshot = {"type": "snapshot", "job": {**job, "progress": {**job["progress"], "eta": 3}}, "reset": False}
    problems = problems_in(block("jobcast.events.schema.SnapshotMessage", snapshot))
    assert problems and ("eta" in problems[0]), problems


def test_the_message_type_check_fails_when_examples_are_missing():
    markdown = block("jobcast.events.schema.ProgressEvent", PROGRESS)
    assert message_types_without_example(json_examples(markdown), SERVER_MESSAGE_TYPES) == {
        "snapshot", "log", "state", "error"}


# --- close codes ----------------------------------------------------------------------------------

CLOSE_CALL = re.compile(r"\b(?:close\(\s*code\s*=|refuse\(|return)\s*(?P<code>\d{4})\b")
CLOSE_NAME = re.compile(r"\bCloseCode\.(?P<name>[A-Z][A-Z0-9_]*)\b")
DICT_KEY = re.compile(r"(?<![\w.])(?P<code>\d{4})\s*:")


def close_code_enum(sources: list[Path]) -> dict[str, int]:
    """The members of a `class CloseCode` defined in any of `sources` (read, not imported)."""
    members = {}
    for path in sources:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and node.name == "CloseCode":
                for statement in node.body:
                    if (isinstance(statement, ast.Assign) and isinstance(statement.value, ast.Constant)
                            and isinstance(statement.value.value, int)):
                        for target in statement.targets:
                            if isinstance(target, ast.Name):
                                members[target.id] = statement.value.value
    return members


def close_codes_in_code(root: Path) -> dict[int, set[str]]:
    """Every close code the code base uses, with where: `close(code=N)`, `refuse(N)` and `return N`
    in services/ws/, `CloseCode.NAME` there (resolved through the enum), every member of the
    CloseCode enum, and the codes the clients know (src/jobcast/client/watch.py and the browser
    module services/web/static/jobcast/jobcast.js)."""
    ws_files = sorted((root / "services" / "ws").rglob("*.py"))
    schema = root / "src" / "jobcast" / "events" / "schema.py"
    enum = close_code_enum([p for p in [schema, *ws_files] if p.is_file()])
    found: dict[int, set[str]] = {}

    def add(code: int, where: str) -> None:
        found.setdefault(code, set()).add(where)

    for path in ws_files:
        text, where = path.read_text(), str(path.relative_to(root))
        for match in CLOSE_CALL.finditer(text):
            add(int(match["code"]), where)
        for match in CLOSE_NAME.finditer(text):
            if match["name"] not in enum:
                add(-1, f"{where}: CloseCode.{match['name']} is not defined")
            else:
                add(enum[match["name"]], where)
    for name, code in enum.items():
        add(code, f"CloseCode.{name}")
    # The clients' own tables of codes: the Python client's and the browser module's.
    for client in (root / "src" / "jobcast" / "client" / "watch.py", root / "services" / "web" / "static" / "jobcast" / "jobcast.js"):
        if client.is_file():
            for match in DICT_KEY.finditer(client.read_text()):
                add(int(match["code"]), str(client.relative_to(root)))
    return found


def documented_close_codes(markdown: str) -> set[int]:
    """The codes in the first column of the table under the `Close codes` heading."""
    lines = markdown.splitlines()
    start = next((i for i, line in enumerate(lines) if re.match(r"#+\s+Close codes\s*$", line)), None)
    if start is None:
        return set()
    codes, in_table = set(), False
    for line in lines[start + 1:]:
        if line.startswith("#") or (in_table and not line.startswith("|")):
            break
        if line.startswith("|"):
            in_table = True
            cell = line.strip().strip("|").split("|")[0]
            if match := re.fullmatch(r"\s*`?(\d{4})`?\s*", cell):
                codes.add(int(match[1]))
    return codes


def test_the_collector_sees_the_codes_of_the_code_base():
    used = close_codes_in_code(REPO)
    assert -1 not in used, used[-1]
    # If the code stops naming codes in a way the collector reads, this fails: teach it the new way.
    assert {1000, 1008, 1012, 1013, 4401, 4404, 4408, 4429} <= set(used), sorted(used)


def test_every_close_code_in_use_is_documented():
    used = close_codes_in_code(REPO)
    documented = documented_close_codes(PROTOCOL_DOC.read_text())
    missing = {code: sorted(where) for code, where in used.items() if code not in documented}
    assert missing == {}, "close codes used but not in docs/protocol.md's close-code table"


def test_the_close_code_check_fails_on_a_missing_code(tmp_path):
    ws = tmp_path / "services" / "ws"
    ws.mkdir(parents=True)
    (ws / "consumers.py").write_text(
        "class C:\n    async def connect(self):\n"
        "        await self.refuse(4401)\n        await self.close(code=4999)\n")
    (ws / "limits.py").write_text("def refusal():\n    return 1013\n")
    used = close_codes_in_code(tmp_path)
    assert set(used) == {4401, 4999, 1013}
    table = ("## Close codes\n\n| code | meaning |\n| --- | --- |\n| `4401` | no |\n| `1013` | full |\n"
             "\nAfter the table.\n| 4999 | not in the table |\n")
    assert documented_close_codes(table) == {4401, 1013}
    assert set(used) - documented_close_codes(table) == {4999}


def test_the_close_code_collector_resolves_the_enum(tmp_path):
    schema = tmp_path / "src" / "jobcast" / "events"
    schema.mkdir(parents=True)
    (schema / "schema.py").write_text("class CloseCode(IntEnum):\n    NOT_FOUND = 4404\n    GONE = 4410\n")
    ws = tmp_path / "services" / "ws"
    ws.mkdir(parents=True)
    (ws / "consumers.py").write_text("await self.refuse(CloseCode.NOT_FOUND)\nawait self.close(code=CloseCode.NOPE)\n")
    used = close_codes_in_code(tmp_path)
    assert {4404, 4410} <= set(used) and "services/ws/consumers.py: CloseCode.NOPE is not defined" in used[-1]
