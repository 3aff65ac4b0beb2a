"""The autoencoder baselines (--task autoencoder): what the network sees and learns, the
corruption of the denoising variant, checkpoints, and the probe reading the result."""

import pytest
import torch

from splitbrain import checkpoint as ckpt
from splitbrain import color, losses
from splitbrain.data import SamplePhotos
from splitbrain.models import build_model
from splitbrain.objectives import AutoencoderObjective, corrupt_lab, normalize_lab
from tools_util import run_tool

TINY = ["optim.iterations=2", "data.crop=64", "data.val_crop=64", "data.train_length=8",
        "data.val_length=4", "optim.batch_size=4", "run.device=cpu"]


def photo_batch(n=4, size=32, seed=0):
    photos = SamplePhotos("train", size=size, length=n, seed=seed)
    return torch.stack([photos[i][0] for i in range(n)])  # (n, 3, size, size) uint8


class Spy(torch.nn.Module):
    """Records what it is given; outputs zeros at the autoencoder's 1/4 resolution."""

    def __init__(self):
        super().__init__()
        self.seen = None

    def forward(self, x):
        self.seen = x.detach().clone()
        return torch.zeros(x.shape[0], 3, x.shape[2] // 4, x.shape[3] // 4)


def test_normalised_lab_is_the_networks_scale():
    lab = torch.tensor([50.0, 0.0, 0.0, 100.0, 110.0, -55.0]).view(2, 3, 1, 1)
    assert torch.allclose(normalize_lab(lab).flatten(),
                          torch.tensor([0.0, 0.0, 0.0, 0.5, 1.0, -0.5]))


def test_drop_replaces_the_drawn_share_of_pixels_with_neutral_grey():
    lab = color.rgb_to_lab(photo_batch(4, 64))
    out = corrupt_lab(lab, drop=0.5, generator=torch.Generator().manual_seed(0))
    dropped = (out != lab).any(1)  # (B, H, W)
    assert 0.45 < dropped.float().mean() < 0.55
    grey = out.permute(0, 2, 3, 1)[dropped]  # (n, 3)
    assert torch.equal(grey, torch.tensor([50.0, 0.0, 0.0]).expand_as(grey))
    # The other pixels keep all three channels exactly.
    assert torch.equal(out.permute(0, 2, 3, 1)[~dropped], lab.permute(0, 2, 3, 1)[~dropped])


def test_noise_has_the_stated_spread_in_network_units():
    lab = torch.full((2, 3, 64, 64), 0.0)
    lab[:, 0] = 50
    out = corrupt_lab(lab, noise=0.2, generator=torch.Generator().manual_seed(1))
    spread = normalize_lab(out).std(dim=(0, 2, 3))  # per channel, (3,)
    assert torch.allclose(spread, torch.full((3,), 0.2), rtol=0.05)
    with pytest.raises(ValueError, match="drop"):
        corrupt_lab(lab, drop=1.0)


def test_denoising_corrupts_only_the_input_and_the_target_is_the_clean_image():
    rgb = photo_batch()
    lab = color.rgb_to_lab(rgb)
    spy = Spy().train()
    objective = AutoencoderObjective(drop=0.5, seed=3)
    loss, _, _ = objective(spy, rgb)
    assert (spy.seen != lab).any(1).float().mean() > 0.4  # the network saw a corrupted input
    # ... and was scored against the clean image at its resolution (the output is zeros).
    target = torch.nn.functional.interpolate(normalize_lab(lab), size=(8, 8), mode="nearest")
    assert torch.allclose(loss, losses.l2_regression(torch.zeros_like(target), target))
    # The plain autoencoder sees the image itself.
    AutoencoderObjective(seed=3)(spy, rgb)
    assert torch.equal(spy.seen, lab)


def test_corruption_follows_the_step_so_a_resumed_run_draws_the_same():
    rgb = photo_batch()
    spy = Spy().train()
    first = AutoencoderObjective(drop=0.5, seed=0)
    draws = []
    for _ in range(3):
        first(spy, rgb)
        draws.append(spy.seen)
    assert not torch.equal(draws[1], draws[2])  # each step its own corruption
    resumed = AutoencoderObjective(drop=0.5, seed=0)
    resumed.step = 2  # as tasks.setup sets it from the checkpoint's step
    resumed(spy, rgb)
    assert torch.equal(spy.seen, draws[2])
    spy.eval()  # evaluation: one fixed draw that does not advance the step
    resumed(spy, rgb)
    again = spy.seen
    resumed(spy, rgb)
    assert torch.equal(spy.seen, again) and resumed.step == 3


@pytest.mark.parametrize("drop", [0.0, 0.5])
def test_loss_falls_on_a_tiny_batch(drop):
    torch.manual_seed(0)
    model = build_model("autoencoder_alexnet_cifar").train()
    objective = AutoencoderObjective(drop=drop)
    rgb = photo_batch(4, 32)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    history = []
    for _ in range(25):
        loss, _, _ = objective(model, rgb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(float(loss.detach()))
    assert history[-1] < 0.5 * history[0]


def test_training_checkpoints_round_trip_and_the_probe_reads_them(tmp_path, capsys,
                                                                write_photos):
    out = tmp_path / "dae"
    assert run_tool("train", ["--task", "autoencoder", f"run.out={out}", "corrupt.drop=0.5",
                              *TINY]) == 0
    state = ckpt.load(out / "latest.pt", task="autoencoder")
    assert state["config"]["corrupt"]["drop"] == 0.5 and state["step"] == 2
    model = ckpt.build_model(state).eval()
    trained = {k: v for k, v in state["state_dict"].items()}
    assert all(torch.equal(model.state_dict()[k], v) for k, v in trained.items())
    # Resuming continues the corruption at the saved step.
    assert run_tool("train", ["--task", "autoencoder", "--resume", f"run.out={out}",
                              "optim.iterations=3"]) == 0
    assert ckpt.load(out / "latest.pt")["step"] == 3
    probe = tmp_path / "probe"
    assert run_tool("probe", ["--ckpt", out / "latest.pt", "--layer", "conv2,conv5", "--out",
                              probe, "probe.solver=sklearn", "sklearn.Cs=[1.0]",
                              "data.crop=64", "data.train_length=28", "data.val_length=14",
                              "run.device=cpu"]) == 0
    assert (probe / "results.json").is_file()
    capsys.readouterr()
    photo, = write_photos(tmp_path / "photos", n=1)
    assert run_tool("colorize", [photo, "--ckpt", out / "latest.pt",
                                 "--out", tmp_path / "c"]) != 0
    assert "cannot colorize" in capsys.readouterr().err


def test_bad_corruption_is_refused_before_anything_is_written(tmp_path, capsys):
    out = tmp_path / "bad"
    assert run_tool("train", ["--task", "autoencoder", f"run.out={out}", "corrupt.drop=1.0",
                              "corrupt.noise=-1", *TINY]) == 2
    err = capsys.readouterr().err
    assert "corrupt.drop=1.0" in err and "corrupt.noise=-1" in err
    assert not out.exists()
