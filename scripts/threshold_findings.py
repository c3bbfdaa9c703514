"""Rule threshold_findings: threshold/findings_rows.md, the threshold study's rows of findings.md (rule findings merges them)."""

from ddscope.artifacts import atomic_path, read_netcdf
from ddscope.joblog import expected_errors, job_logger
from ddscope.threshold.findings import findings_fragment, findings_rows

log = job_logger(snakemake.log[0])
with expected_errors(log):
    rows = findings_rows(read_netcdf(snakemake.input.sweep))
    with atomic_path(snakemake.output.findings) as tmp:
        tmp.write_text(findings_fragment(snakemake.params.study, rows))
    for claim, _, measured, _, verdict in rows:
        log.info(f"{verdict:>13}: {measured}")
