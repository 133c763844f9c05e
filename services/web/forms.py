"""The submit form of a job kind, generated from its params' JSON Schema (what GET /api/kinds/ publishes).

`fields_for(schema)` turns the schema's properties into form fields (type, bounds,
default, help text) for the template, with the same HTML constraints the page's script
checks before sending; `parse(fields, data)` turns a posted form back into params, with a
message per field it cannot read. The kind's own model then validates the params on the
server (jobcast.jobs.services.job_submit), and its field errors are shown next to the same
fields.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

# Widgets: the kind of input each schema type gets.
NUMBER, INTEGER, BOOLEAN, TEXT, CHOICE, LINES, JSON = "number", "integer", "boolean", "text", "choice", "lines", "json"


@dataclass
class FormField:
    """One parameter as a form field."""

    name: str
    label: str
    widget: str
    required: bool = False
    nullable: bool = False
    help: str = ""
    minimum: Any = None
    maximum: Any = None
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None
    choices: list = field(default_factory=list)
    value: str = ""  # as shown in the input
    checked: bool = False
    errors: list[str] = field(default_factory=list)

    @property
    def html_id(self) -> str:
        return f"param-{self.name}"


def _effective(schema: dict) -> tuple[dict, bool]:
    """The schema of the value's non-null type, and whether null is allowed (`anyOf: [T, null]`)."""
    options = schema.get("anyOf")
    if not options:
        return schema, schema.get("type") == "null"
    non_null = [option for option in options if option.get("type") != "null"]
    nullable = len(non_null) < len(options)
    if len(non_null) == 1:
        return {**non_null[0], **{k: v for k, v in schema.items() if k != "anyOf"}}, nullable
    return {}, nullable  # a union of several types: typed as JSON


def _shown(value: Any, widget: str) -> str:
    if value is None:
        return ""
    if widget == LINES:
        return "\n".join(str(item) for item in value)
    if widget == JSON:
        return json.dumps(value)
    return str(value)


def fields_for(schema: dict) -> list[FormField]:
    """The form fields of a params JSON Schema, in the schema's order, with its defaults filled in."""
    required = set(schema.get("required", []))
    fields = []
    for name, prop in (schema.get("properties") or {}).items():
        inner, nullable = _effective(prop)
        kind = inner.get("type")
        if "enum" in inner:
            widget = CHOICE
        elif kind == "integer":
            widget = INTEGER
        elif kind == "number":
            widget = NUMBER
        elif kind == "boolean":
            widget = BOOLEAN
        elif kind == "string":
            widget = TEXT
        elif kind == "array" and (inner.get("items") or {}).get("type") == "string":
            widget = LINES
        else:
            widget = JSON
        default = prop.get("default")
        item = FormField(
            name=name, label=prop.get("title") or name.replace("_", " ").capitalize(), widget=widget,
            required=name in required, nullable=nullable, help=prop.get("description", ""),
            minimum=inner.get("minimum", inner.get("exclusiveMinimum")),
            maximum=inner.get("maximum", inner.get("exclusiveMaximum")),
            min_length=inner.get("minLength", inner.get("minItems")), max_length=inner.get("maxLength", inner.get("maxItems")),
            pattern=inner.get("pattern"), choices=list(inner.get("enum", [])),
            value=_shown(default, widget), checked=bool(default) if widget == BOOLEAN else False,
        )
        fields.append(item)
    return fields


def parse(fields: list[FormField], data) -> dict[str, Any]:
    """Params from a posted form (`data`: request.POST); fields it cannot read get an error and
    keep what was typed. An empty optional field is left out (the kind's default applies) or
    sent as null when null is allowed."""
    params: dict[str, Any] = {}
    for item in fields:
        raw = data.get(item.name, "")
        if item.widget == BOOLEAN:
            item.checked = raw in ("on", "true", "1")
            params[item.name] = item.checked
            continue
        item.value = raw
        text = raw.strip()
        if text == "":
            if item.nullable:
                params[item.name] = None
            elif item.required:
                item.errors.append("This field is required.")
            continue
        try:
            if item.widget == INTEGER:
                params[item.name] = int(text)
            elif item.widget == NUMBER:
                number = float(text)
                if number != number or number in (float("inf"), float("-inf")):
                    raise ValueError(text)
                params[item.name] = number
            elif item.widget == LINES:
                params[item.name] = [line.strip() for line in raw.splitlines() if line.strip()]
            elif item.widget == JSON:
                params[item.name] = json.loads(text)
            else:
                params[item.name] = raw
        except ValueError:
            item.errors.append({INTEGER: "Enter a whole number.", NUMBER: "Enter a number.",
                                JSON: "Enter valid JSON."}.get(item.widget, "Enter a valid value."))
    return params


def attach_errors(fields: list[FormField], errors: list[dict]) -> list[str]:
    """Put the server's field errors (loc ["body", "params", name, ...]) on their fields;
    returns the messages that belong to no field."""
    by_name = {item.name: item for item in fields}
    rest = []
    for error in errors:
        loc = list(error.get("loc") or [])
        msg = str(error.get("msg", ""))
        if loc[:2] == ["body", "params"] and len(loc) > 2 and loc[2] in by_name:
            where = loc[3:]
            if where and isinstance(where[0], int):
                msg = f"Line {where[0] + 1}: {msg}"  # an item of a list: the form shows one per line
            by_name[loc[2]].errors.append(msg)
        else:
            rest.append(msg)
    return rest
