"""Rules threshold_plot_<figure>: figures/threshold_<figure>.png from threshold/threshold_sweep.nc."""

import xarray as xr

from ddscope.joblog import expected_errors, job_logger
from ddscope.threshold_plots import PLOTS, save_figure

log = job_logger(snakemake.log[0])
with expected_errors(log):
    with xr.open_dataset(snakemake.input.sweep, engine="h5netcdf") as ds:
        ds = ds.load()
    style = snakemake.params.style
    fig = PLOTS[snakemake.params.figure](ds, band=style["band"])
    save_figure(fig, snakemake.output.figure, dpi=style["dpi"])
    log.info(f"wrote {snakemake.output.figure}")
