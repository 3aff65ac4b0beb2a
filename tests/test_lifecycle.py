"""splitbrain.lifecycle and splitbrain.probe.run called in-process, as a study runs them: a
result or a RunError, never a SystemExit, run after run in one process."""

import pytest
import torch

from splitbrain import checkpoint as ckpt
from splitbrain import config as config_lib
from splitbrain.lifecycle import RunError, TrainResult, train_run
from splitbrain.probe.run import probe_run

TINY = ["optim.iterations=2", "data.crop=32", "data.val_crop=32", "data.train_length=8",
        "data.val_length=4", "optim.batch_size=4", "color.prior_images=4", "run.device=cpu"]
PROBE = ["encoder.init=random", "encoder.arch=alexnet_colorization_small",
         "probe.layers=conv1,conv2", "data.crop=64", "data.train_length=32",
         "data.val_length=14", "optim.batch_size=16",
         "optim.iterations=3", "optim.lr_steps=[2]", "run.log_every=1", "run.eval_every=2",
         "run.device=cpu"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny problems: a second thread costs more than it gives on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_a_run_returns_its_result_and_a_second_run_follows_in_the_same_process(tmp_path):
    first = train_run("colorize", overrides=[*TINY, f"run.out={tmp_path / 'one'}"])
    assert isinstance(first, TrainResult)
    assert (first.run_dir, first.step, first.stopped, first.exit_code) == (
        tmp_path / "one", 2, False, 0)
    assert ckpt.load(first.run_dir / "latest.pt")["step"] == 2
    # A resolved config, as a study builds it; the caller's dict is left as it was.
    cfg = config_lib.resolve("colorize", None, [*TINY, "optim.iterations=3",
                                                f"run.out={tmp_path / 'two'}"])
    kept = repr(cfg)
    second = train_run("colorize", cfg)
    assert second.step == 3 and ckpt.load(tmp_path / "two" / "latest.pt")["step"] == 3
    assert repr(cfg) == kept
    assert "done: 3 steps" in (tmp_path / "two" / "train.log").read_text()


def test_a_resumed_run_with_a_config_given_takes_that_config(tmp_path):
    out = tmp_path / "run"
    train_run("colorize", overrides=[*TINY, f"run.out={out}"])
    cfg = config_lib.resolve("colorize", None, [*TINY, "optim.iterations=3", "data.val_length=8",
                                                f"run.out={out}"])
    result = train_run("colorize", cfg, resume=True)
    assert result.step == 3
    assert "resumed with data.val_length = 8 (was 4)" in (out / "train.log").read_text()


@pytest.mark.parametrize("override, message", [
    ("optim.lrr=0.1", "did you mean optim.lr"),
    ("data.train=/no/such/folder", "/no/such/folder"),
])
def test_a_bad_setting_raises_run_error_and_writes_nothing(tmp_path, override, message):
    out = tmp_path / "run"
    with pytest.raises(RunError) as raised:
        train_run("colorize", overrides=[*TINY, override, f"run.out={out}"])
    assert raised.value.code == 2 and message in raised.value.message
    assert raised.value.log is None
    assert not out.exists()


def test_resuming_nothing_raises_run_error(tmp_path):
    with pytest.raises(RunError) as raised:
        train_run("colorize", overrides=[*TINY, f"run.out={tmp_path / 'none'}"],
                  resume=True)
    assert raised.value.code == 2 and "nothing to resume" in raised.value.message


def test_a_random_init_probe_returns_top1_per_layer(tmp_path, capsys):
    cfg = config_lib.resolve("probe", None, [*PROBE, f"run.out={tmp_path / 'probe'}"])
    out = probe_run(cfg)
    assert out["run_dir"] == tmp_path / "probe" and (out["run_dir"] / "results.json").is_file()
    assert list(out["results"]) == ["conv1", "conv2"]
    assert all(0 <= row["top1"] <= 100 for row in out["results"].values())
    assert out["meta"]["init"] == "random" and out["meta"]["num_classes"] == 7
    assert "| conv1" in capsys.readouterr().out  # the table, as tools/probe.py prints it
    with pytest.raises(RunError) as raised:  # the same folder again: refused, not exited
        probe_run(cfg)
    assert raised.value.code == 2 and "already holds probe results" in raised.value.message
    bad = config_lib.apply_overrides(cfg, {"probe.solver": "svm"})
    with pytest.raises(RunError, match="unknown probe.solver 'svm'"):
        probe_run(bad)
