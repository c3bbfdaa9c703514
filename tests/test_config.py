"""Config validation (ddscope.config): one-line errors naming the key and the allowed values, defaults, derived names.

The bulk runs validate_config directly; a representative subset goes through `snakemake -n` to check that the
Snakefile reports the same message as one line on stderr, exits non-zero and prints no traceback.
"""

from __future__ import annotations

import copy
import itertools

import pytest
import yaml
from conftest import REPO, SCHEMA, run_snakemake, scheduled_jobs

from ddscope.config import (
    DEFAULT_STUDY,
    ConfigError,
    noise_tag,
    parse_noise_tag,
    parse_run,
    read_config_file,
    record_epochs,
    run_names,
    study_config,
    validate_config,
)

# small and valid: 600 train samples, 30 % noise -> 180 noisy, 420 clean; 200 test samples; 5 epochs
BASE = {
    "study": "t",
    "dataset": {"name": "mnist1d", "n_train": 600, "n_test": 200, "seed": 1},
    "noise": {"kind": "symmetric", "rates": [0.3], "seed": 0},
    "probes": {"clean": 50, "noisy": 30, "test": 40},
    "models": {"mlp3": {"hidden": [8, 8]}},
    "train": {"losses": ["ce"], "seeds": [0], "epochs": 5, "batch_size": 32, "lr": 0.001},
    "record": {"epochs": {"first": 2, "log_count": 2}},
}


def with_change(path: str, value=None, delete: bool = False) -> dict:
    """BASE with `a.b.c` set to value (or deleted)."""
    config = copy.deepcopy(BASE)
    *parents, last = path.split(".")
    node = config
    for key in parents:
        node = node.setdefault(key, {})
    if delete:
        del node[last]
    else:
        node[last] = value
    return config


def validate(config: dict) -> dict:
    return validate_config(config, SCHEMA)


def config_error(config: dict) -> str:
    with pytest.raises(ConfigError) as info:
        validate(config)
    message = str(info.value)
    assert "\n" not in message, "a config error must be one line"
    return message


# (id, config, key path the message must start with, fragments naming the allowed values)
BAD = [
    # unknown keys, top level and nested
    ("unknown-top", with_change("bogus", 1), "bogus", ["unknown key", "dataset", "models", "study"]),
    ("unknown-train", with_change("train.epoch", 5), "train.epoch", ["unknown key", "epochs", "batch_size"]),
    ("unknown-dataset", with_change("dataset.ntrain", 5), "dataset.ntrain", ["unknown key", "n_train"]),
    ("unknown-probes", with_change("probes.dirty", 5), "probes.dirty", ["unknown key", "clean", "noisy", "test"]),
    ("unknown-model-key", with_change("models.mlp3.colour", 8), "models.mlp3.colour", ["unknown key", "hidden"]),
    ("key-of-another-arch", with_change("models.mlp3.width", 8), "models.mlp3.width", ["not a key of arch mlp"]),
    ("arch-key-missing", with_change("models.mlp3", {"arch": "vit", "width": 8, "depth": 2, "heads": 2}),
     "models.mlp3.patch", ["required key is missing", "width, depth, heads, patch"]),
    ("unknown-arch", with_change("models.mlp3.arch", "lstm"), "models.mlp3.arch", ["mlp, cnn, resnet18, vit"]),
    ("heads-divide", with_change("models.mlp3", {"arch": "vit", "width": 10, "depth": 2, "heads": 4, "patch": 4}),
     "models.mlp3.heads", ["does not divide width 10"]),
    ("patch-divides", with_change("models.mlp3", {"arch": "vit", "width": 8, "depth": 2, "heads": 2, "patch": 3}),
     "models.mlp3.patch", ["does not divide the mnist1d input (40)"]),
    ("sweep-depths-missing", with_change("sweep", {"widths": [4]}), "sweep.depths", ["required key is missing"]),
    ("sweep-vit-heads", with_change("sweep", {"family": "vit", "depths": [2], "widths": [8], "patch": 4}),
     "sweep.heads", ["required key is missing"]),
    ("unknown-analysis-key", with_change("analyses.cka.debias", True), "analyses.cka.debias", ["debiased"]),
    ("unknown-record-epochs-key", with_change("record.epochs", {"first": 2, "last": 4}), "record.epochs",
     ["first, log_count", "list"]),
    # wrong types
    ("type-epochs-str", with_change("train.epochs", "ten"), "train.epochs", ["an integer", ">= 1"]),
    ("type-epochs-float", with_change("train.epochs", 10.5), "train.epochs", ["an integer"]),
    ("type-epochs-bool", with_change("train.epochs", True), "train.epochs", ["an integer"]),
    ("type-lr-str", with_change("train.lr", "fast"), "train.lr", ["a number", "> 0"]),
    ("type-rates-scalar", with_change("noise.rates", 0.3), "noise.rates", ["a list"]),
    ("type-download", with_change("dataset.download", "yes"), "dataset.download", ["true or false"]),
    ("type-train-list", with_change("train", [1]), "train", ["a mapping"]),
    ("type-models-list", with_change("models", ["mlp3"]), "models", ["a mapping"]),
    ("type-hidden-str", with_change("models.mlp3.hidden", "8"), "models.mlp3.hidden", ["a list"]),
    ("type-study", with_change("study", "my study"), "study", ["A-Za-z0-9"]),
    # noise rate outside [0, 1)
    ("rate-one", with_change("noise.rates", [1.0]), "noise.rates[0]", [">= 0", "< 1"]),
    ("rate-negative", with_change("noise.rates", [0.2, -0.1]), "noise.rates[1]", [">= 0", "< 1"]),
    ("rate-large", with_change("noise.rates", [1.5]), "noise.rates[0]", [">= 0", "< 1"]),
    # unknown dataset / noise kind / loss
    ("unknown-dataset-name", with_change("dataset.name", "mnist"), "dataset.name", ["mnist1d", "cifar10"]),
    ("unknown-noise-kind", with_change("noise.kind", "asymmetric"), "noise.kind", ["symmetric", "pairflip"]),
    ("unknown-loss", with_change("train.losses", ["ce", "mse"]), "train.losses[1]", ["ce", "ls"]),
    ("unknown-dtype", with_change("record.dtype", "float64"), "record.dtype", ["float16", "float32"]),
    # empty or duplicate lists, empty models mapping
    ("seeds-empty", with_change("train.seeds", []), "train.seeds", ["at least 1"]),
    ("seeds-duplicate", with_change("train.seeds", [0, 1, 0]), "train.seeds", ["duplicate", "unique"]),
    ("losses-duplicate", with_change("train.losses", ["ce", "ce"]), "train.losses", ["duplicate", "unique"]),
    ("rates-empty", with_change("noise.rates", []), "noise.rates", ["at least 1"]),
    ("rates-duplicate", with_change("noise.rates", [0.3, 0.3]), "noise.rates", ["duplicate", "unique"]),
    ("models-empty", with_change("models", {}), "models", ["at least 1"]),
    ("model-name-dash", with_change("models", {"mlp-3": {"hidden": [4]}}), "models", ["mlp-3", "a-z"]),
    ("hidden-empty", with_change("models.mlp3.hidden", []), "models.mlp3.hidden", ["at least 1"]),
    # non-positive widths, epochs, batch size, learning rate
    ("width-zero", with_change("models.mlp3.hidden", [8, 0]), "models.mlp3.hidden[1]", [">= 1"]),
    ("width-negative", with_change("models.mlp3.hidden", [-8]), "models.mlp3.hidden[0]", [">= 1"]),
    ("epochs-zero", with_change("train.epochs", 0), "train.epochs", [">= 1"]),
    ("batch-zero", with_change("train.batch_size", 0), "train.batch_size", [">= 1"]),
    ("batch-negative", with_change("train.batch_size", -32), "train.batch_size", [">= 1"]),
    ("lr-zero", with_change("train.lr", 0), "train.lr", ["> 0"]),
    ("lr-negative", with_change("train.lr", -0.001), "train.lr", ["> 0"]),
    # required keys
    ("dataset-name-missing", with_change("dataset.name", delete=True), "dataset.name", ["required"]),
    ("models-missing", with_change("models", delete=True), "models", ["required"]),
    ("hidden-missing", with_change("models.mlp3", {}), "models.mlp3.hidden", ["required"]),
    # probe sizes larger than the available clean / noisy / test samples (600 train at 30 % -> 420 clean, 180 noisy)
    ("probes-clean", with_change("probes.clean", 421), "probes.clean", ["421", "420"]),
    ("probes-noisy", with_change("probes.noisy", 181), "probes.noisy", ["181", "180"]),
    ("probes-test", with_change("probes.test", 201), "probes.test", ["201", "200"]),
    # with two rates the tighter one limits: 50 % leaves 300 clean, 10 % makes 60 noisy
    ("probes-clean-2rates", {**with_change("noise.rates", [0.1, 0.5]), "probes": {"clean": 301, "noisy": 10, "test": 5}},
     "probes.clean", ["301", "300"]),
    ("probes-noisy-2rates", {**with_change("noise.rates", [0.1, 0.5]), "probes": {"clean": 10, "noisy": 61, "test": 5}},
     "probes.noisy", ["61", "60"]),
    ("probes-test-cifar", {**with_change("dataset", {"name": "cifar10"}), "probes": {"clean": 10, "noisy": 10, "test": 10001}},
     "probes.test", ["10001", "10000"]),
    # a record schedule past the last epoch (train.epochs = 5)
    ("record-first-past-end", with_change("record.epochs", {"first": 6, "log_count": 2}), "record.epochs.first",
     ["6", "5"]),
    ("record-list-past-end", with_change("record.epochs", [0, 2, 6]), "record.epochs", ["6", "5"]),
    ("record-list-duplicate", with_change("record.epochs", [0, 2, 2]), "record.epochs", ["list"]),
    ("record-list-empty", with_change("record.epochs", []), "record.epochs", ["list"]),
    ("record-wrong-type", with_change("record.epochs", "all"), "record.epochs", ["first, log_count", "list"]),
]


@pytest.mark.parametrize("config, key, allowed", [pytest.param(*case[1:], id=case[0]) for case in BAD])
def test_bad_config_names_key_and_allowed_values(config, key, allowed):
    message = config_error(config)
    assert message.startswith(f"{key}:"), f"message does not start with the key path {key!r}: {message}"
    for fragment in allowed:
        assert fragment in message, f"{fragment!r} missing from: {message}"


@pytest.mark.parametrize(
    "path, value",
    [
        ("probes.clean", 420),  # exactly the clean samples at 30 % of 600
        ("probes.noisy", 180),
        ("probes.test", 200),
        ("record.epochs", {"first": 5, "log_count": 3}),  # first == last epoch
        ("record.epochs", [0, 1, 5]),  # list up to the last epoch
        ("noise.rates", [0.0, 0.3]),  # rate 0 is allowed
        ("train.lr", 1e-9),
    ],
    ids=lambda v: str(v),
)
def test_boundary_values_are_accepted(path, value):
    validate(with_change(path, value))


def test_noisy_probe_size_is_not_limited_by_rate_zero():
    config = with_change("noise.rates", [0.0])
    config["probes"] = {"clean": 600, "noisy": 300, "test": 200}
    resolved = validate(config)
    assert resolved["probes"]["noisy"] == 300


# --- shipped configs and defaults ----------------------------------------------------------------

SHIPPED = [REPO / "config.yaml", *sorted((REPO / "configs").glob("*.yaml"))]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.relative_to(REPO).as_posix())
def test_shipped_configs_validate(path):
    """Each is layered over the default study, as `snakemake --configfile` takes it."""
    config = yaml.safe_load(path.read_text())
    resolved = validate_config(study_config([] if path == DEFAULT_STUDY else [path]))
    assert resolved["study"] == config["study"]
    # a study trains something: runs of the noisy-label study, or the threshold study's grid
    assert run_names(resolved) or resolved.get("threshold"), f"{path.name} defines no runs"


def test_shipped_study_names_are_distinct():
    names = [yaml.safe_load(p.read_text())["study"] for p in SHIPPED]
    assert len(names) == len(set(names)), "two shipped configs would write to the same results/<study>/"


def _schema_defaults_present(schema: dict, config: dict, where: str = "") -> int:
    """Every property with a default is present in the resolved config, recursively; returns how many were checked."""
    checked = 0
    for name, sub in schema.get("properties", {}).items():
        if name not in config:
            assert "default" not in sub, f"default of {where}{name} was not filled in"
            continue
        if "default" in sub:
            checked += 1
        if isinstance(config[name], dict) and sub.get("type") == "object":
            checked += _schema_defaults_present(sub, config[name], f"{where}{name}.")
    return checked


def test_defaults_are_filled_in():
    minimal = {"study": "m", "dataset": {"name": "mnist1d"}, "models": {"m": {"hidden": [4]}}}
    before = copy.deepcopy(minimal)
    resolved = validate(minimal)
    assert minimal == before, "validate_config must not modify its argument"
    dataset = resolved["dataset"]
    assert (dataset["name"], dataset["n_train"], dataset["n_test"], dataset["seed"]) == ("mnist1d", 16000, 4000, 42)
    assert (dataset["data_dir"], dataset["download"]) == ("data/cifar10", False)
    assert resolved["noise"] == {"kind": "symmetric", "rates": [0.0, 0.3], "seed": 0}
    assert resolved["probes"] == {"clean": 600, "noisy": 300, "test": 600}
    assert resolved["train"]["losses"] == ["ce"]
    assert resolved["train"]["seeds"] == [0, 1, 2]
    assert resolved["train"]["epochs"] == 600
    assert resolved["train"]["device"] == "auto"
    assert resolved["record"] == {"epochs": {"first": 10, "log_count": 40}, "dtype": "float16"}
    # defaults inside defaults (filled on the second pass)
    assert resolved["analyses"]["double_descent"]["smooth_window"] == 5
    assert resolved["analyses"]["cka"]["debiased"] is False
    assert resolved["figures"]["dpi"] == 150
    schema = yaml.safe_load(SCHEMA.read_text())
    assert _schema_defaults_present(schema, resolved) > 40


def test_user_values_win_over_defaults():
    config = with_change("record.epochs", {"first": 3})
    config["train"]["epochs"] = 50
    resolved = validate(config)
    assert resolved["record"]["epochs"] == {"first": 3, "log_count": 40}
    assert resolved["train"]["epochs"] == 50
    assert resolved["dataset"]["n_train"] == 600
    listed = validate(with_change("record.epochs", [0, 2, 4]))
    assert listed["record"]["epochs"] == [0, 2, 4]


# --- derived names ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "first, log_count, epochs",
    list(itertools.product([0, 1, 3, 10], [0, 1, 5, 40], [1, 2, 10, 11, 300, 1000])),
)
def test_record_epochs_mapping_form(first, log_count, epochs):
    got = record_epochs({"epochs": {"first": first, "log_count": log_count}}, epochs)
    assert got[0] == 0
    assert got == sorted(set(got)), "sorted and unique"
    assert got[-1] == epochs, "the last epoch is always recorded"
    assert all(isinstance(e, int) for e in got)
    assert set(range(min(first, epochs) + 1)) <= set(got), "every epoch 0..first"
    assert len(got) <= min(first, epochs) + 1 + log_count + 1


def test_record_epochs_are_log_spaced_after_first():
    got = record_epochs({"epochs": {"first": 10, "log_count": 40}}, 1000)
    tail = [e for e in got if e > 10]
    assert len(tail) == 40
    ratios = [b / a for a, b in zip([10, *tail], tail)]
    # roughly geometric: 100 ** (1/40) ~ 1.122 per step
    assert all(1.0 < r < 1.25 for r in ratios), ratios


def test_record_epochs_list_form():
    assert record_epochs({"epochs": [5, 1, 3, 3]}, 10) == [0, 1, 3, 5, 10]
    assert record_epochs({"epochs": [0, 10]}, 10) == [0, 10]


@pytest.mark.parametrize("kind", ["symmetric", "pairflip"])
@pytest.mark.parametrize("rate", [0.0, 0.05, 0.1, 0.125, 0.2, 0.29, 0.3, 0.4, 0.45, 0.5, 0.8])
def test_noise_tag_round_trip(kind, rate):
    tag = noise_tag(kind, rate)
    assert parse_noise_tag(tag) == (kind, rate)


def test_noise_tag_examples():
    assert noise_tag("symmetric", 0.3) == "sym30"
    assert noise_tag("pairflip", 0.125) == "pair12.5"
    assert noise_tag("symmetric", 0.0) == "sym0"
    with pytest.raises(ConfigError, match="sym, pair"):
        parse_noise_tag("asym30")


@pytest.mark.parametrize("rate", [0.333, 0.999, 0.1234567, 1 / 3])
def test_noise_tag_round_trip_any_rate(rate):
    tag = noise_tag("symmetric", rate)
    assert parse_noise_tag(tag) == ("symmetric", rate)


def test_noise_tags_of_distinct_rates_are_distinct():
    rates = [i / 100 for i in range(100)] + [0.125, 0.375, 0.0625]
    tags = [noise_tag("symmetric", r) for r in rates]
    assert len(set(tags)) == len(rates)


def test_run_names():
    config = copy.deepcopy(BASE)
    config["models"] = {"mlp3": {"hidden": [4, 4]}, "wide_mlp": {"hidden": [16]}}
    config["noise"] = {"kind": "pairflip", "rates": [0.2, 0.45], "seed": 0}
    config["train"].update(losses=["ce", "ls"], seeds=[0, 7])
    resolved = validate(config)
    names = run_names(resolved)
    assert len(names) == 2 * 2 * 2 * 2 == len(set(names))
    assert "mlp3-pair20-ce-s0" in names
    assert "wide_mlp-pair45-ls-s7" in names
    for name in names:
        run = parse_run(name)
        assert f"{run['model']}-{run['noise']}-{run['loss']}-s{run['seed']}" == name
        assert run["model"] in resolved["models"]
        assert parse_noise_tag(run["noise"])[1] in resolved["noise"]["rates"]
    assert run_names(validate(BASE)) == ["mlp3-sym30-ce-s0"]


# --- through the Snakefile: one line on stderr, non-zero exit, no traceback --------------------------

SNAKEMAKE_CASES = [
    "unknown-top",
    "unknown-model-key",
    "type-epochs-str",
    "rate-one",
    "unknown-dataset-name",
    "models-empty",
    "probes-clean",
    "record-list-past-end",
]
_BY_ID = {case[0]: case for case in BAD}


@pytest.mark.parametrize("case_id", SNAKEMAKE_CASES)
def test_snakemake_reports_config_error(tmp_path, case_id):
    _, config, key, allowed = _BY_ID[case_id]
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(config))
    proc = run_snakemake(tmp_path, "-n", configfile=tmp_path / "bad.yaml", cores=1)
    assert proc.returncode != 0
    output = proc.stdout + proc.stderr
    assert "Traceback" not in output
    lines = [line for line in proc.stderr.splitlines() if line.startswith("ddscope: config error: ")]
    assert len(lines) == 1, proc.stderr
    message = lines[0].removeprefix("ddscope: config error: ")
    assert message.startswith(f"{key}:"), message
    for fragment in allowed:
        assert fragment in message, f"{fragment!r} missing from: {message}"
    assert not (tmp_path / "results").exists(), "no job may start with a bad config"


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.relative_to(REPO).as_posix())
def test_snakemake_dry_run_of_shipped_configs(tmp_path, path):
    """Dry runs need no data (the CIFAR-10 config included) and schedule the dataset (or threshold teacher) files."""
    proc = run_snakemake(tmp_path, "-n", configfile=path, cores=1)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stdout + proc.stderr
    config = validate_config(study_config([] if path == DEFAULT_STUDY else [path]))
    first = "data/dataset.h5" if "models" in config else "threshold/data/teacher.h5"
    assert f"results/{config['study']}/{first}" in proc.stdout
    assert not (tmp_path / "results").exists()


# --- layering: a --configfile over the default study ------------------------------------------------------


def _layered(tmp_path, layer: dict) -> dict:
    path = tmp_path / "layer.yaml"
    path.write_text(yaml.safe_dump(layer))
    return validate_config(study_config([path]))


def test_a_layer_changes_only_its_keys(tmp_path):
    default = validate_config(read_config_file(DEFAULT_STUDY))
    got = _layered(tmp_path, {"study": "x", "train": {"epochs": 40}})
    assert got["train"]["epochs"] == 40 and got["study"] == "x"
    assert {**got, "study": "default", "train": {**got["train"], "epochs": 600}} == default


def test_lists_and_run_keys_replace(tmp_path):
    got = _layered(tmp_path, {"study": "x", "models": {"tiny": {"hidden": [8]}}, "train": {"seeds": [5]},
                              "noise": {"rates": [0.1]}})
    assert list(got["models"]) == ["tiny"] and got["train"]["seeds"] == [5] and got["noise"]["rates"] == [0.1]
    assert run_names(got) == ["tiny-sym10-ce-s5"]
    swept = _layered(tmp_path, {"study": "x", "sweep": {"depths": [2], "widths": [4, 8]}})
    assert list(swept["models"]) == ["mlp2w4", "mlp2w8"], "a sweep replaces the default study's models"


def test_a_threshold_study_inherits_no_noisy_label_runs(tmp_path):
    got = _layered(tmp_path, {"study": "x", "threshold": {"d": 3}})
    assert "models" not in got and "dataset" not in got and run_names(got) == []
    assert got["threshold"]["d"] == 3


def test_a_layer_must_name_its_study(tmp_path):
    path = tmp_path / "layer.yaml"
    path.write_text(yaml.safe_dump({"train": {"epochs": 40}}))
    with pytest.raises(ConfigError, match=r"^study: required key is missing in .*replace the default study"):
        study_config([path])


def test_several_layers_apply_in_order(tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text(yaml.safe_dump({"study": "a", "train": {"epochs": 40, "lr": 0.01}}))
    b.write_text(yaml.safe_dump({"study": "b", "train": {"epochs": 50}}))
    got = validate_config(study_config([a, b], {"train": {"seeds": [9]}}))
    assert (got["study"], got["train"]["epochs"], got["train"]["lr"], got["train"]["seeds"]) == ("b", 50, 0.01, [9])


def test_schema_defaults_are_the_default_study():
    default = validate_config(read_config_file(DEFAULT_STUDY))
    minimal = {"study": "default", "dataset": {"name": "mnist1d"}, "models": default["models"]}
    assert validate_config(minimal) == default


def _leaves(mapping: dict, prefix=()):
    for key, value in mapping.items():
        if isinstance(value, dict) and value:
            yield from _leaves(value, prefix + (key,))
        else:
            yield prefix + (key,)


@pytest.mark.parametrize("path", [p for p in SHIPPED if p.parent.name == "configs"], ids=lambda p: p.name)
def test_shipped_configs_hold_only_what_differs(tmp_path, path):
    """Each key of a shipped config changes the study: without it, the resolved config would differ."""
    layer = yaml.safe_load(path.read_text())
    full = _layered(tmp_path, layer)
    redundant = []
    for leaf in _leaves(layer):
        if leaf == ("study",):
            continue
        smaller = copy.deepcopy(layer)
        parent = smaller
        for key in leaf[:-1]:
            parent = parent[key]
        del parent[leaf[-1]]
        try:
            if _layered(tmp_path, smaller) == full:
                redundant.append(".".join(leaf))
        except ConfigError:
            pass  # a required key: not redundant
    assert not redundant, f"{path.name}: keys equal to the default study's: {redundant}"


def test_snakemake_layers_a_configfile_over_the_default_study(tmp_path):
    """`study: x` and `train: {epochs: 40}` is the default study (18 runs) with 40 epochs."""
    (tmp_path / "x.yaml").write_text(yaml.safe_dump({"study": "x", "train": {"epochs": 40}}))
    proc = run_snakemake(tmp_path, "-n", configfile=tmp_path / "x.yaml", cores=1)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert scheduled_jobs(proc.stdout)["train"] == 18
    assert "results/x/runs/mlp7-sym30-ce-s2/curves.nc" in proc.stdout
