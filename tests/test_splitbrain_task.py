"""--task splitbrain: both halves learn, ablations run, resume, joining halves, colorizing."""

import pytest
import torch
from skimage import data as skdata

from splitbrain import checkpoint as ckpt
from splitbrain import config
from splitbrain.colorize import colorize, load_colorizer
from splitbrain import tasks
from tools_util import run_tool

TINY = ["data.crop=64", "data.val_crop=64", "data.train_length=16", "data.val_length=4",
        "optim.batch_size=4", "run.log_every=1", "run.image_every=2", "run.val_every=2",
        "run.ckpt_every=2", "run.device=cpu"]


def train(out, *extra, iterations=4):
    return run_tool("train", ["--task", "splitbrain", f"run.out={out}",
                              f"optim.iterations={iterations}", *TINY, *extra])


def photo_batch(n=8, size=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    img = torch.from_numpy(skdata.astronaut()).permute(2, 0, 1).float() / 255
    ys, xs = torch.randint(0, 512 - size, (2, n), generator=g)
    return torch.stack([img[:, y:y + size, x:x + size] for y, x in zip(ys, xs)])


@pytest.mark.parametrize("heads", [["cl", "cl"], ["reg", "reg"]])
def test_both_halves_losses_fall_on_a_tiny_batch(heads):
    torch.manual_seed(0)
    cfg = config.resolve("splitbrain", overrides=[f"model.heads={heads}"])
    setup = tasks.setup("splitbrain", cfg, None, torch.device("cpu"), print)
    opt = torch.optim.Adam(setup.model.parameters(), 1e-3)
    batch = photo_batch()
    first = None
    for _ in range(25):
        loss, logs, pred = setup.objective(setup.model, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first or {k: float(v) for k, v in logs.items()}
    last = {k: float(v) for k, v in logs.items()}
    for name in ("loss_l2ab", "loss_ab2l"):
        assert last[name] < 0.8 * first[name], (name, first[name], last[name])
    torch.testing.assert_close(torch.tensor(last["loss"]),
                               torch.tensor(last["loss_l2ab"] + last["loss_ab2l"]))
    # Heads predict 313 ab bins and 50 L bins, or 2 and 1 regression values.
    widths = [o.shape[1] for o in pred.output]
    assert widths == ([313, 50] if heads == ["cl", "cl"] else [2, 1])


def test_train_logs_both_halves_and_resume_matches(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert train(tmp_path / "full", iterations=4) == 0
    events = EventAccumulator(str(tmp_path / "full"))
    events.Reload()
    for tag in ("train/loss_l2ab", "train/loss_ab2l", "val/loss_l2ab", "val/model/auc"):
        assert tag in events.Tags()["scalars"], tag
    assert any("ab2l_lightness" in t for t in events.Tags()["images"])

    assert train(tmp_path / "split", iterations=2) == 0
    assert run_tool("train", ["--task", "splitbrain", "--resume",
                              f"run.out={tmp_path / 'split'}", "optim.iterations=4"]) == 0
    full = ckpt.load(tmp_path / "full" / "latest.pt")["state_dict"]
    split = ckpt.load(tmp_path / "split" / "latest.pt")["state_dict"]
    for key in full:
        assert torch.equal(full[key], split[key]), key


def test_halves_trained_alone_join_and_colorize(tmp_path, capsys):
    assert train(tmp_path / "l2ab", "model.half=l2ab", iterations=2) == 0
    assert train(tmp_path / "ab2l", "--half", "ab2l", iterations=2) == 0
    joined = tmp_path / "joined.pt"
    assert run_tool("join_halves", [tmp_path / "ab2l" / "latest.pt",
                                    tmp_path / "l2ab" / "latest.pt", "-o", joined]) == 0
    state = ckpt.load(joined, task="splitbrain")
    from splitbrain.models import build_model
    model = build_model(state["model"]["name"], **state["model"]["kwargs"])
    ckpt.load_state_dict(model, state["state_dict"])
    feats = model.forward_features(torch.rand(1, 3, 227, 227) * 50, ["conv1", "conv5"])
    assert feats["conv1"].shape[1] == model.feature_channels["conv1"]

    # The joined model's L -> ab half colorizes, and so does the half trained alone.
    from PIL import Image
    img = Image.fromarray(skdata.chelsea()).resize((41, 29))
    for path in (joined, tmp_path / "l2ab" / "latest.pt"):
        assert colorize(img, load_colorizer(path, size=64)).size == (41, 29)
    # The ab -> L half alone cannot colorize.
    with pytest.raises(ckpt.CheckpointError, match="no L -> ab half"):
        load_colorizer(tmp_path / "ab2l" / "latest.pt")


def test_joining_mismatched_halves_is_refused(tmp_path, capsys):
    assert train(tmp_path / "a", "model.half=l2ab", iterations=2) == 0
    assert train(tmp_path / "b", "model.half=l2ab", iterations=2) == 0
    assert run_tool("join_halves", [tmp_path / "a" / "latest.pt", tmp_path / "b" / "latest.pt",
                                    "-o", tmp_path / "j.pt"]) == 2
    assert "one l2ab and one ab2l" in capsys.readouterr().err
    assert train(tmp_path / "c", "model.half=ab2l", "model.name=splitbrain_alexnet",
                 "data.crop=96", iterations=1) == 0
    assert run_tool("join_halves", [tmp_path / "a" / "latest.pt", tmp_path / "c" / "latest.pt",
                                    "-o", tmp_path / "j.pt"]) == 2
    assert "different models" in capsys.readouterr().err
