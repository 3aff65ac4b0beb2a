"""Probe results as a markdown table, results.csv and results.json.

Results are dicts ``{layer: {"top1": %, "top5": %, ...}}``, one entry per probed layer; the
columns are the union of the entries' keys, in first-seen order.
"""

import csv
import json
from pathlib import Path

from ..checkpoint import atomic_write


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
    """Write ``results.csv`` (one row per layer), then ``results.json`` (with ``meta``).

    Each file is written atomically, and results.json last: its presence means a complete run.
    """
    out_dir = Path(out_dir)
    columns = list(dict.fromkeys(k for r in results.values() for k in r))

    def write_csv(tmp):
        with open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["layer", *columns])
            for name, r in results.items():
                writer.writerow([name, *(r.get(k, "") for k in columns)])

    text = json.dumps({"layers": results, **(meta or {})}, indent=2)
    atomic_write(out_dir / "results.csv", write_csv)
    atomic_write(out_dir / "results.json", lambda tmp: Path(tmp).write_text(text))
