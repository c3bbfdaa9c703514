# Training. One job per stack (STACKS, ddscope.config.train_stacks): the runs it trains together, each
# written to runs/<run>/trained/; then rule train moves each run's outputs into place. Rule train's inputs
# and params are the run's own whatever its stack, so changing train.stack reruns nothing, and
# `--until train`, `--forcerun train` reach every run (a forced run's stack retrains it).


for members in STACKS:

    rule:
        name:
            stack_rule(members)
        input:
            dataset=rules.prepare_dataset.output.dataset,
            labels=sorted({labels_path(run) for run in members}),
        output:
            # temporary: rule train moves the contents; local: a stack's runs never travel to storage twice
            trained=[
                local(temp(directory(f"{RESULTS}/runs/{run}/trained")))
                for run in members
            ],
        log:
            [f"{LOGS}/train/{run}.log" for run in members],
        benchmark:
            f"{BENCH}/train/{members[0]}.tsv"
        conda:
            "../envs/ddscope.yaml"
        threads: config["train"]["threads"]
        resources:
            **stack_job_resources(members),
        params:
            specs=[run_spec(run) for run in members],
            # each run's labels file, as an index into input.labels (inputs are what storage maps to local copies)
            labels=[
                sorted({labels_path(r) for r in members}).index(labels_path(run))
                for run in members
            ],
        script:
            "../scripts/train.py"


rule train:
    input:
        trained=local(f"{RESULTS}/runs/{{run}}/trained"),
    output:
        # a real directory output, so storage plugins move the whole store; its consolidated metadata
        # lets xr.open_zarr open it without listing (and warning about) Snakemake's timestamp file
        activations=directory(f"{RESULTS}/runs/{{run}}/activations.zarr"),
        curves=f"{RESULTS}/runs/{{run}}/curves.nc",
        model=f"{RESULTS}/runs/{{run}}/model.pt",
    log:
        f"{LOGS}/train_outputs/{{run}}.log",
    conda:
        "../envs/ddscope.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        spec=train_spec,
    script:
        "../scripts/train_outputs.py"
