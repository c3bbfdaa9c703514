# ddscope: epoch-wise double descent under label noise, looked at from the inside.
# `snakemake --cores all` runs the default study (config.yaml); see README.md.

import copy
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

from ddscope.config import ConfigError, validate_config


configfile: "config.yaml"


if workflow.overwrite_configfiles:
    # a --configfile is a whole study: it replaces config.yaml rather than being merged into it
    # (merged, config.yaml's models would leak into every other study)
    config.clear()
    config.update(copy.deepcopy(workflow.config_settings.overwrite_config))

try:
    resolved = validate_config(
        config, os.path.join(workflow.basedir, "schemas/config.schema.yaml")
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
