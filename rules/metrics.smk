# One rule per analysis (extract_<analysis>): metrics/<run>/<analysis>.nc, made from the registry
# (ddscope/registry.py). Each reads only the run artifact it needs (curves.nc or activations.zarr) and
# gets only its own analyses.<analysis> settings that change results as params, so changing one
# threshold reruns that analysis and what reads it.


for analysis in ANALYSES:

    rule:
        name:
            f"extract_{analysis}"
        input:
            **extract_inputs(analysis),
        output:
            metric=f"{RESULTS}/metrics/{{run}}/{analysis}.nc",
        log:
            f"{LOGS}/extract_{analysis}/{{run}}.log",
        benchmark:
            f"{BENCH}/extract_{analysis}/{{run}}.tsv"
        conda:
            "../envs/ddscope.yaml"
        threads: 1
        resources:
            mem_mb=extract_mem_mb(analysis),
            runtime=lambda wildcards: sizing.extract_runtime_min(
                config, run_model(wildcards)
            ),
        params:
            analysis=analysis,
            settings=analysis_params(analysis),
        script:
            "../scripts/extract_metric.py"
