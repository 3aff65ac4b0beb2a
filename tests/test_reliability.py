"""Staying power: signals, bad settings, damaged checkpoints and data, diverging runs.

Most tests run tools/train.py in a subprocess, as a user would, and are marked slow; CI runs
them all (pytest selects every test unless told ``-m "not slow"``).
"""

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from splitbrain import checkpoint as ckpt
from tools_util import run_captured, run_tool

ROOT = Path(__file__).resolve().parent.parent
TRAIN = ROOT / "tools" / "train.py"
TINY = ["--task", "colorize", "data.crop=32", "data.val_crop=32", "data.train_length=16",
        "data.val_length=4", "optim.batch_size=4", "color.prior_images=8", "run.log_every=1",
        "run.image_every=1000", "run.val_every=1000", "run.ckpt_every=1000", "run.device=cpu"]


pytestmark = pytest.mark.slow


def env():
    return dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")


def run(args, timeout=300):
    return subprocess.run([sys.executable, str(TRAIN), *map(str, args)], env=env(), cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def train_here(capsys, args):
    """tools/train.py in this process, with what it printed (tools_util.run_captured); a real
    process is kept where signals or the command line's own exit are the subject."""
    return run_captured(capsys, "train", args)


def weights(path):
    return ckpt.load(path)["state_dict"]


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_saves_says_how_to_resume_and_the_resumed_run_matches(tmp_path, sig, code,
                                                                        capsys):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, str(TRAIN), *TINY, "optim.iterations=100000",
                             f"run.out={out}"], env=env(), cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    log = out / "train.log"
    deadline = time.time() + 120
    while time.time() < deadline and not (log.exists() and "step 3/" in log.read_text()):
        time.sleep(0.1)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, stderr[-2000:]
    assert "Traceback" not in stderr
    assert f"--resume run.out={out}" in stdout
    step = ckpt.load(out / "latest.pt")["step"]
    assert 3 <= step < 100000
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []  # no temp files
    target = step + 2
    assert train_here(capsys, ["--task", "colorize", "--resume", f"run.out={out}",
                               f"optim.iterations={target}"]).returncode == 0
    straight = train_here(capsys, [*TINY, f"optim.iterations={target}",
                                   f"run.out={tmp_path / 'straight'}"])
    assert straight.returncode == 0, straight.stderr[-2000:]
    a, b = weights(out / "latest.pt"), weights(tmp_path / "straight" / "latest.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_second_signal_exits_at_once(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, str(TRAIN), *TINY, "optim.iterations=100000",
                             "data.crop=96", f"run.out={out}"], env=env(), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = out / "train.log"
    deadline = time.time() + 120
    while time.time() < deadline and not (log.exists() and "step 1/" in log.read_text()):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "Traceback" not in stderr


# --- bad settings: one clear message before anything is written -------------------------------

@pytest.mark.parametrize("override, message", [
    ("optim.batch_size=-3", "optim.batch_size=-3: must be at least 1"),
    ("optim.batch_size=0", "optim.batch_size=0: must be at least 1"),
    ("optim.iterations=0", "optim.iterations=0: must be at least 1"),
    ("optim.iterations=-5", "optim.iterations=-5"),
    ("color.lambda=0", "color.lambda=0.0: in (0, 1]"),
    ("color.lambda=1.5", "color.lambda=1.5"),
    ("color.k=0", "color.k=0: in 1..313"),
    ("color.k=400", "color.k=400"),
    ("color.sigma=0", "color.sigma=0.0: must be > 0"),
    ("color.temperature=-1", "color.temperature=-1.0"),
    ("optim.lr=-0.1", "optim.lr=-0.1: must be > 0"),
    ("run.log_every=0", "run.log_every=0"),
    ("run.ckpt_every=0", "run.ckpt_every=0"),
    ("run.precision=fp64", "run.precision='fp64'"),
    ("model.name=resnet", "model.name='resnet'"),
    ("model.head=classification", "model.head='classification'"),
    ("model.blur=4", "model.blur=4: anti-aliasing filter size, one of 1 | 2 | 3 | 5"),
    ("model.pool=maxblur", "renamed: write blur: 1 for pool: max, blur: 3 for pool: maxblur"),
    ("data.workers=-1", "data.workers=-1"),
    ("optim.betas=[0.9]", "optim.betas=[0.9]: two numbers"),
    ("color.prior=/no/such/prior.npy", "color.prior='/no/such/prior.npy': file not found"),
    ("data.val_crop=0", "data.val_crop=0"),
])
def test_bad_setting_is_refused_before_any_file_is_written(tmp_path, capsys, override, message):
    # In-process (each subprocess would spend 4 s importing torch); the command line's own
    # exit is checked once below.
    out = tmp_path / "run"
    assert run_tool("train", [*TINY, "optim.iterations=2", f"run.out={out}", override]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_a_bad_setting_on_the_command_line_exits_2_with_one_message(tmp_path):
    out = tmp_path / "run"
    result = run([*TINY, "optim.iterations=2", f"run.out={out}", "optim.lr=-0.1",
                  "color.k=0"], timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    # Every bad key in one message, not one per attempt.
    assert "optim.lr=-0.1: must be > 0" in result.stderr and "color.k=0" in result.stderr
    assert not out.exists()


def test_split_brain_crop_too_small_for_alexnet_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    result = train_here(capsys, ["--task", "splitbrain", "data.crop=32", f"run.out={out}"])
    assert result.returncode == 2 and "data.crop=32 is too small" in result.stderr
    assert not out.exists()


@pytest.mark.parametrize("where", ["file", "readonly", "proc"])
def test_unwritable_run_folder_is_refused(tmp_path, where, capsys):
    if where == "file":
        (tmp_path / "f").write_text("x")
        out, expected = tmp_path / "f" / "run", "is a file, not a folder"
    elif where == "readonly":
        if os.geteuid() == 0:
            pytest.skip("root can write into read-only folders")
        (tmp_path / "ro").mkdir(mode=0o500)
        out, expected = tmp_path / "ro" / "run", "is not writable"
    else:
        out, expected = Path("/proc/splitbrain_run"), "is not writable"
    result = train_here(capsys, [*TINY, "optim.iterations=2", f"run.out={out}"])
    assert result.returncode == 2 and expected in result.stderr, result.stderr[-2000:]
    assert not out.exists()


def test_resuming_an_empty_checkpoint_names_the_problem_and_a_way_out(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "latest.pt").write_bytes(b"")
    result = train_here(capsys, ["--task", "colorize", "--resume", f"run.out={out}"])
    assert result.returncode == 2
    assert "the file is empty (0 bytes)" in result.stderr
    assert f"move {out / 'latest.pt'} aside" in result.stderr


def test_optimiser_settings_given_on_resume_take_effect_and_every_change_is_logged(
        tmp_path, capsys):
    # In-process: the command line's own exit codes are checked by the subprocess tests above.
    out = tmp_path / "run"
    assert run_tool("train", [*TINY, "optim.iterations=2", f"run.out={out}"]) == 0
    capsys.readouterr()
    assert run_tool("train", ["--task", "colorize", "--resume", f"run.out={out}",
                              "optim.iterations=3", "optim.lr=0.123",
                              "optim.weight_decay=0.01"]) == 0
    said = capsys.readouterr().out
    assert "resumed with optim.lr = 0.123 (was 0.001)" in said
    assert "resumed with optim.weight_decay = 0.01 (was 0.0001)" in said
    # Not an optimiser-state key, yet a change that takes effect: logged as well, and once.
    assert said.count("resumed with optim.iterations = 3 (was 2)") == 1
    log = (out / "train.log").read_text()
    assert "resumed with optim.iterations = 3 (was 2)" in log and "done: 3 steps" in log
    state = ckpt.load(out / "latest.pt")
    group = state["optimizer"]["param_groups"][0]
    assert group["lr"] == pytest.approx(0.123) and group["weight_decay"] == 0.01
    assert state["config"]["optim"]["lr"] == 0.123 and state["step"] == 3
    assert state["config"]["optim"]["iterations"] == 3


def test_a_damaged_latest_beside_intact_saves_names_the_newest_and_its_command_works(
        tmp_path, capsys):
    out = tmp_path / "run"
    assert run_tool("train", [*TINY, "optim.iterations=4", "run.ckpt_every=1", "run.keep=2",
                              f"run.out={out}"]) == 0
    latest = out / "latest.pt"
    data = latest.read_bytes()
    # Both newest files damaged (bit rot in latest.pt shows in its hard link step 4 too): the
    # newest intact save is step 3. Replaced, not written in place, whatever links there are.
    for name in ("latest.pt", "step_000000004.pt"):
        (out / name).unlink()
        (out / name).write_bytes(data[:len(data) // 2])
    resume = f"python tools/train.py --task colorize --resume run.out={out}"
    # best.pt (the validation at the last step, 4) is a whole training state too, and newer.
    capsys.readouterr()
    assert run_tool("train", ["--task", "colorize", "--resume", f"run.out={out}"]) == 2
    err = capsys.readouterr().err
    assert f"cannot read checkpoint {latest}" in err
    assert (f"best.pt beside it is intact (step 4): resume from there (the damaged file is "
            f"kept as latest.pt.old) with:\n  mv {latest} {latest}.old && "
            f"cp {out / 'best.pt'} {latest} && {resume}\n") in err
    (out / "best.pt").unlink()
    assert run_tool("train", ["--task", "colorize", "--resume", f"run.out={out}"]) == 2
    err = capsys.readouterr().err
    command = f"mv {latest} {latest}.old && cp {out / 'step_000000003.pt'} {latest} && {resume}"
    assert (f"step_000000003.pt beside it is intact (step 3): resume from there (the damaged "
            f"file is kept as latest.pt.old) with:\n  {command}\n") in err
    assert "start anew" not in err and "Traceback" not in err
    # The exact command: the shell part as given, the training part in-process.
    *shell, train = re.search(r"with:\n  (.*)\n", err).group(1).split(" && ")
    for part in shell:
        subprocess.run(shlex.split(part), check=True)
    argv = shlex.split(train)
    assert argv[:2] == ["python", "tools/train.py"]
    assert run_tool("train", [*argv[2:], "optim.iterations=5"]) == 0
    resumed = ckpt.load(latest)
    assert resumed["step"] == 5
    assert "resumed from" in (out / "train.log").read_text()
    assert (out / "latest.pt.old").stat().st_size == len(data) // 2  # kept, as the message says


# --- data health ------------------------------------------------------------------------------

def hostile_folder(folder, good, bad):
    from PIL import Image
    from skimage import data as skdata

    folder.mkdir(parents=True)
    img = Image.fromarray(skdata.astronaut())
    for i in range(good):
        img.crop((40 * i, 0, 40 * i + 96, 96)).save(folder / f"good{i}.jpg")
    import io
    jpeg = io.BytesIO()
    img.crop((0, 0, 96, 96)).save(jpeg, format="JPEG")
    kinds = [b"this is a text file", b"", jpeg.getvalue()[:300]]  # text, empty, truncated
    for i in range(bad):
        (folder / f"bad{i}.jpg").write_bytes(kinds[i % 3])
    return folder


def test_unreadable_files_are_counted_by_reason_and_stop_the_run_past_the_limit(tmp_path,
                                                                                capsys):
    data = hostile_folder(tmp_path / "photos", good=7, bad=6)
    common = [*TINY, f"data.train={data}", "data.val=sample", "optim.batch_size=2",
              "optim.iterations=12"]
    stopped = train_here(capsys, [*common, f"run.out={tmp_path / 'strict'}"])
    assert stopped.returncode == 4, stopped.stderr[-2000:]
    said = stopped.stdout + stopped.stderr  # the run log's line, echoed
    assert "above data.max_bad_fraction=0.1" in said
    assert "not an image: 2" in said and "empty file: 2" in said
    assert "Traceback" not in stopped.stderr

    tolerant = train_here(capsys, [*common, "data.max_bad_fraction=0.9",
                                   f"run.out={tmp_path / 'ok'}"])
    assert tolerant.returncode == 0, tolerant.stderr[-2000:]
    log = (tmp_path / "ok" / "train.log").read_text()
    assert "6 of 13 training files unreadable" in log.splitlines()[-1]
    assert "epoch 0: " in log and "unreadable file(s) found" in log  # per-epoch count
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(tmp_path / "ok"))
    events.Reload()
    assert events.Scalars("data/unreadable_files")[-1].value == 6


def test_a_data_health_stop_saves_its_step_and_the_resume_it_names_works(tmp_path, capsys):
    # The issue's case: the limit is met at the first logging step (10), long before the first
    # periodic save (run.ckpt_every=1000): that whole step is saved, as a signal's is.
    data = hostile_folder(tmp_path / "photos", good=7, bad=6)
    out = tmp_path / "run"
    assert run_tool("train", [*TINY, f"data.train={data}", "data.val=sample",
                              "optim.batch_size=2", "optim.iterations=30", "run.log_every=10",
                              f"run.out={out}"]) == 4
    said = capsys.readouterr().out  # the run log's lines, the error among them
    command = f"python tools/train.py --task colorize --resume run.out={out}"
    assert (f"46% is above data.max_bad_fraction=0.1; fix or remove the files (the warnings "
            f"name each), or raise data.max_bad_fraction. Stopped after step 10; saved "
            f"{out / 'latest.pt'} at step 10; then resume with: {command} (adding "
            f"data.max_bad_fraction=... to go on past those files)") in said
    assert "Traceback" not in said
    assert ckpt.load(out / "latest.pt")["step"] == 10
    assert sorted(p.name for p in out.glob("*.pt")) == ["latest.pt", "step_000000010.pt"]
    # What it says works: the run goes on from step 10 to its end.
    argv = shlex.split(command)[2:]
    assert run_tool("train", [*argv, "data.max_bad_fraction=0.9"]) == 0
    assert ckpt.load(out / "latest.pt")["step"] == 30
    log = (out / "train.log").read_text()
    assert f"resumed from {out / 'latest.pt'} at step 10" in log
    assert "resumed with data.max_bad_fraction = 0.9 (was 0.1)" in log


def test_a_folder_where_nothing_is_readable_is_refused_before_any_work(tmp_path, capsys):
    data = hostile_folder(tmp_path / "photos", good=0, bad=5)
    out = tmp_path / "run"
    result = train_here(capsys, [*TINY, f"data.train={data}", "data.val=sample",
                                 f"run.out={out}"])
    assert result.returncode == 2 and "none of the 5 files tried out of 5" in result.stderr
    assert not out.exists()


# --- checkpoints kept, and never a poisoned one -------------------------------------------------

def test_the_last_n_saves_are_kept_and_load(tmp_path, capsys):
    out = tmp_path / "run"
    result = train_here(capsys, [*TINY, "optim.iterations=5", "run.ckpt_every=1",
                                 "run.keep=2", f"run.out={out}"])
    assert result.returncode == 0, result.stderr[-2000:]
    kept = sorted(p.name for p in out.glob("step_*.pt"))
    assert kept == ["step_000000004.pt", "step_000000005.pt"]
    assert ckpt.load(out / "step_000000004.pt")["step"] == 4
    a, b = weights(out / "step_000000005.pt"), weights(out / "latest.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_diverging_run_never_saves_non_finite_weights(tmp_path, capsys):
    out = tmp_path / "run"
    result = train_here(capsys, [*TINY, "optim.lr=1e6", "optim.iterations=30",
                                 "run.ckpt_every=1", "run.keep=0", f"run.out={out}"])
    assert result.returncode in (0, 3), result.stderr[-2000:]
    for path in out.glob("*.pt"):
        assert all(torch.isfinite(t).all() for t in weights(path).values()), path


def test_the_issues_diverging_run_saves_nothing_useless_and_says_none_is_good(tmp_path,
                                                                               capsys):
    # optim.lr=1e6: step 1's weights are finite (up to 1e6) but the network's outputs on the
    # validation images are not: that save is refused, and no file is called good.
    out = tmp_path / "run"
    assert run_tool("train", [*TINY, "optim.lr=1e6", "optim.iterations=30", "run.ckpt_every=1",
                              f"run.out={out}"]) == 3
    said = capsys.readouterr().out
    assert re.search(r"error: the weights of step 1 are finite but useless: .*not finite on 4 "
                     r"validation image\(s\); stopping\. No checkpoint of this run is good "
                     r"\(finite weights giving finite outputs\): none was saved\. Start again "
                     r"with a lower learning rate \(e\.g\. optim\.lr=100000\) or "
                     r"run\.precision=fp32\n", said), said[-2000:]
    assert "Last good" not in said and list(out.glob("*.pt")) == []


def test_a_run_whose_weights_turn_useless_names_the_last_good_save_which_colorizes(
        tmp_path, capsys, monkeypatch, photo):
    from splitbrain import engine

    real, calls = engine.train_step, {"n": 0}

    def poisoned(model, *args, **kwargs):
        out = real(model, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 4:  # after step 4: finite weights that no longer give finite outputs
            with torch.no_grad():
                for p in model.parameters():
                    p.mul_(1e30)
        return out

    monkeypatch.setattr(engine, "train_step", poisoned)
    out = tmp_path / "run"
    assert run_tool("train", [*TINY, "optim.iterations=8", "run.ckpt_every=1", "run.keep=2",
                              f"run.out={out}"]) == 3
    said = capsys.readouterr().out
    latest = out / "latest.pt"
    assert re.search(r"error: the weights of step 4 are finite but useless: .*not finite on 4 "
                     r"validation image\(s\); stopping\.", said), said[-2000:]
    assert (f"Last good checkpoint (finite weights, finite outputs on the validation images): "
            f"{latest}, step 3; resume from it with a lower learning rate: python tools/train.py "
            f"--task colorize --resume run.out={out} optim.lr=0.0001\n") in said
    assert ckpt.load(latest)["step"] == 3
    assert sorted(p.name for p in out.glob("*.pt")) == ["latest.pt", "step_000000002.pt",
                                                        "step_000000003.pt"]
    # Good means the tools can use it.
    photo().save(tmp_path / "p.png")
    assert run_tool("colorize", [tmp_path / "p.png", "--ckpt", latest, "-o", tmp_path / "col",
                                 "--device", "cpu"]) == 0
    assert (tmp_path / "col" / "p.png").is_file() and "error" not in capsys.readouterr().err


def test_colorizing_with_broken_weights_is_an_error_not_a_black_photo(tmp_path, capsys):
    from PIL import Image

    src = tmp_path / "train"
    assert train_here(capsys, [*TINY, "optim.iterations=1", f"run.out={src}"]).returncode == 0
    state = torch.load(src / "latest.pt", weights_only=True)
    for k, v in state["state_dict"].items():
        if v.is_floating_point():
            state["state_dict"][k] = torch.full_like(v, float("inf"))
    state.pop("checksum")
    torch.save(state, tmp_path / "broken.pt")
    Image.new("RGB", (20, 16), (90, 90, 90)).save(tmp_path / "p.png")
    capsys.readouterr()
    code = run_tool("colorize", [tmp_path / "p.png", "--ckpt", tmp_path / "broken.pt", "-o",
                                 tmp_path / "out"])
    assert code == 2 and "non-finite colours" in capsys.readouterr().err
    assert not (tmp_path / "out" / "p.png").exists()


def test_colorizes_broken_weights_message_has_lines_of_its_own_beside_the_progress_bar(
        trained, tmp_path, capsys, monkeypatch):
    from PIL import Image
    from tools_util import load_tool

    state = torch.load(trained, weights_only=True)
    for k, v in state["state_dict"].items():
        if v.is_floating_point():
            state["state_dict"][k] = torch.full_like(v, float("inf"))
    state.pop("checksum")
    torch.save(state, tmp_path / "broken.pt")
    Image.new("RGB", (20, 16), (90, 90, 90)).save(tmp_path / "p.png")
    tool = load_tool("colorize")
    # The bar drawn as on a terminal (the tool asks tqdm to draw on terminals only).
    bar = tool.tqdm
    monkeypatch.setattr(tool, "tqdm", lambda *a, **k: bar(*a, **{**k, "disable": False,
                                                                 "ncols": 80}))
    with pytest.raises(SystemExit) as exited:
        tool.main([str(tmp_path / "p.png"), "--ckpt", str(tmp_path / "broken.pt"), "-o",
                   str(tmp_path / "out"), "--device", "cpu"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "colorize:" in err  # the bar was drawn
    message = (f"error: {tmp_path / 'broken.pt'}: the model predicted non-finite colours: its "
               f"weights are broken (a diverged training run?); use an earlier checkpoint\n")
    assert err.endswith("\n" + message)  # on a line of its own, ended, and nothing after it


def test_an_all_grey_dataset_and_a_prior_file_of_objects_are_refused_before_any_file(tmp_path,
                                                                                     capsys):
    import numpy as np
    from PIL import Image
    from skimage import data as skdata

    grey = tmp_path / "grey"
    grey.mkdir()
    for i in range(6):
        photo = Image.fromarray(skdata.camera()).convert("RGB")
        photo.crop((40 * i, 0, 40 * i + 96, 96)).save(grey / f"g{i}.png")
    out = tmp_path / "run"
    result = train_here(capsys, [*TINY, f"data.train={grey}", "data.val=sample",
                                 "optim.batch_size=2", f"run.out={out}"])
    assert result.returncode == 2 and "no colour pixels were counted" in result.stderr
    assert "color.prior=FILE" in result.stderr and not out.exists()

    np.save(tmp_path / "objects.npy", np.array([{"a": 1}] * 313, dtype=object),
            allow_pickle=True)
    result = train_here(capsys, [*TINY, f"color.prior={tmp_path / 'objects.npy'}",
                                 f"run.out={out}"])
    assert result.returncode == 2 and "cannot read prior" in result.stderr
    assert "Traceback" not in result.stderr and not out.exists()


def test_non_finite_steps_can_be_skipped_and_counted(tmp_path, monkeypatch):
    from splitbrain import losses
    from tools_util import run_tool

    real, calls = losses.soft_cross_entropy, {"n": 0}

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        loss = real(*args, **kwargs)
        return loss * float("nan") if calls["n"] in (3, 4) else loss

    monkeypatch.setattr(losses, "soft_cross_entropy", poisoned)
    out = tmp_path / "run"
    assert run_tool("train", [*TINY, "optim.iterations=6", "run.nonfinite=skip",
                              f"run.out={out}"]) == 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(out))
    events.Reload()
    assert events.Scalars("train/skipped_steps")[-1].value == 2
    state = ckpt.load(out / "latest.pt")
    assert state["step"] == 6
    assert all(torch.isfinite(t).all() for t in state["state_dict"].values())


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_cuda_without_a_gpu_is_refused_before_any_file(tmp_path, capsys):
    out = tmp_path / "run"
    result = train_here(capsys, [*TINY[:-1], "run.device=cuda", f"run.out={out}"])
    assert result.returncode == 2 and "no CUDA GPU is available" in result.stderr
    assert not out.exists()


def test_a_validation_folder_where_nothing_is_readable_is_refused_before_any_work(tmp_path,
                                                                                   capsys):
    data = hostile_folder(tmp_path / "val", good=0, bad=4)
    out = tmp_path / "run"
    result = train_here(capsys, [*TINY, f"data.val={data}", f"run.out={out}"])
    assert result.returncode == 2 and "none of the 4 files tried out of 4" in result.stderr
    assert not out.exists()


# --- outputs of the other tools: never replaced unasked, never half-written ----------------------

def test_evaluate_json_is_not_replaced_without_overwrite(trained, tmp_path, capsys):
    mine = tmp_path / "results.json"
    mine.write_text("my notes")
    argv = ["--ckpt", trained, "--length", 4, "--device", "cpu", "--json", mine]
    assert run_tool("evaluate", argv) == 2
    captured = capsys.readouterr()
    assert "--json" in captured.err and "pass --overwrite" in captured.err
    assert "| model |" not in captured.out  # refused before the evaluation, not after it
    assert mine.read_text() == "my notes"
    assert run_tool("evaluate", [*argv, "--overwrite"]) == 0
    assert 0 < json.loads(mine.read_text())["val/model/auc"] <= 100
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # no temporary file left
    assert run_tool("evaluate", [*argv[:-1], tmp_path]) == 2  # a folder is not a file name
    assert "is a folder" in capsys.readouterr().err


def test_2afc_lin_weights_are_not_replaced_without_overwrite(tmp_path, capsys):
    from splitbrain.models import build_model

    torch.manual_seed(0)
    features = tmp_path / "run" / "latest.pt"
    features.parent.mkdir()
    ckpt.save({"task": "splitbrain", "model": {"name": "splitbrain_alexnet_small", "kwargs": {}},
               "state_dict": build_model("splitbrain_alexnet_small").state_dict(),
               "config": {}}, features)
    lin = tmp_path / "lin"
    argv = ["--features", features, "--layers", "conv1", "--size", 32, "--scale", 48,
            "--per-kind", 1, "--save-lin", lin]
    assert run_tool("perceptual_2afc", argv) == 0
    mine = lin / "run_latest_conv1.lin.pt"
    mine.write_bytes(b"my own fit")
    capsys.readouterr()
    assert run_tool("perceptual_2afc", argv) == 2
    captured = capsys.readouterr()
    assert f"exist in --save-lin (e.g. {mine}); pass --overwrite" in captured.err
    assert "2AFC on" not in captured.out  # refused before the work
    assert mine.read_bytes() == b"my own fit"
    assert run_tool("perceptual_2afc", [*argv, "--overwrite"]) == 0
    assert mine.read_bytes() != b"my own fit"


def test_join_halves_never_replaces_a_folder_and_reports_a_failed_write(tmp_path, capsys):
    halves = []
    for half in ("l2ab", "ab2l"):
        out = tmp_path / half
        assert run_tool("train", ["--task", "splitbrain", f"run.out={out}", f"model.half={half}",
                                  "optim.iterations=1", "data.crop=64", "data.val_crop=64",
                                  "data.train_length=4", "data.val_length=4",
                                  "optim.batch_size=4", "run.device=cpu"]) == 0
        halves.append(out / "latest.pt")
    folder = tmp_path / "joined"
    (folder / "notes.txt").parent.mkdir()
    (folder / "notes.txt").write_text("mine")
    capsys.readouterr()
    assert run_tool("join_halves", [*halves, "-o", folder, "--overwrite"]) == 2
    assert f"-o {folder} is a folder; give a file name" in capsys.readouterr().err
    assert (folder / "notes.txt").read_text() == "mine"
    # A place that cannot be written: a message, not a traceback.
    assert run_tool("join_halves", [*halves, "-o", "/proc/splitbrain_joined.pt"]) == 2
    assert "-o /proc: /proc is not writable" in capsys.readouterr().err
    assert run_tool("join_halves", [*halves, "-o", folder / "joined.pt"]) == 0
    assert ckpt.load(folder / "joined.pt", task="splitbrain")["model"]["kwargs"]["half"] == "both"


def test_serve_on_a_port_in_use_names_the_port_option(trained, capsys, monkeypatch):
    pytest.importorskip("gradio")
    import socket

    # In-process: it never serves.
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_captured(capsys, "serve", ["--ckpt", trained, "--port", port])
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"cannot listen on 127.0.0.1 port {port}: the port is in use" in result.stderr
    assert "choose another with --port" in result.stderr and "Traceback" not in result.stderr
    workdir = re.search(r"uploads and results in (\S+)", result.stdout).group(1)
    assert not Path(workdir).exists()  # the temporary folder is still removed


# --- too large a photo, a decompression bomb included: one message -----------------------------

def test_a_decompression_bomb_gets_the_pages_own_message_and_one_console_line(
        trained, tmp_path, photo, bomb_png, capsys, monkeypatch):
    pytest.importorskip("gradio")
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))  # before the first import
    import gradio as gr

    from splitbrain import web
    from splitbrain.colorize import load_colorizer

    bomb = bomb_png(tmp_path / "bomb.png")
    photo(size=(300, 200)).save(tmp_path / "big.png")
    page = web.Page(load_colorizer(trained), "latest.pt", web.Limits(max_pixels=50_000),
                    tmp_path / "work")
    hint = ("is over the limit of 0.05 megapixels (start the page with --max-megapixels to "
            "allow more)")
    for path, size in ((bomb, "30000x30000 pixels (900.0 megapixels)"),
                       (tmp_path / "big.png", "300x200 pixels (0.1 megapixels)")):
        with pytest.raises(web.ImageReadError) as refused:
            page.read(path)
        assert refused.value.reason == f"{size} {hint}"  # the bomb's words are the photo's
    capsys.readouterr()
    with pytest.raises(gr.Error) as failed:
        page.run([str(bomb)], 0.38, 64)
    assert failed.value.message == (f"No photo could be read. bomb.png: 30000x30000 pixels "
                                    f"(900.0 megapixels) {hint}")
    assert failed.value.print_exception is False  # gradio prints no traceback for it
    console = capsys.readouterr().err.splitlines()
    assert len(console) == 1 and console[0].endswith(
        f"refused upload bomb.png: 30000x30000 pixels (900.0 megapixels) {hint}")


def test_a_decompression_bomb_gets_colorizes_own_message_and_the_other_photos_are_done(
        trained, tmp_path, photo, bomb_png, capsys):
    (tmp_path / "in").mkdir()
    bomb = bomb_png(tmp_path / "in" / "bomb.png")
    photo(size=(300, 200)).save(tmp_path / "in" / "ok.png")
    common = ["--ckpt", trained, "--device", "cpu", "--size", 32]
    assert run_tool("colorize", [tmp_path / "in", *common, "-o", tmp_path / "out"]) == 1
    err = capsys.readouterr().err
    # The default limit is Pillow's: 89.4785 megapixels.
    assert (f"error: cannot read image {bomb}: 30000x30000 pixels (900.0 megapixels) is over "
            f"the limit of 89.4785 megapixels (pass --max-megapixels to allow more)\n") in err
    assert "decompression bomb" not in err and "Traceback" not in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["ok.png"]  # done anyway
    # A photo over a limit given: the same message.
    assert run_tool("colorize", [tmp_path / "in" / "ok.png", *common, "-o", tmp_path / "out2",
                                 "--max-megapixels", "0.05"]) == 1
    assert (f"error: cannot read image {tmp_path / 'in' / 'ok.png'}: 300x200 pixels "
            f"(0.1 megapixels) is over the limit of 0.05 megapixels (pass --max-megapixels to "
            f"allow more)\n") in capsys.readouterr().err
    assert not (tmp_path / "out2" / "ok.png").exists()
