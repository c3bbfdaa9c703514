"""The configuration reference (docs/configuration.md) is the schema's, and every schema key is described."""

from __future__ import annotations

import yaml
from conftest import REPO, SCHEMA

from ddscope.schema_doc import REGENERATE, allowed, keys, render, undocumented


def schema() -> dict:
    return yaml.safe_load(SCHEMA.read_text())


def test_configuration_page_is_generated_from_the_schema():
    page = REPO / "docs" / "configuration.md"
    assert page.exists(), f"docs/configuration.md is missing: run `{REGENERATE}`"
    assert page.read_text() == render(schema()), (
        f"docs/configuration.md differs from schemas/config.schema.yaml: run `{REGENERATE}` and commit the result")


def test_every_schema_key_has_a_description():
    missing = undocumented(schema())
    assert not missing, f"schemas/config.schema.yaml: no description for {', '.join(missing)}"


SMALL = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "pattern": "^[a-z]+$", "description": "the name"},
        "part": {
            "type": "object",
            "default": {},
            "description": "a section",
            "properties": {
                "rate": {"type": "number", "minimum": 0, "exclusiveMaximum": 1, "default": 0.5},
                "pair": {"type": "array", "minItems": 2, "maxItems": 2, "items": {"enum": ["a", "b"]},
                         "default": ["a", "b"], "description": "two | letters"},
                "when": {"description": "a mapping or a list",
                         "oneOf": [{"type": "object", "properties": {"first": {"type": "integer", "default": 3}}},
                                   {"type": "array", "minItems": 1, "items": {"type": "integer"}}]},
            },
        },
        "nets": {"type": "object", "additionalProperties": {
            "type": "object", "properties": {"hidden": {"type": "array", "items": {"type": "integer"},
                                                         "description": "widths"}}}},
    },
}


def test_every_key_is_walked_with_its_dotted_path():
    assert [(path, required) for path, _, required in keys(SMALL)] == [
        ("name", True), ("part", False), ("part.rate", False), ("part.pair", False), ("part.when", False),
        ("part.when.first", False), ("nets", False), ("nets.<name>.hidden", False)]
    assert undocumented(SMALL) == ["part.rate", "part.when.first", "nets"]


def test_allowed_values_bounds_and_defaults_are_rendered():
    page = render(SMALL)
    assert "| `name` | a string matching `^[a-z]+$` | required | the name |" in page
    assert "| `part.rate` | a number >= 0 and < 1 | `0.5` |  |" in page
    assert ("| `part.pair` | a list (exactly 2 items), each one of a, b | `[\"a\", \"b\"]` | two \\| letters |"
            in page)
    assert allowed(SMALL["properties"]["part"]["properties"]["when"]) == (
        "a mapping or a list (at least 1 item), each an integer")
    assert "## part\n\na section\n\nLeft out, every key below takes its default." in page
    assert "| `nets.<name>.hidden` | a list (any number of items), each an integer | — | widths |" in page
