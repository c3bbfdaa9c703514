"""Job resources sized from the config: grow with what costs, stay generous, pick the device's throughput."""

import copy

import yaml
from conftest import REPO, SCHEMA

from ddscope import resources
from ddscope.config import validate_config


def config(path="config.yaml", **train):
    c = validate_config(yaml.safe_load((REPO / path).read_text()), SCHEMA)
    c["train"].update(train)
    return c


def test_deeper_and_wider_models_ask_for_more():
    c = config()
    assert resources.train_runtime_min(c, "mlp7") > resources.train_runtime_min(c, "mlp3")
    wide = copy.deepcopy(c)
    wide["models"]["mlp3"]["hidden"] = [1024, 1024]
    assert resources.train_runtime_min(wide, "mlp3") > resources.train_runtime_min(c, "mlp3")
    assert resources.train_mem_mb(wide, "mlp3") >= resources.train_mem_mb(c, "mlp3")
    assert resources.extract_mem_mb(wide, "mlp3", "separation") > resources.extract_mem_mb(c, "mlp3", "separation")


def test_runtime_covers_the_measured_default_study_with_margin():
    # measured: MLP7 of the default study trains in 170 s on one thread of this project's 2-core CPU
    assert resources.train_runtime_min(config(), "mlp7") * 60 >= 3 * 170


def test_runtime_scales_with_epochs_and_threads():
    c = config()
    assert resources.train_runtime_min(config(epochs=6000), "mlp7") > 5 * resources.train_runtime_min(c, "mlp7") / 2
    assert resources.train_runtime_min(config(threads=4), "mlp7") < resources.train_runtime_min(c, "mlp7")


def test_gpu_studies_are_sized_for_a_gpu():
    paper = config("configs/cifar10-paper.yaml")
    assert paper["train"]["gpus"] == 1
    cpu = copy.deepcopy(paper)
    cpu["train"]["gpus"] = 0
    assert resources.train_runtime_min(paper, "mlp7") < resources.train_runtime_min(cpu, "mlp7")
    # CIFAR-10 in memory (50 000 x 3072 float32, twice) must fit the training job
    assert resources.train_mem_mb(paper, "mlp7") > 2 * 60_000 * 3072 * 4 / 2**20
    assert resources.dataset_mem_mb(paper) > resources.dataset_mem_mb(config())


def test_cka_memory_includes_its_budget():
    c = config()
    assert resources.extract_mem_mb(c, "mlp7", "cka") >= resources.extract_mem_mb(c, "mlp7", "routing") + 1024 - 256


def test_parameter_count():
    assert resources.n_parameters(40, [128, 128], 10) == 41 * 128 + 129 * 128 + 129 * 10


def test_a_job_that_asked_for_a_gpu_never_trains_on_the_cpu(monkeypatch):
    import pytest
    import torch

    from ddscope.config import DeviceError
    from ddscope.models import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto").type == "cpu"  # gpus 0: a CPU study
    with pytest.raises(DeviceError, match="train.gpus is 1 but this job sees no GPU"):
        resolve_device("auto", gpus=1)
    with pytest.raises(DeviceError, match="no CUDA device is visible"):
        resolve_device("cuda")


def test_a_missing_gpu_is_one_line_before_any_job(tmp_path):
    import torch
    from conftest import run_snakemake
    from tiny_study import TINY, write_config

    if torch.cuda.is_available():
        import pytest

        pytest.skip("a GPU is visible here: train.device: cuda is valid")
    config = copy.deepcopy(TINY)
    config["train"]["device"] = "cuda"
    result = run_snakemake(tmp_path, configfile=write_config(tmp_path, config))
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("ddscope:")]
    assert errors == ["ddscope: train.device is 'cuda' but no CUDA device is visible; use train.device: auto or cpu"]
    assert "Traceback" not in result.stderr and not (tmp_path / "results").exists()  # no job ran
    # a dry run plans the study as usual (the check runs only when jobs are about to start)
    assert run_snakemake(tmp_path, "-n", configfile=write_config(tmp_path, config)).returncode == 0


def test_a_study_too_large_for_this_machine_is_one_line_before_any_job(tmp_path):
    from conftest import run_snakemake
    from tiny_study import TINY, write_config

    config = copy.deepcopy(TINY)
    config["models"] = {"huge": {"hidden": [65536] * 8}}  # 3.4e10 weights: terabytes of Adam state
    assert resources.train_mem_mb(validate_config(copy.deepcopy(config), SCHEMA), "huge") > resources.machine_memory_mb()
    result = run_snakemake(tmp_path, configfile=write_config(tmp_path, config))
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("ddscope:")]
    assert len(errors) == 1 and errors[0].startswith("ddscope: job train_stack_huge_sym30_ce_s0 (training huge-sym30-ce-s0) needs about ")
    assert "this machine has" in errors[0] and "dataset.n_train" in errors[0]
    assert "Traceback" not in result.stderr and not (tmp_path / "results").exists()  # no job ran


def test_running_out_of_memory_in_a_job_is_one_line(tmp_path):
    import pytest

    from ddscope.joblog import expected_errors, job_logger

    log = tmp_path / "job.log"
    for error, where in [(MemoryError(), "host"), (type("OutOfMemoryError", (RuntimeError,), {})("CUDA"), "GPU")]:
        with pytest.raises(SystemExit) as exit_:
            with expected_errors(job_logger(log)):
                raise error
        assert exit_.value.code == 1
        assert f"ddscope: out of {where} memory in this job" in log.read_text().splitlines()[-1]
    with pytest.raises(RuntimeError, match="a bug"):  # any other RuntimeError is a bug: its traceback stays
        with expected_errors(job_logger(log)):
            raise RuntimeError("a bug")
