"""Rule summarize: tables/runs.csv (one row per run) and tables/summary.csv (mean ± std over seeds)."""

from pathlib import Path

import xarray as xr

from ddscope.analyses import open_metric
from ddscope.artifacts import atomic_path
from ddscope.joblog import expected_errors, job_logger
from ddscope.summary import run_row, runs_table, summary_table

log = job_logger(snakemake.log[0])
with expected_errors(log):
    metrics_dir = Path(snakemake.output.runs).parent.parent / "metrics"
    rows = []
    for run, curves_path in zip(snakemake.params.runs, snakemake.input.curves):
        with xr.open_dataset(curves_path, engine="h5netcdf") as curves:
            curves = curves.load()
        source = curves.attrs["train_config_sha256"]
        metrics = {a: open_metric(metrics_dir / run / f"{a}.nc", source) for a in snakemake.params.analyses}
        rows.append(run_row(run, metrics, curves))
    runs = runs_table(rows)
    for path, table in [(snakemake.output.runs, runs), (snakemake.output.summary, summary_table(runs))]:
        with atomic_path(path) as tmp:
            table.to_csv(tmp, index=False, float_format="%.6g")
    log.info(f"{len(runs)} runs, {runs.shape[1]} columns")
