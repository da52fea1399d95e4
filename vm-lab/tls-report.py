#!/usr/bin/python3
"""The summary of `vm-lab/lab sweep --tls`: medians over rounds of each balancer's rate and
CPU per request for each TLS load, floatlb against the better peer at each load (issue 18's
targets: every rate at least 1.1x the better of HAProxy and nginx; CPU per request at most
0.85x HAProxy's), and the memory an idle TLS connection holds."""
import csv
import statistics
import sys
from collections import defaultdict

LOADS = [
    ("keepalive", "HTTPS keep-alive, wrk -c50: requests/s"),
    ("resumed", "a new connection per request, session resumed (wrk -c50, Connection: close): per second"),
    ("full", "full handshakes, 8 x openssl s_time -new: per second"),
    ("h2", "HTTP/2, h2load -c50 -m10: requests/s"),
]


def main():
    out = sys.argv[1]
    runs = defaultdict(list)
    with open(f"{out}/tls-runs.csv") as f:
        for r in csv.DictReader(f):
            runs[(r["scenario"], r["load"])].append(r)
    scenarios = sorted({s for s, _ in runs}, key=lambda s: (not s.startswith("floatlb"), s))
    med = {}
    for key, rows in runs.items():
        med[key] = (
            statistics.median(float(r["rps"]) for r in rows),
            statistics.median(float(r["lb_cpu_us_per_req"]) for r in rows),
            len(rows),
        )
    print("# TLS sweep\n")
    try:
        with open(f"{out}/bound.tsv") as f:
            pct = next(csv.DictReader(f, delimiter="\t"))["pct"]
        bound = f"every balancer's host capped at {pct}% of one core (cgroup CPU quota; bound.tsv says how often each was held back)"
    except (FileNotFoundError, StopIteration, KeyError):
        bound = "balancers not CPU-capped (no --bound)"
    print(f"Medians over rounds; {bound}. One ECDSA P-256 certificate for all; floatlb: rustls 0.23 with aws-lc-rs, HAProxy 2.6 and nginx 1.22: OpenSSL 3.0; TLS 1.3 offered by every client and server here.\n")
    print("| load | " + " | ".join(scenarios) + " |")
    print("|---|" + "---|" * len(scenarios))
    for load, title in LOADS:
        cells = []
        for s in scenarios:
            if (s, load) in med:
                rps, cpu, _ = med[(s, load)]
                cells.append(f"{rps:.0f} ({cpu:.1f} µs)")
            else:
                cells.append("-")
        print(f"| {title} | " + " | ".join(cells) + " |")
    print("\nEach cell: rate (LB host CPU per request or handshake).\n")
    ours = next((s for s in scenarios if s.startswith("floatlb")), None)
    peers = [s for s in scenarios if not s.startswith("floatlb")]
    haproxy = next((s for s in peers if s.startswith("haproxy")), None)
    if ours and peers:
        print("## floatlb against the better peer at each load\n")
        for load, title in LOADS:
            if (ours, load) not in med:
                continue
            have = [p for p in peers if (p, load) in med and med[(p, load)][0] > 0]
            if not have:
                continue
            best = max(have, key=lambda p: med[(p, load)][0])
            rps = med[(ours, load)][0] / med[(best, load)][0]
            line = f"- {title}: {rps:.2f}x {best} (target >= 1.10: {'met' if rps >= 1.1 else 'NOT met'})"
            if haproxy and (haproxy, load) in med and med[(haproxy, load)][1] > 0:
                cpu = med[(ours, load)][1] / med[(haproxy, load)][1]
                line += f"; CPU per request {cpu:.2f}x {haproxy} (target <= 0.85: {'met' if cpu <= 0.85 else 'NOT met'})"
            print(line)
    try:
        with open(f"{out}/tls-idle.csv") as f:
            idle = list(csv.DictReader(f))
    except FileNotFoundError:
        idle = []
    if idle:
        print("\n## Idle TLS connections (held idle, each after one request)\n")
        print("| scenario | bytes per connection |\n|---|---|")
        for r in idle:
            print(f"| {r['scenario']} | {r['bytes_per_connection']} |")


if __name__ == "__main__":
    main()
