"""Rules plot_<figure>: figures/<figure>.png from the curves / metric files of every run of the study.

Named inputs are lists over the runs (curves: runs/<run>/curves.nc, any other name: metrics/<run>/<name>.nc);
params.figure picks the ddscope.plots function, params.style is config["figures"] (dpi, band).
"""

from ddscope import plots
from ddscope.analyses import open_metric
from ddscope.artifacts import ArtifactError, read_netcdf
from ddscope.joblog import expected_errors, job_logger

# figure -> (plotting function, the named inputs it takes, in order)
FIGURES = {
    "curves": (plots.plot_curves, ["curves", "double_descent"]),
    "double_descent": (plots.plot_double_descent, ["double_descent"]),
    "separation": (plots.plot_separation, ["separation"]),
    "large_activation": (plots.plot_large_activation, ["large_activation", "double_descent"]),
    "routing": (plots.plot_routing, ["routing"]),
    "cka": (plots.plot_cka, ["cka"]),
    "probes": (plots.plot_probes, ["probes"]),
    "collapse": (plots.plot_collapse, ["collapse"]),
}


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
    function, names = FIGURES[figure]
    style = snakemake.params.style
    sources = {}
    data = [load(name, getattr(snakemake.input, name), sources) for name in names]
    fig = function(*data, band=style["band"])
    plots.save_figure(fig, snakemake.output.figure, dpi=style["dpi"])
    log.info(f"{figure}: {len(data[0])} runs -> {snakemake.output.figure}")
