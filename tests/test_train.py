"""tools/train.py end to end on the bundled photos: outputs, TensorBoard, resume, bad input."""

import re
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from splitbrain import checkpoint as ckpt
from splitbrain import losses
from tools_util import needs_cxx, run_tool

TINY = ["data.crop=32", "data.val_crop=32", "data.train_length=32", "data.val_length=8",
        "optim.batch_size=4", "color.prior_images=8", "run.log_every=1", "run.image_every=2",
        "run.val_every=2", "run.ckpt_every=2", "run.device=cpu"]


def train(out, *extra, task="colorize", iterations=4):
    return run_tool("train", ["--task", task, f"run.out={out}", f"optim.iterations={iterations}",
                              *TINY, *extra])


def test_short_run_writes_config_events_checkpoints_and_log(tmp_path):
    out = tmp_path / "run"
    assert train(out) == 0
    for name in ("config.yaml", "train.log", "latest.pt", "best.pt"):
        assert (out / name).is_file(), name
    events = EventAccumulator(str(out), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    tags = events.Tags()
    for tag in ("train/loss", "train/lr", "train/images_per_s", "val/loss", "val/model/auc",
                "val/grey/auc", "val/model/auc_rebalanced"):
        assert tag in tags["scalars"], tag
    assert len(events.Scalars("train/loss")) == 4
    assert tags["images"] and tags["histograms"]
    state = ckpt.load(out / "latest.pt", task="colorize")
    assert state["step"] == 4 and state["config"]["optim"]["iterations"] == 4
    assert state["color"]["ab_centres"].shape == (313, 2)
    assert torch.isfinite(state["color"]["class_weights"]).all()


def test_resumed_run_matches_uninterrupted_run(tmp_path):
    assert train(tmp_path / "full", iterations=6) == 0
    assert train(tmp_path / "split", iterations=4) == 0
    assert run_tool("train", ["--task", "colorize", "--resume", f"run.out={tmp_path / 'split'}",
                              "optim.iterations=6"]) == 0
    full = ckpt.load(tmp_path / "full" / "latest.pt")
    split = ckpt.load(tmp_path / "split" / "latest.pt")
    assert split["step"] == full["step"] == 6
    for key, value in full["state_dict"].items():
        assert torch.equal(value, split["state_dict"][key]), key


def test_bf16_channels_last_run_and_evaluate_tool(tmp_path, capsys):
    out = tmp_path / "run"
    assert train(out, "run.precision=bf16", "run.channels_last=true", iterations=2) == 0
    capsys.readouterr()
    assert run_tool("evaluate", ["--ckpt", out / "latest.pt", "--data", "sample", "--length", 8,
                                 "--device", "cpu"]) == 0
    table = capsys.readouterr().out
    rows = {line.split("|")[1].strip(): [float(v) for v in line.split("|")[2:6]]
            for line in table.splitlines() if line.startswith("| grey") or line.startswith("| model")}
    assert set(rows) == {"grey", "model"}
    assert rows["grey"][3] < 0.1 < rows["model"][3]  # colourfulness: grey has none
    assert all(0 < v <= 100 for v in rows["model"][:2])


def test_regression_loss_trains(tmp_path):
    assert train(tmp_path / "reg", "model.head=reg", iterations=2) == 0
    state = ckpt.load(tmp_path / "reg" / "latest.pt")
    assert state["color"]["head"] == "reg"


def test_existing_run_is_not_overwritten(tmp_path, capsys):
    out = tmp_path / "run"
    assert train(out, iterations=2) == 0
    before = (out / "latest.pt").read_bytes()
    assert train(out, iterations=2) == 2
    assert "--resume" in capsys.readouterr().err
    assert (out / "latest.pt").read_bytes() == before


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    real = losses.soft_cross_entropy
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        loss = real(*args, **kwargs)
        return loss * float("nan") if calls["n"] > 3 else loss

    monkeypatch.setattr(losses, "soft_cross_entropy", poisoned)
    out = tmp_path / "run"
    # Steps 1-2 fine (checkpoint at 2; validation calls the loss too), then NaN.
    assert train(out, "run.val_every=100", iterations=6) == 3
    assert "loss is nan" in capsys.readouterr().out
    assert ckpt.load(out / "latest.pt")["step"] == 2


@pytest.mark.parametrize("override, message", [
    ("optim.lrr=0.1", "did you mean optim.lr"),
    ("optim.iterations=ten", "expects int"),
    ("data.train=/no/such/folder", "/no/such/folder"),
])
def test_bad_input_is_a_clear_error(tmp_path, capsys, override, message):
    assert train(tmp_path / "run", override) == 2
    assert message in capsys.readouterr().err


def test_resume_from_a_checkpoint_of_another_task_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    ckpt.save({"task": "probe", "config": {}}, out / "latest.pt")
    assert run_tool("train", ["--task", "colorize", "--resume", f"run.out={out}"]) == 2
    assert "task 'probe'" in capsys.readouterr().err


def test_the_antialiasing_filter_travels_from_training_to_colorizing_and_probing(tmp_path):
    import kornia

    from splitbrain.colorize import load_colorizer
    from splitbrain.probe.encoder import open_encoder

    out = tmp_path / "aa"
    assert train(out, "model.blur=5", "model.name=alexnet_colorization_small", "data.crop=67",
                 "data.val_crop=67", iterations=2) == 0
    state = ckpt.load(out / "latest.pt")
    assert state["model"]["kwargs"]["blur"] == 5 and state["config"]["model"]["blur"] == 5
    colorizer = load_colorizer(out / "latest.pt")
    encoder, spec, _ = open_encoder(out / "latest.pt", layers="conv3")
    assert spec["kwargs"]["blur"] == 5
    for net in (colorizer.model, encoder.model):
        kernels = [m.kernel for m in net.modules()
                   if isinstance(m, (kornia.filters.BlurPool2D, kornia.filters.MaxBlurPool2D))]
        assert len(kernels) == 2 and all(k.shape[-2:] == (5, 5) for k in kernels)  # pool1, pool2
    # The rebuilt network is the trained one: same weights, same output.
    x = torch.rand(1, 1, 67, 67) * 100
    trained = ckpt.build_model(state).eval()
    with torch.no_grad():
        assert torch.equal(colorizer.model(x), trained(x))


def test_a_full_disk_at_a_save_stops_with_a_message_and_keeps_the_last_checkpoint(
        tmp_path, monkeypatch, capsys):
    import errno
    real = ckpt.atomic_write
    saves = {"latest": 0}

    def filling(path, write):
        if path.name == "latest.pt":
            saves["latest"] += 1
            if saves["latest"] == 2:  # the save at step 4: half written, then the disk is full
                def half(tmp):
                    write(tmp)
                    with open(tmp, "r+b") as f:
                        f.truncate(100)
                    raise OSError(errno.ENOSPC, "No space left on device")
                return real(path, half)
        return real(path, write)

    monkeypatch.setattr(ckpt, "atomic_write", filling)
    out = tmp_path / "run"
    assert train(out, "run.val_every=100", iterations=6) == 6
    said = capsys.readouterr()
    text = said.out + said.err
    assert "No space left on device" in text and f"--resume run.out={out}" in text
    assert ckpt.load(out / "latest.pt")["step"] == 2  # the last whole checkpoint, intact
    assert not [p.name for p in out.iterdir() if ".tmp" in p.name]


def test_resume_refuses_what_it_cannot_continue_before_writing_anything(tmp_path, capsys):
    out = tmp_path / "run"
    assert train(out, iterations=2) == 0
    kept = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}

    def resume(*extra):
        code = run_tool("train", ["--task", "colorize", "--resume", f"run.out={out}", *extra])
        assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == kept
        return code, capsys.readouterr().err

    code, err = resume("model.blur=3")
    assert code == 2 and "model.blur cannot change on --resume" in err
    code, err = resume("--config", "configs/colorize_demo.yaml", "model.blur=3")
    assert code == 2 and "model.blur cannot change on --resume" in err
    # Weights without the optimiser's state (published weights, joined halves).
    weights = {k: v for k, v in ckpt.load(out / "latest.pt").items()
               if k not in ("optimizer", "scheduler", "step", "checksum", "format", "version")}
    ckpt.save(weights, out / "latest.pt")
    kept["latest.pt"] = (out / "latest.pt").read_bytes()
    code, err = resume()
    assert code == 2 and "weights only" in err


def test_a_probe_folder_is_not_taken_for_a_training_run(tmp_path, capsys):
    out = tmp_path / "probe"
    out.mkdir()
    (out / "results.json").write_text("{}")
    assert train(out, iterations=2) == 2
    assert "linear-probe results" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["results.json"]


def test_resume_with_a_config_file_continues_with_that_config(tmp_path, capsys):
    out = tmp_path / "run"
    assert train(out, iterations=2) == 0
    assert run_tool("train", ["--task", "colorize", "--resume", "--config",
                              "configs/colorize_demo.yaml", f"run.out={out}",
                              "optim.iterations=3", *TINY, "data.val_length=4"]) == 0
    log = (out / "train.log").read_text()
    assert "resumed with data.val_length = 4 (was 8)" in log
    assert ckpt.load(out / "latest.pt")["config"]["data"]["val_length"] == 4


def test_auto_resume_starts_anew_then_continues(tmp_path):
    out = tmp_path / "run"
    assert train(out, "--auto-resume", iterations=2) == 0  # nothing there yet: a new run
    assert "resumed from" not in (out / "train.log").read_text()
    assert train(out, "--auto-resume", iterations=4) == 0  # the same command line goes on
    assert "resumed from" in (out / "train.log").read_text()
    assert ckpt.load(out / "latest.pt")["step"] == 4


def test_a_run_folder_that_cannot_be_written_at_the_start_is_a_message(tmp_path, monkeypatch,
                                                                       capsys):
    import errno

    from splitbrain import config as config_lib

    def full(cfg, path):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(config_lib, "save", full)
    assert train(tmp_path / "run", iterations=2) == 6
    err = capsys.readouterr().err
    assert "No space left on device" in err and "none was written yet" in err
    assert "--resume" not in err  # nothing to resume: start again


# --- run.compile ------------------------------------------------------------------------------

@pytest.fixture
def fresh_dynamo():
    """Each test compiles from scratch (torch.compile's caches live in the process)."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _losses(out):
    events = EventAccumulator(str(out), size_guidance={"scalars": 0})
    events.Reload()
    return [e.value for e in events.Scalars("train/loss")]


@pytest.mark.slow  # torch.compile: 15 s with a cold cache
@needs_cxx
def test_a_compiled_run_follows_the_eager_one_and_saves_the_plain_network(tmp_path,
                                                                         fresh_dynamo):
    assert train(tmp_path / "eager", iterations=3) == 0
    assert train(tmp_path / "compiled", "run.compile=true", iterations=3) == 0
    log = (tmp_path / "compiled" / "train.log").read_text()
    assert "compiled by torch.compile" in log
    assert int(re.search(r"run.compile: (\d+) graph\(s\) compiled", log).group(1)) >= 1
    # The same losses up to float rounding: the compiled kernels sum in another order (the
    # first step's loss is equal; measured 2e-5 and 6e-5 relative at steps 2 and 3).
    eager, compiled = _losses(tmp_path / "eager"), _losses(tmp_path / "compiled")
    assert len(eager) == len(compiled) == 3
    assert compiled == pytest.approx(eager, rel=1e-3)
    # The checkpoint holds the network itself (no torch.compile wrapper in its keys), so it
    # colorizes, and the run resumes without compiling.
    state = ckpt.load(tmp_path / "compiled" / "latest.pt")
    assert state["state_dict"].keys() == ckpt.load(tmp_path / "eager" / "latest.pt")[
        "state_dict"].keys()
    assert run_tool("train", ["--task", "colorize", "--resume", "optim.iterations=4",
                              f"run.out={tmp_path / 'compiled'}", "run.compile=false"]) == 0
    assert ckpt.load(tmp_path / "compiled" / "latest.pt")["step"] == 4


def test_a_network_that_will_not_compile_is_a_message(tmp_path, monkeypatch, capsys,
                                                      fresh_dynamo):
    """A compiler that fails (no C compiler, an unsupported op) fails at the first step."""
    real_compile = torch.compile

    def no_compiler(gm, example_inputs):
        raise RuntimeError("C compiler not found")
    monkeypatch.setattr(torch, "compile", lambda model: real_compile(model, backend=no_compiler))
    assert train(tmp_path / "run", "run.compile=true", iterations=2) == 7
    said = capsys.readouterr()
    text = said.out + said.err
    assert "torch.compile could not compile" in text and "C compiler not found" in text
    assert "the same command with run.compile=false" in text  # nothing saved to resume from
    assert not (tmp_path / "run" / "latest.pt").exists()


def test_compile_with_the_cpu_sync_watch_is_refused_before_any_file(tmp_path, capsys):
    assert train(tmp_path / "run", "run.compile=true", "run.sync_debug=true") == 2
    assert "cannot see inside compiled code" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_cuda_sync_debug_starts_after_the_one_time_steps(monkeypatch):
    from splitbrain import distributed, engine

    # Step 1 times cuDNN's kernels (and compiles); the CPU's watch has no such step.
    assert engine.settling_steps(torch.device("cuda")) == 1
    assert engine.settling_steps(torch.device("cpu")) == 0
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    assert engine.settling_steps(torch.device("cuda")) == 2  # DDP settles buckets in step 2


def test_wrap_compiles_and_unwrap_gives_the_network_back():
    from splitbrain import distributed

    net = torch.nn.Linear(2, 2)
    alone = distributed.Context(rank=0, local_rank=0, world_size=1,
                                device=torch.device("cpu"))
    assert distributed.wrap(net, alone) is net
    compiled = distributed.wrap(net, alone, compile=True)  # nothing compiles until called
    assert isinstance(compiled, torch._dynamo.eval_frame.OptimizedModule)
    assert distributed.unwrap(compiled) is net and distributed.unwrap(net) is net


def _resumes_to_the_uninterrupted_weights(out, full, settings, iterations=8):
    assert run_tool("train", ["--task", "colorize", "--resume", f"run.out={out}"]) == 0
    assert train(full, *settings, iterations=iterations) == 0
    resumed = ckpt.load(out / "latest.pt")["state_dict"]
    for key, value in ckpt.load(full / "latest.pt")["state_dict"].items():
        assert torch.equal(value, resumed[key]), key


@pytest.mark.parametrize("error, cause", [
    (RuntimeError("DataLoader worker (pid(s) 4242) exited unexpectedly"),
     "DataLoader worker (pid(s) 4242)"),
    # A worker killed mid-transfer can break its pipe before PyTorch's own error arrives.
    (ConnectionResetError(104, "Connection reset by peer"),
     "ConnectionResetError from the loader's worker pipe"),
])
def test_a_loader_that_dies_between_steps_saves_the_last_step(tmp_path, monkeypatch, capsys,
                                                              error, cause):
    """A dead worker's error, met fetching step 3's batch: step 2 is whole, so it is saved
    (no periodic save here), and the run goes on from it bit for bit."""
    from splitbrain import engine, loaders

    real_step, real_item, steps = engine.train_step, loaders.SeededSamples.__getitem__, []

    def counted_step(*args, **kwargs):
        steps.append(1)
        return real_step(*args, **kwargs)

    def dies_after_step_2(self, key):  # no worker processes here: read in the loop itself
        if len(steps) == 2:
            raise error
        return real_item(self, key)

    monkeypatch.setattr(engine, "train_step", counted_step)
    monkeypatch.setattr(loaders.SeededSamples, "__getitem__", dies_after_step_2)
    out = tmp_path / "run"
    settings = ["run.ckpt_every=100", "run.val_every=100", "run.image_every=100"]
    assert train(out, *settings, iterations=8) == 8
    said = capsys.readouterr()
    text = said.out + said.err
    assert f"a data loader worker died after step 2: {cause}" in text
    assert f"saved {out / 'latest.pt'} at step 2" in text and f"--resume run.out={out}" in text
    assert ckpt.load(out / "latest.pt")["step"] == 2
    monkeypatch.undo()
    _resumes_to_the_uninterrupted_weights(out, tmp_path / "full", settings)


def test_a_dead_workers_late_signal_does_not_break_the_save_of_the_last_step(tmp_path,
                                                                           monkeypatch, capsys):
    """A worker killed mid-transfer: its broken pipe reaches the loop first, and PyTorch's
    SIGCHLD handler raises "DataLoader worker ... is killed" at the next SIGCHLD, wherever the
    main process is then (met under load: in the save of the last whole step). The loop stops
    the loader's workers first, so the save completes and the message stands."""
    import os
    import signal
    import time

    from torch.utils.data import dataloader

    from splitbrain import engine

    real_next, calls = dataloader._MultiProcessingDataLoaderIter.__next__, []

    def dies_unannounced(self):
        calls.append(1)  # the training loader's (validation comes at the last step only)
        if len(calls) == 4:  # fetching step 4's batch: step 3 is whole
            pytorch_handler = signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # a late signal
            try:
                pid = self._workers[0].pid
                os.kill(pid, signal.SIGKILL)
                deadline = time.time() + 10
                while Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                    assert time.time() < deadline, "the worker did not die"
                    time.sleep(0.01)
            finally:
                signal.signal(signal.SIGCHLD, pytorch_handler)
            raise ConnectionResetError(104, "Connection reset by peer")
        return real_next(self)

    real_check = engine.nonfinite_outputs

    def signal_during_save(*args, **kwargs):  # the worker's own SIGCHLD, or another child's
        os.kill(os.getpid(), signal.SIGCHLD)
        return real_check(*args, **kwargs)

    monkeypatch.setattr(dataloader._MultiProcessingDataLoaderIter, "__next__", dies_unannounced)
    monkeypatch.setattr(engine, "nonfinite_outputs", signal_during_save)
    out = tmp_path / "run"
    assert train(out, "data.workers=1", "run.ckpt_every=100", "run.val_every=100",
                 "run.image_every=100", iterations=8) == 8
    said = capsys.readouterr()
    text = said.out + said.err
    assert "a data loader worker died after step 3: ConnectionResetError" in text
    assert f"saved {out / 'latest.pt'} at step 3" in text and f"--resume run.out={out}" in text
    assert ckpt.load(out / "latest.pt")["step"] == 3


def test_a_loader_that_dies_during_a_step_saves_nothing_half_done(tmp_path, monkeypatch,
                                                                  capsys):
    """PyTorch raises a dead worker's error from a signal handler, wherever the main process
    is: here inside step 3's loss. That step may be half applied, so only the periodic save of
    step 2 stands, and the run goes on from it."""
    real, calls = losses.soft_cross_entropy, []

    def killed_in_step_3(*args, **kwargs):
        if torch.is_grad_enabled():  # a training step's loss, not a save's check of outputs
            calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("DataLoader worker (pid 4242) is killed by signal: Killed.")
        return real(*args, **kwargs)

    monkeypatch.setattr(losses, "soft_cross_entropy", killed_in_step_3)
    out = tmp_path / "run"  # the loss runs in steps only (no validation, no image grids)
    settings = ["run.ckpt_every=2", "run.val_every=100", "run.image_every=100"]
    assert train(out, *settings, iterations=8) == 8
    said = capsys.readouterr()
    text = said.out + said.err
    assert "a data loader worker died during step 3" in text
    assert "step 3 may be half applied, so it is not saved" in text
    assert ckpt.load(out / "latest.pt")["step"] == 2
    monkeypatch.undo()
    _resumes_to_the_uninterrupted_weights(out, tmp_path / "full", settings)


def test_a_killed_loader_worker_ends_the_run_with_a_way_to_go_on(tmp_path, monkeypatch,
                                                                 capsys):
    """A real worker process killed (SIGKILL, as the out-of-memory killer sends): exit 8 with
    the message, wherever the news reached the main process, and going on matches a run that
    never stopped."""
    import os
    import signal

    from splitbrain.data import SamplePhotos

    real = SamplePhotos.__getitem__
    reads, killed = tmp_path / "reads", tmp_path / "killed"

    def dies_once(self, index):
        if torch.utils.data.get_worker_info() is not None:  # in the worker only
            with open(reads, "a") as f:
                f.write(".")
            if reads.stat().st_size == 20 and not killed.exists():
                killed.touch()
                os.kill(os.getpid(), signal.SIGKILL)
        return real(self, index)

    monkeypatch.setattr(SamplePhotos, "__getitem__", dies_once)
    out, settings = tmp_path / "run", ["data.workers=1", "run.ckpt_every=2", "run.val_every=100"]
    assert train(out, *settings, iterations=8) == 8
    said = capsys.readouterr()
    text = said.out + said.err
    # PyTorch's own words (the worker's signal, or its exit when the loader's watchdog sees it
    # first), or the worker's broken pipe when that is met first: a race.
    assert "a data loader worker died" in text
    assert ("killed by signal" in text or "exited unexpectedly" in text
            or "ConnectionResetError from the loader's worker pipe" in text)
    assert f"--resume run.out={out}" in text
    monkeypatch.undo()
    _resumes_to_the_uninterrupted_weights(out, tmp_path / "full", settings)


def test_a_resumed_run_does_not_log_the_steps_after_its_last_save_twice(tmp_path, monkeypatch):
    """A crash after step 3 (saved at 2): the resumed run logs steps 3 and 4 again, and
    TensorBoard must drop the first process's step 3 (purge_step), not show both curves."""
    from splitbrain import engine

    real, calls = engine.train_step, []

    def crash_in_step_4(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise MemoryError("the machine went away")  # not a problem the run can report
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "train_step", crash_in_step_4)
    out = tmp_path / "run"
    settings = ["run.log_every=1", "run.ckpt_every=2", "run.val_every=100",
                "run.image_every=100"]
    with pytest.raises(MemoryError):
        train(out, *settings)
    assert ckpt.load(out / "latest.pt")["step"] == 2
    monkeypatch.undo()
    assert run_tool("train", ["--task", "colorize", "--resume", f"run.out={out}"]) == 0
    events = EventAccumulator(str(out), size_guidance={"scalars": 0})
    events.Reload()
    steps = [e.step for e in events.Scalars("train/loss")]
    assert steps == [1, 2, 3, 4]
    # The step-3 value kept is the resumed run's: the same as an uninterrupted run's.
    full = tmp_path / "full"
    assert train(full, *settings) == 0
    uninterrupted = EventAccumulator(str(full), size_guidance={"scalars": 0})
    uninterrupted.Reload()
    assert [e.value for e in events.Scalars("train/loss")] == \
        [e.value for e in uninterrupted.Scalars("train/loss")]


def test_the_final_save_runs_under_the_signal_guard(tmp_path, monkeypatch):
    """A Ctrl-C during the last save must wait for it (or, a second time, exit at once with
    the saves whole), never raise KeyboardInterrupt through it."""
    import signal

    real, guarded = ckpt.save, []

    def watched_save(state, path):
        guarded.append((state["step"], signal.getsignal(signal.SIGINT) is not
                        signal.default_int_handler))
        return real(state, path)

    monkeypatch.setattr(ckpt, "save", watched_save)
    assert train(tmp_path / "run", "run.ckpt_every=100", "run.val_every=100") == 0
    assert guarded[-1] == (4, True)  # the final save of step 4, with the guard's handler
