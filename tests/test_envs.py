"""envs/*.yaml (for `snakemake --sdm conda`) name the same packages as pyproject.toml."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
# conda-forge names that differ from PyPI names
CONDA_TO_PYPI = {"pytorch": "torch"}
NOT_PYTHON_PACKAGES = {"python", "pip"}


def _name(spec: str) -> str:
    return re.split(r"[<>=!~\[ ]", spec.strip(), maxsplit=1)[0].lower()


def test_conda_env_matches_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pypi = {_name(d) for d in project["dependencies"]}
    pypi.discard("dask")  # conda splits dask[array,distributed] into dask + distributed
    for env_file in sorted((ROOT / "envs").glob("*.yaml")):
        env = yaml.safe_load(env_file.read_text())
        conda = set()
        for dep in env["dependencies"]:
            if isinstance(dep, str) and _name(dep) not in NOT_PYTHON_PACKAGES:
                conda.add(CONDA_TO_PYPI.get(_name(dep), _name(dep)))
        conda -= {"dask", "distributed"}
        assert conda == pypi, (
            f"{env_file.name}: only in env {conda - pypi}, only in pyproject {pypi - conda}"
        )
