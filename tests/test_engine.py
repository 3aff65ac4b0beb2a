"""Deterministic, resumable data order; safe checkpoints; precision and device choices."""

import pytest
import torch

from splitbrain import checkpoint as ckpt
from splitbrain import engine


def take(sampler, n):
    it = iter(sampler)
    return [next(it) for _ in range(n)]


def test_resumed_batch_order_matches_uninterrupted():
    full = take(engine.StepBatches(10, 3, seed=7), 8)  # crosses two epoch boundaries
    resumed = take(engine.StepBatches(10, 3, seed=7, start_step=5), 3)
    assert resumed == full[5:]


def test_epochs_are_permutations_and_seeds_are_unique():
    batches = take(engine.StepBatches(12, 4, seed=0), 6)
    for epoch in (batches[:3], batches[3:]):
        assert sorted(i for b in epoch for i, _ in b) == list(range(12))
    assert batches[:3] != batches[3:]  # a new order each epoch
    seeds = [s for b in batches for _, s in b]
    assert len(set(seeds)) == len(seeds)


def test_too_small_dataset_is_a_clear_error():
    with pytest.raises(ValueError, match="fewer than one batch"):
        engine.StepBatches(3, 4)


class RandomItems(torch.utils.data.Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        return torch.rand(2), i


def test_seeded_samples_make_augmentation_repeatable():
    ds = engine.SeededSamples(RandomItems())
    a, b = ds[(3, 123)], ds[(3, 123)]
    assert torch.equal(a[0], b[0]) and not torch.equal(a[0], ds[(3, 124)][0])
    # The global RNG is left alone.
    state = torch.get_rng_state()
    ds[(0, 1)]
    assert torch.equal(state, torch.get_rng_state())


def test_checkpoint_round_trip_is_plain_data(tmp_path):
    path = tmp_path / "c.pt"
    ckpt.save({"task": "colorize", "state_dict": {"w": torch.ones(2)}, "step": 3}, path)
    state = ckpt.load(path, task="colorize")  # weights_only=True inside
    assert state["step"] == 3 and torch.equal(state["state_dict"]["w"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temp file left behind


def test_checkpoint_errors(tmp_path):
    with pytest.raises(ckpt.CheckpointError, match="not found"):
        ckpt.load(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ckpt.CheckpointError, match="cannot read"):
        ckpt.load(tmp_path / "junk.pt")
    torch.save({"state_dict": {}}, tmp_path / "foreign.pt")
    with pytest.raises(ckpt.CheckpointError, match="not a splitbrain checkpoint"):
        ckpt.load(tmp_path / "foreign.pt")
    ckpt.save({"task": "probe"}, tmp_path / "probe.pt")
    with pytest.raises(ckpt.CheckpointError, match="task 'probe'.*'colorize' is needed"):
        ckpt.load(tmp_path / "probe.pt", task="colorize")


def test_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "latest.pt"
    ckpt.save({"task": "colorize", "step": 1}, path)

    def broken_save(obj, f):
        with open(f, "wb") as fh:
            fh.write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        ckpt.save({"task": "colorize", "step": 2}, path)
    monkeypatch.undo()
    assert ckpt.load(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["latest.pt"]


def test_load_state_dict_reports_architecture_mismatch():
    model = torch.nn.Linear(3, 2)
    with pytest.raises(ckpt.CheckpointError, match="shape mismatch.*another architecture"):
        ckpt.load_state_dict(model, {"weight": torch.zeros(4, 3), "bias": torch.zeros(2)})
    with pytest.raises(ckpt.CheckpointError, match="missing 1 keys"):
        ckpt.load_state_dict(model, {"weight": torch.zeros(2, 3)})


def test_device_and_precision_choices():
    assert engine.resolve_device("auto").type in ("cpu", "cuda")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            engine.resolve_device("cuda")
    with pytest.raises(ValueError, match="fp32"):
        engine.autocast(torch.device("cpu"), "fp8")
    with engine.autocast(torch.device("cpu"), "bf16"):
        out = torch.nn.Linear(4, 4)(torch.randn(2, 4))
    assert out.dtype == torch.bfloat16
