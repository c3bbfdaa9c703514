# Optimization-threshold study: a small-init two-layer ReLU student of a teacher, swept over the training-set
# size n (ddscope/threshold.py). One training job per n (all seeds of that n vectorised in it), so adding an n
# trains only that n. Each rule gets only the threshold keys it uses, so e.g. a figure setting reruns only plots
# and an interpolation tolerance only the sweep, figures and findings, never training.
from ddscope.threshold.keys import (
    DATA_KEYS,
    SWEEP_KEYS,
    TEACHER_KEYS,
    TRAIN_KEYS,
    n_grid,
    rule_params,
)

THRESHOLD = config.get("threshold")
THRESHOLD_DIR = f"{RESULTS}/threshold"
THRESHOLD_CATEGORY = "Optimization threshold"
if THRESHOLD and THRESHOLD["n_min"] > THRESHOLD["n_max"]:
    # an expected mistake: one line before any job starts, like the schema's errors (see the Snakefile)
    print(
        f"ddscope: config error: threshold.n_min: {THRESHOLD['n_min']} is larger than "
        f"threshold.n_max: {THRESHOLD['n_max']}",
        file=sys.stderr,
    )
    os._exit(1)
THRESHOLD_N = (
    n_grid(THRESHOLD["n_min"], THRESHOLD["n_max"], THRESHOLD["n_points"])
    if THRESHOLD
    else []
)
# final outputs (findings.md, common to both studies, comes from all_targets), none unless the config has a threshold: section (rule all gets them via all_targets());
# a lambda, not a def: snakemake --lint asks for functions and rules in separate files
threshold_targets = lambda: (
    [
        f"{THRESHOLD_DIR}/threshold_sweep.nc",
        f"{RESULTS}/figures/threshold_loss.png",
        f"{RESULTS}/figures/threshold_alignment.png",
    ]
    if THRESHOLD
    else []
)


rule threshold_teacher:
    output:
        teacher=f"{THRESHOLD_DIR}/data/teacher.h5",
    log:
        f"{LOGS}/threshold_teacher.log",
    benchmark:
        f"{BENCH}/threshold_teacher.tsv"
    conda:
        "../envs/ddscope.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        teacher=rule_params(THRESHOLD, TEACHER_KEYS),
    script:
        "../scripts/threshold_teacher.py"


rule threshold_data:
    input:
        teacher=rules.threshold_teacher.output.teacher,
    output:
        data=f"{THRESHOLD_DIR}/data/train_n{{n}}.h5",
    log:
        f"{LOGS}/threshold_data/n{{n}}.log",
    benchmark:
        f"{BENCH}/threshold_data/n{{n}}.tsv"
    wildcard_constraints:
        n="[0-9]+",
    conda:
        "../envs/ddscope.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        data=rule_params(THRESHOLD, DATA_KEYS),
    script:
        "../scripts/threshold_data.py"


rule threshold_train:
    input:
        teacher=rules.threshold_teacher.output.teacher,
        data=rules.threshold_data.output.data,
    output:
        run=f"{THRESHOLD_DIR}/runs/n{{n}}.nc",
    log:
        f"{LOGS}/threshold_train/n{{n}}.log",
    benchmark:
        f"{BENCH}/threshold_train/n{{n}}.tsv"
    wildcard_constraints:
        n="[0-9]+",
    conda:
        "../envs/ddscope.yaml"
    threads: (THRESHOLD or {}).get("threads", 1)
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        train=rule_params(THRESHOLD, TRAIN_KEYS),
    script:
        "../scripts/threshold_train.py"


rule threshold_sweep:
    input:
        teacher=rules.threshold_teacher.output.teacher,
        runs=expand(f"{THRESHOLD_DIR}/runs/n{{n}}.nc", n=THRESHOLD_N),
    output:
        sweep=f"{THRESHOLD_DIR}/threshold_sweep.nc",
    log:
        f"{LOGS}/threshold_sweep.log",
    benchmark:
        f"{BENCH}/threshold_sweep.tsv"
    conda:
        "../envs/ddscope.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        criteria=rule_params(THRESHOLD, SWEEP_KEYS),
    script:
        "../scripts/threshold_sweep.py"


rule threshold_plot_loss:
    input:
        sweep=rules.threshold_sweep.output.sweep,
    output:
        figure=report(
            f"{RESULTS}/figures/threshold_loss.png",
            caption="../report/threshold_loss.rst",
            category=THRESHOLD_CATEGORY,
        ),
    log:
        f"{LOGS}/threshold_plot_loss.log",
    benchmark:
        f"{BENCH}/threshold_plot_loss.tsv"
    localrule: True
    conda:
        "../envs/ddscope.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        figure="loss",
        style=config["figures"],
    script:
        "../scripts/threshold_plot.py"


rule threshold_plot_alignment:
    input:
        sweep=rules.threshold_sweep.output.sweep,
    output:
        figure=report(
            f"{RESULTS}/figures/threshold_alignment.png",
            caption="../report/threshold_alignment.rst",
            category=THRESHOLD_CATEGORY,
        ),
    log:
        f"{LOGS}/threshold_plot_alignment.log",
    benchmark:
        f"{BENCH}/threshold_plot_alignment.tsv"
    localrule: True
    conda:
        "../envs/ddscope.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        figure="alignment",
        style=config["figures"],
    script:
        "../scripts/threshold_plot.py"


rule threshold_findings:
    input:
        sweep=rules.threshold_sweep.output.sweep,
    output:
        # the threshold rows of findings.md (rule findings merges them with the noisy-label study's)
        findings=f"{THRESHOLD_DIR}/findings_rows.md",
    log:
        f"{LOGS}/threshold_findings.log",
    benchmark:
        f"{BENCH}/threshold_findings.tsv"
    localrule: True
    conda:
        "../envs/ddscope.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        study=config["study"],
    script:
        "../scripts/threshold_findings.py"
