# One rule per analysis (extract_<analysis>): metrics/<run>/<analysis>.nc. Each gets only its own
# analyses.<analysis> block as params, so changing one threshold reruns that analysis and what reads it.


rule extract_double_descent:
    input:
        run=run_file("curves.nc"),
    output:
        metric=f"{RESULTS}/metrics/{{run}}/double_descent.nc",
    log:
        f"{LOGS}/extract_double_descent/{{run}}.log",
    benchmark:
        f"{BENCH}/extract_double_descent/{{run}}.tsv"
    conda:
        "../envs/ddscope.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=30,
    params:
        run_dir=lambda wc: f"{RESULTS}/runs/{wc.run}",
        analysis="double_descent",
        settings=config["analyses"]["double_descent"],
    script:
        "../scripts/extract_metric.py"


rule extract_separation:
    input:
        run=run_file("activations.zarr/zarr.json"),
    output:
        metric=f"{RESULTS}/metrics/{{run}}/separation.nc",
    log:
        f"{LOGS}/extract_separation/{{run}}.log",
    benchmark:
        f"{BENCH}/extract_separation/{{run}}.tsv"
    conda:
        "../envs/ddscope.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        run_dir=lambda wc: f"{RESULTS}/runs/{wc.run}",
        analysis="separation",
        settings=config["analyses"]["separation"],
    script:
        "../scripts/extract_metric.py"


rule extract_large_activation:
    input:
        run=run_file("activations.zarr/zarr.json"),
        dataset=rules.prepare_dataset.output.dataset,
    output:
        metric=f"{RESULTS}/metrics/{{run}}/large_activation.nc",
    log:
        f"{LOGS}/extract_large_activation/{{run}}.log",
    benchmark:
        f"{BENCH}/extract_large_activation/{{run}}.tsv"
    conda:
        "../envs/ddscope.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        run_dir=lambda wc: f"{RESULTS}/runs/{wc.run}",
        analysis="large_activation",
        settings=config["analyses"]["large_activation"],
    script:
        "../scripts/extract_metric.py"


rule extract_routing:
    input:
        run=run_file("activations.zarr/zarr.json"),
    output:
        metric=f"{RESULTS}/metrics/{{run}}/routing.nc",
    log:
        f"{LOGS}/extract_routing/{{run}}.log",
    benchmark:
        f"{BENCH}/extract_routing/{{run}}.tsv"
    conda:
        "../envs/ddscope.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        run_dir=lambda wc: f"{RESULTS}/runs/{wc.run}",
        analysis="routing",
        settings=config["analyses"]["routing"],
    script:
        "../scripts/extract_metric.py"


rule extract_cka:
    input:
        run=run_file("activations.zarr/zarr.json"),
    output:
        metric=f"{RESULTS}/metrics/{{run}}/cka.nc",
    log:
        f"{LOGS}/extract_cka/{{run}}.log",
    benchmark:
        f"{BENCH}/extract_cka/{{run}}.tsv"
    conda:
        "../envs/ddscope.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=30,
    params:
        run_dir=lambda wc: f"{RESULTS}/runs/{wc.run}",
        analysis="cka",
        settings=config["analyses"]["cka"],
    script:
        "../scripts/extract_metric.py"


rule extract_probes:
    input:
        run=run_file("activations.zarr/zarr.json"),
    output:
        metric=f"{RESULTS}/metrics/{{run}}/probes.nc",
    log:
        f"{LOGS}/extract_probes/{{run}}.log",
    benchmark:
        f"{BENCH}/extract_probes/{{run}}.tsv"
    conda:
        "../envs/ddscope.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        run_dir=lambda wc: f"{RESULTS}/runs/{wc.run}",
        analysis="probes",
        settings=config["analyses"]["probes"],
    script:
        "../scripts/extract_metric.py"


rule extract_collapse:
    input:
        run=run_file("activations.zarr/zarr.json"),
    output:
        metric=f"{RESULTS}/metrics/{{run}}/collapse.nc",
    log:
        f"{LOGS}/extract_collapse/{{run}}.log",
    benchmark:
        f"{BENCH}/extract_collapse/{{run}}.tsv"
    conda:
        "../envs/ddscope.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        run_dir=lambda wc: f"{RESULTS}/runs/{wc.run}",
        analysis="collapse",
        settings=config["analyses"]["collapse"],
    script:
        "../scripts/extract_metric.py"
