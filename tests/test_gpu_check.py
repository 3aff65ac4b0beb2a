"""tools/gpu_check.sh runs only where a GPU is lent, rarely and against a clock: what can be
checked without one is checked here, so that a lent GPU's minutes are not lost to a typo.

Every command the script runs is read out of it: each tools/train.py line must resolve to a
valid config for its task, and tools/benchmark.py must accept its flags.
"""

import argparse
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from splitbrain import config, tasks
from tools_util import load_tool

SCRIPT = Path(__file__).resolve().parent.parent / "tools" / "gpu_check.sh"


def commands():
    """The script's commands as argument lists, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", SCRIPT.read_text())
    lines = [line.split(" #")[0].strip() for line in text.splitlines()]
    return [shlex.split(line) for line in lines if line and not line.startswith("#")]


def tool_calls(name):
    """(arguments after tools/<name>.py) of every call, with $OUT and $task filled in."""
    calls = []
    for words in commands():
        if f"tools/{name}.py" not in words:
            continue
        args = words[words.index(f"tools/{name}.py") + 1:]
        for task in (("colorize", "splitbrain", "hints") if "$task" in " ".join(args) else (None,)):
            calls.append([a.replace("$OUT", "out").replace("$task", task or "")
                          for a in args])
    return calls


def test_the_script_parses_and_runs_every_check():
    assert subprocess.run(["bash", "-n", str(SCRIPT)]).returncode == 0
    train = tool_calls("train")
    # 200 steps of each task (colorize, splitbrain, hints) under sync_debug, the GPU-decoding
    # run, the compiled network's and torchrun's (both also under sync_debug: their steps must
    # be as clean).
    assert len(train) == 6
    assert sum("run.sync_debug=true" in c for c in train) == 5
    assert sum("run.compile=true" in c for c in train) == 1
    assert any("data.decode=gpu" in c for c in train)
    # The eager grid, then the compiled bf16 step.
    assert [("--compile" in c) for c in tool_calls("benchmark")] == [False, True]


@pytest.mark.parametrize("call", tool_calls("train"), ids=lambda c: " ".join(c[:2]))
def test_each_training_command_is_a_valid_config(call):
    task = call[call.index("--task") + 1]
    overrides = [a for a in call if "=" in a and not a.startswith("-")]
    cfg = config.resolve(task, overrides=overrides)  # unknown keys and bad types raise
    for key in overrides:
        section, name = key.split("=")[0].split(".")
        assert name in cfg[section], key
    tasks.check_config(task, cfg)  # values in range (sizes, precision, sync_debug's rules)


@pytest.mark.parametrize("call", tool_calls("benchmark"), ids=lambda c: str("--compile" in c))
def test_the_benchmark_accepts_the_scripts_flags(monkeypatch, call):
    parsed = {}

    class Parsed(Exception):
        pass

    original = argparse.ArgumentParser.parse_args

    def parse_only(self, args=None, namespace=None):
        parsed["args"] = original(self, args, namespace)  # exits 2 on an unknown flag
        raise Parsed
    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_only)
    with pytest.raises(Parsed):
        load_tool("benchmark").main(call)
    args = parsed["args"]
    assert args.step and args.device == "cuda" and args.compile == ("--compile" in call)


def test_without_a_gpu_the_script_stops_at_once_saying_so(tmp_path):
    run = subprocess.run(["bash", str(SCRIPT), str(tmp_path / "out")], capture_output=True,
                         text=True, env={"PATH": "/usr/bin:/bin", "PYTHON": _python(),
                                         "OMP_NUM_THREADS": "1"}, timeout=120)
    assert run.returncode != 0
    assert "no CUDA GPU visible to torch" in run.stderr
    assert not (tmp_path / "out" / "summary.md").exists()


def _python():
    import sys
    return sys.executable


def run_with_stand_in(tmp_path, case, **env):
    """Run the script with a stand-in interpreter that claims one GPU; ``case`` is one more
    bash case line (what a command matching it does); other commands just succeed."""
    fake = tmp_path / "python"
    fake.write_text('#!/bin/bash\ncase "$*" in\n'
                    '  *is_available*) exit 0 ;;\n'
                    '  *device_count*) echo 1 ;;\n'
                    f'  {case}\n'
                    '  *) echo "ran: $*" ;;\n'
                    'esac\n')
    fake.chmod(0o755)
    out = tmp_path / "out"
    run = subprocess.run(["bash", str(SCRIPT), str(out)], capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin", "PYTHON": str(fake), **env}, timeout=60)
    rows = dict(re.findall(r"^\| (\w+) \| ([^|]+) \|", (out / "summary.md").read_text(), re.M))
    return run, out, rows


def test_a_failed_check_does_not_stop_the_others_and_the_summary_says_which(tmp_path):
    """A stand-in interpreter claims a GPU; the benchmark fails and the GPU decoding falls back."""
    run, out, rows = run_with_stand_in(
        tmp_path, '*tools/benchmark.py*) echo "benchmark broke"; exit 3 ;;')
    assert run.returncode == 1
    assert rows == {"check": "exit status", "step_benchmark": "3", "train_colorize": "0",
                    "train_splitbrain": "0", "train_hints": "0", "torchrun": "skipped: one GPU",
                    "jpeg_folder": "0",
                    "train_gpu_decode": "0", "gpu_decoded": "1", "step_benchmark_compiled": "3",
                    "train_compiled": "0"}
    assert "benchmark broke" in (out / "step_benchmark.log").read_text()
    assert "fell back to the CPU" in (out / "gpu_decoded.log").read_text()
    report = (out / "report.md").read_text()  # the one file to bring back
    assert (out / "summary.md").read_text() in report
    assert "benchmark broke" in report and "fell back to the CPU" in report


def test_a_check_past_its_time_is_stopped_and_the_budget_skips_the_rest(tmp_path):
    """Training hangs: it is cut at what is left of the budget (exit 124), and the checks
    after it are skipped, not left to run past the lease; the report is still written."""
    run, out, rows = run_with_stand_in(tmp_path, "*tools/train.py*) sleep 100 ;;",
                                       BUDGET_S="2", MIN_CHECK_S="1")
    assert run.returncode == 1
    assert rows["train_colorize"] == "124"  # cut at what was left of the budget
    assert rows["step_benchmark"] == "skipped: out of time"
    assert (out / "report.md").is_file()
