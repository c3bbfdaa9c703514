"""Rule train: one run <model>-<noise>-<loss>-s<seed> (activations.zarr, curves.nc, model.pt)."""

from pathlib import Path

from ddscope.joblog import expected_errors, job_logger
from ddscope.train import RunPaths, train_run

log = job_logger(snakemake.log[0])
with expected_errors(log):
    paths = RunPaths.in_dir(Path(snakemake.output.curves).parent)
    train_run(snakemake.input.dataset, snakemake.input.labels, paths, snakemake.params.spec, log,
              threads=snakemake.threads)
