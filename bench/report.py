"""Turn ``bench/results/*.json`` into ``bench/RESULTS.md`` and the CPU plot.

    python -m bench.report            # after running the benchmarks

The plot needs matplotlib (``pip install -e '.[bench]'``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.harness import RESULTS

RESULTS_MD = Path(__file__).parent / "RESULTS.md"


def plot_cpu(result: dict[str, Any], path: Path) -> Path:
    """CPU (cores) over viewers, one panel per picture size, one line per server."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    sizes = sorted({r["size"] for r in rows}, key=lambda s: int(s.split("x")[0]))
    fig, axes = plt.subplots(1, len(sizes), figsize=(6 * len(sizes), 4.2), squeeze=False)
    for ax, size in zip(axes[0], sizes, strict=True):
        for server in dict.fromkeys(r["server"] for r in rows):
            mine = sorted(
                (r for r in rows if r["server"] == server and r["size"] == size),
                key=lambda r: r["viewers"],
            )
            if not mine:
                continue
            xs = [r["viewers"] for r in mine]
            ys = [r["cpu_median"] for r in mine]
            err = [
                [r["cpu_median"] - r["cpu_min"] for r in mine],
                [r["cpu_max"] - r["cpu_median"] for r in mine],
            ]
            ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=server)
            for r in mine:
                if r["fps_min"] is not None and r["fps_min"] < 27:
                    ax.annotate(
                        f"{r['fps_min']:.0f} fps",
                        (r["viewers"], r["cpu_median"]),
                        textcoords="offset points",
                        xytext=(4, -12),
                        fontsize=7,
                    )
        ax.axhline(2.0, color="grey", linestyle=":", linewidth=1)
        ax.set_title(f"{size} @ 30 fps, 2 Mbit/s")
        ax.set_xlabel("viewers")
        ax.set_ylabel("server CPU (cores, 2 = whole machine)")
        ax.set_xticks(sorted({r["viewers"] for r in rows}))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Server CPU vs viewers (median of windows, bars = min-max)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    if not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def main() -> None:
    cpu = load("cpu_viewers")
    if cpu is not None:
        print(f"plot: {plot_cpu(cpu, RESULTS / 'cpu_viewers.png')}")
    print(f"results in {RESULTS}; {RESULTS_MD.name} is written by hand from them")


if __name__ == "__main__":
    main()
