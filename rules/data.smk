rule prepare_dataset:
    output:
        dataset=f"{RESULTS}/data/dataset.h5",
    log:
        f"{LOGS}/prepare_dataset.log",
    benchmark:
        f"{BENCH}/prepare_dataset.tsv"
    localrule: True
    conda:
        "../envs/ddscope.yaml"
    threads: 1
    resources:
        mem_mb=DATASET_MEM_MB,
        runtime=30,
    params:
        dataset=dataset_params(),
    script:
        "../scripts/prepare_dataset.py"


rule make_noisy_labels:
    input:
        dataset=rules.prepare_dataset.output.dataset,
    output:
        labels=f"{RESULTS}/labels/{{noise}}.h5",
    log:
        f"{LOGS}/make_noisy_labels/{{noise}}.log",
    benchmark:
        f"{BENCH}/make_noisy_labels/{{noise}}.tsv"
    localrule: True
    conda:
        "../envs/ddscope.yaml"
    threads: 1
    resources:
        mem_mb=DATASET_MEM_MB,
        runtime=10,
    params:
        noise_seed=config["noise"]["seed"],
        probes=config["probes"],
    script:
        "../scripts/make_noisy_labels.py"
