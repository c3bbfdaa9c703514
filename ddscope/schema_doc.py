"""The configuration reference (docs/configuration.md), generated from schemas/config.schema.yaml.

    python -m ddscope.schema_doc          # rewrites docs/configuration.md

Every key of the schema becomes one row: its dotted path, the values it allows (in the words of the config
errors, ddscope.config), its default and its description, grouped by top-level section. tests/test_docs.py
fails when the page differs from what `render` makes of the schema, and when a key has no description.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from .config import _allowed

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "schemas" / "config.schema.yaml"
OUTPUT = REPO / "docs" / "configuration.md"
REGENERATE = "python -m ddscope.schema_doc"


def keys(node: dict, path: str = ""):
    """(dotted path, schema node, required) for every key under `node`, depth first in the schema's order.

    A mapping of free names (`models`) contributes its entries' keys as `<name>.key`; a key that is either a
    mapping or a list (`oneOf`, as record.epochs) contributes the mapping's keys.
    """
    required = set(node.get("required", ()))
    for name, sub in node.get("properties", {}).items():
        dotted = f"{path}.{name}" if path else name
        yield dotted, sub, name in required
        yield from keys(sub, dotted)
    for branch in node.get("oneOf", ()):
        yield from keys(branch, path)
    entry = node.get("additionalProperties")
    if isinstance(entry, dict):
        yield from keys(entry, f"{path}.<name>")


def undocumented(schema: dict) -> list[str]:
    """Dotted paths of the keys that have no `description`."""
    return [path for path, node, _ in keys(schema) if not node.get("description")]


def _literal(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _count(node: dict) -> str:
    low, high = node.get("minItems") or None, node.get("maxItems")
    if low is None and high is None:
        return "any number of items"
    if low == high or high is None:
        text, last = (f"exactly {low}" if low == high else f"at least {low}"), low
    else:
        text, last = (f"{low} to {high}" if low else f"at most {high}"), high
    return f"{text} item{'' if last == 1 else 's'}"


def allowed(node: dict) -> str:
    """What a key accepts, for the reference's table."""
    if "oneOf" in node:
        return " or ".join(allowed(branch) for branch in node["oneOf"])
    if node.get("type") == "array":
        unique = ", no repeats" if node.get("uniqueItems") else ""
        return f"a list ({_count(node)}{unique}), each {allowed(node.get('items', {}))}"
    if node.get("type") == "object" or "properties" in node:
        if "propertyNames" in node:
            return f"a mapping of names matching `{node['propertyNames']['pattern']}`"
        return "a mapping"
    text = _allowed(node)
    if "pattern" in node:  # shown as code: the pattern's characters are not Markdown
        text = text.replace(f" matching {node['pattern']}", f" matching `{node['pattern']}`")
    return text


def _cell(text: str) -> str:
    """One line of a table cell: a `|` outside code would end the cell (inside code, Markdown's tables keep it)."""
    parts = " ".join(str(text).split()).split("`")
    return "`".join(part if i % 2 else part.replace("|", "\\|") for i, part in enumerate(parts))


def _prose(text: str) -> str:
    """A description as Markdown text: `<study>` is no HTML tag and `f*(x) … E[f*²]` no emphasis."""
    return _cell(text).replace("<", "&lt;").replace("*", "\\*")


def _row(path: str, node: dict, required: bool) -> str:
    default = "required" if required else (f"`{_literal(node['default'])}`" if "default" in node else "—")
    return f"| `{path}` | {_cell(allowed(node))} | {default} | {_prose(node.get('description', ''))} |"


def render(schema: dict) -> str:
    """docs/configuration.md for `schema` (the parsed schemas/config.schema.yaml)."""
    lines = [
        "# Configuration reference",
        "",
        "<!-- Generated from schemas/config.schema.yaml by `python -m ddscope.schema_doc`; do not edit by hand. -->",
        "",
        _prose(schema.get("description", "")),
        "",
        "Keys are written as dotted paths: `train.lr` is `lr` inside `train:`, and `<name>` stands for a name "
        "you choose. A default is what a key takes when no config file sets it; a section with a default takes "
        "the defaults of all its keys when it is left out. How config files combine into a study is on the "
        "[Studies](studies.md) page.",
    ]
    required = set(schema.get("required", ()))
    for section, node in schema.get("properties", {}).items():
        lines += ["", f"## {section}", ""]
        if node.get("description"):
            lines += [_prose(node["description"]), ""]
        rows = list(keys(node, section))
        if section in required or not rows:
            rows.insert(0, (section, node, section in required))
        elif "default" in node:
            lines += ["Left out, every key below takes its default.", ""]
        lines += ["| key | allowed | default | description |", "|---|---|---|---|"]
        lines += [_row(path, sub, req) for path, sub, req in rows]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schema", type=Path, default=SCHEMA)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    args.output.write_text(render(yaml.safe_load(args.schema.read_text())))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
