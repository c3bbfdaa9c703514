"""Rules extract_<analysis>: metrics/<run>/<analysis>.nc for one run."""

from ddscope.analyses import compute, write_metric
from ddscope.joblog import expected_errors, job_logger

log = job_logger(snakemake.log[0])
with expected_errors(log):
    name, run = snakemake.params.analysis, snakemake.wildcards.run
    if name in ("cka", "probes", "collapse"):  # the torch-based ones; importing torch costs seconds
        import torch

        torch.set_num_threads(snakemake.threads)
    ds = compute(name, snakemake.params.run_dir, snakemake.params.settings, snakemake.input.get("dataset"))
    write_metric(ds, snakemake.output.metric)
    log.info(f"{name} of {run}: {', '.join(ds.data_vars)}")
