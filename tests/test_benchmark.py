"""tools/benchmark.py prints both timings and their ratio (figures only; nothing is timed here)."""

import re

from tools_util import run_tool


def test_benchmark_prints_both_pipelines_and_the_ratios(capsys):
    run_tool("benchmark", ["--batch", "2", "--size", "32", "--stride", "4", "--repeats", "2"])
    out = capsys.readouterr().out
    assert "batch 2 x 32x32 RGB, targets 8x8, k=10" in out
    rows = {}
    for name in ("splitbrain, back to back", "splitbrain, first call", "per-image skimage"):
        line = next(line for line in out.splitlines() if line.startswith(f"| {name}"))
        best, median = map(float, re.findall(r"\| ([0-9.]+) ", line + " "))
        assert 0 < best <= median
        rows[name] = (best, median)
    ratios = re.search(r"speed-up: ([0-9.]+)x \(best / best\), ([0-9.]+)x \(median / median\), "
                       r"([0-9.]+)x \(median / median, first calls\)", out).groups()
    ref, warm, cold = rows["per-image skimage"], rows["splitbrain, back to back"], \
        rows["splitbrain, first call"]
    for printed, expected in zip(map(float, ratios),
                                 [ref[0] / warm[0], ref[1] / warm[1], ref[1] / cold[1]]):
        assert abs(printed - expected) <= 0.05 * expected + 0.1
