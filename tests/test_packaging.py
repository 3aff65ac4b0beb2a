"""Project files agree with each other: dependency lists, pins, the README's commands."""

import os
import re
import shutil
import site
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
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


# --- installed like a library: the configs and the tools inside the package ----------------

def test_the_package_holds_the_configs_and_tools_through_links_to_the_top_level_folders():
    """One copy of each: splitbrain/configs and splitbrain/tools are links that setuptools
    follows into the wheel, so a new file in configs/ or tools/ ships without a listing."""
    for name in ("configs", "tools"):
        link = ROOT / "splitbrain" / name
        assert link.is_symlink() and os.readlink(link) == f"../{name}", link
    from splitbrain import config
    assert config.CONFIG_DIR == ROOT / "configs"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["tool"]["setuptools"]["package-data"]["splitbrain"] == [
        "configs/*.yaml", "tools/*.py"]


def test_each_console_command_runs_its_tool(monkeypatch, capsys):
    from splitbrain import cli
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert set(scripts) == set(cli.COMMANDS)
    for command, target in scripts.items():
        module, function = target.split(":")
        assert module == "splitbrain.cli" and callable(getattr(cli, function))
        tool = cli.COMMANDS[command]
        assert cli.tool_path(tool).resolve() == ROOT / "tools" / f"{tool}.py"
    main = sys.modules["__main__"]
    monkeypatch.setattr(sys, "argv", ["/somewhere/bin/splitbrain-train", "--help"])
    with pytest.raises(SystemExit) as exc:
        cli.train()
    assert exc.value.code == 0 and sys.modules["__main__"] is main
    assert capsys.readouterr().out.startswith("usage: splitbrain-train ")


def test_messages_name_the_command_the_user_ran(monkeypatch):
    from splitbrain import cli
    assert cli.tool_command("train") == "python tools/train.py"
    monkeypatch.setattr(cli, "_running", "splitbrain-train")
    assert cli.tool_command("train") == "splitbrain-train"
    assert cli.tool_command("study") == "python tools/study.py"  # no console command


@pytest.mark.slow
def test_the_wheel_installed_outside_the_checkout_trains_colorizes_and_probes(tmp_path,
                                                                               write_photos):
    """Build the wheel (offline, no build isolation), install it into a fresh virtual
    environment that borrows this one's dependencies, and run the console commands from an
    empty folder: nothing may come from the checkout."""
    src = tmp_path / "src"  # the working tree's package files; the build writes beside them
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    for name in ("splitbrain", "configs", "tools"):
        shutil.copytree(ROOT / name, src / name, symlinks=True, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    build = subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                            "-w", str(tmp_path / "dist"), str(src)],
                           capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stdout + build.stderr
    wheel, = (tmp_path / "dist").glob("splitbrain-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    for folder, pattern in (("configs", "*.yaml"), ("tools", "*.py")):
        wanted = {f"splitbrain/{folder}/{p.name}" for p in (ROOT / folder).glob(pattern)}
        assert wanted and wanted <= names, sorted(wanted - names)

    # A fresh environment without pip; its dependencies are this one's (a path line in a .pth
    # file adds the folder alone: no .pth file of this environment, e.g. an editable install's
    # finder, runs there).
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    python = venv / "bin" / "python"
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path("
                              "'purelib'))"], capture_output=True, text=True, check=True).stdout
    (Path(purelib.strip()) / "borrowed_dependencies.pth").write_text(
        "\n".join(site.getsitepackages()) + "\n")
    install = subprocess.run([*pip, "--python", str(python), "install", "--no-deps",
                              "--no-index", str(wheel)], capture_output=True, text=True,
                             timeout=300)
    assert install.returncode == 0, install.stdout + install.stderr

    work = tmp_path / "empty"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", OMP_NUM_THREADS="1",
               MKL_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")

    def run(*command):
        result = subprocess.run([str(a) for a in command], cwd=work, env=env,
                                capture_output=True, text=True, timeout=600)
        print(f"$ {' '.join(map(str, command))}  -> exit {result.returncode}")
        print("\n".join((result.stdout + result.stderr).strip().splitlines()[-3:]))
        return result

    where = run("python", "-c", "import splitbrain, splitbrain.config as c; "
                                "print(splitbrain.__file__); print(c.CONFIG_DIR)")
    package, configs = where.stdout.split()
    assert Path(package).is_relative_to(venv) and Path(configs).is_relative_to(venv), where
    assert not (Path(configs).is_symlink() or Path(configs).parent.is_relative_to(ROOT))

    bad = run("splitbrain-train", "--task", "colorize", "optim.iterations=many")
    assert bad.returncode == 2 and "optim.iterations" in bad.stderr and "int" in bad.stderr
    # The demo config, two steps, with the colorization AlexNet: a network the probe can read.
    train = run("splitbrain-train", "--task", "colorize", "run.out=run", "optim.iterations=2",
                "model.name=alexnet_colorization_small", "data.crop=64", "data.val_crop=64",
                "data.train_length=8", "data.val_length=4", "optim.batch_size=4",
                "color.prior_images=4", "run.device=cpu")
    assert train.returncode == 0, train.stderr
    assert (work / "run" / "latest.pt").is_file() and (work / "run" / "config.yaml").is_file()

    photo, = write_photos(work / "photos", n=1, size=(48, 40))
    colorize = run("splitbrain-colorize", photo, "--ckpt", "run/latest.pt", "-o", "coloured",
                   "--device", "cpu")
    assert colorize.returncode == 0, colorize.stderr
    assert [p.name for p in (work / "coloured").iterdir()] == [photo.name]

    probe = run("splitbrain-probe", "--ckpt", "run/latest.pt", "--layer", "conv1", "--out",
                "probe", "data.crop=64", "data.train_length=16", "data.val_length=14",
                "optim.batch_size=8", "optim.iterations=2", "optim.lr_steps=[1]",
                "run.eval_every=0", "run.device=cpu")
    assert probe.returncode == 0, probe.stderr
    assert (work / "probe" / "results.json").is_file()

    serve = run("splitbrain-serve", "--help")
    assert serve.returncode == 0 and serve.stdout.startswith("usage: splitbrain-serve ")
    assert sorted(p.name for p in work.iterdir()) == ["coloured", "photos", "probe", "run"]
