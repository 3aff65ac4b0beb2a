"""Run an entry script of tools/ in-process, as its command line would."""

import importlib.util
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parent.parent / "tools"

# torch.compile on a CPU (Inductor) builds its kernels with a C++ compiler: g++, or $CXX.
needs_cxx = pytest.mark.skipif(shutil.which(os.environ.get("CXX", "g++")) is None,
                               reason="torch.compile on a CPU needs a C++ compiler (g++ or "
                                      "$CXX) on PATH")


def load_tool(name):
    spec = importlib.util.spec_from_file_location(f"tool_{name}", TOOLS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_tool(name, argv):
    """Call tools/<name>.py main(argv); return its exit code (0 when it returns).

    The signal handlers a tool installs (serve's SIGTERM clean-up, training's stop requests)
    are put back afterwards: the test process keeps its own.
    """
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        load_tool(name).main([str(a) for a in argv])
    except SystemExit as exc:
        return exc.code or 0
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    return 0


def run_captured(capsys, name, argv):
    """``run_tool``, with what it printed: a CompletedProcess as ``subprocess.run`` would give
    for its command line, without a new interpreter importing torch (about 4 s)."""
    capsys.readouterr()
    code = run_tool(name, argv)
    said = capsys.readouterr()
    return subprocess.CompletedProcess([f"tools/{name}.py", *map(str, argv)], code, said.out,
                                       said.err)


@pytest.fixture
def tool():
    return run_tool
