"""Turn ``bench/results/*.json`` into the tables of ``bench/RESULTS.md`` and the CPU plot.

    python -m bench.report            # after running the benchmarks

The tables go between the ``<!-- tables -->`` and ``<!-- /tables -->``
markers of RESULTS.md; the text around them (findings, caveats) is written
by hand.  The plot needs matplotlib (``pip install -e '.[bench]'``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bench.cpu_viewers import per_viewer, ratios, slope
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


def _ms(st: dict[str, Any] | None) -> str:
    if not st or not st.get("n"):
        return "–"
    return f"{st['median']:.0f} / {st['p95']:.0f}"


def machine_table(data: dict[str, Any]) -> list[str]:
    m = data["machine"]
    v = m["versions"]
    return [
        "| machine | |",
        "|---|---|",
        f"| CPU | {m['cpu']}, {m['cores']} cores (shared with other engineers' test runs) |",
        f"| kernel | {m['kernel']} |",
        f"| Python | {m['python']} |",
        f"| aiortc / PyAV / aiomqtt / numpy | {v['aiortc']} / {v['av']} / {v['aiomqtt']} / "
        f"{v['numpy']} |",
        f"| Chromium | {m['chromium']} |",
        f"| load average when the CPU run started | {m['loadavg_at_start']} |",
    ]


def cpu_tables(data: dict[str, Any]) -> list[str]:
    out = [
        "| server | size | viewers | CPU cores, median (min–max) | min fps of any viewer |",
        "|---|---|---:|---|---:|",
    ]
    for r in data["rows"]:
        fps = "–" if r["fps_min"] is None else f"{r['fps_min']:.1f}"
        out.append(
            f"| {r['server']} | {r['size']} | {r['viewers']} | {r['cpu_median']:.3f} "
            f"({r['cpu_min']:.3f}–{r['cpu_max']:.3f}) | {fps} |"
        )
    fps = data.get("settings", {}).get("fps", 30)
    per = {}
    for r in data["rows"]:
        per.setdefault(f"{r['server']} {r['size']}", []).append(r)
    fits = {key: per_viewer(rows, fps) for key, rows in per.items()}
    rel = ratios(fits)
    out += [
        "",
        "| server, size | CPU per delivered viewer-frame (ms) | = cores per extra viewer at "
        f"{fps} fps | ratio to peercam | slope over unsaturated points (cores/viewer) | "
        "points | ratio |",
        "|---|---:|---:|---:|---:|---|---:|",
    ]

    def num(x: float | None, f: str = ".4f") -> str:
        return "–" if x is None else format(x, f)

    def times(x: float | None) -> str:
        return "–" if x is None else f"{x:.1f}×"

    for key, pv in fits.items():
        r = rel.get(key, {})
        out.append(
            f"| {key} | {num(pv['cpu_per_viewer_frame_ms'], '.3f')} | "
            f"{num(pv['cpu_per_extra_viewer_at_fps'])} | "
            f"{times(r.get('cpu_per_viewer_frame_ms'))} | "
            f"{num(pv['cpu_per_extra_viewer'])} | {pv['points_used']} | "
            f"{times(r.get('cpu_per_extra_viewer'))} |"
        )
    return out


def cpu_runs_table(paths: list[Path]) -> list[str]:
    """The per-viewer-frame CPU of each full run side by side: the spread between runs."""
    fits: dict[str, dict[str, dict[str, Any]]] = {}
    loads: dict[str, float] = {}
    for path in paths:
        data = json.loads(path.read_text(encoding="utf-8"))
        loads[path.stem] = data["machine"]["loadavg_at_start"][0]
        fps = data.get("settings", {}).get("fps", 30)
        per: dict[str, list[dict[str, Any]]] = {}
        for r in data["rows"]:
            per.setdefault(f"{r['server']} {r['size']}", []).append(r)
        fits[path.stem] = {key: per_viewer(rows, fps) for key, rows in per.items()}
    keys = list(dict.fromkeys(k for f in fits.values() for k in f))
    out = [
        "CPU per delivered viewer-frame (ms) in each full run (load average at its start):",
        "",
        "| server, size | " + " | ".join(f"{name} (load {loads[name]})" for name in fits) + " |",
        "|---|" + "---:|" * len(fits),
    ]
    for key in keys:
        cells = []
        for f in fits.values():
            v = f.get(key, {}).get("cpu_per_viewer_frame_ms")
            cells.append("–" if v is None else f"{v:.2f}")
        out.append(f"| {key} | " + " | ".join(cells) + " |")
    return out


def ttff_table(data: dict[str, Any], title: str) -> list[str]:
    out = [
        f"{title}",
        "",
        "| server | IDR on join | viewer | hello→frame median / p95 ms | "
        "offer→frame median / p95 ms | runs |",
        "|---|---|---|---|---|---:|",
    ]
    for r in data["rows"]:
        out.append(
            f"| {r['server']} | {'on' if r['idr_on_join'] else 'off'} | {r['viewer']} | "
            f"{_ms(r['hello_ms_stats'])} | {_ms(r['offer_ms_stats'])} | "
            f"{r['hello_ms_stats']['n']} |"
        )
    return out


def latency_table(data: dict[str, Any]) -> list[str]:
    out = [
        "| server | viewers | measured by | g2g median / p95 ms | others | IDR/s per viewer |",
        "|---|---|---|---|---|---:|",
    ]
    for r in data["rows"]:
        if r["with_chromium"]:
            who = "Chromium (to display)"
            g2g = _ms(r.get("chromium_g2g_ms"))
            other = f"capture→received {_ms(r.get('chromium_network_ms'))}"
        else:
            who = "Python viewers (to decoded)"
            g2g = _ms(r.get("python_g2g_ms"))
            other = "per-viewer medians " + ", ".join(
                f"{x:.0f}" for x in r.get("python_per_viewer_median_ms") or [] if x is not None
            )
        slow = r.get("slow_viewer")
        if slow:
            if slow.get("event") == "done":
                other += (
                    f"; slow viewer: {slow['fps']} fps, g2g {_ms(slow['g2g_ms'])}, "
                    f"{slow['keyframes']} IDRs"
                )
            else:
                other += f"; slow viewer failed: {slow.get('error')}"
        idr = r["keyframes_per_viewer_per_s"]
        out.append(
            f"| {r['server']} | {r['viewers']} | {who} | {g2g} | {other} | "
            f"{'–' if idr is None else idr} |"
        )
    return out


def memory_tables(data: dict[str, Any]) -> list[str]:
    servers = list(dict.fromkeys(r["server"] for r in data["rows"]))
    counts = list(dict.fromkeys(str(r["viewers"]) for r in data["rows"]))
    out = [
        "| server | "
        + " | ".join(f"{c} viewers" if c != "after" else "after all left" for c in counts)
        + " |",
        "|---|" + "---:|" * len(counts),
    ]
    for server in servers:
        by = {str(r["viewers"]): r["rss_mib"] for r in data["rows"] if r["server"] == server}
        out.append(f"| {server} | " + " | ".join(f"{by.get(c, '–')}" for c in counts) + " |")
    soak = data.get("soak")
    if soak and "growth_second_half_mib_per_hour" not in soak:
        samples = soak["samples"]
        half = slope([tuple(x) for x in samples[len(samples) // 2 :]])
        soak["growth_second_half_mib_per_hour"] = None if half is None else round(half * 3600, 2)
    if soak:
        out += [
            "",
            f"Soak (peercam, {soak['minutes']} min, 4 viewers + one joining and leaving every "
            f"5 s = {soak['churned_sessions']} sessions): RSS {soak['rss_first_mib']} → "
            f"{soak['rss_last_mib']} MiB; growth (least-squares slope) "
            f"**{soak['growth_mib_per_hour']} MiB/h** after the first minute, "
            f"**{soak['growth_second_half_mib_per_hour']} MiB/h** over the second half.",
        ]
    return out


def tables() -> str:
    parts: list[str] = []
    cpu = load("cpu_viewers")
    if cpu:
        parts += ["### Machine", "", *machine_table(cpu), ""]
        parts += ["### CPU per viewer", "", "![CPU vs viewers](results/cpu_viewers.png)", ""]
        parts += [*cpu_tables(cpu), ""]
    runs = sorted(RESULTS.glob("cpu_viewers*.json"))
    if len(runs) > 1:
        parts += [*cpu_runs_table(runs), ""]
    ff = load("first_frame")
    if ff:
        parts += ["### Time to first frame (ms)", ""]
        parts += [*ttff_table(ff, "Mosquitto with its default settings:"), ""]
    ffn = load("first_frame_broker_nodelay")
    if ffn:
        parts += [*ttff_table(ffn, "Mosquitto with `set_tcp_nodelay true`:"), ""]
    lat = load("latency")
    if lat:
        parts += ["### Glass-to-glass latency (ms)", "", *latency_table(lat), ""]
    mem = load("memory")
    if mem:
        parts += ["### Memory (RSS, MiB)", "", *memory_tables(mem), ""]
    return "\n".join(parts)


def write_tables() -> Path:
    text = RESULTS_MD.read_text(encoding="utf-8") if RESULTS_MD.exists() else ""
    start, end = "<!-- tables -->", "<!-- /tables -->"
    block = f"{start}\n<!-- written by python -m bench.report -->\n\n{tables()}\n{end}"
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end) :]
    else:
        text = f"# Benchmark results\n\n{block}\n" + text
    RESULTS_MD.write_text(text, encoding="utf-8")
    return RESULTS_MD


def main() -> None:
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()
    cpu = load("cpu_viewers")
    if cpu is not None:
        print(f"plot: {plot_cpu(cpu, RESULTS / 'cpu_viewers.png')}")
    print(f"tables: {write_tables()}")


if __name__ == "__main__":
    main()
