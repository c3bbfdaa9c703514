# ddscope: epoch-wise double descent under label noise, looked at from the inside.
# `snakemake --cores all` runs the default study (config.yaml); see README.md.

import os
import sys

sys.path.insert(0, workflow.basedir)
# jobs (scripts, also under --use-conda or on a cluster node) import ddscope from this checkout
os.environ.update(
    PYTHONPATH=os.pathsep.join(
        [workflow.basedir] + [p for p in [os.environ.get("PYTHONPATH")] if p]
    )
)

# jobs set their own thread counts (torch.set_num_threads from `threads:`); keep numpy's BLAS from
# starting one thread per core in every parallel job
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

from ddscope.config import ConfigError, study_config, validate_config

# The default study is config.yaml next to this file, whatever the working directory (ddscope.config.DEFAULT_STUDY).

try:
    # the default study, each --configfile layered over it, then --config (ddscope.config.layer_config);
    # Snakemake's own merge would merge `models` too, so the default study's models would leak into every study
    resolved = validate_config(
        study_config(
            workflow.config_settings.configfiles,
            dict(workflow.config_settings.config),
        )
    )
except ConfigError as error:
    # an expected mistake: one line, no traceback, before any job starts
    print(f"ddscope: config error: {error}", file=sys.stderr)
    os._exit(1)
config.clear()
config.update(resolved)

from ddscope.storage import StorageError, check_storage, use_whole_second_s3_mtimes

if workflow.storage_settings.default_storage_provider == "s3":
    use_whole_second_s3_mtimes()  # else a finished study reruns on MinIO/Ceph/rclone (see the docstring)

if workflow.is_main_process:
    # where artifacts go (--default-storage-provider): a wrong secret, a missing bucket or an unreachable
    # endpoint is one line now, before any job writes anything
    storage_settings = workflow.storage_settings
    provider = workflow.storage_registry.default_storage_provider
    try:
        check_storage(
            storage_settings.default_storage_provider,
            storage_settings.default_storage_prefix,
            provider.settings if provider else None,
        )
    except StorageError as error:
        print(f"ddscope: storage error: {error}", file=sys.stderr)
        os._exit(1)


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/train.smk"
include: "rules/metrics.smk"
include: "rules/figures.smk"
include: "rules/summary.smk"
include: "rules/threshold.smk"


onstart:
    check_training_device()
    check_job_memory()


rule all:
    default_target: True
    input:
        all_targets(),
