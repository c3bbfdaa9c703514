rule train:
    input:
        dataset=rules.prepare_dataset.output.dataset,
        labels=lambda wc: f"{RESULTS}/labels/{parse_run(wc.run)['noise']}.h5",
    output:
        # a real directory output, so storage plugins move the whole store; its consolidated metadata
        # lets xr.open_zarr open it without listing (and warning about) Snakemake's timestamp file
        activations=directory(f"{RESULTS}/runs/{{run}}/activations.zarr"),
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
        **train_gpus(),
        mem_mb=lambda wc: sizing.train_mem_mb(config, run_model(wc)),
        runtime=lambda wc: sizing.train_runtime_min(config, run_model(wc)),
    params:
        spec=train_spec,
    script:
        "../scripts/train.py"
