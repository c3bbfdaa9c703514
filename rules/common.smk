# Shared names and helpers: every path of the study is built here.
from ddscope.config import (
    has_noisy_label_study,
    noise_tag,
    parse_run,
    record_epochs,
    run_names,
)

RESULTS = f"results/{config['study']}"
LOGS = f"{RESULTS}/logs"
BENCH = f"{RESULTS}/benchmarks"

NOISE_TAGS = [noise_tag(config["noise"]["kind"], r) for r in config["noise"]["rates"]]
RUNS = run_names(config)
# analyses whose extract_<analysis> rule exists; summarize, figures and findings read all of them
ANALYSES = [
    "double_descent",
    "separation",
    "large_activation",
    "routing",
    "cka",
    "probes",
    "collapse",
]


wildcard_constraints:
    noise="|".join(NOISE_TAGS),
    run="[a-z][a-z0-9_]*-[a-z]+[0-9.]+-(ce|ls)-s[0-9]+",


def dataset_params():
    """Only the dataset keys that change the data, so e.g. data_dir does not rerun MNIST-1D."""
    if not has_noisy_label_study(config):
        return {}  # a threshold-only study: its data rules are never scheduled
    d = config["dataset"]
    keys = (
        ["name", "n_train", "n_test", "seed"]
        if d["name"] == "mnist1d"
        else ["name", "data_dir", "download"]
    )
    return {k: d[k] for k in keys}


def all_targets():
    """Every final output of the study (the inputs of rule all)."""
    targets = threshold_targets()
    if has_noisy_label_study(config):
        targets += [f"{RESULTS}/data/dataset.h5"]
        targets += expand(f"{RESULTS}/labels/{{noise}}.h5", noise=NOISE_TAGS)
        targets += expand(f"{RESULTS}/runs/{{run}}/curves.nc", run=RUNS)
        targets += expand(
            f"{RESULTS}/metrics/{{run}}/{{analysis}}.nc", run=RUNS, analysis=ANALYSES
        )
        targets += [f"{RESULTS}/tables/summary.csv"]
        targets += figure_targets()
    return targets + [f"{RESULTS}/findings.md"]


def findings_inputs(wildcards):
    """What findings.md is made from: the runs table of a noisy-label study, the threshold study's rows, or both."""
    inputs = {}
    if has_noisy_label_study(config):
        inputs["runs"] = f"{RESULTS}/tables/runs.csv"
    if config.get("threshold"):
        inputs["threshold"] = f"{RESULTS}/threshold/findings_rows.md"
    return inputs


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


def run_file(name):
    return f"{RESULTS}/runs/{{run}}/{name}"
