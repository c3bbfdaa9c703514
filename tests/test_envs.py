"""Pinned environments: envs/*.yaml, constraints.txt and pyproject.toml agree; CPU-only torch, no CUDA wheels."""

from __future__ import annotations

import re
import tomllib

import pytest
import yaml
from conftest import REPO

TORCH = "2.13.0"
PIN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;#]+)\s*$")


def normalise(name: str) -> str:
    """PEP 503 name: case-insensitive, runs of -, _ and . are equal."""
    return re.sub(r"[-_.]+", "-", name).lower()


def constraints() -> dict[str, str]:
    pins: dict[str, str] = {}
    for number, line in enumerate((REPO / "constraints.txt").read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = PIN.match(line)
        assert match, f"constraints.txt:{number}: {line!r} is not an exact `name==version` pin"
        name = normalise(match.group(1))
        assert name not in pins, f"constraints.txt:{number}: {name} is pinned twice"
        pins[name] = match.group(2)
    return pins


def env_pins(path) -> list[tuple[str, str]]:
    """Every `pkg==ver` in an env file's dependencies, conda and pip sections alike."""
    pins = []

    def walk(items):
        for item in items or []:
            if isinstance(item, dict):
                for sub in item.values():
                    walk(sub)
            elif isinstance(item, str) and (match := PIN.match(item)):
                pins.append((normalise(match.group(1)), match.group(2)))

    walk(yaml.safe_load(path.read_text()).get("dependencies"))
    return pins


ENVS = sorted((REPO / "envs").glob("*.yaml"))


def test_there_are_envs():
    assert ENVS, "envs/*.yaml is empty"


@pytest.mark.parametrize("path", ENVS, ids=lambda p: p.name)
def test_env_pins_match_constraints(path):
    pins = constraints()
    found = env_pins(path)
    assert found, f"{path.name} pins nothing"
    for name, version in found:
        assert name in pins, f"{path.name}: {name}=={version} is not in constraints.txt"
        assert pins[name] == version, f"{path.name}: {name}=={version}, constraints.txt has {pins[name]}"


@pytest.mark.parametrize("path", ENVS, ids=lambda p: p.name)
def test_env_pins_torch(path):
    assert ("torch", TORCH) in env_pins(path)


def test_torch_pinned_in_constraints_and_pyproject():
    assert constraints()["torch"] == TORCH
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    torch = [d for d in project["dependencies"] if re.match(r"^torch\b(?![-_.\w])", d)]
    assert [d.replace(" ", "") for d in torch] == [f"torch=={TORCH}"]


def test_no_cuda_packages_or_torchvision():
    for name in constraints():
        assert not name.startswith("nvidia-"), f"constraints.txt pins the CUDA package {name}"
        assert name not in {"triton", "pytorch-triton", "torchvision"}, f"constraints.txt pins {name}"


def test_every_dependency_is_pinned():
    """`pip install -c constraints.txt -e .[test]` resolves every direct dependency to an exact version."""
    pins = constraints()
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    for requirement in requirements:
        name = normalise(re.match(r"^[A-Za-z0-9._-]+", requirement).group(0))
        assert name in pins, f"pyproject.toml needs {requirement!r} but constraints.txt does not pin it"
