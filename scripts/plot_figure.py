"""Rules plot_<figure>: figures/<figure>.png from the curves / metric files of every run of the study.

Named inputs are lists over the runs (curves: runs/<run>/curves.nc, any other name: metrics/<run>/<name>.nc);
params.figure picks the function (ddscope.plots.FIGURE_FUNCTIONS), params.inputs names the inputs it takes,
in order, params.style is config["figures"] (dpi, band); a figure across a sweep also gets params.sweep
(model -> {depth, width}).
"""

from ddscope import plots
from ddscope.analyses.compute import open_metric
from ddscope.artifacts import ArtifactError, read_netcdf
from ddscope.joblog import expected_errors, job_logger


def load(name, paths, sources):
    """run -> dataset for one named input; every file of a run must come from the same training run."""
    out = {}
    for path in paths:
        ds = read_netcdf(path) if name == "curves" else open_metric(path)
        run, sha = ds.attrs["run"], ds.attrs.get("train_config_sha256")
        if sources.setdefault(run, sha) != sha:
            raise ArtifactError(f"{path}: computed from another version of run {run}; rerun its extract job")
        out[run] = ds
    return out


log = job_logger(snakemake.log[0])
with expected_errors(log):
    figure = snakemake.params.figure
    function = plots.FIGURE_FUNCTIONS[figure]
    style = snakemake.params.style
    sources = {}
    data = [load(name, getattr(snakemake.input, name), sources) for name in snakemake.params.inputs]
    # only the sweep figures get params.sweep (each model's depth and width)
    extra = {"sweep": snakemake.params.sweep} if hasattr(snakemake.params, "sweep") else {}
    fig = function(*data, band=style["band"], **extra)
    plots.save_figure(fig, snakemake.output.figure, dpi=style["dpi"])
    log.info(f"{figure}: {len(data[0])} runs -> {snakemake.output.figure}")
