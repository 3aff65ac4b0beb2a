"""Linear probes on frozen conv1..conv5 features (DESIGN §3).

The protocol of the split-brain paper's ImageNet tables: the encoder is frozen in eval mode
(BatchNorm statistics too); each layer's activation is resized to about 9k values; a BatchNorm
without learned parameters (feature standardisation) and one Linear layer are trained on top
with SGD. Every probe reads the same frozen forward pass, so probing conv1..conv5 together
costs one encoder forward per batch, not five.

The probe checks its own protocol, as MoCo's ``main_lincls.py`` does: only head parameters are
trainable before training starts, the encoder is in eval mode at every step and receives no
gradient, and after training its parameters and buffers (BatchNorm statistics included) are
compared bitwise against a snapshot taken before.

Results are dicts ``{layer: {"top1": %, "top5": %, ...}}``; :func:`format_table` and
:func:`save_results` turn them into a markdown table, results.csv and results.json.
"""

import csv
import itertools
import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from . import checkpoint as ckpt
from . import color
from .compat import torchvision
from .data import build_dataset
from .engine import PRECISIONS, autocast, eval_loader, train_loader
from .models import AlexNetColorization, SplitBrain, SplitBrainHalf, build_model

T = torchvision.transforms.v2

PROBE_LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5")
# Side of the square map a layer is resized to, so every probe sees about 9k values at full
# AlexNet widths: conv1 96×10×10 = 9600, conv2 256×6×6 = 9216, conv3/conv4 384×5×5 = 9600,
# conv5 256×6×6 = 9216.
PROBE_SIZES = {"conv1": 10, "conv2": 6, "conv3": 5, "conv4": 5, "conv5": 6}
RESIZE_MODES = ("bilinear", "avgpool")  # official Caffe probe | VISSL
# Models that take raw colour channels and have AlexNet's conv1..conv5; a SplitBrainHalf is one
# half trained alone (it picks its own channels out of the full Lab input).
PROBE_MODEL_TYPES = (AlexNetColorization, SplitBrain, SplitBrainHalf)


class ProbeError(ValueError):
    """A request the probe cannot serve: no encoder to probe, an unknown layer, bad data."""


class ProtocolError(RuntimeError):
    """The frozen-encoder protocol was broken: the encoder trained, changed or left eval mode."""


# --- the encoder ------------------------------------------------------------------------------

def check_encoder(model, source="the model"):
    """Raise ProbeError unless ``model`` has AlexNet conv1..conv5 taps the probe can read."""
    if not isinstance(model, PROBE_MODEL_TYPES):
        raise ProbeError(
            f"{source} ({type(model).__name__}) has no AlexNet conv1..conv5 encoder to probe; "
            f"the linear probe reads the colorization AlexNet (alexnet_colorization*) and "
            f"split-brain models (splitbrain_alexnet*)")


def parse_layers(layers, model=None):
    """Validate layer names; "all" or a comma-separated string is accepted.

    Args:
        layers: "all", "conv4", "conv2,conv4" or a sequence of names.
        model: if given, the names must also be feature taps of this model.

    Returns:
        The names as a tuple in conv1..conv5 order, without repeats.
    """
    if isinstance(layers, str):
        layers = PROBE_LAYERS if layers.strip() == "all" else layers.split(",")
    names = [name.strip() for name in layers if name.strip()]
    valid = [name for name in PROBE_LAYERS
             if model is None or name in getattr(model, "feature_layers", ())]
    unknown = [name for name in names if name not in valid]
    if unknown or not names:
        what = f"unknown layer(s) {unknown}" if unknown else "no layer given"
        raise ProbeError(f"{what}; valid: {', '.join(valid)}, or all")
    return tuple(name for name in PROBE_LAYERS if name in names)


def encoder_input(model, rgb):
    """The raw colour channels ``model`` takes, from an sRGB batch (B, 3, H, W).

    A 1-channel model (the colorization AlexNet) gets L (B, 1, H, W) in [0, 100]; a 3-channel
    model (split-brain, either a whole model or one half) gets the full Lab (B, 3, H, W) and
    selects each half's channels itself.
    """
    rgb = color.to_float_rgb(rgb)
    if model.in_channels == 1:
        return color.lightness(rgb)
    if model.in_channels == 3:
        return color.rgb_to_lab(rgb)
    raise ProbeError(f"{type(model).__name__} takes {model.in_channels} channels; the probe "
                     f"feeds L (1 channel) or Lab (3 channels)")


def resize_features(x, size, mode="bilinear"):
    """Resize a map to size×size and flatten it: (B, C, h, w) -> (B, C * size * size).

    "bilinear" interpolates (the official probe's choice; plain interpolation, no
    anti-aliasing, so shrinking conv1 55×55 to 10×10 samples rather than averages);
    "avgpool" is adaptive average pooling (VISSL), which averages every input position.
    """
    if mode == "bilinear":
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    elif mode == "avgpool":
        x = F.adaptive_avg_pool2d(x, size)
    else:
        raise ProbeError(f"unknown resize mode {mode!r}; valid: {', '.join(RESIZE_MODES)}")
    return x.flatten(1)  # (B, C * size * size)


class FrozenEncoder:
    """A model's conv taps, frozen in eval mode, resized and flattened for linear probes.

    Not an ``nn.Module`` on purpose: a ``.train()`` meant for the heads can never reach it.

    Args:
        model: a colorization AlexNet or split-brain model (see :data:`PROBE_MODEL_TYPES`).
        layers: names among conv1..conv5 (or "all").
        resize: "bilinear" or "avgpool".
        precision: "fp32", "bf16" or "fp16" autocast of the encoder forward; the probe
            features are always returned in fp32.

    Attributes:
        layers: the probed layers, in conv1..conv5 order.
        dims: layer -> probe feature size, channels × PROBE_SIZES[layer]².
    """

    def __init__(self, model, layers="all", resize="bilinear", precision="fp32"):
        check_encoder(model)
        if resize not in RESIZE_MODES:
            raise ProbeError(f"unknown resize mode {resize!r}; valid: {', '.join(RESIZE_MODES)}")
        if precision not in PRECISIONS:
            raise ProbeError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
        self.model = model.eval().requires_grad_(False)
        self.layers = parse_layers(layers, model)
        self.resize, self.precision = resize, precision
        self.dims = {name: model.feature_channels[name] * PROBE_SIZES[name] ** 2
                     for name in self.layers}

    @property
    def device(self):
        return next(self.model.parameters()).device

    def to(self, device):
        self.model.to(device)
        return self

    def check_eval(self):
        """Raise ProtocolError if any module of the encoder is in training mode."""
        training = [name or "(root)" for name, m in self.model.named_modules() if m.training]
        if training:
            raise ProtocolError(f"the frozen encoder must stay in eval mode (BatchNorm "
                                f"statistics frozen), but {training[:3]} are training")

    @torch.no_grad()
    def __call__(self, rgb):
        """sRGB batch (B, 3, H, W) in [0, 1] -> {layer: (B, dims[layer]) fp32 features}."""
        self.check_eval()
        x = encoder_input(self.model, rgb)
        with autocast(rgb.device, self.precision):
            maps = self.model.forward_features(x, self.layers)  # layer -> (B, C, h, w)
        return {name: resize_features(m.float(), PROBE_SIZES[name], self.resize)
                for name, m in maps.items()}


def load_encoder(state=None, init="checkpoint", arch=None, seed=0):
    """Rebuild the model of a checkpoint, or a random-weights model of an architecture.

    Args:
        state: a checkpoint dict from :func:`splitbrain.checkpoint.load`, or None.
        init: "checkpoint" (the checkpoint's weights) or "random" (the baseline: the same
            architecture with freshly initialised weights, seeded by ``seed``).
        arch: model name for ``init="random"`` without a checkpoint.

    Returns:
        (model, spec) where spec is ``{"name", "kwargs"}``.

    Raises:
        ProbeError: nothing to build, an unknown architecture, or a model without an encoder.
    """
    if init not in ("checkpoint", "random"):
        raise ProbeError(f"unknown init {init!r}; valid: checkpoint, random")
    if state is None:
        if init == "checkpoint":
            raise ProbeError("give a checkpoint (--ckpt FILE), or --init random --arch NAME "
                             "for the random-weights baseline")
        if not arch:
            raise ProbeError("--init random needs --arch NAME (e.g. alexnet_colorization_small) "
                             "or a checkpoint whose architecture to copy")
        spec = {"name": arch, "kwargs": {}}
    else:
        spec = state.get("model")
        if not isinstance(spec, dict) or "name" not in spec:
            raise ProbeError(f"the checkpoint (task {state.get('task')!r}) records no model; "
                             f"it holds no encoder to probe")
        spec = {"name": spec["name"], "kwargs": dict(spec.get("kwargs") or {})}
        if arch and arch != spec["name"]:
            raise ProbeError(f"--arch {arch} contradicts the checkpoint's model "
                             f"{spec['name']}; leave --arch out to use the checkpoint's")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            model = build_model(spec["name"], **spec["kwargs"])
        except (ValueError, TypeError) as err:
            raise ProbeError(f"cannot build model {spec['name']!r}: {err}") from None
    check_encoder(model, f"model {spec['name']!r}")
    if state is not None and init == "checkpoint":
        ckpt.load_state_dict(model, state["state_dict"], "the checkpoint")
    return model, spec


# --- labelled data ------------------------------------------------------------------------

def probe_transform(short_side, crop, train):
    """Short side resized to ``short_side``, then a random crop + flip (train) or a centre crop.

    The paper's ImageNet recipe is resize 256, crop 227; small images (CIFAR-10, STL-10) are
    resized up so the encoder sees them at its working size.
    """
    steps = [T.ToImage(), T.Resize(short_side, antialias=True)]
    steps += [T.RandomCrop(crop), T.RandomHorizontalFlip()] if train else [T.CenterCrop(crop)]
    return T.Compose(steps + [T.ToDtype(torch.float32, scale=True)])


def check_labelled_folder(root):
    """Check ROOT/train and ROOT/val are ImageFolder trees with the same class subfolders.

    Returns:
        The class names, sorted (the label order of ImageFolder).

    Raises:
        ProbeError: a split folder is missing, has no class subfolders, or the two splits'
            classes differ.
    """
    root = Path(root)
    classes = {}
    for split in ("train", "val"):
        folder = root / split
        if not folder.is_dir():
            raise ProbeError(f"{folder} not found: a labelled dataset folder holds train/ and "
                             f"val/, each with one subfolder of images per class "
                             f"(ImageFolder layout)")
        # Hidden folders (.ipynb_checkpoints, ...) are not classes, as for LabelledFolder.
        classes[split] = sorted(p.name for p in folder.iterdir()
                                if p.is_dir() and not p.name.startswith("."))
        if not classes[split]:
            raise ProbeError(f"{folder} has no class subfolders; a labelled dataset needs "
                             f"{folder}/<class>/<image> (ImageFolder layout)")
    train, val = set(classes["train"]), set(classes["val"])
    if train != val:
        raise ProbeError(f"the classes of {root / 'val'} differ from those of "
                         f"{root / 'train'}: only in train {sorted(train - val)}, only in val "
                         f"{sorted(val - train)}; labels are class-folder indices, so both "
                         f"splits need the same class folders")
    return classes["train"]


def probe_datasets(source, crop, short_side, root="./data", download=False, train_length=1024,
                   val_length=256, seed=0, augment=True):
    """The labelled training and validation sets of a probe.

    Args:
        source: "sample" (the bundled photos; class = source photo, train and val crops from
            disjoint regions), "cifar10", "stl10", or a folder with train/ and val/ in
            ImageFolder layout.
        crop: side of the crops fed to the encoder.
        short_side: images are resized to this short side before cropping (not for "sample",
            whose crops are taken at the photos' own resolution).
        root, download: where cifar10 / stl10 live, and whether torchvision may fetch them.
        train_length, val_length: crops per epoch of "sample".
        augment: random crop + flip for the training set (else centre crops, or for
            "sample" crops fixed by (seed, index)).

    Returns:
        (train_set, val_set, class names); items are (rgb (3, crop, crop) in [0, 1], label).
    """
    if source == "sample":
        train = build_dataset("sample", "train", crop, train=augment, length=train_length,
                              labelled=True, seed=seed)
        val = build_dataset("sample", "val", crop, train=False, length=val_length,
                            labelled=True, seed=seed)
        return train, val, list(train.classes)
    if source not in ("cifar10", "stl10"):
        check_labelled_folder(source)
    train = build_dataset(source, "train", crop, train=True, labelled=True, root=root,
                          download=download)
    val = build_dataset(source, "val", crop, train=False, labelled=True, root=root,
                        download=download)
    # The probe's own crops: the datasets' defaults crop without resizing first.
    train.transform = probe_transform(short_side, crop, train=augment)
    val.transform = probe_transform(short_side, crop, train=False)
    if list(train.classes) != list(val.classes):
        raise ProbeError(f"training and validation classes differ: {train.classes[:5]}... vs "
                         f"{val.classes[:5]}...")
    return train, val, list(train.classes)


# --- the protocol's checks ----------------------------------------------------------------

def snapshot(model):
    """A CPU copy of every parameter and buffer (BatchNorm statistics, non-persistent too)."""
    return {name: t.detach().to("cpu", copy=True)
            for name, t in itertools.chain(model.named_parameters(), model.named_buffers())}


def check_unchanged(model, before):
    """Raise ProtocolError unless every parameter and buffer equals ``before`` bitwise."""
    now = dict(itertools.chain(model.named_parameters(), model.named_buffers()))
    changed = sorted(name for name, t in before.items()
                     if name not in now or not torch.equal(now[name].detach().cpu(), t))
    if changed or set(now) != set(before):
        raise ProtocolError(f"the frozen encoder changed during probing: {len(changed)} "
                            f"tensors differ (e.g. {changed[:3]})")


def check_only_heads_train(encoder, heads, optimizers):
    """Raise ProtocolError unless exactly the heads' parameters are trainable and optimised."""
    trainable = [name for name, p in encoder.model.named_parameters() if p.requires_grad]
    if trainable:
        raise ProtocolError(f"encoder parameters must be frozen, but {trainable[:3]} "
                            f"require grad")
    head_params = {id(p) for p in heads.parameters()}
    frozen_heads = [name for name, p in heads.named_parameters() if not p.requires_grad]
    optimised = {id(p) for opt in optimizers.values() for g in opt.param_groups
                 for p in g["params"]}
    if frozen_heads or optimised != head_params:
        raise ProtocolError("the optimisers must update exactly the probe heads' parameters")


def check_no_encoder_grad(encoder):
    """Raise ProtocolError if a gradient reached the encoder."""
    reached = [name for name, p in encoder.model.named_parameters() if p.grad is not None]
    if reached:
        raise ProtocolError(f"gradients reached the frozen encoder: {reached[:3]}")


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
    was_training = heads.training
    heads.eval()  # the heads' BatchNorm uses its running statistics
    device = encoder.device
    correct = {name: {1: 0, 5: 0} for name in heads}
    count = 0
    for rgb, labels in tqdm(eval_loader(dataset, batch_size, workers), desc="probe eval",
                            leave=False, disable=None):
        labels = labels.to(device)
        features = encoder(rgb.to(device))
        for name, head in heads.items():
            for k, n in topk_correct(head(features[name]), labels).items():
                correct[name][k] += n
        count += labels.shape[0]
    heads.train(was_training)
    return {name: {"top1": 100.0 * c[1] / max(count, 1), "top5": 100.0 * c[5] / max(count, 1)}
            for name, c in correct.items()}


def probe_step(encoder, heads, optimizers, rgb, labels):
    """One SGD step of every head on one frozen forward pass of the batch.

    Args:
        encoder: a :class:`FrozenEncoder` (raises ProtocolError unless in eval mode).
        heads: ``nn.ModuleDict`` layer -> head; optimizers: layer -> its optimiser.
        rgb: (B, 3, H, W) sRGB batch on the encoder's device; labels: (B,) class indices.

    Returns:
        {layer: loss (float)}.
    """
    features = encoder(rgb)  # layer -> (B, dims[layer]), computed without autograd
    losses = {}
    for name, head in heads.items():
        # Separate backward passes keep each head's update independent of the others.
        loss = F.cross_entropy(head(features[name]), labels)
        optimizers[name].zero_grad(set_to_none=True)
        loss.backward()
        optimizers[name].step()
        losses[name] = loss.item()
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
    loader = train_loader(train_set, recipe.batch_size, seed, 0, workers, device)
    window = {name: [] for name in heads}
    last = {}
    heads.train()
    bar = tqdm(total=recipe.iterations, desc=f"probe {','.join(heads)}", unit="step",
               disable=None, dynamic_ncols=True)
    for step, (rgb, labels) in zip(range(1, recipe.iterations + 1), loader):
        losses = probe_step(encoder, heads, optimizers, rgb.to(device, non_blocking=True),
                            labels.to(device))
        for name, loss in losses.items():
            schedulers[name].step()
            window[name].append(loss)
        bar.update(1)
        if log_every and (step % log_every == 0 or step == recipe.iterations):
            last = {name: sum(v) / len(v) for name, v in window.items()}
            window = {name: [] for name in heads}
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
    encoder.check_eval()
    check_unchanged(encoder.model, before)
    if not last:
        last = {name: sum(v) / len(v) for name, v in window.items() if v}
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
        {layer: {"dim", "top1", "top5", "train_loss"}}.
    """
    heads = build_heads(encoder.dims, num_classes, seed).to(encoder.device)
    losses = train_probes(encoder, heads, train_set, recipe, seed, workers, val_set,
                          eval_every, log_every, writer, log)
    results = evaluate_probes(encoder, heads, val_set, recipe.batch_size, workers)
    _log_accuracy(results, recipe.iterations, writer, None)
    return {name: {"dim": encoder.dims[name], **results[name], **losses.get(name, {})}
            for name in encoder.layers}


# --- reporting ----------------------------------------------------------------------------

def format_table(results):
    """Markdown table of a results dict, one row per layer, accuracies to two decimals."""
    columns = list(dict.fromkeys(k for r in results.values() for k in r))
    rows = ["| layer | " + " | ".join(columns) + " |",
            "|---|" + "---|" * len(columns)]
    for name, r in results.items():
        cells = [_cell(r.get(k, "")) for k in columns]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _cell(value):
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def save_results(results, out_dir, meta=None):
    """Write ``results.csv`` (one row per layer) and ``results.json`` (with ``meta``)."""
    out_dir = Path(out_dir)
    columns = list(dict.fromkeys(k for r in results.values() for k in r))
    with open(out_dir / "results.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["layer", *columns])
        for name, r in results.items():
            writer.writerow([name, *(r.get(k, "") for k in columns)])
    with open(out_dir / "results.json", "w") as f:
        json.dump({"layers": results, **(meta or {})}, f, indent=2)
