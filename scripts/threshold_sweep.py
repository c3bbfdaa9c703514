"""Rule threshold_sweep: threshold/threshold_sweep.nc over (n, seed, step) with the estimated threshold."""

from ddscope.artifacts import ArtifactError, read_netcdf, write_netcdf
from ddscope.joblog import expected_errors, job_logger
from ddscope.threshold.artifacts import read_teacher
from ddscope.threshold.sweep import build_sweep

log = job_logger(snakemake.log[0])
with expected_errors(log):
    _, teacher_attrs = read_teacher(snakemake.input.teacher)
    runs = []
    for path in snakemake.input.runs:
        ds = read_netcdf(path)
        if ds.attrs.get("teacher_sha256") != teacher_attrs["content_sha256"]:
            raise ArtifactError(f"{path}: trained with a different teacher than data/teacher.h5; delete it and rerun")
        runs.append(ds)
    noise_vars = {r.attrs["noise_var"] for r in runs}
    if len(noise_vars) != 1:
        raise ArtifactError(f"runs were trained with different noise variances {sorted(noise_vars)}; rerun them")
    attrs = {k: runs[0].attrs[k] for k in ("teacher", "d", "teacher_sha256")}
    attrs.update({k: v for k, v in runs[0].attrs.items() if k.startswith("train_")})
    sweep = build_sweep(runs, snakemake.params.criteria, noise_vars.pop(), attrs)
    write_netcdf(sweep, snakemake.output.sweep)
    log.info(f"n grid {sweep.n.values.tolist()}: interpolating fraction "
             f"{sweep.interpolating_fraction.values.round(2).tolist()}; n_threshold {float(sweep.n_threshold):g}")
