rule prepare_dataset:
    output:
        dataset=f"{RESULTS}/data/dataset.h5",
    params:
        dataset=dataset_params(),
    log:
        f"{LOGS}/prepare_dataset.log",
    benchmark:
        f"{BENCH}/prepare_dataset.tsv"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=30,
    conda:
        "../envs/ddscope.yaml"
    script:
        "../scripts/prepare_dataset.py"


rule make_noisy_labels:
    input:
        dataset=rules.prepare_dataset.output.dataset,
    output:
        labels=f"{RESULTS}/labels/{{noise}}.h5",
    params:
        noise_seed=config["noise"]["seed"],
        probes=config["probes"],
    log:
        f"{LOGS}/make_noisy_labels/{{noise}}.log",
    benchmark:
        f"{BENCH}/make_noisy_labels/{{noise}}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/ddscope.yaml"
    script:
        "../scripts/make_noisy_labels.py"
