"""bench/run --plots DIR: PNG charts of a run's results.json.

For each scenario:
- SCENARIO-cpu.png: CPU per request of every target as stacked bars, the
  backend's user and system time and nginx's workers' time behind nginx
  (their sum is what a request costs the machine), and the backend's user
  and system time in the direct measure beside it;
- SCENARIO-latency.png: the latency distribution of every target, one row
  each: a box from p25 to p75 with the median, whiskers from p1 to p99, a
  dot at p99.9 and a cross at the slowest request; behind nginx (wrk) and,
  where measured, direct (rustgi-loadgen). Medians over the rounds,
  percentile by percentile.

After --instructions, instructions.png: instructions per request.

matplotlib comes from bench/.venv (bench/run installs it).
"""

import textwrap
from pathlib import Path

# Colours: the parts of a request's CPU, and the servers.
PART_COLOURS = {"user": "#4c72b0", "system": "#dd8452", "nginx": "#8c8c8c"}
SERVER_COLOURS = {"rustgi": "#1f77b4", "base": "#9ecae1", "uwsgi": "#ff7f0e",
                  "flup": "#2ca02c", "granian": "#9467bd", "gunicorn": "#8c564b",
                  "nginx": "#7f7f7f"}


def server_of(target: str) -> str:
    return target.split("-", 1)[0]


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def cpu_chart(plt, scenario: str, cells: list[dict], out: Path, head: str):
    """Stacked bars of CPU µs per request: behind nginx, and direct."""
    from matplotlib.transforms import offset_copy
    rows = [c for c in cells if c["median"] and "total_cpu_us" in c["median"]]
    if not rows:
        return None
    direct = [c for c in rows if "direct_cpu_us" in c["median"]]
    panels = [("behind nginx: backend user + system + nginx", False)]
    if direct:
        panels.append(("direct (no nginx): backend user + system", True))
    names = [c["target"] for c in rows]
    fig, axes = plt.subplots(1, len(panels), figsize=(max(9, 6.5 * len(panels)), 0.42 * len(rows) + 2.4),
                             sharey=True, squeeze=False)
    for ax, (title, is_direct) in zip(axes[0], panels):
        left = [0.0] * len(rows)
        parts = (("user", "direct_cpu_user_us"), ("system", "direct_cpu_sys_us")) if is_direct \
            else (("user", "cpu_user_us"), ("system", "cpu_sys_us"), ("nginx", "nginx_cpu_us"))
        for part, key in parts:
            values = [c["median"].get(key, 0.0) for c in rows]
            ax.barh(names, values, left=left, color=PART_COLOURS[part],
                    label=f"{'nginx' if part == 'nginx' else 'backend ' + part}")
            left = [a + b for a, b in zip(left, values)]
        for y, total in enumerate(left):
            if total:
                ax.text(total, y, f" {total:.1f}", va="center", fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("CPU µs per request")
        ax.set_xlim(0, max(left) * 1.15 or 1)
        ax.grid(axis="x", alpha=0.3)
        # Below the x label, where no bar can hide under it.
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, 0), ncol=len(parts),
                  frameon=False,
                  bbox_transform=offset_copy(ax.transAxes, fig=fig, y=-32, units="points"))
    axes[0][0].invert_yaxis()  # the first target at the top
    fig.suptitle(f"{scenario}: CPU per request (medians of the rounds)\n{head}", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _box(ax, y: float, dist: dict, colour: str):
    """One row of the latency chart from {percentile: ms}."""
    from matplotlib.patches import Rectangle
    q = {float(k): v for k, v in dist.items()}
    if not all(p in q for p in (25, 50, 75)):
        return
    p25, p50, p75 = q[25], q[50], q[75]
    lo, hi = q.get(1, q.get(10, p25)), q.get(99, q.get(90, p75))
    ax.add_patch(Rectangle((p25, y - 0.3), p75 - p25, 0.6, facecolor=colour, alpha=0.45,
                           edgecolor=colour))
    ax.plot([p50] * 2, [y - 0.3, y + 0.3], color="black", linewidth=1.5)
    ax.plot([lo, p25], [y, y], color=colour, linewidth=1)
    ax.plot([p75, hi], [y, y], color=colour, linewidth=1)
    for x in (lo, hi):
        ax.plot([x] * 2, [y - 0.15, y + 0.15], color=colour, linewidth=1)
    if 99.9 in q:
        ax.plot(q[99.9], y, "o", color=colour, markersize=4)
    if 100 in q:
        ax.plot(q[100], y, "x", color=colour, markersize=5)


def latency_chart(plt, scenario: str, cells: list[dict], out: Path, head: str):
    rows = [c for c in cells if c["median"] and c["median"].get("latency_ms")]
    if not rows:
        return None
    panels = [("behind nginx (wrk)", "latency_ms")]
    if any(c["median"].get("direct_latency_ms") for c in rows):
        panels.append(("direct (rustgi-loadgen)", "direct_latency_ms"))
    fig, axes = plt.subplots(1, len(panels), figsize=(max(9, 6.5 * len(panels)), 0.42 * len(rows) + 2),
                             sharey=True, squeeze=False)
    names = [c["target"] for c in rows]
    for ax, (title, key) in zip(axes[0], panels):
        values = []
        for y, c in enumerate(rows):
            dist = c["median"].get(key)
            if dist:
                _box(ax, y, dist, SERVER_COLOURS.get(server_of(c["target"]), "#333333"))
                values += [v for v in dist.values() if v > 0]
        ax.set_yticks(range(len(rows)), names)
        ax.set_ylim(len(rows) - 0.5, -0.5)
        ax.set_xscale("log")
        if values:
            ax.set_xlim(min(values) / 1.5, max(values) * 1.5)
        ax.set_xlabel("latency, ms (log scale)")
        ax.set_title(title, fontsize=10)
        ax.grid(axis="x", which="both", alpha=0.3)
    fig.suptitle(f"{scenario}: latency — box p25–p75 with the median, whiskers p1–p99, "
                 f"• p99.9, × max\n{head}", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def instructions_chart(plt, rows: list[dict], out: Path, head: str):
    if not rows:
        return None
    names = [f"{r['target']} ({r['scenario']})" for r in rows]
    values = [r["ir_per_request"] for r in rows]
    fig, ax = plt.subplots(figsize=(9, 0.42 * len(rows) + 2))
    ax.barh(names, values, color=[SERVER_COLOURS.get(server_of(r["target"]), "#333333")
                                  for r in rows])
    for y, v in enumerate(values):
        ax.text(v, y, f" {v:,.0f}", va="center", fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, max(values) * 1.2)
    ax.set_xlabel("instructions per request (callgrind, user space, serving process)")
    ax.grid(axis="x", alpha=0.3)
    fig.suptitle(f"Instructions per request\n{head}", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def draw(results: dict, out_dir: Path) -> list[Path]:
    """Writes the charts of one results.json into out_dir; returns their paths."""
    plt = _pyplot()
    out_dir.mkdir(parents=True, exist_ok=True)
    info = results.get("info", {})
    head = textwrap.fill(f"{info.get('date', '')}, {results.get('command', '')}", 110)
    written = []
    by_scenario: dict[str, list[dict]] = {}
    for cell in results.get("cells", []):
        by_scenario.setdefault(cell["scenario"], []).append(cell)
    for scenario, cells in by_scenario.items():
        written.append(cpu_chart(plt, scenario, cells, out_dir / f"{scenario}-cpu.png", head))
        written.append(latency_chart(plt, scenario, cells,
                                     out_dir / f"{scenario}-latency.png", head))
    written.append(instructions_chart(plt, results.get("instructions", []),
                                      out_dir / "instructions.png", head))
    return [p for p in written if p]
