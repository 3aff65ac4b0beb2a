"""tools/benchmark.py prints both timings and their ratio (figures only; nothing is timed here)."""

import re

import pytest
import torch

from tools_util import load_tool, needs_cxx, run_tool


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


def test_a_failing_configuration_is_a_row_and_the_rest_still_run(capsys, tmp_path, monkeypatch):
    from splitbrain import throughput

    real = throughput.bench_step

    def some_fail(net, batch, size, device, precision, *rest):
        if precision == "bf16":
            raise RuntimeError("CUDA out of memory (injected)\nmore lines")
        return real(net, batch, size, device, precision, *rest)

    monkeypatch.setattr(throughput, "bench_step", some_fail)
    out = tmp_path / "step.md"
    code = load_tool("benchmark").main([
        "--step", "--nets", "eccv16_small", "--batch", "2", "--size", "64", "--steps", "1",
        "--warmup", "0", "--channels-last", "no", "--workers", "0", "--out", str(out)])
    assert code == 1  # a failed configuration fails the run (gpu_check.sh's summary says so)
    table = out.read_text()
    assert "| eccv16_small fp32 channels_last=no" not in table  # measured: a normal row
    assert "| eccv16_small | fp32 | no | no |" in table
    failed = [line for line in table.splitlines() if "failed" in line]
    assert len(failed) == 1 and "RuntimeError: CUDA out of memory (injected)" in failed[0]
    assert "more lines" not in table
    assert failed[0].count("|") == table.splitlines()[2].count("|")  # a well-formed row
    assert "| 0 |" in table  # the loader still measured
    assert table.strip() in capsys.readouterr().out


def test_the_table_shows_the_flop_bound_for_bf16_rows_on_a_known_gpu():
    from splitbrain import throughput

    rows = [throughput.StepResult("eccv16", p, True, False, 10.0, 3200.0, 0.05, t, 1.0, 0)
            for p, t in (("fp32", 100.0), ("bf16", 247.25))]
    table = throughput.step_table(rows, peak=989.0).splitlines()
    fp32, bf16 = table[2].split("|"), table[3].split("|")
    assert fp32[-3:-1] == [" - ", " - "]  # a bf16 peak says nothing of an fp32 step
    assert bf16[-3].strip() == "25.0%" and bf16[-2].strip() == "4.00x"


@pytest.mark.slow  # torch.compile: 30 s with a cold cache
@needs_cxx
def test_the_compiled_step_is_a_row_beside_the_eager_one(capsys):
    torch._dynamo.reset()
    code = load_tool("benchmark").main([
        "--step", "--compile", "--nets", "eccv16_small", "--precisions", "bf16",
        "--channels-last", "yes", "--batch", "2", "--size", "64", "--steps", "1",
        "--warmup", "1", "--workers", "0"])
    torch._dynamo.reset()
    assert code in (None, 0)
    text = capsys.readouterr().out
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines()
            if line.startswith("| eccv16_small")]
    assert [row[3] for row in rows] == ["no", "yes"]  # the compile column
    for row in rows:
        assert float(row[4]) > 0 and float(row[7]) > 0  # step ms, TFLOP/s (eager FLOPs)
    # The CPU's sync watch follows the eager step only: the compiled row says it did not look.
    assert [row[9] for row in rows] == ["0", "-"]
    # Compiling alone, against the eager step of the same precision and format.
    ratio = float(re.search(r"eccv16_small bf16 channels_last compiled: ([0-9.]+)x the eager "
                            r"step's speed", text).group(1))
    # (the table's step times are rounded to 0.1 ms; the ratio is of the unrounded ones)
    assert ratio == pytest.approx(float(rows[0][4]) / float(rows[1][4]), rel=0.03)
