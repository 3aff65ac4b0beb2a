"""The console commands: ``splitbrain-train`` runs ``tools/train.py`` as ``python
tools/train.py`` does, and so on for probe, colorize and serve.

The scripts in ``tools/`` are the commands' only code. The package holds them (in a checkout,
``splitbrain/tools`` is a symbolic link to ``tools/``; the wheel holds copies), and each
command runs its script as the program's ``__main__``, as Python runs a script file: its
``if __name__ == "__main__":`` block (Ctrl-C handling, exit codes) runs unchanged.
"""

import importlib.util
import sys
from importlib import resources
from pathlib import Path

COMMANDS = {"splitbrain-train": "train", "splitbrain-probe": "probe",
            "splitbrain-colorize": "colorize", "splitbrain-serve": "serve"}

_running = None  # the console command this process runs, if any (see tool_command)


def tool_path(name):
    """The file of ``tools/<name>.py`` inside the installed package."""
    path = Path(str(resources.files("splitbrain") / "tools" / f"{name}.py"))
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: this splitbrain installation is incomplete "
                                f"(reinstall it: pip install .)")
    return path


def tool_command(name):
    """How a message should tell the user to run tool ``name`` again: ``splitbrain-train``
    under the console command, ``python tools/train.py`` otherwise."""
    command = next((c for c, tool in COMMANDS.items() if tool == name), None)
    return command if command is not None and _running == command else f"python tools/{name}.py"


def run_tool(name, command=None):
    """Run ``tools/<name>.py`` with this process's ``sys.argv[1:]``, as ``python
    tools/<name>.py`` would (``sys.argv[0]`` stays the command, so ``--help`` names it)."""
    global _running
    try:
        path = tool_path(name)
    except FileNotFoundError as err:
        sys.exit(f"error: {err}")
    spec = importlib.util.spec_from_file_location("__main__", path)
    module = importlib.util.module_from_spec(spec)
    module.__spec__ = None  # as for `python path/to/script.py` (multiprocessing reads it)
    saved_main, saved_path = sys.modules.get("__main__"), list(sys.path)
    sys.modules["__main__"] = module
    sys.path.insert(0, str(path.parent))  # the script's folder comes first, as for a script
    _running = command
    try:
        spec.loader.exec_module(module)
    finally:
        _running = None
        sys.path[:] = saved_path
        if saved_main is not None:
            sys.modules["__main__"] = saved_main


def train():
    run_tool("train", "splitbrain-train")


def probe():
    run_tool("probe", "splitbrain-probe")


def colorize():
    run_tool("colorize", "splitbrain-colorize")


def serve():
    run_tool("serve", "splitbrain-serve")
