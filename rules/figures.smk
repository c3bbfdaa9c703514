# One rule per figure (plot_<figure>): figures/<figure>.png over all runs of the study, in the report; made from
# the registry (ddscope/analyses/registry.py: FIGURES; those across a sweep only in a study with one). Each gets
# only config["figures"] as params besides its name and inputs (and, across a sweep, each model's depth and
# width): a style change reruns the plots, never an analysis or training.

# the PNGs of the figures, none in a study without runs (all_targets() in common.smk adds them); a lambda,
# not a def: snakemake --lint asks for functions and rules in separate files
figure_targets = lambda: (
    [f"{RESULTS}/figures/{figure}.png" for figure in FIGURES] if RUNS else []
)


for figure, spec in FIGURES.items():

    rule:
        name:
            f"plot_{figure}"
        input:
            **{name: figure_input_files(name) for name in spec["inputs"]},
        output:
            figure=report(
                f"{RESULTS}/figures/{figure}.png",
                caption=f"../report/{figure}.rst",
                category=spec["category"],
            ),
        log:
            f"{LOGS}/plot_{figure}.log",
        benchmark:
            f"{BENCH}/plot_{figure}.tsv"
        localrule: True
        conda:
            "../envs/ddscope.yaml"
        threads: 1
        resources:
            mem_mb=2000,
            runtime=10,
        params:
            **({"sweep": SWEEP} if spec.get("sweep") else {}),
            figure=figure,
            inputs=spec["inputs"],
            style=config["figures"],
        script:
            "../scripts/plot_figure.py"
