"""The paper's probe solver: one BatchNorm + Linear head per layer, trained with SGD.

Every head reads the same frozen forward pass, has its own optimiser and schedule, and starts
from its own seeded weights, so probing conv1..conv5 together trains each head exactly as
probing its layer alone does (docs/reference.md §3).
"""

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from .. import distributed
from ..loaders import eval_loader, train_loader
from . import ProbeError, ProtocolError
from .encoder import PROBE_LAYERS, check_frozen, check_no_encoder_grad, check_unchanged, snapshot
from .heads import from_linear_probe


# --- the protocol: only the heads learn -----------------------------------------------------

def check_only_heads_train(encoder, heads, optimizers):
    """Raise ProtocolError unless exactly the heads' parameters are trainable and optimised."""
    check_frozen(encoder)
    head_params = {id(p) for p in heads.parameters()}
    frozen_heads = [name for name, p in heads.named_parameters() if not p.requires_grad]
    optimised = {id(p) for opt in optimizers.values() for g in opt.param_groups
                 for p in g["params"]}
    if frozen_heads or optimised != head_params:
        raise ProtocolError("the optimisers must update exactly the probe heads' parameters")


# --- heads --------------------------------------------------------------------------------

class LinearProbe(nn.Module):
    """BatchNorm without learned parameters (feature standardisation), then one Linear.

    Input (B, dim) features, output (B, num_classes) logits. The Linear starts from
    N(0, 0.01²) weights and zero bias, drawn from ``generator`` so that a probe's start does
    not depend on which other probes are built beside it.
    """

    def __init__(self, dim, num_classes, generator=None):
        super().__init__()
        self.norm = nn.BatchNorm1d(dim, affine=False)
        self.fc = nn.Linear(dim, num_classes)
        with torch.no_grad():
            self.fc.weight.normal_(0.0, 0.01, generator=generator)
            self.fc.bias.zero_()

    def forward(self, x):
        return self.fc(self.norm(x))


def build_heads(dims, num_classes, seed=0):
    """One :class:`LinearProbe` per layer, each initialised from its own (seed, layer) stream.

    Args:
        dims: layer -> feature size (``FrozenEncoder.dims``).
        num_classes: classes of the labelled dataset.
        seed: with the layer's index, seeds that layer's initial weights.

    Returns:
        ``nn.ModuleDict`` layer -> LinearProbe.
    """
    heads = nn.ModuleDict()
    for name, dim in dims.items():
        gen = torch.Generator().manual_seed(seed * len(PROBE_LAYERS) + PROBE_LAYERS.index(name))
        heads[name] = LinearProbe(dim, num_classes, gen)
    return heads


# --- training and evaluation --------------------------------------------------------------

@dataclass
class SGDRecipe:
    """The probe's optimiser and schedule (the ``optim`` section of a probe config).

    SGD with momentum, multiplied by ``lr_gamma`` at each of ``lr_steps``.
    """

    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 256
    iterations: int = 140_000
    lr_steps: tuple = (40_000, 80_000, 120_000)
    lr_gamma: float = 0.1

    def check_data(self, train_size):
        """Raise ProbeError unless ``train_size`` training images fill at least one batch."""
        if train_size < self.batch_size:
            raise ProbeError(f"{train_size} training images, fewer than one batch of "
                             f"{self.batch_size}; lower optim.batch_size")


def topk_correct(logits, labels, ks=(1, 5)):
    """{k: number of rows whose label is among the k highest logits}; k is capped at the classes."""
    top = logits.topk(min(max(ks), logits.shape[1]), dim=1).indices  # (B, kmax)
    hits = top == labels[:, None]  # (B, kmax)
    return {k: int(hits[:, :k].any(dim=1).sum()) for k in ks}


@torch.no_grad()
def evaluate_probes(encoder, heads, dataset, batch_size=256, workers=0):
    """Top-1 / top-5 accuracy (%) of every head on ``dataset`` (centre crops, fixed order).

    Returns:
        {layer: {"top1": %, "top5": %}}.
    """
    # In a distributed run each rank's heads normalised their own slices: one set of heads is
    # evaluated, with the running statistics averaged over ranks (as saved at the end).
    distributed.average_([b for b in heads.buffers() if b.is_floating_point()])
    was_training = heads.training
    heads.eval()  # the heads' BatchNorm uses its running statistics
    device = encoder.device
    correct = {name: {1: 0, 5: 0} for name in heads}
    count = 0
    shard = eval_loader(dataset, batch_size, workers, rank=distributed.rank(),
                        world_size=distributed.world_size())
    for rgb, labels in tqdm(shard, desc="probe eval", leave=False,
                            disable=None if distributed.rank() == 0 else True):
        labels = labels.to(device)
        features = encoder(rgb.to(device))
        for name, head in heads.items():
            for k, n in topk_correct(head(features[name]), labels).items():
                correct[name][k] += n
        count += labels.shape[0]
    heads.train(was_training)
    # Under torchrun every rank saw a shard: add the counts up.
    totals = distributed.sum_floats({"count": count, **{f"{name}/{k}": n for name, c in
                                                       correct.items() for k, n in c.items()}})
    count = totals["count"]
    correct = {name: {k: totals[f"{name}/{k}"] for k in (1, 5)} for name in correct}
    return {name: {"top1": 100.0 * c[1] / max(count, 1), "top5": 100.0 * c[5] / max(count, 1)}
            for name, c in correct.items()}


def probe_step(encoder, heads, optimizers, rgb, labels):
    """One SGD step of every head on one frozen forward pass of the batch.

    Args:
        encoder: a :class:`FrozenEncoder` (raises ProtocolError unless in eval mode).
        heads: ``nn.ModuleDict`` layer -> head; optimizers: layer -> its optimiser.
        rgb: (B, 3, H, W) sRGB batch on the encoder's device; labels: (B,) class indices.

    Returns:
        {layer: loss}, detached scalar tensors on the device: the step never waits for the
        device (the caller reads them where it logs).
    """
    features = encoder(rgb)  # layer -> (B, dims[layer]), computed without autograd
    losses = {}
    for name, head in heads.items():
        # Separate backward passes keep each head's update independent of the others.
        loss = F.cross_entropy(head(features[name]), labels)
        optimizers[name].zero_grad(set_to_none=True)
        loss.backward()
        # Under torchrun each rank saw its slice of the batch: the mean of their gradients
        # is the whole batch's, so every rank's head takes the same step.
        distributed.average_([p.grad for p in head.parameters()])
        optimizers[name].step()
        losses[name] = loss.detach()
    check_no_encoder_grad(encoder)
    return losses


def make_optimizers(heads, recipe):
    """One SGD optimiser and step schedule per head: {layer: optimiser}, {layer: scheduler}."""
    optimizers = {name: torch.optim.SGD(head.parameters(), lr=recipe.lr,
                                        momentum=recipe.momentum,
                                        weight_decay=recipe.weight_decay)
                  for name, head in heads.items()}
    schedulers = {name: torch.optim.lr_scheduler.MultiStepLR(opt, list(recipe.lr_steps),
                                                             recipe.lr_gamma)
                  for name, opt in optimizers.items()}
    return optimizers, schedulers


def train_probes(encoder, heads, train_set, recipe, seed=0, workers=0, val_set=None,
                 eval_every=0, log_every=0, writer=None, log=None):
    """Train every head on the frozen encoder's features, one encoder forward per batch.

    Each head has its own SGD optimiser and schedule, and the batches depend only on
    ``seed``, so probing conv1..conv5 together trains each head exactly as probing its layer
    alone does.

    Args:
        encoder: a :class:`FrozenEncoder`.
        heads: ``nn.ModuleDict`` from :func:`build_heads`, on the encoder's device.
        train_set: labelled dataset of (rgb (3, H, W), label) with training augmentation.
        recipe: an :class:`SGDRecipe`.
        seed: data order and augmentation seed.
        val_set: optional labelled dataset evaluated every ``eval_every`` steps.
        log_every: steps between loss logs (TensorBoard ``probe/<layer>/train_loss``).
        writer: optional TensorBoard ``SummaryWriter``.
        log: optional callable taking a message line.

    Returns:
        {layer: {"train_loss": mean loss over the last logging window}}.

    Raises:
        ProtocolError: the encoder was trainable, left eval mode, received a gradient, or
            changed.
    """
    before = snapshot(encoder.model)
    optimizers, schedulers = make_optimizers(heads, recipe)
    check_only_heads_train(encoder, heads, optimizers)

    device = encoder.device
    loader = train_loader(train_set, recipe.batch_size, seed, 0, workers, device,
                          distributed.rank(), distributed.world_size())
    window = {name: 0.0 for name in heads}  # loss sums on the device since the last log
    window_steps = 0
    last = {}
    heads.train()
    bar = tqdm(total=recipe.iterations, desc=f"probe {','.join(heads)}", unit="step",
               disable=None if distributed.rank() == 0 else True, dynamic_ncols=True)
    for step, (rgb, labels) in zip(range(1, recipe.iterations + 1), loader):
        losses = probe_step(encoder, heads, optimizers, rgb.to(device, non_blocking=True),
                            labels.to(device, non_blocking=True))
        for name, loss in losses.items():
            schedulers[name].step()
            window[name] = window[name] + loss.float()
        window_steps += 1
        bar.update(1)
        if log_every and (step % log_every == 0 or step == recipe.iterations):
            last = {name: float(v) / window_steps for name, v in window.items()}
            window, window_steps = {name: 0.0 for name in heads}, 0
            bar.set_postfix({name: f"{v:.3f}" for name, v in last.items()})
            if writer is not None:
                for name, v in last.items():
                    writer.add_scalar(f"probe/{name}/train_loss", v, step)
                lr = next(iter(schedulers.values())).get_last_lr()[0]
                writer.add_scalar("probe/lr", lr, step)
            if log is not None and bar.disable:
                log(f"step {step}/{recipe.iterations} loss " +
                    " ".join(f"{name}={v:.4f}" for name, v in last.items()))
        if val_set is not None and eval_every and step % eval_every == 0 \
                and step < recipe.iterations:
            _log_accuracy(evaluate_probes(encoder, heads, val_set, recipe.batch_size, workers),
                          step, writer, log)
    bar.close()
    # Each rank's heads normalised their own slices: their running statistics are averaged.
    distributed.average_([b for b in heads.buffers() if b.is_floating_point()])
    encoder.check_eval()
    check_unchanged(encoder.model, before)
    if not last and window_steps:
        last = {name: float(v) / window_steps for name, v in window.items()}
    return {name: {"train_loss": v} for name, v in last.items()}


def _log_accuracy(results, step, writer, log):
    if writer is not None:
        for name, r in results.items():
            writer.add_scalar(f"probe/{name}/top1", r["top1"], step)
            writer.add_scalar(f"probe/{name}/top5", r["top5"], step)
    if log is not None:
        log(f"step {step} val top-1 " +
            " ".join(f"{name}={r['top1']:.2f}" for name, r in results.items()))


def probe_sgd(encoder, train_set, val_set, num_classes, recipe, seed=0, workers=0,
              eval_every=0, log_every=0, writer=None, log=None):
    """Train linear heads on ``train_set`` and report their accuracy on ``val_set``.

    See :func:`train_probes` for the arguments.

    Returns:
        ({layer: {"dim", "top1", "top5", "train_loss"}}, {layer: trained
        :class:`~splitbrain.probe.heads.LinearHead`, on the CPU}).
    """
    heads = build_heads(encoder.dims, num_classes, seed).to(encoder.device)
    losses = train_probes(encoder, heads, train_set, recipe, seed, workers, val_set,
                          eval_every, log_every, writer, log)
    results = evaluate_probes(encoder, heads, val_set, recipe.batch_size, workers)
    _log_accuracy(results, recipe.iterations, writer, None)
    return ({name: {"dim": encoder.dims[name], **results[name], **losses.get(name, {})}
             for name in encoder.layers},
            {name: from_linear_probe(heads[name]) for name in encoder.layers})
