"""bench/run --instructions: user-space instructions per request, counted
by callgrind in the process that serves the requests.

CPU time on this shared 2-core machine moves by 10-15% from one run to the
next; an instruction count does not, so it is the figure that guards the
hot path. For each target the backend runs under
`valgrind --tool=callgrind` (with PYTHONHASHSEED=0, so that Python's dicts
are laid out alike every time), rustgi-loadgen sends sequential requests
on one connection at a time (-c 1) straight to its socket, and
`callgrind_control --dump` dumps (and zeroes) the serving process's counts
after N1 requests, after N2 and after N3. The figure is the second dump
over N2 - N1 requests: (Ir(N2) - Ir(N1)) / (N2 - N1), start-up and the
first requests (imports, caches) left out. The third dump, over N3 - N2
more requests, shows how repeatable the count is.

The serving process is the backend's only child when it forks one (rustgi's
and uWSGI's master fork a worker; valgrind follows a fork by itself and
--trace-children=yes follows an exec too), else the backend itself.
"""

import json
import subprocess
import time
from pathlib import Path

N1, N2, N3 = 200, 1200, 2200

# Targets counted unless --only: rustgi's protocols (its default flags and
# --threads 1) and uWSGI's on the same protocols.
DEFAULT_SERVERS = ("rustgi", "uwsgi")


def default_targets(targets) -> list[str]:
    return [t.name for t in targets
            if t.default and t.direct and t.server in DEFAULT_SERVERS]


def totals(path: Path) -> int:
    """The `totals:` (Ir) line of a callgrind dump."""
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {path}")


def dump(pid: int, out_dir: Path, seq: int, label: str) -> int:
    """Asks callgrind in `pid` to dump (and zero) its counts; returns Ir of
    dump number `seq` once the file is whole."""
    subprocess.run(["callgrind_control", f"--dump={label}", str(pid)],
                   check=True, capture_output=True)
    path = out_dir / f"callgrind.out.{pid}.{seq}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            return totals(path)
        except (FileNotFoundError, RuntimeError):
            time.sleep(0.1)
    raise RuntimeError(f"callgrind wrote no {path}")


def send(bench, t, sc, n: int) -> dict:
    """n sequential requests straight to the backend, every answer checked."""
    expect, upload, _ = bench.files_for(sc)
    argv = [bench.args.loadgen_binary, "--proto", t.proto, "--socket", str(bench.sock(t)),
            "-c", "1", "-n", str(n), "-d", "3600", "--warmup", "0", "--timeout", "120",
            "--path", sc.path, "--expect-body-file", str(expect)]
    if upload:
        argv += ["--body-file", str(upload)]
    p = subprocess.run(argv, capture_output=True, text=True)
    try:
        g = json.loads(p.stdout)
    except json.JSONDecodeError:
        raise RuntimeError(f"rustgi-loadgen failed ({p.returncode}): {p.stdout}{p.stderr}")
    if g["errors"] or g["requests_total"] != n:
        raise RuntimeError(f"{t.name}: {g['requests_total']} of {n} requests, "
                           f"{g['errors']} errors: {g['first_error']}")
    return g


def serving_pid(pid: int, tree) -> int:
    children = tree(pid)[1:]
    if len(children) > 1:
        raise RuntimeError(f"{len(children)} processes under {pid}: which one serves?")
    return children[0] if children else pid


def count(bench, t, sc, tree) -> dict:
    """Instructions per request for one target on one scenario."""
    out_dir = bench.run / "callgrind" / f"{t.name}-{sc.name}"
    out_dir.mkdir(parents=True, exist_ok=True)
    wrap = ["valgrind", "--tool=callgrind", "--trace-children=yes",
            f"--callgrind-out-file={out_dir}/callgrind.out.%p"]
    backend, sig = bench.start_backend(t, sc, pin=None, wrap=wrap,
                                       env={"PYTHONHASHSEED": "0"}, timeout=300)
    try:
        send(bench, t, sc, N1)  # the worker has served: it exists
        pid = serving_pid(backend.pid, tree)
        dump(pid, out_dir, 1, f"after-{N1}")
        send(bench, t, sc, N2 - N1)
        ir2 = dump(pid, out_dir, 2, f"after-{N2}")
        send(bench, t, sc, N3 - N2)
        ir3 = dump(pid, out_dir, 3, f"after-{N3}")
    finally:
        bench.procs.stop(backend, sig, wait=30)
    return {"target": t.name, "scenario": sc.name, "proto": t.proto, "pid": pid,
            "n1": N1, "n2": N2, "n3": N3,
            "ir_per_request": ir2 / (N2 - N1), "ir_per_request_check": ir3 / (N3 - N2)}


def reference(rows: list[dict], row: dict) -> dict | None:
    """uWSGI's count on the same protocol and scenario (its plain FastCGI
    for keep-conn unless uwsgi-fastcgi-keep was counted)."""
    by = {(r["target"], r["scenario"]): r for r in rows}
    names = [f"uwsgi-{row['proto']}"] + (["uwsgi-fastcgi"] if row["proto"] == "fastcgi-keep" else [])
    return next((by[(n, row["scenario"])] for n in names if (n, row["scenario"]) in by), None)


def table(rows: list[dict]) -> str:
    lines = [f"Instructions per request (callgrind, user space, the serving process; "
             f"requests {N1 + 1}-{N2}, then {N2 + 1}-{N3} as a check):", "",
             "| target | scenario | instructions/req | next window | difference | ÷ uWSGI |",
             "|---|---|---:|---:|---:|---:|"]
    for r in rows:
        ref = reference(rows, r)
        ratio = (f"{r['ir_per_request'] / ref['ir_per_request']:.2f}"
                 if ref and ref is not r else "–")
        diff = r["ir_per_request_check"] / r["ir_per_request"] - 1
        lines.append(f"| {r['target']} | {r['scenario']} | {r['ir_per_request']:,.0f} "
                     f"| {r['ir_per_request_check']:,.0f} | {diff:+.1%} | {ratio} |")
    return "\n".join(lines) + "\n"


def run(bench, cells, tree) -> tuple[list[dict], bool]:
    """Counts every (target, scenario) cell; returns the rows and whether
    any failed."""
    rows, failed = [], False
    for tg, sc in cells:
        t, s = bench.targets[tg], bench.scenarios[sc]
        started = time.monotonic()
        try:
            row = count(bench, t, s, tree)
        except (RuntimeError, subprocess.CalledProcessError) as e:
            print(f"{tg:24} {sc:10} FAILED: {e}", flush=True)
            failed = True
            continue
        rows.append(row)
        print(f"{tg:24} {sc:10} {row['ir_per_request']:10,.0f} instructions/request "
              f"(next window {row['ir_per_request_check']:,.0f}; "
              f"{time.monotonic() - started:.0f} s)", flush=True)
    return rows, failed
