"""Rule threshold_train: threshold/runs/n<n>.nc, the students of every seed trained on the sets of size n."""

import time

from ddscope.joblog import expected_errors, job_logger
from ddscope.artifacts import write_netcdf
from ddscope.threshold.artifacts import train_run

log = job_logger(snakemake.log[0])
with expected_errors(log):
    import torch

    torch.set_num_threads(snakemake.threads)
    start = time.perf_counter()
    ds = train_run(snakemake.input.teacher, snakemake.input.data, snakemake.params.train, log)
    write_netcdf(ds, snakemake.output.run)
    seconds = time.perf_counter() - start
    log.info(f"n={ds.attrs['n']}: {snakemake.params.train['steps']} steps x {ds.sizes['seed']} seeds in "
             f"{seconds:.1f} s; final train loss {ds.train_loss[:, -1].values.round(4).tolist()}")
