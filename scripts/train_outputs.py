"""Rule train: move one run's outputs from runs/<run>/trained/ (its stack's job) into place, checked."""

from ddscope.joblog import expected_errors, job_logger
from ddscope.artifacts import promote_trained_run

log = job_logger(snakemake.log[0])
with expected_errors(log):
    out = snakemake.output
    promote_trained_run(snakemake.input.trained, out.activations, out.curves, out.model, snakemake.params.spec)
    log.info(f"{snakemake.params.spec['run']}: outputs in place")
