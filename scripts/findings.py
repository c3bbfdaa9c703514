"""Rule findings: findings.md, one row per claim with the measured numbers and a verdict.

Rows of the noisy-label study come from tables/runs.csv; those of the threshold study (if the config has one)
from its threshold/findings_rows.md, appended as they are.
"""

from pathlib import Path

import pandas as pd

from ddscope.artifacts import atomic_path
from ddscope.findings import findings_markdown, findings_rows, table_rows
from ddscope.joblog import expected_errors, job_logger

log = job_logger(snakemake.log[0])
with expected_errors(log):
    rows, extra, sources = [], [], []
    if "runs" in snakemake.input.keys():
        runs = pd.read_csv(snakemake.input.runs)
        rows = findings_rows(runs, snakemake.params.depths, snakemake.params.criteria, snakemake.params.ratio_threshold,
                             sweep=snakemake.params.sweep)
        sources.append("tables/runs.csv")
    if "threshold" in snakemake.input.keys():
        extra = table_rows(Path(snakemake.input.threshold).read_text())
        sources.append("threshold/threshold_sweep.nc")
    with atomic_path(snakemake.output.findings) as tmp:
        tmp.write_text(findings_markdown(snakemake.params.study, rows, extra, " and ".join(sources)))
    for claim, *_, verdict in rows:
        log.info(f"{verdict:>13}: {claim}")
    for line in extra:
        log.info(line)
