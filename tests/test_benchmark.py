"""tools/benchmark.py prints both timings and their ratio (figures only; nothing is timed here)."""

import re

import torch

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


def test_step_benchmark_reports_every_configuration_and_the_loader(capsys, tmp_path):
    out = tmp_path / "step.md"
    run_tool("benchmark", ["--step", "--nets", "eccv16_small,splitbrain_alexnet_small",
                           "--batch", "2", "--size", "64", "--steps", "1", "--warmup", "0",
                           "--workers", "0", "--out", out])
    text = capsys.readouterr().out
    rows = [line for line in text.splitlines() if line.startswith("| eccv16_small")
            or line.startswith("| splitbrain_alexnet_small")]
    # 2 nets x 2 precisions x 2 memory formats, each with positive figures.
    assert len(rows) == 8
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        step_ms, images_s, outside, tflops = (float(cells[4]), float(cells[5]),
                                              float(cells[6].rstrip("%")), float(cells[7]))
        assert step_ms > 0 and tflops > 0 and 0 < outside < 100
        assert cells[9] == "0", row  # host syncs in the step (hostsync's watch on the CPU)
        assert abs(images_s - 2 / (step_ms / 1e3)) <= 0.02 * images_s + 0.1
    assert "bf16: " in text and "the fp32 step's speed" in text
    loader = next(line for line in text.splitlines() if line.startswith("| 0 |"))
    assert float(loader.split("|")[2]) > 0
    assert out.read_text().strip() in text


def test_sync_count_of_a_step_that_reads_its_loss():
    from splitbrain import throughput

    x = torch.ones(8)
    assert throughput.count_syncs(lambda: (x * 2).sum(), torch.device("cpu"), [x]) == 0
    assert throughput.count_syncs(lambda: [float(x.sum()), x[x > 0]], torch.device("cpu"),
                                  [x]) == 2
