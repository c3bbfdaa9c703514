"""Rule summarize: tables/runs.csv (one row per run) and tables/summary.csv (mean ± std over seeds).

Inputs: `curves` and one list per analysis, each in the order of params.runs.
"""

from ddscope.analyses.compute import open_metric
from ddscope.artifacts import atomic_path, read_netcdf
from ddscope.joblog import expected_errors, job_logger
from ddscope.summary import run_row, runs_table, summary_table

log = job_logger(snakemake.log[0])
with expected_errors(log):
    rows = []
    for i, run in enumerate(snakemake.params.runs):
        curves = read_netcdf(snakemake.input.curves[i])
        source = curves.attrs["train_config_sha256"]
        metrics = {a: open_metric(snakemake.input[a][i], source) for a in snakemake.params.analyses}
        rows.append(run_row(run, metrics, curves))
    runs = runs_table(rows)
    for path, table in [(snakemake.output.runs, runs), (snakemake.output.summary, summary_table(runs))]:
        with atomic_path(path) as tmp:
            table.to_csv(tmp, index=False, float_format="%.6g")
    log.info(f"{len(runs)} runs, {runs.shape[1]} columns")
