"""The workloads of bench/run.py: what each side runs, which figure is taken, the targets.

A workload runs its sides (program pairs) alternately; each side's run yields a dict of figures.
Rows turn medians of those figures into table lines: which side is "comm", which the peer.
"""
import os
import re
import statistics
import subprocess

IMPLS = ("openssl", "gnutls")
MEMO = {}  # medians by row name, for rows judged against other rows


def _ratio(a, b):
    return a / b if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else None


def at_least(x):
    def judge(row):
        r = _ratio(row["comm"], row["asio"])
        return r, "n/a" if r is None else ("yes" if r >= x else "no")
    return judge


def at_most(x):
    def judge(row):
        r = _ratio(row["comm"], row["asio"])
        return r, "n/a" if r is None else ("yes" if r <= x else "no")
    return judge


def info(row):
    return _ratio(row["comm"], row["asio"]), "-"


def side(program, server, client, server_program=None, client_program=None):
    return {"program": program, "server": server, "client": client,
            "server_program": server_program, "client_program": client_program}


# ---------------------------------------------------------------------------------------------

BULK_RUNS = 15


def bulk(quick, tls, size):
    total = (4 << 20) if quick else ((256 << 20) if tls else (1 << 30))
    common = [f"--size={size}", f"--total={total}"] + (["--tls"] if tls else [])
    s = lambda prog, extra=(): side(prog, ["--role=server", *common, *extra], ["--role=client", *common, *extra])
    sides = {}
    impls = IMPLS if tls else ("openssl",)
    for impl in impls:
        sfx = "" if impl == "openssl" else "_gnutls"
        sides["comm" + sfx] = s("bench_comm_bulk", [f"--impl={impl}"])
        sides["comm_async" + sfx] = s("bench_comm_async_bulk", [f"--impl={impl}"])
    sides["asio"] = s("bench_asio_bulk")
    if not tls:
        sides["raw"] = s("bench_raw_bulk")
    kib = size // 1024
    if tls:
        rows = []
        for impl in impls:
            sfx = "" if impl == "openssl" else "_gnutls"
            label = "OpenSSL" if impl == "openssl" else "GnuTLS"
            rows.append({"name": f"TLS bulk {kib} KiB writes, MiB/s, socket_stream ({label})", "key": "mib_s",
                         "comm": "comm" + sfx, "judge": at_least(1.15), "target": ">= 1.15x Asio"})
            rows.append({"name": f"TLS bulk {kib} KiB writes, MiB/s, async_io_state ({label})", "key": "mib_s",
                         "comm": "comm_async" + sfx, "judge": at_least(1.15), "target": ">= 1.15x Asio"})
    else:
        def plain_judge(row):
            r = _ratio(row["comm"], row["asio"])
            rr = _ratio(row["comm"], row["raw"])
            if r is None:
                return None, "n/a"
            ok = r >= 1.0 and rr is not None and rr >= 0.95
            return r, ("yes" if ok else "no") + (f" ({rr:.2f}x raw)" if rr else "")
        rows = [{"name": f"Plain TCP bulk {kib} KiB writes, MiB/s, socket_stream", "key": "mib_s", "comm": "comm",
                 "raw": "raw", "judge": plain_judge, "target": ">= 1.0x Asio and >= 0.95x raw"},
                {"name": f"Plain TCP bulk {kib} KiB writes, MiB/s, async_io_state", "key": "mib_s", "comm": "comm_async",
                 "raw": "raw", "judge": plain_judge, "target": ">= 1.0x Asio and >= 0.95x raw"}]
    w = {"name": f"{'TLS' if tls else 'plain'} bulk {kib} KiB", "sides": sides, "rows": rows,
         "metric": lambda c, s, st: {"mib_s": c["mib_s"]}, "timeout": 25}
    if not quick:
        # A run takes well under a second, and on this machine one run is +-20 % noise: more
        # alternating runs make the medians steadier for a few seconds more.
        w["min_runs"] = BULK_RUNS
        w["notes"] = [f"{w['name']}: median of at least {BULK_RUNS} alternating runs per side."]
    return w


def handshakes(quick, inflight, with_resumed):
    """Full TLS 1.3 handshakes per second with `inflight` connections; with_resumed adds resumed
    ones (session tickets) to the same workload, so that a resumed run alternates with a full one
    and the "3x own full" ratio compares runs that the machine's noise hit alike."""
    millis = 300 if quick else 700
    common = ["--tls", f"--inflight={inflight}", f"--millis={millis}"]
    kinds = [("full", "", [])] + ([("resumed", "_resumed", ["--resume"])] if with_resumed else [])
    sides = {}
    for what, rs, extra in kinds:
        for impl in IMPLS:
            sfx = "" if impl == "openssl" else "_gnutls"
            for kind, prog in (("comm", "bench_comm_handshake"), ("comm_async", "bench_comm_async_handshake")):
                sides[kind + sfx + rs] = side(prog, ["--role=server", "--tls", f"--impl={impl}"],
                                              ["--role=client", *common, *extra, f"--impl={impl}"])
        sides["asio" + rs] = side("bench_asio_handshake", ["--role=server"], ["--role=client", *common, *extra])
    # The floor: the same connect + 1-byte echo + close without TLS.
    sides["raw"] = side("bench_raw_connect", ["--role=server"],
                        ["--role=client", f"--inflight={inflight}", f"--millis={millis}"])

    def metric(c, s, st, resume=False):
        if c.get("errors", 0) or (resume and c.get("tls", 1) and c.get("resumed", 0) < 0.9 * c.get("done", 0)):
            raise ValueError(f"handshakes: {c}")
        figures = {"hs_s": c["hs_s"]}
        if c.get("done") and "cpu_s" in c and s and "cpu_s" in s:  # CPU per handshake, each process
            figures["client_us"] = c["cpu_s"] / c["done"] * 1e6
            figures["server_us"] = s["cpu_s"] / c["done"] * 1e6
        return figures
    for name, spec in sides.items():  # a resumed side must have resumed (nearly) every handshake
        if name.endswith("_resumed"):
            spec["metric"] = lambda c, s, st: metric(c, s, st, resume=True)
    rows = []
    for what, rs, _ in kinds:
        for impl in IMPLS:
            sfx = "" if impl == "openssl" else "_gnutls"
            label = "OpenSSL" if impl == "openssl" else "GnuTLS"
            for kind, api in (("comm", "socket_stream"), ("comm_async", "async_io_state")):
                name = f"TLS 1.3 {what} handshakes/s, {inflight} in flight, {api} ({label})"
                if what == "resumed":
                    full_name = name.replace("resumed", "full")

                    def judge(row, full_name=full_name):
                        r = _ratio(row["comm"], row["asio"])
                        own = _ratio(row["comm"], MEMO.get(full_name))
                        if own is None:
                            return r, "n/a"
                        return r, ("yes" if own >= 3 else "no") + f" ({own:.2f}x own full)"
                    rows.append({"name": name, "key": "hs_s", "comm": kind + sfx + rs, "asio": "asio" + rs, "raw": "raw",
                                 "judge": judge, "target": ">= 3x comm's own full"})
                else:
                    rows.append({"name": name, "key": "hs_s", "comm": kind + sfx, "raw": "raw", "judge": at_least(1.2),
                                 "target": ">= 1.2x Asio (best implementation counts)"})
    notes = ["raw = the same connect + 1-byte echo + close without TLS (bench_raw_connect): the floor."]
    if with_resumed:
        notes.append("Full and resumed handshakes run in one workload, their runs alternating, so the "
                     "resumed / full ratio compares runs made at the same time.")
    return {"name": f"{'full and resumed' if with_resumed else 'full'} handshakes, {inflight} in flight", "sides": sides,
            "rows": rows, "metric": metric, "timeout": millis / 1000 + 10, "notes": notes}


def latency(quick):
    counts = ["--msg=64", "--warmup=" + ("20" if quick else "1000"), "--count=" + ("200" if quick else "10000")]
    sides = {}
    for impl in IMPLS:
        sfx = "" if impl == "openssl" else "_gnutls"
        sides["comm" + sfx] = side("bench_comm_echo", ["--role=server", "--tls", f"--impl={impl}"],
                                   ["--role=client", "--tls", f"--impl={impl}", *counts])
        sides["comm_async" + sfx] = side("bench_comm_async_echo_server", ["--tls", f"--impl={impl}"],
                                         ["--tls", f"--impl={impl}", *counts],
                                         client_program="bench_comm_async_echo_client")
    sides["asio"] = side("bench_asio_echo_server", ["--tls"], ["--tls", *counts], client_program="bench_asio_echo_client")
    sides["raw"] = side("bench_raw_echo", ["--role=server"], ["--role=client", *counts])
    rows = []
    for impl in IMPLS:
        sfx = "" if impl == "openssl" else "_gnutls"
        label = "OpenSSL" if impl == "openssl" else "GnuTLS"
        for kind, api in (("comm", "socket_stream"), ("comm_async", "async_io_state")):
            def p50_judge(row):
                r = _ratio(row["comm"], row["raw"])
                return _ratio(row["comm"], row["asio"]), "n/a" if r is None else ("yes" if r <= 1.3 else "no") + f" ({r:.2f}x raw)"
            rows.append({"name": f"Echo 64 B p50 us, {api} ({label})", "key": "p50_us", "comm": kind + sfx, "raw": "raw",
                         "judge": p50_judge, "target": "<= 1.3x raw floor"})
            rows.append({"name": f"Echo 64 B p99 us, {api} ({label})", "key": "p99_us", "comm": kind + sfx, "raw": "raw",
                         "judge": at_most(1.0), "target": "<= Asio"})
            rows.append({"name": f"Echo 64 B p99.9 us, {api} ({label})", "key": "p999_us", "comm": kind + sfx, "raw": "raw",
                         "judge": info, "target": "(reported)"})
    return {"name": "echo latency", "sides": sides, "rows": rows, "timeout": 60,
            "metric": lambda c, s, st: {k: c[k] for k in ("p50_us", "p99_us", "p999_us")},
            "notes": ["raw = plain TCP blocking send/recv (no TLS): the floor."]}


def proc_cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def _rss_stage(name, pid):
    return {"rss_kib": proc_rss_kib(pid), "cpu_s": proc_cpu_seconds(pid)}


def memory(quick):
    s1, s2 = (20, 70) if quick else (500, 5500)
    load = [f"--mode=memory", f"--stage1={s1}", f"--stage2={s2}", "--parallel=16"]
    sides = {}
    for impl in IMPLS:
        sfx = "" if impl == "openssl" else "_gnutls"
        sides["comm_async" + sfx] = side("bench_comm_async_echo_server", ["--tls", f"--impl={impl}"], load,
                                         client_program="bench_asio_loadgen")
    sides["asio"] = side("bench_asio_echo_server", ["--tls"], load, client_program="bench_asio_loadgen")

    def metric(c, s, st):
        if c.get("open_errors", 0):
            raise ValueError(f"connections failed: {c}")
        return {"kib": (st["2"]["rss_kib"] - st["1"]["rss_kib"]) / (s2 - s1)}
    rows = [{"name": f"Idle memory per TLS connection, KiB, async_io_state ({l})", "key": "kib", "comm": "comm_async" + sfx,
             "judge": at_most(0.5), "target": "<= 0.5x Asio"}
            for l, sfx in (("OpenSSL", ""), ("GnuTLS", "_gnutls"))]
    return {"name": "idle memory", "sides": sides, "rows": rows, "metric": metric, "on_stage": _rss_stage,
            "timeout": 120, "runs": 1 if quick else 3,
            "notes": [f"server RSS growth from {s1} to {s2} established idle connections (each did a handshake and a "
                      f"1-byte echo), divided by {s2 - s1}; the same Asio load generator drives both servers. "
                      "3 runs (not 5): the figure repeats to 0.1 % and each run makes 5,500 TLS connections."]}


def scale(quick):
    conns, millis = (200, 3000) if quick else (10000, 30000)
    load = ["--mode=scale", f"--conns={conns}", f"--millis={millis}", "--interval-ms=1000", "--parallel=32", "--msg=64",
            "--threads=2"]
    sides = {}
    for impl in IMPLS:
        sfx = "" if impl == "openssl" else "_gnutls"
        sides["comm_async" + sfx] = side("bench_comm_async_echo_server", ["--tls", f"--impl={impl}"], load,
                                         client_program="bench_asio_loadgen")
    sides["asio"] = side("bench_asio_echo_server", ["--tls"], load, client_program="bench_asio_loadgen")

    def metric(c, s, st):
        cpu_echo = s.get("cpu_s", 0) - st["connected"]["cpu_s"]
        return {"served": f"{int(c['echoes'])}/{int(c['expected'])}, {int(c['open_errors'] + c['echo_errors'])} errors"
                          f", {int(c['late'])} late",
                "ok": 1.0 if c["echoes"] >= c["expected"] and not c["open_errors"] and not c["echo_errors"] else 0.0,
                "cpu_pct": 100.0 * cpu_echo / (millis / 1000.0),
                "rss_mib": st["connected"]["rss_kib"] / 1024.0}

    def served_judge(row):
        v = row["comm"]
        m = re.match(r"(\d+)/(\d+), 0 errors", v or "")
        if v is None:
            return None, "n/a"
        return None, "yes" if m and int(m.group(1)) >= 0.95 * int(m.group(2)) else "no"
    rows = []
    for l, sfx in (("OpenSSL", ""), ("GnuTLS", "_gnutls")):
        rows += [
            {"name": f"Scale {conns} TLS conns, 1 echo/s each for {millis // 1000} s: echoes served ({l})", "key": "served",
             "comm": "comm_async" + sfx, "judge": served_judge, "target": "0 errors, >= 95% of echoes on schedule"},
            {"name": f"Scale: server CPU % of one core during the echo phase ({l})", "key": "cpu_pct",
             "comm": "comm_async" + sfx, "judge": info, "target": "(reported)"},
            {"name": f"Scale: server RSS MiB with {conns} connections ({l})", "key": "rss_mib",
             "comm": "comm_async" + sfx, "judge": info, "target": "(reported)"},
        ]
    return {"name": "scale", "sides": sides, "rows": rows, "metric": metric, "on_stage": _rss_stage,
            "timeout": 180 if not quick else 60, "runs": 1,
            "notes": ["one run per side (30 s each); one loop on one thread serves every connection."]}


def multicore(quick, loops):
    millis = 1000 if quick else 2000
    load = ["--mode=throughput", "--conns=" + ("8" if quick else "64"), f"--millis={millis}", "--threads=2", "--msg=64",
            "--parallel=16"]
    sides = {"comm_async": side("bench_comm_async_echo_server", ["--tls", f"--loops={loops}"], load,
                                client_program="bench_asio_loadgen"),
             "asio": side("bench_asio_echo_server", ["--tls", f"--loops={loops}"], load, client_program="bench_asio_loadgen")}
    name = f"Async TLS echo, 64 B, echoes/s, {loops} loop{'s' if loops > 1 else ''}"
    rows = [{"name": name, "key": "echoes_s", "comm": "comm_async", "judge": info, "target": "(reported)"}]
    def metric(c, s, st):
        figures = {"echoes_s": c["echoes_s"]}
        if c.get("echoes") and s and "cpu_s" in s:  # CPU per echo, server and load generator
            figures["server_us"] = s["cpu_s"] / c["echoes"] * 1e6
            figures["client_us"] = c["client_cpu_s"] / c["echoes"] * 1e6
        return figures
    return {"name": f"multi-core {loops}", "sides": sides, "rows": rows, "timeout": 60, "metric": metric}


def multicore_ratio():
    a = "Async TLS echo, 64 B, echoes/s, 1 loop"
    b = "Async TLS echo, 64 B, echoes/s, 2 loops"

    def derive():
        rows = MEMO.get("_rows", {})
        c = _ratio(rows.get(b, {}).get("comm"), rows.get(a, {}).get("comm"))
        p = _ratio(rows.get(b, {}).get("asio"), rows.get(a, {}).get("asio"))
        met = "n/a" if c is None else ("yes" if c >= 1.7 else "no")
        notes = ["the load generator runs on the same 2 cores as the server (2 client threads)."]
        # With server CPU S and load-generator CPU C per echo, the 2 shared cores serve at most
        # 2 / (S + C) echoes/s whatever the number of loops: that caps two loops' rate. Whether the
        # run hit that cap shows in the share of the 2 cores that both processes used.
        def cpu(row_name, side_name, key):
            runs = rows.get(row_name, {}).get("runs", {}).get(side_name, [])
            values = [r[key] for r in runs if key in r]
            return statistics.median(values) if values else None

        S, C = cpu(b, "comm_async", "server_us"), cpu(b, "comm_async", "client_us")
        r1, r2 = rows.get(a, {}).get("comm"), rows.get(b, {}).get("comm")
        if S and C and r1 and r2:
            used = (S + C) * 1e-6 * r2 / 2
            cap = 2 / ((S + C) * 1e-6)
            need = 2 / (1.7 * r1) * 1e6
            notes.append(f"CPU per echo with 2 loops: server {S:.1f} us, load generator {C:.1f} us; at {r2:,.0f} echoes/s "
                         f"they used {100 * used:.0f}% of the 2 cores. The cores cap any number of loops at about "
                         f"2/(S+C) = {cap:,.0f} echoes/s = {cap / r1:.2f}x one loop; 1.7x would need S+C <= {need:.1f} us, "
                         f"or the load generator on other cores.")
        out = [{"name": "Multi-core: 2 loops / 1 loop (SO_REUSEPORT)", "comm": c, "asio": p, "raw": None,
                "ratio": None, "met": met, "target": ">= 1.7 (comm)", "notes": notes}]
        # What the second loop costs per echo, measured on the server alone: if it stays near the
        # one-loop figure, the loops do not contend, and the server's capacity is about
        # 2 x (one-loop CPU / two-loop CPU) times one loop's, given cores to run on.
        per_echo = {side: (cpu(a, side, "server_us"), cpu(b, side, "server_us")) for side in ("comm_async", "asio")}
        for i, loops in ((0, "1 loop"), (1, "2 loops")):
            out.append({"name": f"Multi-core: server CPU per echo, us, {loops}", "comm": per_echo["comm_async"][i],
                        "asio": per_echo["asio"][i], "raw": None, "ratio": _ratio(per_echo["comm_async"][i], per_echo["asio"][i]),
                        "met": "-", "target": "(reported)", "notes": []})
        s1, s2 = per_echo["comm_async"]
        if s1 and s2:
            # Two loops cannot serve more than twice one loop. A ratio s1/s2 above 1 means the
            # loops batched more events per wake-up when they shared the cores with the load
            # generator, not that a second loop makes each echo cheaper: the estimate stops at 2.
            estimate = 2 * min(1.0, s1 / s2)
            out[-1]["notes"].append(f"one loop's CPU per echo / two loops': {s1 / s2:.2f}; with the load generator on "
                                    f"other cores, two loops would serve at most about {estimate:.2f}x one loop "
                                    f"(estimate from CPU per echo, at most 2; not measured here).")
        return out
    return {"name": "multi-core ratio", "derive": derive}


def resumption_cpu():
    """Where a resumed handshake's time goes, next to a full one's: CPU per handshake of the
    client and the server (1 in flight, so the two add up to the time of one handshake), and
    what the key exchange that resumption keeps (psk_dhe_ke) costs by the machine's reference."""
    def derive():
        rows = MEMO.get("_rows", {})
        x25519 = MEMO.get("_reference", {}).get("X25519 ops/s")
        out = []
        for impl, label in (("openssl", "OpenSSL"), ("gnutls", "GnuTLS")):
            sfx = "" if impl == "openssl" else "_gnutls"
            for kind, api in (("comm", "socket_stream"), ("comm_async", "async_io_state")):
                def cpu(what, side_name):
                    name = f"TLS 1.3 {what} handshakes/s, 1 in flight, {api} ({label})"
                    runs = rows.get(name, {}).get("runs", {}).get(side_name, [])
                    c = [r["client_us"] for r in runs if "client_us" in r]
                    s = [r["server_us"] for r in runs if "server_us" in r]
                    return (statistics.median(c), statistics.median(s)) if c and s else None
                full, resumed = cpu("full", kind + sfx), cpu("resumed", kind + sfx + "_resumed")
                peer_full, peer_resumed = cpu("full", "asio"), cpu("resumed", "asio_resumed")
                tcp = cpu("resumed", "raw") or cpu("full", "raw")
                if full is None or resumed is None:
                    continue
                notes = [f"CPU per handshake, us: full {sum(full):.0f} (client {full[0]:.0f} + server {full[1]:.0f}), "
                         f"resumed {sum(resumed):.0f} (client {resumed[0]:.0f} + server {resumed[1]:.0f}), "
                         f"start-up included: full / resumed = {sum(full) / sum(resumed):.2f}. 3x own full would need "
                         f"a resumed handshake of at most {sum(full) / 3:.0f} us."]
                if peer_full and peer_resumed:
                    notes.append(f"Asio: full {sum(peer_full):.0f} us, resumed {sum(peer_resumed):.0f} us "
                                 f"(client {peer_resumed[0]:.0f} + server {peer_resumed[1]:.0f}): "
                                 f"full / resumed = {sum(peer_full) / sum(peer_resumed):.2f}.")
                if tcp:
                    notes.append(f"The same connection without TLS (raw): {sum(tcp):.0f} us "
                                 f"(client {tcp[0]:.0f} + server {tcp[1]:.0f}).")
                if x25519:
                    notes.append(f"The X25519 exchange that resumption keeps (a key pair and a shared secret on "
                                 f"each side, 4 x {1e6 / x25519:.1f} us at the reference rate) takes {4e6 / x25519:.0f} us.")
                comm_cpu, peer_cpu = sum(resumed), sum(peer_resumed) if peer_resumed else None
                out.append({"name": f"Resumed handshake CPU, us (client + server), {api} ({label})", "comm": comm_cpu,
                            "asio": peer_cpu, "raw": None, "ratio": _ratio(comm_cpu, peer_cpu), "met": "-",
                            "target": "(reported)", "notes": notes})
        return out
    return {"name": "resumed handshakes, CPU", "derive": derive}


def workloads(quick):
    return [
        bulk(quick, True, 16 * 1024),
        bulk(quick, True, 256 * 1024),
        bulk(quick, False, 256 * 1024),
        handshakes(quick, 1, True),
        handshakes(quick, 16, False),
        resumption_cpu(),
        latency(quick),
        memory(quick),
        multicore(quick, 1),
        multicore(quick, 2),
        multicore_ratio(),
        scale(quick),
    ]


# ---------------------------------------------------------------------------------------------
# Machine reference figures (openssl speed, one core).

def _speed(args):
    r = subprocess.run(["openssl", "speed", "-seconds", "1", *args], capture_output=True, text=True, timeout=60)
    return r.stdout


def reference_rows(quick):
    rows = []
    try:
        out = _speed(["-bytes", "16384", "-evp", "aes-128-gcm"])
        m = re.search(r"^AES-128-GCM\s+([\d.]+)k", out, re.M | re.I)
        if m:
            rows.append({"name": "AES-128-GCM, 16 KiB blocks, MiB/s", "value": float(m.group(1)) * 1000 / 1048576,
                         "note": "openssl speed -seconds 1 -bytes 16384 -evp aes-128-gcm"})
        out = _speed(["ecdsap256"])
        m = re.search(r"256 bits ecdsa \(nistp256\)\s+\S+\s+\S+\s+([\d.]+)\s+([\d.]+)", out)
        if m:
            rows.append({"name": "ECDSA P-256 signs/s", "value": float(m.group(1)), "note": "openssl speed -seconds 1 ecdsap256"})
            rows.append({"name": "ECDSA P-256 verifies/s", "value": float(m.group(2)), "note": ""})
        out = _speed(["ecdhx25519"])
        m = re.search(r"X25519\)\s+\S+\s+([\d.]+)", out)
        if m:
            rows.append({"name": "X25519 ops/s", "value": float(m.group(1)), "note": "openssl speed -seconds 1 ecdhx25519"})
    except (OSError, subprocess.TimeoutExpired) as e:
        rows.append({"name": "openssl speed", "value": None, "note": str(e)})
    return rows
