"""The Snakemake report describes today's workflow: report/workflow.rst (the intro) lists every analysis of the
registry and every claim findings.md can hold, every figure has a non-empty caption, and the rules attach each
caption to its figure, checked in a report rendered for real by `snakemake --report`.

The helpers `report_parts`, `intro_analysis_lines` and `assert_captions_attached` also check the report of the
finished tiny study in test_workflow_study.py.
"""

from __future__ import annotations

import base64
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml
from conftest import REPO, run_snakemake

from ddscope.analyses.registry import ANALYSES, FIGURES
from ddscope.findings import CLAIMS, SWEEP_CLAIMS, findings_markdown, table_rows
from ddscope.plots import THRESHOLD_FIGURES
from ddscope.threshold import findings as threshold_findings

REPORT = REPO / "report"
INTRO = REPORT / "workflow.rst"
# figure (figures/<figure>.png) -> its caption; the threshold rules name theirs threshold_<figure> (rules/threshold.smk)
CAPTIONS = {name: REPORT / f"{name}.rst" for name in [*FIGURES, *(f"threshold_{f}" for f in THRESHOLD_FIGURES)]}
FINDINGS_CAPTION = REPORT / "findings.rst"


# --- reading the rst ------------------------------------------------------------------------------------


def plain(rst: str) -> str:
    """The text of an rst fragment as the rendered HTML shows it: inline markup removed, whitespace collapsed."""
    text = re.sub(r"``(.+?)``", r"\1", rst)
    text = re.sub(r"`([^`]+?)`_", r"\1", text)
    text = re.sub(r"\*\*(.+?)\*\*", r"\1", text)
    text = re.sub(r"(?<![\w*])\*(\S.*?)\*(?![\w*])", r"\1", text)
    return " ".join(text.split())


def sections(rst: str) -> dict[str, str]:
    """Section title -> its text, for the sections underlined with `-` (the intro's second level)."""
    lines = rst.splitlines()
    starts = [i for i in range(1, len(lines)) if lines[i] and set(lines[i]) == {"-"} and lines[i - 1].strip()]
    out = {}
    for k, i in enumerate(starts):
        end = starts[k + 1] - 1 if k + 1 < len(starts) else len(lines)
        out[lines[i - 1].strip()] = "\n".join(lines[i + 1:end])
    return out


def bullet_items(text: str) -> list[str]:
    """The items of the bullet lists of `text`, each joined into one line (continuation lines are indented)."""
    items, current = [], None
    for line in text.splitlines():
        if line.startswith("- "):
            current = [line[2:]]
            items.append(current)
        elif current is not None and line.startswith("  ") and line.strip():
            current.append(line.strip())
        else:
            current = None
    return [" ".join(" ".join(item).split()) for item in items]


def intro_section(title: str) -> str:
    found = sections(INTRO.read_text())
    assert title in found, f"report/workflow.rst has no section {title!r} (it has {', '.join(found)})"
    return found[title]


def intro_analyses() -> dict[str, str]:
    """Analysis name -> its item in the intro's Analyses section (items start with the ``name``)."""
    out = {}
    for item in bullet_items(intro_section("Analyses")):
        match = re.match(r"``(\w+)``: ", item)
        assert match, f"an item of the Analyses section does not start with ``<analysis>``: {item!r}"
        out[match.group(1)] = item
    return out


def intro_analysis_lines() -> list[str]:
    """The intro's analysis lines as the rendered report shows them."""
    return [plain(item) for item in intro_analyses().values()]


def intro_claims() -> dict[str, str]:
    """Row id (`1`, `M1`, `T1`) -> its item in the intro's Claims section (items start with the **id**)."""
    out = {}
    for item in bullet_items(intro_section("Claims")):
        match = re.match(r"\*\*(\w+)\*\* (.+)", item)
        assert match, f"an item of the Claims section does not start with **<row id>**: {item!r}"
        out[match.group(1)] = match.group(2)
    return out


def caption_first_sentence(path: Path) -> str:
    """The first sentence of a caption's first paragraph, as plain text ("et al." ends no sentence)."""
    paragraph = path.read_text().strip().split("\n\n")[0]
    assert "{%" not in paragraph and "{{" not in paragraph, f"{path.name}: its first paragraph is a template"
    return re.split(r"(?<!et al)\.\s", plain(paragraph) + " ", maxsplit=1)[0]


# --- the claims findings.md can hold --------------------------------------------------------------------


def findings_claims(monkeypatch) -> dict[str, str]:
    """Row id -> claim of every row findings.md can hold, numbered by findings.py itself: CLAIMS, SWEEP_CLAIMS and
    the threshold study's rows (their numbers are stubbed out: only the claims and their count matter here)."""
    monkeypatch.setattr(threshold_findings, "threshold_row", lambda ds: ("", "", ""))
    monkeypatch.setattr(threshold_findings, "alignment_row", lambda ds: ("", "", ""))
    threshold_rows = table_rows(threshold_findings.findings_fragment("any", threshold_findings.findings_rows(None)))
    rows = [(claim, source, "", "", "") for claim, source, _ in [*CLAIMS, *SWEEP_CLAIMS]]
    cells = [[c.strip() for c in line.strip().strip("|").split("|")]
             for line in table_rows(findings_markdown("any", rows, threshold_rows))]
    return {row[0]: row[1] for row in cells}


# --- the rendered report --------------------------------------------------------------------------------


class _Text(HTMLParser):
    def __init__(self):
        super().__init__()
        self.parts: list[str] = []

    def handle_data(self, data):
        self.parts.append(data)


def html_text(fragment: str) -> str:
    parser = _Text()
    parser.feed(fragment)
    return " ".join("".join(parser.parts).split())  # character references are already decoded


def report_scripts(html: str) -> tuple[str, dict[str, str], dict[str, list[str]]]:
    """(intro HTML, result path -> caption HTML, category -> result paths) of a Snakemake HTML report, from the
    JSON it embeds for its scripts."""
    def script(script_id: str, name: str):
        match = re.search(rf'<script id="{script_id}">\s*var {name} = (.*?);\s*</script>', html, re.S)
        assert match, f"no {name} in the report"
        return json.loads(match.group(1))

    categories = {cat: [p for paths in subcats.values() for p in paths]
                  for cat, subcats in script("categories", "categories").items()}
    results = {path: res["caption"] for path, res in script("results", "results").items()}
    return script("workflow-desc", "workflow_desc"), results, categories


def report_parts(html: str) -> tuple[str, dict[str, str], dict[str, list[str]]]:
    """`report_scripts` with the intro and the captions as plain text; fails on any error docutils reported
    in them (an unknown link target, broken markup: a `system-message` in the HTML)."""
    intro, captions, categories = report_scripts(html)
    for name, fragment in [("report/workflow.rst", intro), *captions.items()]:
        assert "system-message" not in fragment, f"docutils reports an error in the rst of {name}"
    return html_text(intro), {path: html_text(c) for path, c in captions.items()}, categories


# --- the files ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [*CAPTIONS, "findings"])
def test_every_figure_and_findings_have_a_caption(name):
    path = CAPTIONS.get(name, FINDINGS_CAPTION)
    assert path.is_file(), f"{name} has no caption file report/{path.name}"
    assert len(caption_first_sentence(path).split()) >= 5, f"report/{path.name} does not open with a sentence"


def test_every_report_text_belongs_to_something():
    """No caption outlives its figure."""
    known = {INTRO, FINDINGS_CAPTION, *CAPTIONS.values()}
    assert sorted(p.name for p in REPORT.glob("*.rst") if p not in known) == []


def test_every_analysis_is_drawn_by_a_captioned_figure():
    for analysis in ANALYSES:
        figures = [f for f, spec in FIGURES.items() if analysis in spec["inputs"]]
        assert figures, f"no figure of FIGURES draws the analysis {analysis}: its results never reach the report"
        assert all(CAPTIONS[f].is_file() for f in figures), analysis


def test_intro_has_one_line_per_analysis_naming_its_source():
    lines = intro_analyses()
    assert set(lines) == set(ANALYSES), (sorted(set(ANALYSES) - set(lines)), sorted(set(lines) - set(ANALYSES)))
    for name, line in lines.items():
        assert re.search(r"\b(19|20)\d\d\b", line), f"the intro's line of {name} names no paper"


def test_intro_has_one_line_per_claim_of_findings(monkeypatch):
    expected, listed = findings_claims(monkeypatch), intro_claims()
    assert list(listed) == list(expected), "the intro's claims are not findings.md's rows, in order"
    for row, claim in expected.items():
        assert " ".join(claim.split()) in listed[row], f"row {row}: the intro does not quote the claim {claim!r}"


# --- a report rendered for real -------------------------------------------------------------------------

# a 1×1 PNG: the report embeds whatever the figure files hold
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")
# every figure: named models with a 0 %-noise control, a sweep and a threshold study
EVERYTHING = {
    "study": "everything",
    "dataset": {"name": "mnist1d", "n_train": 600, "n_test": 200},
    "noise": {"rates": [0.0, 0.3]},
    "probes": {"clean": 40, "noisy": 30, "test": 40},
    "models": {"mlp3": {"hidden": [16, 16]}},
    "sweep": {"family": "mlp", "depths": [2], "widths": [8, 16]},
    "train": {"seeds": [0, 1], "epochs": 6},
    "record": {"epochs": {"first": 2, "log_count": 3}},
    "threshold": {"n_min": 4, "n_max": 16, "n_points": 3, "seeds": [0], "steps": 10},
}
THRESHOLD_ONLY = {"study": "threshold-only", "threshold": EVERYTHING["threshold"]}


def rendered_report(workdir: Path, config: dict) -> str:
    """`snakemake --report` of a study whose report files (every figure, findings.md) are stand-ins: the report
    reads only those, so the captions and the intro are rendered as for a finished study, without training."""
    root = workdir / "results" / config["study"]
    (root / "figures").mkdir(parents=True)
    for name in CAPTIONS:
        (root / "figures" / f"{name}.png").write_bytes(PNG)
    (root / "findings.md").write_text("# Findings\n")
    configfile = workdir / "study.yaml"
    configfile.write_text(yaml.safe_dump(config))
    result = run_snakemake(workdir, "--report", workdir / "report.html", configfile=configfile, cores=1)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return (workdir / "report.html").read_text()


def assert_captions_attached(captions: dict[str, str], root: str, figures) -> None:
    """Each figure's and findings.md's caption in the report is the rendering of its own caption file."""
    for name in figures:
        path = f"{root}/figures/{name}.png"
        assert path in captions, f"{name}.png is not in the report"
        assert caption_first_sentence(CAPTIONS[name]) in captions[path], f"{name}.png: not its caption report/{name}.rst"
    assert caption_first_sentence(FINDINGS_CAPTION) in captions[f"{root}/findings.md"]


@pytest.mark.slow
def test_rendered_report_of_every_figure(tmp_path, monkeypatch):
    intro, captions, categories = report_parts(rendered_report(tmp_path, EVERYTHING))
    assert_captions_attached(captions, "results/everything", CAPTIONS)
    for line in intro_analysis_lines():
        assert line in intro, line
    for row, claim in findings_claims(monkeypatch).items():
        assert f"{row} {' '.join(claim.split())}" in intro, row
    # the study's own config: its name, models (named and swept) and noise rates
    assert "Study everything." in intro and "at the rates 0 %, 30 % (the 0 % runs are the controls" in intro
    assert all(f"{m} (an MLP, hidden layers" in intro for m in ("mlp3", "mlp2w8", "mlp2w16")), intro[:2000]
    for category in categories:  # each category the report shows is described in the intro
        assert re.search(rf"{re.escape(category)}: \w+", intro), category


@pytest.mark.slow
def test_rendered_report_of_a_threshold_study(tmp_path):
    intro, captions, categories = report_parts(rendered_report(tmp_path, THRESHOLD_ONLY))
    assert_captions_attached(captions, "results/threshold-only", [f"threshold_{f}" for f in THRESHOLD_FIGURES])
    assert "Study threshold-only." in intro and "optimization-threshold study" in intro
    assert set(categories) == {"Optimization threshold", "Findings"}
    for category in categories:
        assert re.search(rf"{re.escape(category)}: \w+", intro), category
