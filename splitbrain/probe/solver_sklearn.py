"""The probe's second solver, for small datasets: cached features, logistic regression, k-NN.

The frozen encoder runs once over the training and validation sets; the features of every
probed layer are kept in memory (resized as for the SGD solver, see
:mod:`splitbrain.probe.encoder`). Per layer, a scikit-learn ``LogisticRegression`` (lbfgs) is
fitted on standardised features, its inverse regularisation C chosen on a held-out part of the
training features and then refitted on all of them; and a k-nearest-neighbour classifier votes
with the training features closest in cosine similarity.

Memory is N × dims[layer] floats per layer (about 9.6k per image at full width), so this is
for datasets of thousands of images, not ImageNet.
"""

import warnings

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from tqdm import tqdm

from ..loaders import eval_loader
from .encoder import check_unchanged, snapshot
from .heads import from_sklearn


@torch.no_grad()
def extract_features(encoder, dataset, batch_size=256, workers=0, desc="features"):
    """Every probed layer's features of ``dataset``, in one pass of the frozen encoder.

    Items are seeded by their index (:func:`splitbrain.loaders.eval_loader`), so an augmented
    dataset gives the same features on every call.

    Returns:
        ({layer: (N, dims[layer]) float32 numpy array}, labels (N,) int64 numpy array).
    """
    before = snapshot(encoder.model)
    chunks = {name: [] for name in encoder.layers}
    labels = []
    for rgb, y in tqdm(eval_loader(dataset, batch_size, workers), desc=desc, leave=False,
                       disable=None):
        for name, f in encoder(rgb.to(encoder.device)).items():  # (B, dims[name])
            chunks[name].append(f.cpu().numpy())
        labels.append(torch.as_tensor(y).numpy())
    check_unchanged(encoder.model, before)
    return ({name: np.concatenate(c) for name, c in chunks.items()},
            np.concatenate(labels).astype(np.int64))


def _topk(scores, labels, ks=(1, 5)):
    """{"top1", "top5"} accuracy (%) of per-class scores (N, K) against labels (N,)."""
    order = np.argsort(-scores, axis=1, kind="stable")  # (N, K) best class first
    hits = order[:, :max(ks)] == labels[:, None]
    return {f"top{k}": 100.0 * float(hits[:, :k].any(axis=1).mean()) for k in ks}


def _scores(model, x, num_classes):
    """predict_proba as (N, num_classes), with zero columns for classes unseen in training."""
    out = np.zeros((x.shape[0], num_classes))
    out[:, model.classes_] = model.predict_proba(x)
    return out


def logistic_probe(train_x, train_y, val_x, val_y, num_classes, Cs=(0.01, 0.1, 1.0),
                   holdout=0.2, max_iter=1000, seed=0):
    """Multinomial logistic regression on standardised features; C picked on held-out data.

    Args:
        train_x, train_y: (N, D) features and (N,) labels to fit on.
        val_x, val_y: (M, D) and (M,) to report accuracy on.
        num_classes: number of classes (for top-5 over all of them).
        Cs: inverse regularisation strengths tried.
        holdout: fraction of the training features (stratified) held out to choose C; the
            chosen C is then refitted on all training features.
        max_iter: lbfgs iterations.
        seed: the held-out split's seed.

    Returns:
        ({"top1", "top5", "C", "holdout_top1"}, the fitted scaler + regression pipeline).
    """
    def fit(x, y, C, model=None):
        # Standardisation plays the part of the SGD probe's affine-free BatchNorm.
        model = model or make_pipeline(StandardScaler(), LogisticRegression(
            C=C, solver="lbfgs", max_iter=max_iter, warm_start=True))
        model.set_params(logisticregression__C=C)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return model.fit(x, y)

    held = {}
    if len(Cs) > 1:  # with one C there is nothing to choose
        fit_x, held_x, fit_y, held_y = train_test_split(train_x, train_y, test_size=holdout,
                                                        random_state=seed, stratify=train_y)
        model = None
        for C in sorted(Cs):  # strongest regularisation first; each warm-starts the next
            model = fit(fit_x, fit_y, C, model)
            held[C] = _topk(_scores(model, held_x, num_classes), held_y)["top1"]
    best = max(sorted(Cs), key=lambda C: held.get(C, 0.0))  # ties: the stronger regularisation
    final = fit(train_x, train_y, best)
    return ({**_topk(_scores(final, val_x, num_classes), val_y), "C": float(best),
             "holdout_top1": held.get(best)},  # None: a single C, nothing held out
            final)


def knn_accuracy(train_x, train_y, val_x, val_y, num_classes, k=20, temperature=0.07,
                 chunk=1024):
    """Weighted k-nearest-neighbour accuracy in cosine similarity.

    Each of a query's k most similar training features votes for its label with weight
    exp(similarity / temperature), the rule of Wu et al. (CVPR 2018) that DINO also uses.

    Returns:
        {"top1", "top5"} in %.
    """
    bank = F.normalize(torch.from_numpy(train_x), dim=1)  # (N, D)
    bank_y = torch.from_numpy(train_y)
    k = min(k, bank.shape[0])
    scores = []
    for start in range(0, val_x.shape[0], chunk):
        q = F.normalize(torch.from_numpy(val_x[start:start + chunk]), dim=1)  # (B, D)
        sim, idx = (q @ bank.T).topk(k, dim=1)  # (B, k)
        votes = torch.zeros(q.shape[0], num_classes, dtype=torch.float64)
        votes.scatter_add_(1, bank_y[idx], (sim.double() / temperature).exp())
        scores.append(votes.numpy())
    return _topk(np.concatenate(scores), val_y)


def probe_sklearn(encoder, train_set, val_set, num_classes, batch_size=256, workers=0,
                  Cs=(0.01, 0.1, 1.0), holdout=0.2, max_iter=1000, knn_k=20,
                  knn_temperature=0.07, seed=0, log=None, writer=None):
    """Logistic-regression and k-NN probes of every layer from one cached feature pass.

    Args:
        encoder: a :class:`splitbrain.probe.encoder.FrozenEncoder`.
        train_set, val_set: labelled datasets of (rgb (3, H, W), label); their items are
            seeded by index, so an augmented training set gives one fixed view per image.
        num_classes: classes of the labelled dataset.
        batch_size, workers: of the feature pass.
        Cs, holdout, max_iter, seed: see :func:`logistic_probe`.
        knn_k, knn_temperature: see :func:`knn_accuracy`.
        log: optional callable taking a message line.
        writer: optional TensorBoard ``SummaryWriter``; gets ``probe/<layer>/<metric>``.

    Returns:
        ({layer: {"dim", "top1", "top5", "C", "holdout_top1", "knn_top1", "knn_top5"}},
        {layer: the logistic regression as a :class:`~splitbrain.probe.heads.LinearHead`}).
    """
    train_x, train_y = extract_features(encoder, train_set, batch_size, workers, "train features")
    val_x, val_y = extract_features(encoder, val_set, batch_size, workers, "val features")
    results, heads = {}, {}
    for name in tqdm(encoder.layers, desc="fit", leave=False, disable=None):
        r, fitted = logistic_probe(train_x[name], train_y, val_x[name], val_y, num_classes, Cs,
                                   holdout, max_iter, seed)
        heads[name] = from_sklearn(fitted, num_classes)
        knn = knn_accuracy(train_x[name], train_y, val_x[name], val_y, num_classes, knn_k,
                           knn_temperature)
        results[name] = {"dim": encoder.dims[name], **r,
                         "knn_top1": knn["top1"], "knn_top5": knn["top5"]}
        if log is not None:
            log(f"{name}: logistic top-1 {r['top1']:.2f} (C={r['C']:g}), "
                f"k-NN top-1 {knn['top1']:.2f}")
    if writer is not None:
        for name, r in results.items():
            for key in ("top1", "top5", "knn_top1", "knn_top5"):
                writer.add_scalar(f"probe/{name}/{key}", r[key], 0)
    return results, heads
