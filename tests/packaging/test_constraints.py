"""pyproject.toml declares ranges, constraints.txt the tested versions: they must agree.

Every distribution pyproject.toml names (dependencies and every extra; phase4's own extras
aside) has an exact ``==`` pin in constraints.txt, and the pinned version lies in the declared
range (PEP 440 specifiers, PEP 503 names, read with ``packaging``). Otherwise the Makefile's
install would fail to resolve, or a pin would silently stop constraining anything.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]


def declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    lines = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        lines += extra
    return [r for r in map(Requirement, lines) if canonicalize_name(r.name) != "phase4"]


def pins() -> dict[str, Version]:
    found: dict[str, Version] = {}
    for number, raw in enumerate((ROOT / "constraints.txt").read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        requirement = Requirement(line)
        (specifier, *more) = list(requirement.specifier)
        assert specifier.operator == "==" and not more, f"line {number} is not an exact pin"
        assert "*" not in specifier.version, f"line {number} is not an exact pin"
        name = canonicalize_name(requirement.name)
        assert name not in found, f"line {number} pins {name} twice"
        found[name] = Version(specifier.version)
    return found


def test_constraints_pin_exact_versions_and_not_phase4() -> None:
    assert "phase4" not in pins()


@pytest.mark.parametrize("requirement", declared(), ids=str)
def test_each_declared_distribution_is_pinned_inside_its_range(requirement: Requirement) -> None:
    pinned = pins().get(canonicalize_name(requirement.name))
    assert pinned is not None, f"constraints.txt has no pin for {requirement.name}"
    assert requirement.specifier.contains(pinned, prereleases=True), (
        f"constraints.txt pins {requirement.name}=={pinned}, outside {requirement.specifier}"
    )


def test_phase4s_own_extras_name_extras_that_exist() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = project["optional-dependencies"]
    for members in extras.values():
        for line in members:
            requirement = Requirement(line)
            if canonicalize_name(requirement.name) == "phase4":
                assert requirement.extras <= set(extras), line
