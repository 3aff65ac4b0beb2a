"""The study's report: probe and colour tables with the seeds' spread, the plot, the files.

Reads an :class:`splitbrain.study.Outcome`; writes study_<split>.md, .json, .png and one
TensorBoard run per row (top-1 by layer). Split from :mod:`splitbrain.study`, which runs the
stages.
"""

import json
import math
import os
from pathlib import Path

from . import checkpoint as ckpt

LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5")
COLOUR_METRICS = ("auc", "auc_rebalanced", "psnr", "colourfulness")


def mean_spread(values):
    """(mean, sample standard deviation (0 for one value), n) of a list of numbers."""
    n = len(values)
    if not n:
        return math.nan, math.nan, 0
    mean = sum(values) / n
    spread = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return mean, spread, n


def summarise(study, outcome, metric="top1"):
    """{row: {layer: (mean, spread, n)}} of a probe metric over the seeds that finished."""
    table = {}
    for name in study.rows:
        per_seed = outcome.probes.get(name, {})
        table[name] = {layer: mean_spread([r[layer][metric] for r in per_seed.values()
                                           if layer in r]) for layer in LAYERS}
    return table


def _cell(mean, spread, n, digits=1, empty="failed"):
    if n == 0:
        return empty
    return f"{mean:.{digits}f} ± {spread:.{digits}f}" if n > 1 else f"{mean:.{digits}f}"


def format_tables(study, outcome, eval_split):
    """The markdown report: probe top-1 per layer and row, then colour quality."""
    seeds = study.budget["seeds"]
    over = (f"mean ± standard deviation over {len(seeds)} seeds ({', '.join(map(str, seeds))})"
            if len(seeds) > 1 else f"seed {seeds[0]}")
    lines = [f"Linear-probe top-1 (%) on CIFAR-10 {eval_split}, {over}:", "",
             "| row | " + " | ".join(LAYERS) + " |", "|---" * (len(LAYERS) + 1) + "|"]
    failed = {f["row"] for f in outcome.failures}
    # A row with no result: "failed" when a stage of it raised, else "not run" (a study
    # stopped part-way, or a --report while it runs).
    empty = {name: "failed" if name in failed else "not run" for name in study.rows}
    for name, layers in summarise(study, outcome).items():
        cells = [_cell(*layers[layer], empty=empty[name]) for layer in LAYERS]
        counts = {layers[layer][2] for layer in LAYERS}
        seeds = len(study.budget["seeds"])
        note = "" if counts == {seeds} else f" ({min(counts)} of {seeds} seeds)"
        lines.append(f"| {study.rows[name].label}{note} | " + " | ".join(cells) + " |")
    colour_rows = [name for name, row in study.rows.items() if row.colorizes]
    if colour_rows:
        lines += ["", f"Colour quality on CIFAR-10 {eval_split} (each image at 32×32; "
                      f"rebalanced AuC weighs pixels by the training split's prior):", "",
                  "| prediction | AuC | AuC rebalanced | PSNR (dB) | colourfulness |",
                  "|---|---|---|---|---|"]
        grey = [r["grey"] for runs in outcome.colour.values() for r in runs.values()]
        if grey:
            lines.append("| all grey | " + " | ".join(
                _cell(*mean_spread([g[m] for g in grey[:1]]), digits=2)
                for m in COLOUR_METRICS) + " |")
        for name in colour_rows:
            runs = list(outcome.colour.get(name, {}).values())
            lines.append(f"| {study.rows[name].label} | " + " | ".join(
                _cell(*mean_spread([r["model"][m] for r in runs]), digits=2, empty=empty[name])
                for m in COLOUR_METRICS) + " |")
    if outcome.failures:
        lines += ["", "Failed:", ""] + [f"- {f['row']} seed {f['seed']} ({f['stage']}): "
                                        f"{f['error'].splitlines()[0]}"
                                        for f in outcome.failures]
    return "\n".join(lines) + "\n"


def plot(study, outcome, path, eval_split):
    """Top-1 per layer for every row, with the seeds' standard deviation as error bars."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=120)
    x = list(range(1, len(LAYERS) + 1))
    drawn = 0
    for name, layers in summarise(study, outcome).items():
        means = [layers[layer][0] for layer in LAYERS]
        if all(math.isnan(m) for m in means):
            continue
        drawn += 1
        ax.errorbar(x, means, yerr=[layers[layer][1] for layer in LAYERS], marker="o",
                    capsize=3, label=study.rows[name].label)
    ax.set_xticks(x, LAYERS)
    ax.set_ylabel(f"linear-probe top-1 on CIFAR-10 {eval_split} (%)")
    ax.set_title(f"Frozen features of each pretraining ({len(study.budget['seeds'])} seeds)")
    ax.grid(alpha=0.3)
    if drawn:
        ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    tmp = Path(path).with_name(Path(path).stem + ".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)


def write_report(study, outcome, out, eval_split, command=""):
    """study_<split>.md, study_<split>.json, study_<split>.png and TensorBoard summaries."""
    from torch.utils.tensorboard import SummaryWriter

    out = Path(out)
    text = format_tables(study, outcome, eval_split)
    header = f"# Study on CIFAR-10 ({eval_split} split), budget {study.budget_name}\n\n"
    if command:
        header += f"Command: `{command}`\n\n"
    md = out / f"study_{eval_split}.md"
    ckpt.atomic_write(md, lambda tmp: Path(tmp).write_text(header + text))
    data = {"eval_split": eval_split, "budget": study.budget_name,
            "seeds": study.budget["seeds"], "probes": outcome.probes, "colour": outcome.colour,
            "failures": outcome.failures, "seconds": outcome.seconds,
            "rows": {name: row.label for name, row in study.rows.items()}}
    ckpt.atomic_write(out / f"study_{eval_split}.json",
                      lambda tmp: Path(tmp).write_text(json.dumps(data, indent=2)))
    plot(study, outcome, out / f"study_{eval_split}.png", eval_split)
    for name, layers in summarise(study, outcome).items():  # one line per row, x = layer
        writer = SummaryWriter(str(out / "tensorboard" / eval_split / name))
        for i, layer in enumerate(LAYERS, start=1):
            if layers[layer][2]:
                writer.add_scalar("study/probe_top1_by_layer", layers[layer][0], i)
        writer.close()
    return md, text
