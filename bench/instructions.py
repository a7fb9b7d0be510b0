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

Others on this machine may run callgrind too, and `callgrind_control -d`
without a pid dumps and zeroes every callgrind process it finds. So ours
talk through their own vgdb FIFOs in the run directory (--vgdb-prefix),
which others' callgrind_control does not look for, and a window's count is
the sum of every part dumped between our two labelled dumps all the same.
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


def parts(out_dir: Path, pid: int) -> dict[int, tuple[str, int]]:
    """The whole dumps of one process so far: {part: (trigger, Ir)}."""
    found = {}
    for path in out_dir.glob(f"callgrind.out.{pid}.*"):
        head = {}
        for line in path.read_text(errors="replace").splitlines():
            key, _, value = line.partition(": ")
            if key in ("part", "desc", "totals"):
                head.setdefault(key, value)
                if key == "desc" and value.startswith("Trigger:"):
                    head["trigger"] = value.removeprefix("Trigger:").strip()
        if "totals" in head and "part" in head:  # written whole
            found[int(head["part"])] = (head.get("trigger", ""), int(head["totals"].split()[0]))
    return found


def dump(pid: int, out_dir: Path, label: str, vgdb_prefix: str) -> int:
    """Asks callgrind in `pid` to dump (and zero) its counts under `label`,
    and returns the part number of that dump once it is written."""
    subprocess.run(["callgrind_control", f"--vgdb-prefix={vgdb_prefix}", f"--dump={label}",
                    str(pid)], check=True, capture_output=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for part, (trigger, _) in parts(out_dir, pid).items():
            if trigger == f"dump {label}":
                return part
        time.sleep(0.1)
    raise RuntimeError(f"callgrind wrote no dump {label} of {pid} in {out_dir}")


def between(out_dir: Path, pid: int, first: int, last: int) -> int:
    """Ir counted after dump part `first` up to and with part `last`."""
    found = parts(out_dir, pid)
    return sum(found[p][1] for p in range(first + 1, last + 1))


def send(bench, t, sc, n: int) -> dict:
    """n sequential requests straight to the backend, every answer checked."""
    expect, upload, _ = bench.files_for(sc)
    argv = [bench.args.loadgen_binary, "--proto", t.proto, "--socket", str(bench.sock(t)),
            "-c", "1", "-n", str(n), "-d", "3600", "--warmup", "0", "--timeout", "120",
            "--path", sc.path, "--expect-body-file", str(expect)]
    if upload:
        argv += ["--body-file", str(upload)]
    argv += bench.loadgen_flags(t)
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
    vgdb_prefix = str(out_dir / "vgdb-pipe")
    wrap = ["valgrind", "--tool=callgrind", "--trace-children=yes",
            f"--vgdb-prefix={vgdb_prefix}", f"--callgrind-out-file={out_dir}/callgrind.out.%p"]
    backend, sig = bench.start_backend(t, sc, pin=None, wrap=wrap,
                                       env={"PYTHONHASHSEED": "0"}, timeout=300, direct=True)
    try:
        send(bench, t, sc, N1)  # the worker has served: it exists
        pid = serving_pid(backend.pid, tree)
        part1 = dump(pid, out_dir, f"after-{N1}", vgdb_prefix)
        send(bench, t, sc, N2 - N1)
        part2 = dump(pid, out_dir, f"after-{N2}", vgdb_prefix)
        send(bench, t, sc, N3 - N2)
        part3 = dump(pid, out_dir, f"after-{N3}", vgdb_prefix)
        ir2, ir3 = between(out_dir, pid, part1, part2), between(out_dir, pid, part2, part3)
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
