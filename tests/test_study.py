"""tools/study.py and splitbrain.study: splits, the whole study on a tiny slice, continuing a
stopped or failed study, and the table writer."""

import json
import os
import random
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image
from skimage import data as skdata

from splitbrain import checkpoint as ckpt
from splitbrain import study as study_lib
from tools_util import run_tool

ROOT = Path(__file__).resolve().parent.parent
SHARED_CIFAR = ROOT.parent / "shared" / "data" / "cifar10-jpg.tar.gz"
CLASSES = ("astronaut", "chelsea", "coffee", "rocket")
ROWS = ["random", "dae", "l2ab_cl", "sb_cl"]


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory):
    """ImageFolder train/ and test/ of 32×32 crops, a class per bundled photo."""
    root = tmp_path_factory.mktemp("photos")
    rng = random.Random(0)
    for name in CLASSES:
        image = Image.fromarray(getattr(skdata, name)())
        for split, n in (("train", 24), ("test", 6)):
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                x, y = rng.randrange(image.width - 96), rng.randrange(image.height - 96)
                crop = image.crop((x, y, x + 96, y + 96)).resize((32, 32))
                crop.save(root / split / name / f"{i:03d}.jpg")
    return root


@pytest.fixture(scope="module")
def study_file(tmp_path_factory):
    """The real study file's rows and configs, with a tiny split and budget."""
    spec = yaml.safe_load((ROOT / "configs" / "study_cifar10.yaml").read_text())
    spec["split"] = {"val_per_class": 4, "probe_per_class": 10, "seed": 0}
    spec["budgets"] = {"tiny": {
        "seeds": [0, 1], "colour_images": 12,
        "train": {"run.device": "cpu", "optim.iterations": 2, "optim.batch_size": 8,
                  "optim.lr_steps": [1], "run.val_batches": 1, "data.workers": 0},
        "probe": {"run.device": "cpu", "sklearn.Cs": [1.0], "sklearn.max_iter": 50,
                  "data.workers": 0}}}
    path = tmp_path_factory.mktemp("study") / "study.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def study_args(data, study, out, *extra):
    return ["--data", data, "--study", study, "--budget", "tiny", "--out", out,
            "--rows", ",".join(ROWS), *extra]


@pytest.fixture(scope="module")
def finished(photo_folder, study_file, tmp_path_factory):
    """A whole tiny study, run once for the tests that read its outputs."""
    out = tmp_path_factory.mktemp("run") / "study"
    assert run_tool("study", study_args(photo_folder, study_file, out)) == 0
    return out


# --- splits -----------------------------------------------------------------------------------

def _targets(folder):
    """class/name of the file each link in ``folder`` points to."""
    return {p.parent.name + "/" + Path(os.readlink(p)).name for p in Path(folder).rglob("*.jpg")}


def test_splits_are_disjoint_balanced_and_the_same_every_time(photo_folder, tmp_path):
    split = {"val_per_class": 4, "probe_per_class": 10, "seed": 0}
    s = study_lib.make_splits(photo_folder, tmp_path / "a", split)
    train, val, test = _targets(s.train), _targets(s.val), _targets(s.test)
    assert len(val) == 4 * len(CLASSES) and len(train) == 20 * len(CLASSES)
    assert not train & val  # the validation split is held out of pretraining
    assert test == {f"{p.parent.name}/{p.name}" for p in (photo_folder / "test").rglob("*.jpg")}
    probe_train = _targets(s.probe_val / "train")
    assert probe_train <= train and len(probe_train) == 10 * len(CLASSES)
    assert _targets(s.probe_val / "val") == val and _targets(s.probe_test / "val") == test
    assert _targets(s.probe_test / "train") == probe_train
    for cls in CLASSES:  # per class
        assert len(list((s.val / cls).iterdir())) == 4
    again = study_lib.make_splits(photo_folder, tmp_path / "b", split)
    assert _targets(again.val) == val and _targets(again.probe_val / "train") == probe_train
    other = study_lib.make_splits(photo_folder, tmp_path / "c", dict(split, seed=1))
    assert _targets(other.val) != val


@pytest.mark.slow  # 60,000 files unpacked and 70,000 links made
@pytest.mark.skipif(not SHARED_CIFAR.is_file(),
                    reason=f"needs the shared CIFAR-10 archive ({SHARED_CIFAR}), absent here")
def test_the_cifar10_archive_unpacks_into_the_studys_splits(tmp_path):
    data = study_lib.unpack_data(SHARED_CIFAR, tmp_path / "data")
    spec = yaml.safe_load((ROOT / "configs" / "study_cifar10.yaml").read_text())
    s = study_lib.make_splits(data, tmp_path / "splits", spec["split"])
    counts = {name: len(_targets(getattr(s, name))) for name in ("train", "val", "test")}
    assert counts == {"train": 45000, "val": 5000, "test": 10000}
    assert len(_targets(s.probe_val / "train")) == 10 * spec["split"]["probe_per_class"]
    assert not _targets(s.train) & _targets(s.val)


# --- the whole study on a tiny slice ----------------------------------------------------------

def test_the_study_writes_its_table_plot_json_and_tensorboard(finished):
    md = (finished / "study_test.md").read_text()
    for label in ("random init", "denoising autoencoder", "colorization",
                  "split-brain (cl, cl)", "all grey"):
        assert label in md
    assert md.count("±") >= 5 * len(ROWS)  # two seeds: mean ± spread in every probe cell
    assert "Failed:" not in md and "| failed |" not in md
    png = (finished / "study_test.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    result = json.loads((finished / "study_test.json").read_text())
    assert set(result["probes"]) == set(ROWS)
    for row in ROWS:
        for seed in ("0", "1"):
            layers = result["probes"][row][seed]
            assert set(layers) == set(study_lib.LAYERS)
            assert all(0 <= r["top1"] <= 100 for r in layers.values())
    # Colour quality for the rows that predict ab, each beside the same all-grey baseline.
    assert set(result["colour"]) == {"l2ab_cl", "sb_cl"}
    greys = [r["grey"] for runs in result["colour"].values() for r in runs.values()]
    assert all(g == greys[0] for g in greys) and greys[0]["colourfulness"] < 0.01
    assert list((finished / "tensorboard" / "test" / "sb_cl").glob("events.*"))
    assert list((finished / "runs" / "sb_cl" / "seed1").glob("events.*"))


def test_each_row_trains_what_it_says(finished):
    """The checkpoints: the task, the corruption, the half and its width, the seed."""
    def state(row, seed=0):
        return ckpt.load(finished / "runs" / row / f"seed{seed}" / "latest.pt")
    dae = state("dae")
    assert dae["task"] == "autoencoder" and dae["config"]["corrupt"]["drop"] == 0.5
    assert state("l2ab_cl")["config"]["model"]["head"] == "cl"
    assert state("sb_cl", 1)["config"]["run"]["seed"] == 1
    # The rows are pretrained on the study's training split, never the validation images.
    assert state("sb_cl")["config"]["data"]["train"].endswith("splits/train")
    assert not (finished / "runs" / "random").exists()  # random init trains nothing


def test_probes_read_the_models_the_study_trained(finished):
    meta = json.loads((finished / "probes_test" / "dae" / "seed1" / "results.json").read_text())
    assert meta["ckpt"].endswith("runs/dae/seed1/latest.pt") and meta["init"] == "checkpoint"
    random_meta = json.loads((finished / "probes_test" / "random" / "seed0" /
                              "results.json").read_text())
    assert random_meta["init"] == "random"
    assert random_meta["model"]["name"] == "autoencoder_alexnet_cifar"


def test_a_failed_row_is_reported_and_a_rerun_finishes_only_what_is_missing(
        photo_folder, study_file, tmp_path, monkeypatch, capsys):
    out = tmp_path / "study"
    real_pretrain = study_lib.pretrain

    def broken(study, row, *args, **kwargs):
        if row.name == "dae":
            raise RuntimeError("disk on fire")
        return real_pretrain(study, row, *args, **kwargs)

    monkeypatch.setattr(study_lib, "pretrain", broken)
    args = study_args(photo_folder, study_file, out, "--seeds", "0")
    assert run_tool("study", args) == 1
    md = (out / "study_test.md").read_text()
    assert "| denoising autoencoder (drop 50%) (0 of 1 seeds) | failed |" in md
    assert "dae seed 0 (pretrain): RuntimeError: disk on fire" in md
    assert (out / "probes_test" / "sb_cl" / "seed0" / "results.json").exists()  # others went on
    done = {p: p.stat().st_mtime_ns for p in (out / "probes_test").rglob("results.json")}

    monkeypatch.setattr(study_lib, "pretrain", real_pretrain)
    calls = []
    real_probe_run = __import__("splitbrain.probe.run", fromlist=["probe_run"]).probe_run
    monkeypatch.setattr("splitbrain.probe.run.probe_run",
                        lambda cfg: calls.append(cfg["run"]["out"]) or real_probe_run(cfg))
    assert run_tool("study", args) == 0
    assert calls == [str(out / "probes_test" / "dae" / "seed0")]  # only the missing one
    assert all(p.stat().st_mtime_ns == t for p, t in done.items())
    md = (out / "study_test.md").read_text()
    assert "Failed:" not in md and "| failed |" not in md


def test_a_stopped_training_run_is_continued_from_its_checkpoint(photo_folder, study_file,
                                                                 tmp_path):
    out = tmp_path / "study"
    first = study_args(photo_folder, study_file, out, "--seeds", "0")
    first[first.index("--rows") + 1] = "dae"
    assert run_tool("study", first) == 0
    latest = out / "runs" / "dae" / "seed0" / "latest.pt"
    assert ckpt.load(latest)["step"] == 2
    # A longer schedule stands for a run stopped at step 2 of 3: the study resumes it.
    shutil.rmtree(out / "probes_test")
    assert run_tool("study", first + ["--train", "optim.iterations=3"]) == 0
    assert ckpt.load(latest)["step"] == 3
    log = (out / "study.log").read_text()
    assert "dae seed 0: continuing at step 2" in log
    assert "resumed from" in (out / "runs" / "dae" / "seed0" / "train.log").read_text()


def test_a_stage_made_with_other_settings_is_not_taken_as_done(photo_folder, study_file,
                                                                tmp_path):
    out = tmp_path / "study"
    args = study_args(photo_folder, study_file, out, "--seeds", "0")
    args[args.index("--rows") + 1] = "dae"
    assert run_tool("study", args) == 0
    # Another learning rate into the same folder: the finished run is not silently reused.
    assert run_tool("study", args + ["--train", "optim.lr=0.5"]) == 1
    md = (out / "study_test.md").read_text()
    assert "dae seed 0 (pretrain):" in md and "optim.lr: 0.001 there, 0.5 now" in md
    # Nor a finished probe with another solver setting.
    assert run_tool("study", args + ["--probe", "sklearn.max_iter=7"]) == 1
    assert "sklearn.max_iter: 50 there, 7 now" in (out / "study_test.md").read_text()


def test_report_tabulates_the_stages_done_and_runs_nothing(photo_folder, study_file,
                                                           tmp_path):
    out = tmp_path / "study"
    one = study_args(photo_folder, study_file, out, "--seeds", "0")
    one[one.index("--rows") + 1] = "random,dae"
    assert run_tool("study", one) == 0
    both = one[:-1] + ["0,1", "--report"]  # a study of two seeds, one of them done
    assert run_tool("study", both) == 0
    md = (out / "study_test.md").read_text()
    assert "| random init (1 of 2 seeds) |" in md
    assert "| denoising autoencoder (drop 50%) (1 of 2 seeds) |" in md
    assert "--report" not in md  # the header gives the study's own command
    assert not (out / "runs" / "dae" / "seed1").exists()
    assert not (out / "probes_test" / "random" / "seed1").exists()


# --- bad input --------------------------------------------------------------------------------

@pytest.mark.parametrize("extra, message", [
    (["--rows", "sb_cl,nonsense"], "unknown row(s) ['nonsense']"),
    (["--budget", "huge"], "unknown budget 'huge'"),
    (["--train", "optim.lrr=0.1"], "unknown config key 'optim.lrr'"),
    (["--probe", "sklearn.Cs=oops"], "sklearn.Cs"),
])
def test_bad_settings_stop_before_anything_is_written(photo_folder, study_file, tmp_path,
                                                      capsys, extra, message):
    out = tmp_path / "study"
    args = ["--data", photo_folder, "--study", study_file, "--budget", "tiny", "--out", out]
    for i in range(0, len(extra), 2):  # a flag given here replaces the default one
        if extra[i] in args:
            args[args.index(extra[i]) + 1] = extra[i + 1]
        else:
            args += extra[i:i + 2]
    assert run_tool("study", args) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_data_without_train_and_test_folders_is_a_clear_error(study_file, tmp_path, capsys):
    (tmp_path / "photos").mkdir()
    assert run_tool("study", ["--data", tmp_path / "photos", "--study", study_file, "--budget",
                              "tiny", "--out", tmp_path / "out"]) == 2
    assert "train/ and test/" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# --- the table writer -------------------------------------------------------------------------

def test_mean_and_spread_are_the_sample_statistics():
    assert study_lib.mean_spread([1.0, 2.0, 3.0]) == (2.0, 1.0, 3)
    mean, spread, n = study_lib.mean_spread([10.0])
    assert (mean, spread, n) == (10.0, 0.0, 1)


def test_the_table_gives_mean_and_spread_per_layer_and_marks_missing_seeds(study_file):
    study = study_lib.select(study_lib.load_study(study_file, "tiny", root=ROOT),
                             ["random", "sb_cl"])

    def layers(top1):
        return {layer: {"top1": top1 + i} for i, layer in enumerate(study_lib.LAYERS)}

    outcome = study_lib.Outcome(probes={"random": {0: layers(10.0), 1: layers(14.0)},
                                        "sb_cl": {0: layers(30.0)}},
                                failures=[{"row": "sb_cl", "seed": 1, "stage": "probe",
                                           "error": "boom\nmore"}])
    text = study_lib.format_tables(study, outcome, "val")
    assert ("| random init | 12.0 ± 2.8 | 13.0 ± 2.8 | 14.0 ± 2.8 | 15.0 ± 2.8 | 16.0 ± 2.8 |"
            in text)
    assert "| split-brain (cl, cl) (1 of 2 seeds) | 30.0 | 31.0 |" in text
    assert "- sb_cl seed 1 (probe): boom" in text and "more" not in text
    assert "CIFAR-10 val" in text



@pytest.mark.parametrize("budget", ["cpu", "gpu"])
def test_every_row_of_every_budget_resolves_to_a_valid_config(budget, tmp_path):
    """A typo in the study file fails here, not an hour into a study."""
    study = study_lib.load_study(ROOT / "configs" / "study_cifar10.yaml", budget, root=ROOT)
    splits = study_lib.Splits(*(tmp_path / n for n in ("train", "val", "probe_val",
                                                       "probe_test", "test")))
    for row in study.rows.values():
        if row.task is not None:
            cfg = study_lib.train_config(study, row, 1, splits, tmp_path / "run")
            assert cfg["optim"]["iterations"] == study.budget["train"]["optim.iterations"]
            for key, value in row.set.items():
                section, name = key.split(".")
                assert cfg[section][name] == value
        cfg = study_lib.probe_config(study, row, 1, splits, "test", tmp_path / "run",
                                     tmp_path / "probe")
        assert cfg["data"]["source"] == str(tmp_path / "probe_test")
    assert len(study.budget["seeds"]) >= 3


def test_the_report_tells_a_row_not_run_from_a_failed_one():
    study = study_lib.load_study(ROOT / "configs" / "study_cifar10.yaml", "cpu", root=ROOT)
    layers = {layer: {"top1": 50.0} for layer in ("conv1", "conv2", "conv3", "conv4", "conv5")}
    outcome = study_lib.Outcome(probes={"random": {0: layers}},
                                failures=[{"row": "dae", "seed": 0, "stage": "pretrain",
                                           "error": "RuntimeError: disk on fire"}])
    from splitbrain.study_report import format_tables
    md = format_tables(study, outcome, "test")
    assert "| denoising autoencoder (drop 50%) (0 of 3 seeds) | failed |" in md
    assert "| split-brain (cl, cl) (0 of 3 seeds) | not run |" in md
    assert "| split-brain (cl, cl) | not run |" in md  # its colour row
    assert "| random init (1 of 3 seeds) | 50.0 |" in md
