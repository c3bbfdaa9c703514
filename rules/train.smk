def train_spec(wildcards):
    """The resolved training settings of one run: exactly the keys it depends on (so others never rerun it)."""
    run = parse_run(wildcards.run)
    t = config["train"]
    spec = {
        "run": wildcards.run,
        "model": run["model"],
        "hidden": config["models"][run["model"]]["hidden"],
        "loss": run["loss"],
        "seed": run["seed"],
        "record_epochs": record_epochs(config["record"], t["epochs"]),
        "record_dtype": config["record"]["dtype"],
    }
    keys = ["epochs", "batch_size", "lr", "betas", "weight_decay", "eval_every"]
    keys += ["eval_batch_size", "checkpoint_every", "device"]
    spec.update({k: t[k] for k in keys})
    spec["label_smoothing"] = t["label_smoothing"] if run["loss"] == "ls" else 0.0
    return spec


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
    params:
        spec=train_spec,
    log:
        f"{LOGS}/train/{{run}}.log",
    benchmark:
        f"{BENCH}/train/{{run}}.tsv"
    threads: config["train"]["threads"]
    resources:
        mem_mb=8000,
        runtime=24 * 60,
        gpu=lambda wc: 1 if config["train"]["device"] in ("auto", "cuda") else 0,
    conda:
        "../envs/ddscope.yaml"
    script:
        "../scripts/train.py"
