"""Shared test helpers. Keep this file small: each test file owns its own fixtures.

Workflow tests import the helpers directly: `from conftest import REPO, run_snakemake, scheduled_jobs`.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "Snakefile"
SCHEMA = REPO / "schemas" / "config.schema.yaml"

# test the checkout, also when ddscope is not pip-installed
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def run_snakemake(workdir, *args, configfile=None, cores=2, timeout=300) -> subprocess.CompletedProcess:
    """`snakemake -s <repo>/Snakefile --directory <workdir> --cores <cores> *args [--configfile ...]`, run in workdir.

    Output is captured as text; the exit status is not checked (callers assert on it).
    """
    cmd = [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "--directory", str(workdir), "--cores", str(cores)]
    cmd += [str(a) for a in args]
    if configfile is not None:
        # last: --configfile takes several values and would swallow the targets that follow it
        cmd += ["--configfile", str(configfile)]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=timeout, env=env)


_STATS_ROW = re.compile(r"^\s*(\S+)\s+(\d+)\s*$")


def scheduled_jobs(output: str) -> dict[str, int]:
    """Rule name -> job count from the first "Job stats:" table of a (dry-)run's output; {} if nothing is scheduled.

    Pass stdout (and stderr, if unsure where the table went); the `total` row is left out.
    """
    lines = output.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "Job stats:")
    except StopIteration:
        return {}
    jobs: dict[str, int] = {}
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        if line.split()[0] == "job" or set(line.strip()) <= {"-", " "}:
            continue  # header and rule
        match = _STATS_ROW.match(line)
        if not match:
            break
        name, count = match.group(1), int(match.group(2))
        if name == "total":
            break
        jobs[name] = count
    return jobs
