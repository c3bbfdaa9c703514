"""Rules extract_<analysis>: metrics/<run>/<analysis>.nc for one run, from its curves.nc or activations.zarr."""

from ddscope.analyses.compute import compute, write_metric
from ddscope.config import execution_settings
from ddscope.joblog import expected_errors, job_logger
from ddscope.analyses.registry import ANALYSES

log = job_logger(snakemake.log[0])
with expected_errors(log):
    name, run = snakemake.params.analysis, snakemake.wildcards.run
    if ANALYSES[name]["torch"]:  # importing torch costs seconds: only the analyses that use it
        import torch

        torch.set_num_threads(snakemake.threads)
    # settings that cannot change results (memory budgets) come from the config, not params: no reruns
    settings = {**snakemake.params.settings, **execution_settings(name, snakemake.config["analyses"][name])}
    source = snakemake.input[ANALYSES[name]["reads"]]
    ds = compute(name, run, source, settings, snakemake.input.get("dataset"))
    write_metric(ds, snakemake.output.metric)
    log.info(f"{name} of {run}: {', '.join(ds.data_vars)}")
