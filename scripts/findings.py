"""Rule findings: findings.md, one row per claim with the measured numbers and a verdict."""

import pandas as pd

from ddscope.artifacts import atomic_path
from ddscope.findings import findings_markdown, findings_rows
from ddscope.joblog import expected_errors, job_logger

log = job_logger(snakemake.log[0])
with expected_errors(log):
    runs = pd.read_csv(snakemake.input.runs)
    rows = findings_rows(runs, snakemake.params.depths, snakemake.params.criteria, snakemake.params.ratio_threshold)
    with atomic_path(snakemake.output.findings) as tmp:
        tmp.write_text(findings_markdown(snakemake.params.study, rows))
    for claim, _, _, verdict in rows:
        log.info(f"{verdict:>13}: {claim}")
