"""Rule threshold_data: threshold/data/train_n<n>.h5, the training sets of size n of every run seed."""

from ddscope.artifacts import write_h5
from ddscope.joblog import expected_errors, job_logger
from ddscope.threshold.artifacts import data_artifact, read_teacher

log = job_logger(snakemake.log[0])
with expected_errors(log):
    teacher, teacher_attrs = read_teacher(snakemake.input.teacher)
    arrays, attrs = data_artifact(teacher, teacher_attrs, int(snakemake.wildcards.n), snakemake.params.data)
    write_h5(snakemake.output.data, arrays, attrs)
    log.info(f"n={attrs['n']}: x {arrays['x'].shape}, noise variance {attrs['noise_var']:g} "
             f"(realised {arrays['noise'].var():.3g}), seeds {arrays['seeds'].tolist()}")
