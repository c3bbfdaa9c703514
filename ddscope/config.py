"""Config validation, defaults and the names derived from a config (runs, noise tags, record schedule, sweeps).

Imported by the Snakefile, so it must stay light: no torch, no numpy-heavy work.
"""

from __future__ import annotations

import copy
import json
import math
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import jsonschema
import yaml

CIFAR10_SIZES = {"n_train": 50000, "n_test": 10000, "classes": 10}
MNIST1D_CLASSES = 10
NOISE_PREFIX = {"symmetric": "sym", "pairflip": "pair"}


class ConfigError(ValueError):
    """An expected mistake in the config: reported as one line, never a traceback."""


class DeviceError(ConfigError):
    """The device the config asks for is not visible to the job (reported as one line)."""


# --- schema validation with defaults -------------------------------------------------------------


def _extend_with_defaults(validator_class):
    """Fill `default`s of missing properties while validating (the documented jsonschema recipe)."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


_DefaultFillingValidator = _extend_with_defaults(jsonschema.Draft7Validator)


def key_path(path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<top level>"


def _allowed(schema: dict) -> str:
    """Describe the values a schema node allows, for the one-line error."""
    if "enum" in schema:
        return "one of " + ", ".join(map(str, schema["enum"]))
    kind = schema.get("type")
    bounds = []
    if "minimum" in schema:
        bounds.append(f">= {schema['minimum']}")
    if "exclusiveMinimum" in schema:
        bounds.append(f"> {schema['exclusiveMinimum']}")
    if "maximum" in schema:
        bounds.append(f"<= {schema['maximum']}")
    if "exclusiveMaximum" in schema:
        bounds.append(f"< {schema['exclusiveMaximum']}")
    text = {"integer": "an integer", "number": "a number", "string": "a string", "boolean": "true or false",
            "array": "a list", "object": "a mapping"}.get(kind, "")
    if "pattern" in schema:
        text += f" matching {schema['pattern']}"
    if bounds:
        text += (" " if text else "") + " and ".join(bounds)
    return text.strip() or "see schemas/config.schema.yaml"


def _describe(error: jsonschema.ValidationError) -> str:
    path = list(error.absolute_path)
    v, s, inst = error.validator, error.schema, error.instance
    if v == "additionalProperties" and isinstance(inst, dict):
        known = set(s.get("properties", {}))
        extra = sorted(k for k in inst if k not in known)
        if known and extra:
            return f"{key_path(path + [extra[0]])}: unknown key (allowed keys: {', '.join(sorted(known))})"
    if v == "required":
        missing = [k for k in error.validator_value if k not in inst]
        return f"{key_path(path + missing[:1])}: required key is missing"
    if v == "propertyNames":
        return f"{key_path(path)}: name {inst!r} not allowed (must match {s['propertyNames'].get('pattern')})"
    if v == "uniqueItems":
        return f"{key_path(path)}: duplicate entries in {inst!r} (list items must be unique)"
    if v == "minItems":
        return f"{key_path(path)}: needs at least {error.validator_value} item(s), got {len(inst)}"
    if v == "maxItems":
        return f"{key_path(path)}: needs at most {error.validator_value} item(s), got {len(inst)}"
    if v == "minProperties":
        return f"{key_path(path)}: needs at least {error.validator_value} entry"
    if v == "oneOf":
        return f"{key_path(path)}: {inst!r} is neither a mapping {{first, log_count}} nor a list of epochs"
    return f"{key_path(path)}: {inst!r} is not allowed (allowed: {_allowed(s)})"


def _validate_schema(config: dict, schema: dict) -> None:
    validator = _DefaultFillingValidator(schema)
    errors = list(validator.iter_errors(config))
    if errors:
        # the deepest error is the most specific; ties broken by the order of the config
        error = max(errors, key=lambda e: len(e.absolute_path))
        raise ConfigError(_describe(error))


# --- derived quantities ---------------------------------------------------------------------------


def n_flipped(rate: float, n: int) -> int:
    """Exact number of flipped labels: round(rate·N), halves rounded up (not Python's banker's rounding)."""
    # exact decimal arithmetic: in binary floats 0.29 * 50 is 14.4999..., which would round down
    return int(math.floor(Fraction(repr(float(rate))) * n + Fraction(1, 2)))


def noise_tag(kind: str, rate: float) -> str:
    """`sym30` for 30 % symmetric noise; `pair12.5` for 12.5 % pair-flip."""
    return f"{NOISE_PREFIX[kind]}{(Decimal(repr(float(rate))) * 100).normalize():f}"


def parse_noise_tag(tag: str) -> tuple[str, float]:
    for kind, prefix in NOISE_PREFIX.items():
        if tag.startswith(prefix):
            return kind, float(Decimal(tag[len(prefix):]) / 100)
    raise ConfigError(f"noise tag {tag!r} does not start with one of {', '.join(NOISE_PREFIX.values())}")


def dataset_sizes(dataset: dict) -> tuple[int, int]:
    if dataset["name"] == "cifar10":
        return CIFAR10_SIZES["n_train"], CIFAR10_SIZES["n_test"]
    return dataset["n_train"], dataset["n_test"]


N_CLASSES = {"mnist1d": 10, "cifar10": CIFAR10_SIZES["classes"]}
# a sample as the networks see it: channels, then positions (MNIST-1D: a 1-D signal; CIFAR-10: an image);
# datasets store it flat, channel-major
INPUT_SHAPE = {"mnist1d": (1, 40), "cifar10": (3, 32, 32)}

# --- model entries: {arch: mlp, hidden: [...]} (arch may be left out), cnn, resnet18, vit -------------------

ARCH_KEYS = {  # required keys, then optional ones, of each architecture's model entry
    "mlp": (("hidden",), ()),
    "cnn": (("width",), ()),
    "resnet18": (("width",), ()),
    "vit": (("width", "depth", "heads", "patch"), ("pool", "mlp_ratio")),
}


def model_arch(entry: dict) -> str:
    return entry.get("arch", "mlp")


def layer_widths(entry: dict) -> list[int]:
    """Units of each recorded layer of a model entry (ddscope.models: a block's output, pooled)."""
    arch, k = model_arch(entry), entry.get("width")
    if arch == "mlp":
        return list(entry["hidden"])
    if arch == "cnn":
        return [k, 2 * k, 4 * k, 8 * k]
    if arch == "resnet18":
        return [k, k, 2 * k, 2 * k, 4 * k, 4 * k, 8 * k, 8 * k]
    return [k] * entry["depth"]  # vit


def model_spec(entry: dict) -> dict:
    """What a run's training spec (and so its fingerprint) holds of its model: an MLP's `hidden` alone, so
    that MLP runs keep the fingerprint they had before other architectures; otherwise `arch` and its keys."""
    arch = model_arch(entry)
    if arch == "mlp":
        return {"hidden": list(entry["hidden"])}
    return {"arch": arch, **{k: entry[k] for k in sum(ARCH_KEYS[arch], ()) if k in entry}}


def model_depth(entry: dict) -> int:
    """Recorded layers + the classifier: mlp3 has 3 (as its name says), the 5-layer CNN 5, a ResNet-18 9."""
    return len(layer_widths(entry)) + 1


def _check_model(name: str, entry: dict, dataset: str) -> None:
    arch = model_arch(entry)
    required, optional = ARCH_KEYS[arch]
    for key in required:
        if key not in entry:
            raise ConfigError(f"models.{name}.{key}: required key is missing (arch {arch} needs "
                              f"{', '.join(required)})")
    for key in entry:
        if key != "arch" and key not in required + optional:
            raise ConfigError(f"models.{name}.{key}: not a key of arch {arch} (its keys: "
                              f"{', '.join(required + optional)})")
    positions = INPUT_SHAPE[dataset][1:]
    if arch == "vit":
        if entry["width"] % entry["heads"]:
            raise ConfigError(f"models.{name}.heads: {entry['heads']} does not divide width {entry['width']}")
        if any(n % entry["patch"] for n in positions):
            raise ConfigError(f"models.{name}.patch: {entry['patch']} does not divide the {dataset} input "
                              f"({' × '.join(map(str, positions))})")


def split_sizes(config: dict, run: str) -> dict:
    """{n_test, n_noisy, n_classes} of a run: the sample counts its test-curve and noisy-label noise come from."""
    n_train, n_test = dataset_sizes(config["dataset"])
    _, rate = parse_noise_tag(parse_run(run)["noise"])
    return {"n_test": int(n_test), "n_noisy": n_flipped(rate, n_train),
            "n_classes": N_CLASSES[config["dataset"]["name"]]}


def record_epochs(record: dict, epochs: int) -> list[int]:
    """Recorded epochs: every epoch 0..first, then `log_count` log-spaced epochs up to and including the last."""
    spec = record["epochs"]
    if isinstance(spec, list):  # initialisation and the final model are always recorded
        return sorted(set(int(e) for e in spec) | {0, epochs})
    first = min(spec["first"], epochs)
    out = set(range(first + 1))
    if spec["log_count"] > 0 and epochs > first:
        lo = math.log(max(first, 1))
        for k in range(1, spec["log_count"] + 1):
            out.add(int(round(math.exp(lo + (math.log(epochs) - lo) * k / spec["log_count"]))))
    out.add(epochs)
    return sorted(e for e in out if e <= epochs)


# Settings that say how a result is computed, not what it is. They are never rule params (so changing one
# reruns nothing); scripts read them from the config at run time with execution_settings().
EXECUTION_KEYS = {
    "train": ("device", "gpus", "threads", "eval_batch_size", "checkpoint_every", "stack"),
    "cka": ("max_mem_mb",),
}


def results_settings(section: str, settings: dict) -> dict:
    """`settings` without its execution-only keys: what a rule's params may hold."""
    return {k: v for k, v in settings.items() if k not in EXECUTION_KEYS.get(section, ())}


def execution_settings(section: str, settings: dict) -> dict:
    """Only the execution-only keys of `settings` (read by a script from snakemake.config)."""
    return {k: settings[k] for k in EXECUTION_KEYS.get(section, ()) if k in settings}


def train_config_text(spec: dict) -> str:
    """The training config a run's results depend on, as stored in its artifacts (attr train_config): its
    spec without the execution-only keys."""
    return json.dumps({k: v for k, v in sorted(spec.items()) if k not in EXECUTION_KEYS["train"]}, sort_keys=True)


def has_noisy_label_study(config: dict) -> bool:
    return "models" in config


# --- sweeps: a family of models over a depth × width grid -----------------------------------------

SWEEP_ARCHS = ("cnn", "resnet18", "vit")  # families that name an architecture; any other family is an MLP prefix


def sweep_model_name(family: str, depth: int | None, width: int) -> str:
    """`mlp3w512`: the family, its depth (linear layers, as in mlp3), `w` and the width of every hidden layer;
    `cnnw16`, `resnet18w8` (fixed depth); `vit4w64` (4 blocks of width 64)."""
    return f"{family}w{width}" if family in ("cnn", "resnet18") else f"{family}{depth}w{width}"


def sweep_hidden(depth: int, width: int) -> list[int]:
    """Hidden widths of a swept MLP: depth counts linear layers, so depth - 1 hidden ReLU layers of `width`."""
    return [width] * (depth - 1)


def sweep_entry(sweep: dict, depth: int | None, width: int) -> dict:
    """The model entry of one grid point of a sweep."""
    family = sweep["family"]
    if family in ("cnn", "resnet18"):
        return {"arch": family, "width": width}
    if family == "vit":
        return {"arch": "vit", "width": width, "depth": depth,
                **{k: sweep[k] for k in ("heads", "patch", "pool", "mlp_ratio") if k in sweep}}
    return {"hidden": sweep_hidden(depth, width)}


def sweep_entries(config: dict) -> dict[str, dict]:
    """name -> model entry of every model of the sweep, depth-major in the config's order ({} without one)."""
    sweep = config.get("sweep")
    if not sweep:
        return {}
    depths = [None] if sweep["family"] in ("cnn", "resnet18") else sweep["depths"]
    return {sweep_model_name(sweep["family"], d, w): sweep_entry(sweep, d, w) for d in depths for w in sweep["widths"]}


def sweep_models(config: dict) -> dict[str, dict]:
    """name -> {depth (model_depth: recorded layers + 1), width} of every model of the sweep."""
    return {name: {"depth": model_depth(e), "width": e["width"] if "width" in e else e["hidden"][0]}
            for name, e in sweep_entries(config).items()}


def _expand_sweep(config: dict) -> None:
    """Add the sweep's models to config["models"], after the named ones.

    A named model with a sweep model's name is an error, unless it is the same network (so that a resolved
    config validates again unchanged).
    """
    sweep = config.get("sweep")
    if not sweep:
        return
    family = sweep["family"]
    if family not in ("cnn", "resnet18") and "depths" not in sweep:
        raise ConfigError(f"sweep.depths: required key is missing (family {family} sweeps depths × widths)")
    if family not in SWEEP_ARCHS and min(sweep["depths"]) < 2:
        raise ConfigError(f"sweep.depths: {min(sweep['depths'])} is too shallow for an MLP (depth counts linear "
                          "layers: at least 2, one hidden layer)")
    for key in ("heads", "patch"):
        if family == "vit" and key not in sweep:
            raise ConfigError(f"sweep.{key}: required key is missing (family vit)")
    models = config.setdefault("models", {})
    for name, entry in sweep_entries(config).items():
        if name in models and models[name] != entry:
            g = sweep_models(config)[name]
            raise ConfigError(f"models.{name}: clashes with the sweep's model of depth {g['depth']} and width "
                              f"{g['width']} (rename the model or drop that width from sweep.widths)")
        models[name] = entry


def _check_semantics(config: dict) -> None:
    """Checks a schema cannot express: they need several keys at once."""
    if has_noisy_label_study(config) != ("dataset" in config):
        missing = "dataset" if "models" in config else "models"
        raise ConfigError(f"{missing}: required key is missing (a noisy-label study needs both dataset and models)")
    if not has_noisy_label_study(config):
        if "threshold" not in config:
            raise ConfigError("dataset: required key is missing (or give a threshold: section for a threshold study)")
        return
    for name, entry in config["models"].items():
        _check_model(name, entry, config["dataset"]["name"])
    if config["train"]["augment"] == "crop_flip" and len(INPUT_SHAPE[config["dataset"]["name"]]) != 3:
        raise ConfigError(f"train.augment: crop_flip crops and flips images; {config['dataset']['name']} "
                          "samples are 1-D signals (use none)")
    n_train, n_test = dataset_sizes(config["dataset"])
    epochs = config["train"]["epochs"]
    spec = config["record"]["epochs"]
    if isinstance(spec, list) and max(spec) > epochs:
        raise ConfigError(f"record.epochs: asks for epoch {max(spec)} but train.epochs is {epochs}")
    if isinstance(spec, dict) and spec["first"] > epochs:
        raise ConfigError(f"record.epochs.first: {spec['first']} is past the last epoch (train.epochs = {epochs})")
    probes = config["probes"]
    if probes["test"] > n_test:
        raise ConfigError(f"probes.test: {probes['test']} > {n_test} test samples available")
    for rate in config["noise"]["rates"]:
        flipped = n_flipped(rate, n_train)
        if probes["clean"] > n_train - flipped:
            raise ConfigError(
                f"probes.clean: {probes['clean']} > {n_train - flipped} clean samples at noise rate {rate}")
        if rate > 0 and probes["noisy"] > flipped:
            raise ConfigError(f"probes.noisy: {probes['noisy']} > {flipped} noisy samples at noise rate {rate}")


# --- layering: a study's config file over the default study (config.yaml) --------------------------------

REPO = Path(__file__).resolve().parents[1]
DEFAULT_STUDY = REPO / "config.yaml"
SCHEMA = REPO / "schemas" / "config.schema.yaml"
# Keys that say which runs exist. A layer that names one of them replaces all of them: a study that names its
# models gets only those (merged, the default study's models would leak into every other study).
RUN_KEYS = ("models", "sweep", "threshold")


def merge_config(base: dict, layer: dict) -> dict:
    """`layer` over `base`: mappings merge key by key, anything else (lists included) replaces."""
    out = copy.deepcopy(base)
    for key, value in layer.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_config(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def layer_config(base: dict, layer: dict) -> dict:
    """A study: `layer` over `base` (merge_config), with the run keys of RUN_KEYS replaced as one.

    A layer that trains no noisy-label runs (a threshold-only study) does not inherit the base's dataset.
    """
    out = merge_config(base, layer)
    if any(key in layer for key in RUN_KEYS):
        for key in RUN_KEYS:
            if key in layer:
                out[key] = copy.deepcopy(layer[key])
            else:
                out.pop(key, None)
        if "models" not in out and "sweep" not in out and "dataset" not in layer:
            out.pop("dataset", None)
    return out


def read_config_file(path: str | Path) -> dict:
    """One YAML config file as a mapping (an empty file is {}); ConfigError naming the file otherwise."""
    try:
        config = yaml.safe_load(Path(path).read_text()) or {}
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the config ({error.strerror})") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: a config is a mapping of keys, got {type(config).__name__}")
    return config


def study_config(files: list[str | Path], overrides: dict | None = None) -> dict:
    """The config of a study given as `--configfile files...` (each layered over the last, all over the default
    study) and `overrides` (`--config key=value`, last). Unvalidated: pass it to validate_config.

    A study file must name its `study`: without it, its results would go to (and replace) the default study's.
    """
    config = read_config_file(DEFAULT_STUDY)
    for path in files:
        layer = read_config_file(path)
        if "study" not in layer:
            raise ConfigError(f"study: required key is missing in {path} (outputs go to results/<study>/; "
                              f"without it they would replace the default study's)")
        config = layer_config(config, layer)
    return layer_config(config, overrides or {})


def validate_config(config: dict, schema_path: str | Path = SCHEMA) -> dict:
    """Validate, fill defaults, expand a sweep into config["models"], and check cross-key constraints.

    Returns a new dict; raises ConfigError.
    """
    config = copy.deepcopy(dict(config))
    schema = yaml.safe_load(Path(schema_path).read_text())
    _validate_schema(config, schema)
    # a second pass fills defaults inside defaults that were inserted on the first
    _validate_schema(config, schema)
    _expand_sweep(config)
    _check_semantics(config)
    return config


def run_names(config: dict) -> list[str]:
    """Every run of the study: <model>-<noise>-<loss>-s<seed> (none in a threshold-only study)."""
    if not has_noisy_label_study(config):
        return []
    kind = config["noise"]["kind"]
    return [
        f"{model}-{noise_tag(kind, rate)}-{loss}-s{seed}"
        for model in config["models"]
        for rate in config["noise"]["rates"]
        for loss in config["train"]["losses"]
        for seed in config["train"]["seeds"]
    ]


def train_stacks(config: dict, trained: set[str] = frozenset()) -> list[list[str]]:
    """The runs each training job trains (ddscope.stacked), in study order: the seeds of one model, noise rate
    and loss, train.stack at a time, in the order of train.seeds; a run whose model has no batched step (not an
    MLP, or augmented) is its own job.

    Runs in `trained` (their outputs, or their stack's, exist) are stacked only with each other, so a new seed
    or noise rate gets stacks of its own and a finished study's runs stay out of them. Membership changes only
    by whole stacks as jobs start, so a cluster job that reads the workflow again finds its own stack.
    """
    t, stacks, open_stack = config["train"], [], {}
    for run in run_names(config):
        entry = config["models"][parse_run(run)["model"]]
        if model_arch(entry) != "mlp" or t["augment"] != "none" or t["stack"] == 1:
            stacks.append([run])
            continue
        key = (condition_of(run), run in trained)
        stack = open_stack.get(key)
        if stack is None or len(stack) == t["stack"]:
            stack = open_stack[key] = []
            stacks.append(stack)
        stack.append(run)
    return stacks


def parse_run(run: str) -> dict:
    model, noise, loss, seed = run.split("-")
    return {"model": model, "noise": noise, "loss": loss, "seed": int(seed.removeprefix("s"))}


def condition_of(run: str) -> str:
    """`mlp7-sym30-ce` for run `mlp7-sym30-ce-s0`: the condition shared by the runs that differ only by seed."""
    p = parse_run(run)
    return f"{p['model']}-{p['noise']}-{p['loss']}"


def parse_condition(cond: str) -> dict:
    """{model, noise, loss} of a condition `<model>-<noise>-<loss>` (a run name without its seed)."""
    model, noise, loss = cond.split("-")
    return {"model": model, "noise": noise, "loss": loss}
