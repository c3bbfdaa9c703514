"""Rule threshold_teacher: threshold/data/teacher.h5 (teacher parameters, its directions, the fixed test set)."""

from ddscope.artifacts import write_h5
from ddscope.joblog import expected_errors, job_logger
from ddscope.threshold.artifacts import teacher_artifact

log = job_logger(snakemake.log[0])
with expected_errors(log):
    arrays, attrs = teacher_artifact(snakemake.params.teacher)
    write_h5(snakemake.output.teacher, arrays, attrs)
    log.info(f"{attrs['kind']} teacher in d={attrs['d']} with {attrs['neurons']} neuron(s); "
             f"test set {arrays['x_test'].shape}, sha256 {attrs['content_sha256'][:12]}")
