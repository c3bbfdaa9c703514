"""Rules threshold_plot_<figure>: figures/threshold_<figure>.png from threshold/threshold_sweep.nc."""

from ddscope.artifacts import read_netcdf
from ddscope.joblog import expected_errors, job_logger
from ddscope.plots import THRESHOLD_FIGURES, save_figure

log = job_logger(snakemake.log[0])
with expected_errors(log):
    ds = read_netcdf(snakemake.input.sweep)
    style = snakemake.params.style
    fig = THRESHOLD_FIGURES[snakemake.params.figure](ds, band=style["band"])
    save_figure(fig, snakemake.output.figure, dpi=style["dpi"])
    log.info(f"wrote {snakemake.output.figure}")
