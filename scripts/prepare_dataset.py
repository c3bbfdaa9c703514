"""Rule prepare_dataset: data/dataset.h5 from the `dataset` config section."""

from ddscope.artifacts import write_h5
from ddscope.data import prepare_dataset
from ddscope.joblog import expected_errors, job_logger

log = job_logger(snakemake.log[0])
with expected_errors(log):
    log.info(f"preparing {snakemake.params.dataset['name']}")
    arrays, attrs = prepare_dataset(snakemake.params.dataset)
    write_h5(snakemake.output.dataset, arrays, attrs)
    log.info(f"wrote {snakemake.output.dataset}: train {arrays['x_train'].shape}, test {arrays['x_test'].shape}, "
             f"sha256 {attrs['sha256'][:12]}")
