# One rule per figure (plot_<figure>): figures/<figure>.png over all runs of the study, in the report.
# Each gets only config["figures"] as params: a style change reruns the plots, never an analysis or training.

FIGURES = ["curves", "double_descent", "separation", "large_activation", "routing"]
FIGURES += ["cka", "probes", "collapse"]
FIGURE_CATEGORY = "Epoch-wise double descent"
REPRESENTATION_CATEGORY = "Representation dynamics and neural collapse"
# the PNGs of the figures, none in a study without runs (all_targets() in common.smk adds them); a lambda,
# not a def: snakemake --lint asks for functions and rules in separate files
figure_targets = lambda: (
    [f"{RESULTS}/figures/{figure}.png" for figure in FIGURES] if RUNS else []
)


rule plot_curves:
    input:
        curves=expand(f"{RESULTS}/runs/{{run}}/curves.nc", run=RUNS),
        double_descent=expand(f"{RESULTS}/metrics/{{run}}/double_descent.nc", run=RUNS),
    output:
        figure=report(
            f"{RESULTS}/figures/curves.png",
            caption="../report/curves.rst",
            category=FIGURE_CATEGORY,
        ),
    log:
        f"{LOGS}/plot_curves.log",
    benchmark:
        f"{BENCH}/plot_curves.tsv"
    conda:
        "../envs/ddscope.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        figure="curves",
        style=config["figures"],
    script:
        "../scripts/plot_figure.py"


rule plot_double_descent:
    input:
        double_descent=expand(f"{RESULTS}/metrics/{{run}}/double_descent.nc", run=RUNS),
    output:
        figure=report(
            f"{RESULTS}/figures/double_descent.png",
            caption="../report/double_descent.rst",
            category=FIGURE_CATEGORY,
        ),
    log:
        f"{LOGS}/plot_double_descent.log",
    benchmark:
        f"{BENCH}/plot_double_descent.tsv"
    conda:
        "../envs/ddscope.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        figure="double_descent",
        style=config["figures"],
    script:
        "../scripts/plot_figure.py"


rule plot_separation:
    input:
        separation=expand(f"{RESULTS}/metrics/{{run}}/separation.nc", run=RUNS),
    output:
        figure=report(
            f"{RESULTS}/figures/separation.png",
            caption="../report/separation.rst",
            category=FIGURE_CATEGORY,
        ),
    log:
        f"{LOGS}/plot_separation.log",
    benchmark:
        f"{BENCH}/plot_separation.tsv"
    conda:
        "../envs/ddscope.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        figure="separation",
        style=config["figures"],
    script:
        "../scripts/plot_figure.py"


rule plot_large_activation:
    input:
        large_activation=expand(
            f"{RESULTS}/metrics/{{run}}/large_activation.nc", run=RUNS
        ),
        double_descent=expand(f"{RESULTS}/metrics/{{run}}/double_descent.nc", run=RUNS),
    output:
        figure=report(
            f"{RESULTS}/figures/large_activation.png",
            caption="../report/large_activation.rst",
            category=FIGURE_CATEGORY,
        ),
    log:
        f"{LOGS}/plot_large_activation.log",
    benchmark:
        f"{BENCH}/plot_large_activation.tsv"
    conda:
        "../envs/ddscope.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        figure="large_activation",
        style=config["figures"],
    script:
        "../scripts/plot_figure.py"


rule plot_routing:
    input:
        routing=expand(f"{RESULTS}/metrics/{{run}}/routing.nc", run=RUNS),
    output:
        figure=report(
            f"{RESULTS}/figures/routing.png",
            caption="../report/routing.rst",
            category=FIGURE_CATEGORY,
        ),
    log:
        f"{LOGS}/plot_routing.log",
    benchmark:
        f"{BENCH}/plot_routing.tsv"
    conda:
        "../envs/ddscope.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        figure="routing",
        style=config["figures"],
    script:
        "../scripts/plot_figure.py"


rule plot_cka:
    input:
        cka=expand(f"{RESULTS}/metrics/{{run}}/cka.nc", run=RUNS),
    output:
        figure=report(
            f"{RESULTS}/figures/cka.png",
            caption="../report/cka.rst",
            category=REPRESENTATION_CATEGORY,
        ),
    log:
        f"{LOGS}/plot_cka.log",
    benchmark:
        f"{BENCH}/plot_cka.tsv"
    conda:
        "../envs/ddscope.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        figure="cka",
        style=config["figures"],
    script:
        "../scripts/plot_figure.py"


rule plot_probes:
    input:
        probes=expand(f"{RESULTS}/metrics/{{run}}/probes.nc", run=RUNS),
    output:
        figure=report(
            f"{RESULTS}/figures/probes.png",
            caption="../report/probes.rst",
            category=REPRESENTATION_CATEGORY,
        ),
    log:
        f"{LOGS}/plot_probes.log",
    benchmark:
        f"{BENCH}/plot_probes.tsv"
    conda:
        "../envs/ddscope.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        figure="probes",
        style=config["figures"],
    script:
        "../scripts/plot_figure.py"


rule plot_collapse:
    input:
        collapse=expand(f"{RESULTS}/metrics/{{run}}/collapse.nc", run=RUNS),
    output:
        figure=report(
            f"{RESULTS}/figures/collapse.png",
            caption="../report/collapse.rst",
            category=REPRESENTATION_CATEGORY,
        ),
    log:
        f"{LOGS}/plot_collapse.log",
    benchmark:
        f"{BENCH}/plot_collapse.tsv"
    conda:
        "../envs/ddscope.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        figure="collapse",
        style=config["figures"],
    script:
        "../scripts/plot_figure.py"
