#!/usr/bin/env python3
"""Side-by-side benchmark suite: comm against standalone Asio (+ OpenSSL) and raw sockets.

    python3 bench/run.py            # full suite (< 10 minutes on 2 cores)
    python3 bench/run.py --quick    # every workload once, tiny sizes, seconds (CI)

Builds the bench programs (Release, in build-bench/ unless --build-dir), makes an ECDSA P-256 CA
and server certificate in a temporary directory, runs each workload alternating the sides
(comm, Asio, [raw], comm, Asio, ...) and takes medians, then writes bench/results/latest.json
and bench/results/latest.md. A comm program that does not build yet is reported as "n/a".
Every process is bounded (--max-seconds) and stops when its stdin closes.
"""
import argparse
import datetime
import json
import os
import platform
import re
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from workloads import MEMO, workloads, reference_rows  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Build

def build(build_dir, jobs):
    gen = ["-G", "Ninja"] if shutil.which("ninja") else []
    if not os.path.exists(os.path.join(build_dir, "CMakeCache.txt")):
        subprocess.run(["cmake", "-S", ROOT, "-B", build_dir, *gen, "-DCMAKE_BUILD_TYPE=Release"],
                       check=True, stdout=subprocess.DEVNULL)
    else:  # picks up programs added since (e.g. the async ones once async.hpp exists)
        subprocess.run(["cmake", build_dir], check=True, stdout=subprocess.DEVNULL)
    keep_going = ["-k", "0"] if gen else ["-k"]
    r = subprocess.run(["cmake", "--build", build_dir, "--target", "bench", "-j", str(jobs), "--", *keep_going],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        failed = sorted(set(re.findall(r"FAILED: (\S+)", r.stdout)))
        log("build: some programs did not build (reported as n/a):", " ".join(failed) or r.stdout[-2000:])
    return os.path.join(build_dir, "bench")


# ---------------------------------------------------------------------------------------------
# Certificates: one CA and one server certificate (DNS localhost, IP 127.0.0.1), ECDSA P-256.

def make_certificates(d):
    def ossl(*args):
        subprocess.run(["openssl", *args], check=True, cwd=d, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    ossl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=comm bench CA")
    ossl("req", *ec, "-keyout", "key.pem", "-out", "server.csr", "-subj", "/CN=localhost")
    with open(os.path.join(d, "ext.cnf"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
    ossl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
         "-days", "2", "-out", "cert.pem", "-extfile", "ext.cnf")
    return {"cert": os.path.join(d, "cert.pem"), "key": os.path.join(d, "key.pem"), "ca": os.path.join(d, "ca.pem")}


# ---------------------------------------------------------------------------------------------
# Processes

def read_line(p, deadline):
    """A line of p's stdout, or None at EOF or when the deadline passes."""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        r, _, _ = select.select([p.stdout], [], [], left)
        if r:
            line = p.stdout.readline()
            return line if line else None


def last_json(text):
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    return None


class RunError(Exception):
    pass


def run_pair(server_cmd, client_cmd, timeout, on_stage=None):
    """Starts the server, runs the client against its port, stops the server.

    on_stage(name, server_pid) is called for each "STAGE name" line of the client (which waits
    for a newline on its stdin before going on). Returns (client_json, server_json, stages)."""
    deadline = time.monotonic() + timeout
    limit = f"--max-seconds={int(timeout) + 5}"
    srv = subprocess.Popen(server_cmd + [limit], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    cli = None
    try:
        line = read_line(srv, time.monotonic() + 20)
        if not line or not line.startswith("PORT "):
            raise RunError(f"server did not start: {line!r} {srv.stderr.read() if srv.poll() is not None else ''}")
        port = line.split()[1]
        cli = subprocess.Popen(client_cmd + [f"--port={port}", limit], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        stages = {}
        out = []
        while True:
            line = read_line(cli, deadline)
            if line is None:
                break
            if line.startswith("STAGE "):
                name = line.split()[1]
                stages[name] = on_stage(name, srv.pid) if on_stage else None
                cli.stdin.write("\n")
                cli.stdin.flush()
            else:
                out.append(line)
        try:
            cli.wait(timeout=max(1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise RunError("client did not finish in time")
        err = cli.stderr.read()
        result = last_json("".join(out))
        if result is None:
            raise RunError(f"client failed (exit {cli.returncode}): {err.strip()[-500:]}")
        if cli.returncode != 0:
            result["exit_status"] = cli.returncode
            result["stderr"] = err.strip()[-300:]
        srv.stdin.close()
        srv_out = []
        stop_deadline = time.monotonic() + 20
        while (line := read_line(srv, stop_deadline)) is not None:
            srv_out.append(line)
        srv.wait(timeout=max(1, stop_deadline - time.monotonic()))
        return result, last_json("".join(srv_out)) or {}, stages
    finally:
        for p in (cli, srv):
            if p and p.poll() is None:
                p.kill()
                p.wait()


# ---------------------------------------------------------------------------------------------
# Suite

def run_workload(w, binaries, certs, runs):
    """Runs every side of workload w `runs` times, alternating. Returns {side: {...}}."""
    sides = {}
    for name, spec in w["sides"].items():
        progs = {spec["program"], spec["server_program"] or spec["program"], spec["client_program"] or spec["program"]}
        sides[name] = {"available": all(os.path.exists(os.path.join(binaries, p)) for p in progs),
                       "runs": [], "errors": []}
    cert_args = [f"--{k}={v}" for k, v in certs.items()]
    for i in range(runs):
        for name, spec in w["sides"].items():
            s = sides[name]
            if not s["available"]:
                continue
            if (len(s["errors"]) >= 2 and not s["runs"]) or any("in time" in e for e in s["errors"]):
                continue  # failed twice, or hung once: do not spend the suite's time on it
            server = [os.path.join(binaries, spec["server_program"] or spec["program"]), *spec["server"], *cert_args]
            client = [os.path.join(binaries, spec["client_program"] or spec["program"]), *spec["client"], *cert_args]
            try:
                res, srv, stages = run_pair(server, client, w.get("timeout", 120), w.get("on_stage"))
                if "exit_status" in res:
                    raise RunError(f"exit {res['exit_status']}: {res.get('stderr', '')} {res}")
                s["runs"].append({"figures": (spec.get("metric") or w["metric"])(res, srv, stages), "client": res, "server": srv,
                                  "stages": stages, "round": i})
                shown = s["runs"][-1]["figures"]
            except (RunError, OSError, KeyError, ValueError, TypeError, subprocess.TimeoutExpired) as e:
                s["errors"].append(str(e)[:400])
                shown = f"error: {str(e)[:200]}"
            log(f"  {w['name']} [{name}] run {i + 1}/{runs}: {shown}")
    return sides


def side_median(s, key):
    """Median of one figure over a side's runs (text figures: the first run's)."""
    if not s or not s["runs"]:
        return None
    vals = [r["figures"].get(key) for r in s["runs"] if key in r["figures"]]
    if not vals:
        return None
    if all(isinstance(v, (int, float)) for v in vals):
        return statistics.median(vals)
    return vals[0]


def paired_ratio(a, b, key):
    """The median over rounds of a's figure / b's, each round's two runs made one after the other.

    A machine that changes pace during a workload moves both runs of a round alike, so this ratio
    moves less than the ratio of the two medians, which may come from different rounds."""
    if not a or not b:
        return None
    fa = {r["round"]: r["figures"].get(key) for r in a["runs"] if "round" in r}
    fb = {r["round"]: r["figures"].get(key) for r in b["runs"] if "round" in r}
    ratios = [fa[i] / fb[i] for i in fa if i in fb and isinstance(fa[i], (int, float)) and isinstance(fb[i], (int, float))
              and fb[i] > 0]
    return statistics.median(ratios) if len(ratios) >= 3 else None


FLOOR_SPREAD = 1.3
# Seconds the suite may spend running disturbed workloads again; with it the suite stays under 10
# minutes (525 s without re-runs on a slow day).
RERUN_ALLOWANCE = 60.0


def floor_spread(w, sides):
    """(max / min of the raw floor over its runs, key, values), or None without a raw floor.

    The raw side does the same work in every run, so a large spread means that the machine, not
    a program, changed during the workload: every side's figures of those runs moved with it."""
    key = next((r["key"] for r in w["rows"] if r.get("raw") == "raw"), None)
    vals = [r["figures"][key] for r in sides.get("raw", {}).get("runs", []) if key in r["figures"]]
    if key is None or len(vals) < 2 or min(vals) <= 0:
        return None
    return max(vals) / min(vals), key, vals


def floor_moved(w, sides):
    """A note when the raw floor of workload w moved by more than FLOOR_SPREAD between its runs."""
    spread = floor_spread(w, sides)
    if spread is None or spread[0] <= FLOOR_SPREAD:
        return None
    ratio, key, vals = spread
    return (f"the machine was disturbed during this workload: the raw floor's {key} ranged from {fmt(min(vals))} "
            f"to {fmt(max(vals))} over its {len(vals)} runs ({ratio:.2f}x); its figures are less "
            f"reliable than the others.")


def run_steadiest(w, binaries, certs, runs, allowance):
    """Runs workload w; if the machine was disturbed during it and the allowance has room for one
    more attempt, runs it again and keeps the attempt whose raw floor moved less.

    Returns (sides, a note or None, the allowance left)."""
    t0 = time.monotonic()
    sides = run_workload(w, binaries, certs, runs)
    took = time.monotonic() - t0
    first = floor_spread(w, sides)
    if first is None or first[0] <= FLOOR_SPREAD or took > allowance:
        return sides, None, allowance
    log(f"  {w['name']}: the raw floor moved {first[0]:.2f}x over the runs; running the workload again")
    again = run_workload(w, binaries, certs, runs)
    second = floor_spread(w, again)
    moved = (f"run twice: the raw floor moved {first[0]:.2f}x over the first attempt's runs and "
             f"{f'{second[0]:.2f}x' if second else 'unmeasured'} over the second's")
    if second is not None and second[0] < first[0]:
        return again, moved + "; these figures are the second's.", allowance - took
    return sides, moved + "; these figures are the first's.", allowance - took


def fmt(v):
    if v is None:
        return "n/a"
    if isinstance(v, dict):
        return v.get("text", json.dumps(v))
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.2f}" if abs(v) >= 1 else f"{v:.3f}"
    return str(v)


def write_reports(results, path_json, path_md, meta, reference):
    with open(path_json, "w") as f:
        json.dump({"meta": meta, "reference": reference, "workloads": results}, f, indent=2, default=str)
    lines = [
        f"# comm benchmarks ({meta['mode']})", "",
        f"`{meta['command']}` on {meta['date']}, {meta['cpus']} CPUs ({meta['cpu_model']}), commit {meta['commit']}.",
        f"Each figure is the median of {meta['runs']} alternating runs (comm, Asio, raw, comm, ...) unless noted.",
        "ratio = comm's median / Asio's; met? judges it. paired = the median over the rounds of comm / Asio, the two "
        "runs of a round made one after the other, so a machine that changes pace moves both alike (reported).", "",
        "| Workload | comm | Asio | raw | ratio | paired | target | met? |",
        "|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in results:
        lines.append(f"| {r['name']} | {fmt(r['comm'])} | {fmt(r['asio'])} | {fmt(r['raw'])} | "
                     f"{fmt(r['ratio']) if r['ratio'] is not None else 'n/a'} | {fmt(r.get('paired_ratio'))} | "
                     f"{r['target']} | {r['met']} |")
    lines += ["", "Machine reference (`openssl speed`, one core):", "", "| Figure | value | note |", "|---|---:|---|"]
    for row in reference:
        lines.append(f"| {row['name']} | {fmt(row['value'])} | {row.get('note', '')} |")
    notes = [r for r in results if r.get("notes")]
    if notes:
        lines += ["", "Notes:", ""]
        for r in notes:
            for n in r["notes"]:
                lines.append(f"- {r['name']}: {n}")
    with open(path_md, "w") as f:
        f.write("\n".join(lines) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="each workload once on a tiny size (CI)")
    ap.add_argument("--runs", type=int, default=None, help="alternating runs per side (default 7; quick 1)")
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build-bench"))
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--only", default="", help="run only workloads whose name contains this text")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results"))
    ap.add_argument("--strict", action="store_true", help="also fail when a comm program fails")
    args = ap.parse_args()
    runs = args.runs or (1 if args.quick else 7)
    t_start = time.monotonic()

    binaries = os.path.join(args.build_dir, "bench") if args.no_build else build(args.build_dir, os.cpu_count() or 2)
    tmp = tempfile.mkdtemp(prefix="comm-bench-")
    try:
        certs = make_certificates(tmp)
        reference = reference_rows(args.quick)
        MEMO["_reference"] = {r["name"]: r["value"] for r in reference}
        results = []
        peer_failed = comm_failed = False
        allowance = RERUN_ALLOWANCE
        for w in workloads(args.quick):
            if args.only and args.only not in w["name"]:
                continue
            if "derive" in w:
                derived = w["derive"]()
                results.extend(derived if isinstance(derived, list) else [derived])
                continue
            log(f"{w['name']}")
            sides, rerun, allowance = run_steadiest(w, binaries, certs, w.get("runs", max(runs, w.get("min_runs", 0))),
                                                    0.0 if args.quick else allowance)
            for name, s in sides.items():
                if s["available"] and not s["runs"]:
                    if name.startswith("comm"):
                        comm_failed = True
                    else:
                        peer_failed = True
            for spec in w["rows"]:
                row = {"name": spec["name"], "target": spec.get("target", "")}
                for col in ("comm", "asio", "raw"):
                    side_name = spec.get(col, col if col == "asio" else None)
                    row[col] = side_median(sides.get(side_name), spec["key"]) if side_name else None
                row["ratio"], row["met"] = spec["judge"](row)
                row["paired_ratio"] = paired_ratio(sides.get(spec.get("comm")), sides.get(spec.get("asio", "asio")), spec["key"])
                MEMO[spec["name"]] = row["comm"]
                MEMO.setdefault("_rows", {})[spec["name"]] = row
                used = [n for n in (spec.get("comm"), spec.get("asio", "asio"), spec.get("raw")) if n]
                row["notes"] = [f"{n}: {e}" for n in used if n in sides for e in sides[n]["errors"][:1]]
                row["runs"] = {n: [r["figures"] for r in sides[n]["runs"]] for n in used if n in sides}
                results.append(row)
            if w.get("notes"):
                results[-1]["notes"] = results[-1].get("notes", []) + w["notes"]
            for note in (rerun, floor_moved(w, sides)):
                if note:
                    results[-1]["notes"] = results[-1].get("notes", []) + [note]
        meta = {
            "mode": "quick" if args.quick else "full",
            "command": "python3 bench/run.py" + (" --quick" if args.quick else ""),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "cpus": os.cpu_count(),
            "cpu_model": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.machine()),
            "commit": subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip(),
            "runs": runs,
            "seconds": round(time.monotonic() - t_start, 1),
        }
        os.makedirs(args.out, exist_ok=True)
        write_reports(results, os.path.join(args.out, "latest.json"), os.path.join(args.out, "latest.md"), meta, reference)
        log(f"wrote {args.out}/latest.json and latest.md in {meta['seconds']} s")
        print(open(os.path.join(args.out, "latest.md")).read())
        if peer_failed or (args.strict and comm_failed):
            return 1
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
