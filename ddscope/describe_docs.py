"""The variable tables of docs/outputs.md, made from the tables the writers describe their files with.

    python -m ddscope.describe_docs           # rewrite the block between the markers in docs/outputs.md
    python -m ddscope.describe_docs --check   # exit 1 if the block is not what the tables give

Every file a study writes describes its variables and coordinates from one table {name: (long_name, units)}
(ddscope.artifacts.describe / cf_attrs); this module lists those tables, in the order of the study tree, so the
documentation cannot name a variable a file does not have, nor miss one.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs" / "outputs.md"
START, END = "<!-- variables:start -->", "<!-- variables:end -->"


def output_tables() -> dict[str, dict[str, tuple[str, str]]]:
    """File (relative to results/<study>/) -> its table, for every file with variables a study writes."""
    from ddscope import recording
    from ddscope.analyses.registry import ANALYSES, analysis_module
    from ddscope.artifacts import CURVES_CF_ATTRS, H5_LAYOUTS
    from ddscope.study import RUN_COORDS_CF_ATTRS
    from ddscope.threshold.sweep import RUN_CF_ATTRS, SWEEP_CF_ATTRS

    h5 = dict(H5_LAYOUTS)
    tables = {"data/dataset.h5": h5.pop("data/dataset.h5"), "labels/<noise>.h5": h5.pop("labels/<noise>.h5"),
              "runs/<run>/curves.nc": CURVES_CF_ATTRS, "runs/<run>/activations.zarr": recording.CF_ATTRS}
    tables.update({f"metrics/<run>/{name}.nc": analysis_module(name).CF_ATTRS for name in ANALYSES})
    tables.update(h5)  # the threshold study's
    tables.update({"threshold/runs/n<n>.nc": RUN_CF_ATTRS, "threshold/threshold_sweep.nc": SWEEP_CF_ATTRS,
                   "open_study(...): the run coordinates of every node": RUN_COORDS_CF_ATTRS})
    return tables


def _cell(text: str) -> str:
    """Text for a Markdown table cell: `|` ends a cell, `<l>` would be read as an HTML tag."""
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def variables_block() -> str:
    """The Markdown between the markers: one table of variable, long_name and units per file."""
    parts = []
    for file, table in output_tables().items():
        title = file if file.startswith("open_study") else f"`{file}`"
        rows = [f"| `{name}` | {_cell(long_name)} | `{units}` |" for name, (long_name, units) in table.items()]
        parts.append("\n".join([f"#### {title}", "", "| variable | long_name | units |", "|---|---|---|", *rows]))
    return "\n\n".join(parts)


def with_current_block(text: str) -> str:
    """`text` (docs/outputs.md) with the block between START and END replaced by variables_block()."""
    if text.count(START) != 1 or text.count(END) != 1 or text.index(START) > text.index(END):
        raise ValueError(f"{DOCS}: needs one {START} ... {END} block")
    head, rest = text.split(START)
    _, tail = rest.split(END)
    return f"{head}{START}\n{variables_block()}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Regenerate the variable tables of docs/outputs.md.")
    parser.add_argument("--check", action="store_true", help="only check; exit 1 if the tables are stale")
    args = parser.parse_args(argv)
    text = DOCS.read_text()
    current = with_current_block(text)
    if args.check:
        if current != text:
            print(f"{DOCS}: the variable tables are stale; run python -m ddscope.describe_docs", file=sys.stderr)
            return 1
        return 0
    if current != text:
        DOCS.write_text(current)
        print(f"wrote {DOCS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
