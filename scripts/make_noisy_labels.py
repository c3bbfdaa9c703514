"""Rule make_noisy_labels: labels/<noise>.h5 (exact flips and probe subsets) for one noise tag."""

from ddscope.artifacts import read_dataset, write_h5
from ddscope.config import parse_noise_tag
from ddscope.joblog import expected_errors, job_logger
from ddscope.noise import make_noisy_labels

log = job_logger(snakemake.log[0])
with expected_errors(log):
    kind, rate = parse_noise_tag(snakemake.wildcards.noise)
    data, data_attrs = read_dataset(snakemake.input.dataset)
    arrays, attrs = make_noisy_labels(
        data["y_train"], data["y_test"], kind, rate, int(data_attrs["n_classes"]),
        snakemake.params.noise_seed, snakemake.params.probes, data_attrs["content_sha256"])
    write_h5(snakemake.output.labels, arrays, attrs)
    log.info(f"{snakemake.wildcards.noise}: flipped {attrs['n_flipped']} of {len(arrays['y_noisy'])} "
             f"(realised rate {attrs['rate_realised']:.4f}); probes clean/noisy/test = "
             f"{len(arrays['probe_clean'])}/{len(arrays['probe_noisy'])}/{len(arrays['probe_test'])}")
