rule train:
    input:
        dataset=rules.prepare_dataset.output.dataset,
        labels=lambda wc: f"{RESULTS}/labels/{parse_run(wc.run)['noise']}.h5",
    output:
        # the store's root metadata stands for the store: a directory() output would get a
        # .snakemake_timestamp file inside, which zarr warns about on every open
        activations=f"{RESULTS}/runs/{{run}}/activations.zarr/zarr.json",
        curves=f"{RESULTS}/runs/{{run}}/curves.nc",
        model=f"{RESULTS}/runs/{{run}}/model.pt",
    log:
        f"{LOGS}/train/{{run}}.log",
    benchmark:
        f"{BENCH}/train/{{run}}.tsv"
    conda:
        "../envs/ddscope.yaml"
    threads: config["train"]["threads"]
    resources:
        mem_mb=8000,
        runtime=24 * 60,
        gpu=lambda wc: 1 if config["train"]["device"] in ("auto", "cuda") else 0,
    params:
        spec=train_spec,
    script:
        "../scripts/train.py"
