"""Rule train: one run <model>-<noise>-<loss>-s<seed> (activations.zarr, curves.nc, model.pt)."""

from ddscope.config import execution_settings
from ddscope.joblog import expected_errors, job_logger
from ddscope.train import RunPaths, train_run

log = job_logger(snakemake.log[0])
with expected_errors(log):
    out = snakemake.output
    paths = RunPaths.for_outputs(out.activations, out.curves, out.model)
    # device, gpus, eval batch size and checkpoint cadence change how, not what: read here, never params
    spec = {**snakemake.params.spec, **execution_settings("train", snakemake.config["train"])}
    train_run(snakemake.input.dataset, snakemake.input.labels, paths, spec, log, threads=snakemake.threads)
