"""Probe results as a markdown table, results.csv and results.json.

Results are dicts ``{layer: {"top1": %, "top5": %, ...}}``, one entry per probed layer; the
columns are the union of the entries' keys, in first-seen order.
"""

import csv
import json
from pathlib import Path


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
