"""A training job: the runs of one stack (ddscope.config.train_stacks), each written to runs/<run>/trained/.

Rule train then moves each run's outputs into place. A run whose training fails (its loss stops being finite)
gets a FAILED note instead, which its rule train reports; the stack's other runs are unaffected.
"""

from pathlib import Path

from ddscope.config import execution_settings
from ddscope.joblog import expected_errors, job_logger
from ddscope.train import FAILED, Member, RunPaths, train_stack

specs, trained = snakemake.params.specs, [Path(p) for p in snakemake.output.trained]
logs = [job_logger(path, name=f"ddscope.{spec['run']}") for spec, path in zip(specs, snakemake.log)]
with expected_errors(job_logger(list(snakemake.log), name="ddscope.stack")):
    # device, gpus, eval batch size, checkpoint cadence and stack size change how, not what: never params
    execution = execution_settings("train", snakemake.config["train"])
    members = []
    labels_files = list(snakemake.input.labels)
    for spec, out, labels, log in zip(specs, trained, [labels_files[i] for i in snakemake.params.labels], logs):
        out.mkdir(parents=True, exist_ok=True)
        # unfinished state in runs/<run>/work/, where a solo job of the same run keeps it too
        paths = RunPaths(out / "activations.zarr", out / "curves.nc", out / "model.pt", out.parent / "work")
        members.append(Member({**spec, **execution}, paths, labels, log))
    for m in train_stack(snakemake.input.dataset, members, threads=snakemake.threads):
        (m.paths.curves.parent / FAILED).write_text(m.failure + "\n")
