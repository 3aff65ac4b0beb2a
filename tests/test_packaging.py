"""Project files agree with each other: dependency lists, pins, the README's commands."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _name(requirement):
    return re.split(r"[<>=!~\[ ]", requirement.strip(), maxsplit=1)[0].lower()


def test_environment_yml_lists_the_same_dependencies_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_name(r) for r in project["dependencies"]}
    for extra in project["optional-dependencies"].values():  # test, web
        wanted |= {_name(r) for r in extra}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    listed = {_name(r) for r in pip if not r.startswith("-")}
    assert listed == wanted


def test_torch_is_pinned_to_the_cpu_wheel_everywhere():
    pins = {_name(line): line.strip() for line in (ROOT / "constraints.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")}
    assert pins["torch"] == "torch==2.13.0" and pins["torchvision"] == "torchvision==0.28.0"
    env = (ROOT / "environment.yml").read_text()
    assert "torch==2.13.0" in env and "torchvision==0.28.0" in env


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- test-command -->\s*```(?:bash|sh)?\n(.+?)\n```", readme, re.S)
    assert match, "README must show the test command after <!-- test-command -->"
    command = match.group(1).strip()
    assert command in (ROOT / ".ci" / "run").read_text().splitlines()


def test_torchvision_is_only_imported_through_the_compat_module():
    offenders = []
    for path in list((ROOT / "splitbrain").rglob("*.py")) + list((ROOT / "tools").glob("*.py")):
        if path.name == "compat.py":
            continue
        text = path.read_text()
        if re.search(r"^\s*(import torchvision|from torchvision)", text, re.M):
            offenders.append(str(path.relative_to(ROOT)))
        if re.search(r"torchvision\.(io|ops)\b", text):
            offenders.append(f"{path.relative_to(ROOT)} (torchvision.io/ops)")
    assert not offenders
