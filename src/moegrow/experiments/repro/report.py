"""Writing an experiment's outcome: ``NAME.csv`` (one row per run), ``NAME.md`` (the paper's
finding, the tables and the command that regenerates them) and its PNG plots."""

from __future__ import annotations

import csv
from pathlib import Path

from moegrow.experiments.repro.experiments import Outcome, Plot, Table


def _cell(value) -> str:
    return str(value).replace("|", "\\|")


def markdown_table(table: Table) -> str:
    lines = [
        f"**{table.title}**",
        "",
        "| " + " | ".join(_cell(c) for c in table.columns) + " |",
        "|" + "---|" * len(table.columns),
    ]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in table.rows]
    return "\n".join(lines)


def render(outcome: Outcome, command: str) -> str:
    parts = [
        f"## {outcome.name}: {outcome.title}",
        "",
        f"Paper: {outcome.paper}",
        "",
        f"Regenerate: `{command}`",
    ]
    for table in outcome.tables:
        parts += ["", markdown_table(table)]
    for note in outcome.notes:
        parts += ["", note]
    for plot in outcome.plots:
        parts += ["", f"![{plot.title}]({plot.filename})"]
    return "\n".join(parts) + "\n"


def write_csv(rows: list[dict], path: Path) -> None:
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def draw(plot: Plot, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for label, points in plot.series.items():
        if not points:
            continue
        if plot.kind == "profiles":
            n = len(points)
            ax.plot([(i + 0.5) / n for i in range(n)], points, marker="o", ms=3, label=label)
        elif plot.kind == "scatter":
            xs, ys = zip(*points)
            ax.scatter(xs, ys, label=label)
        else:
            xs, ys = zip(*points)
            ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, ms=3, label=label)
    ax.set_title(plot.title, fontsize=9)
    ax.set_xlabel(plot.xlabel)
    ax.set_ylabel(plot.ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_outcome(outcome: Outcome, folder: Path, command: str) -> Path:
    """Write CSV, plots and markdown into ``folder``; returns the markdown's path."""
    folder.mkdir(parents=True, exist_ok=True)
    write_csv(outcome.rows, folder / f"{outcome.name}.csv")
    for plot in outcome.plots:
        draw(plot, folder / plot.filename)
    md = folder / f"{outcome.name}.md"
    md.write_text(render(outcome, command))
    return md
