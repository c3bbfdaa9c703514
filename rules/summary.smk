# Tables over all runs and the findings that read them.


# inputs: curves and one named list per analysis, each in the order of RUNS
rule summarize:
    input:
        **{
            analysis: expand(f"{RESULTS}/metrics/{{run}}/{analysis}.nc", run=RUNS)
            for analysis in ANALYSES
        },
        curves=expand(f"{RESULTS}/runs/{{run}}/curves.nc", run=RUNS),
    output:
        runs=f"{RESULTS}/tables/runs.csv",
        summary=f"{RESULTS}/tables/summary.csv",
    log:
        f"{LOGS}/summarize.log",
    benchmark:
        f"{BENCH}/summarize.tsv"
    localrule: True
    conda:
        "../envs/ddscope.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        runs=RUNS,
        analyses=ANALYSES,
    script:
        "../scripts/summarize.py"


rule findings:
    input:
        unpack(findings_inputs),
    output:
        findings=report(
            f"{RESULTS}/findings.md",
            caption="../report/findings.rst",
            category="Findings",
        ),
    log:
        f"{LOGS}/findings.log",
    benchmark:
        f"{BENCH}/findings.tsv"
    localrule: True
    conda:
        "../envs/ddscope.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        study=config["study"],
        # the double-descent rows judge the per-run recovery against min_recovery; the model-wise rows take the
        # epoch-wise rule's min_depth and noise_sigmas across widths
        criteria={
            **config["analyses"]["findings"],
            **{
                key: config["analyses"]["double_descent"][key]
                for key in ("min_depth", "min_recovery", "noise_sigmas")
            },
        },
        ratio_threshold=config["analyses"]["large_activation"]["ratio_threshold"],
        # recorded layers per model, ordered by (layers, width): of equally deep models the widest is "the deepest"
        depths={
            m: len(layer_widths(entry))
            for m, entry in sorted(
                config.get("models", {}).items(),
                key=lambda item: (
                    len(layer_widths(item[1])),
                    max(layer_widths(item[1])),
                ),
            )
        },
        sweep=SWEEP,
    script:
        "../scripts/findings.py"
