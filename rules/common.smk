# Shared names and helpers: every path of the study is built here.
import os
import re

from ddscope.config import (
    has_noisy_label_study,
    layer_widths,
    model_spec,
    noise_tag,
    parse_run,
    record_epochs,
    results_settings,
    split_sizes,
    run_names,
    sweep_models,
    train_stacks,
)
from ddscope.analyses.registry import ANALYSES as ANALYSIS_REGISTRY
from ddscope.analyses.registry import FIGURES as FIGURE_REGISTRY
from ddscope import resources as sizing

RESULTS = f"results/{config['study']}"
LOGS = f"{RESULTS}/logs"
BENCH = f"{RESULTS}/benchmarks"

NOISE_TAGS = [noise_tag(config["noise"]["kind"], r) for r in config["noise"]["rates"]]
RUNS = run_names(config)
# memory of the jobs that make the dataset and the label files (none in a threshold-only study)
DATASET_MEM_MB = sizing.dataset_mem_mb(config) if RUNS else 1000
# analyses whose extract_<analysis> rule exists; summarize, figures and findings read all of them
ANALYSES = list(ANALYSIS_REGISTRY)
# model -> {depth, width} of the study's sweep ({} without one); the figures across it exist only with one
SWEEP = sweep_models(config)
FIGURES = {
    f: spec for f, spec in FIGURE_REGISTRY.items() if SWEEP or not spec.get("sweep")
}


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
    return run_spec(wildcards.run)


def run_spec(name):
    """The resolved training settings of one run: exactly the keys its results depend on.

    Execution-only keys (device, gpus, threads, eval_batch_size, checkpoint_every, stack) are left out, so
    changing them reruns nothing; scripts/train.py reads them from the config.
    """
    run = parse_run(name)
    t = config["train"]
    spec = {
        "run": name,
        "model": run["model"],
        # an MLP's spec is {hidden} (as before architectures had a key); other architectures give theirs
        **model_spec(config["models"][run["model"]]),
        "loss": run["loss"],
        "seed": run["seed"],
        "record_epochs": record_epochs(config["record"], t["epochs"]),
        "record_dtype": config["record"]["dtype"],
    }
    keys = ["epochs", "batch_size", "lr", "betas", "weight_decay", "eval_every"]
    spec.update({k: t[k] for k in keys})
    spec["label_smoothing"] = t["label_smoothing"] if run["loss"] == "ls" else 0.0
    # absent when off: runs without it keep the fingerprint they always had
    if t["augment"] != "none":
        spec["augment"] = t["augment"]
    if t["tf32"]:
        spec["tf32"] = True
    # a batched step is bit-identical to a solo one on CPUs (tests/test_stacked.py), not known to be on GPUs
    if train_gpus() and t["stack"] > 1:
        spec["gpu_stack"] = t["stack"]
    return spec


def trained_runs():
    """Runs whose outputs exist, or their stack's (a stack's job makes runs/<run>/trained/ when it starts)."""
    outputs = ("activations.zarr", "curves.nc", "model.pt")
    return {
        run
        for run in RUNS
        if os.path.exists(f"{RESULTS}/runs/{run}/trained")
        or all(os.path.exists(f"{RESULTS}/runs/{run}/{name}") for name in outputs)
    }


# the runs each training job trains together (ddscope.config.train_stacks)
STACKS = train_stacks(config, trained_runs()) if RUNS else []


def stack_rule(members):
    """train_stack_<first run>: the job that trains `members` (rule names are identifiers)."""
    return f"train_stack_{re.sub(r'[^a-z0-9]', '_', members[0])}"


def stack_job_resources(members):
    """What a stack's training job asks for: sized by ddscope/resources.py for its runs, a GPU when the study
    trains on GPUs, then `--set-resources train_stack:<resource>=…` (or set-resources in a profile), which
    reaches every stack's job although their rule names differ (train_stack_<first run>).
    """
    model = parse_run(members[0])["model"]
    overrides = workflow.resource_settings.overwrite_resources.get("train_stack", {})
    return {
        "mem_mb": sizing.train_mem_mb(config, model, len(members)),
        "runtime": sizing.train_runtime_min(config, model, len(members)),
        **train_gpus(),
        **{k: getattr(v, "raw", v) for k, v in dict(overrides).items()},
    }


# stack rule name -> its runs
STACK_MEMBERS = {stack_rule(members): members for members in STACKS}


def labels_path(run):
    return f"{RESULTS}/labels/{parse_run(run)['noise']}.h5"


def train_gpus():
    """The gpu resource of training: only when the study trains on GPUs (train.gpus, or an explicit
    train.device: cuda), so the default config fits a CPU partition (a gres request is refused there).
    """
    t = config.get("train", {})
    gpus = t.get("gpus", 0) or int(t.get("device", "auto").startswith("cuda"))
    return {"gpu": gpus} if gpus else {}


def run_model(wildcards):
    return parse_run(wildcards.run)["model"]


def extract_inputs(analysis):
    """The artifacts extract_<analysis> reads: the run's curves or activations, and the dataset if needed."""
    spec = ANALYSIS_REGISTRY[analysis]
    name = "curves.nc" if spec["reads"] == "curves" else "activations.zarr"
    inputs = {spec["reads"]: f"{RESULTS}/runs/{{run}}/{name}"}
    if spec["dataset"]:
        inputs["dataset"] = f"{RESULTS}/data/dataset.h5"
    return inputs


def figure_input_files(name):
    """Every run's curves.nc (name `curves`) or metric file of analysis `name`, in the order of RUNS."""
    if name == "curves":
        return expand(f"{RESULTS}/runs/{{run}}/curves.nc", run=RUNS)
    return expand(f"{RESULTS}/metrics/{{run}}/{name}.nc", run=RUNS)


def extract_mem_mb(analysis):
    return lambda wildcards: sizing.extract_mem_mb(
        config, run_model(wildcards), analysis
    )


def analysis_params(analysis):
    """The settings of an analysis that change its results (the params of its extract job); double_descent also
    gets the sizes its noise thresholds come from (test set, the run's noisy samples, classes).
    """
    settings = results_settings(analysis, config["analyses"][analysis])
    if analysis != "double_descent":
        return settings
    return lambda wildcards: {**settings, **split_sizes(config, wildcards.run)}


def check_training_device():
    """At the start of a local run that trains: the GPU the config asks for must be visible.

    One line before any job, instead of the same error from every training job.
    """
    if not train_gpus() or workflow.executor_plugin.name != "local":
        return  # on a cluster the submit host need not have the GPUs its jobs get
    if not any(job.rule.name == "train" for job in workflow.dag.needrun_jobs()):
        return
    from ddscope.config import DeviceError
    from ddscope.models import resolve_device

    try:
        resolve_device(config["train"]["device"], gpus=config["train"]["gpus"])
    except DeviceError as error:
        print(f"ddscope: {error}", file=sys.stderr)
        os._exit(1)


def check_job_memory():
    """At the start of a local run: the largest scheduled job (sized from the config by ddscope/resources.py)
    must fit this machine's memory. One line naming it and the keys that size it, before any job starts,
    instead of a job killed by the OOM killer hours later. On a cluster the scheduler places the jobs.
    """
    if workflow.executor_plugin.name != "local":
        return
    available = sizing.machine_memory_mb()
    jobs = list(workflow.dag.needrun_jobs())
    if not available or not jobs:
        return
    biggest = max(jobs, key=lambda job: job.resources.get("mem_mb", 0))
    needed = biggest.resources.get("mem_mb", 0)
    if needed > available:
        what = ", ".join(f"{k}={v}" for k, v in biggest.wildcards.items())
        if biggest.rule.name in STACK_MEMBERS:
            what = "training " + ", ".join(STACK_MEMBERS[biggest.rule.name])
        print(
            f"ddscope: job {biggest.rule.name} ({what or 'no wildcards'}) needs about {needed} MB of memory, "
            f"this machine has {available} MB: make the study smaller (dataset.n_train, model widths, "
            "probes) or run it on a cluster (--profile profiles/slurm)",
            file=sys.stderr,
        )
        os._exit(1)
