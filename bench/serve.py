"""Latency and throughput of ``kosearch serve`` under 1, 4 and 16 concurrent clients.

Builds (or reuses) an index of the first N reviews of ../shared/data/nsmc_reviews_corpus with a
real model, starts ``kosearch serve`` on 127.0.0.1 in a subprocess, and for each client count
runs a closed loop (each client sends ``POST /search`` and waits for the answer, over one
keep-alive connection) bounded by a request count and a time limit. Queries are other reviews
of the same corpus (lines after the first N). It reports p50/p95/p99 latency, requests/s and the
mean number of queries per ``search_batch`` call (from ``/health``), with micro-batching on and,
with ``--compare-batching``, off. Then it times one-shot ``kosearch query`` processes (load the
index and the model, answer one query, exit) for comparison: the median of 3.

The clients run on the same machine as the server and compete with it for the CPU.

    python bench/serve.py --model ../shared/models/me5-small-ko --index /tmp/nsmc-10k-index \\
        --compare-batching
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "nsmc_reviews_corpus" / "corpus.jsonl"
KOSEARCH = [sys.executable, "-m", "kosearch"]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def build_index(index: Path, corpus: Path, n: int, model: str) -> None:
    """Index the first ``n`` records of ``corpus`` into ``index`` unless it is there already."""
    if (index / "manifest.json").is_file():
        print(f"reusing the index at {index}", file=sys.stderr)
        return
    with tempfile.TemporaryDirectory() as tmp:
        part = Path(tmp) / "corpus.jsonl"
        with corpus.open(encoding="utf-8") as src, part.open("w", encoding="utf-8") as dst:
            for i, line in enumerate(src):
                if i == n:
                    break
                dst.write(line)
        print(f"indexing {n} reviews into {index} (a few minutes on 2 cores)", file=sys.stderr)
        start = time.perf_counter()
        subprocess.run([*KOSEARCH, "-q", "index", str(part), "-o", str(index), "--model", model],
                       check=True, env=ENV)
        print(f"indexed in {time.perf_counter() - start:.0f}s", file=sys.stderr)


def queries(corpus: Path, skip: int, count: int) -> list[str]:
    out: list[str] = []
    with corpus.open(encoding="utf-8") as f:
        for i, line in enumerate(f):
            if i >= skip:
                text = json.loads(line)["text"].strip()
                if len(text) >= 5:
                    out.append(text[:100])
                if len(out) == count:
                    break
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def request(conn: http.client.HTTPConnection, method: str, path: str,
            body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body, ensure_ascii=False).encode()
    headers = {"Content-Type": "application/json"} if data else {}
    conn.request(method, path, body=data, headers=headers)
    response = conn.getresponse()
    payload = json.loads(response.read())
    if response.status != 200:
        raise RuntimeError(f"{method} {path}: {response.status} {payload}")
    return payload


class Server:
    """``kosearch serve`` in a subprocess, stopped with SIGTERM (uvicorn's graceful shutdown)."""

    def __init__(self, index: Path, batching: bool) -> None:
        self.port = free_port()
        args = [*KOSEARCH, "-q", "serve", "-i", str(index), "--port", str(self.port)]
        self.proc = subprocess.Popen(args + ([] if batching else ["--no-batching"]), env=ENV)
        deadline = time.monotonic() + 300
        while True:
            try:
                self.get("/health")
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the server did not start") from None
                time.sleep(0.2)

    def get(self, path: str) -> dict:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            return request(conn, "GET", path)
        finally:
            conn.close()

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)


def load(port: int, clients: int, texts: list[str], max_requests: int, max_s: float,
         k: int) -> dict[str, float]:
    """Closed loop: ``clients`` threads share a budget of requests and a time limit."""
    latencies: list[float] = []
    lock = threading.Lock()
    issued = 0
    stop_at = time.perf_counter() + max_s

    def client(offset: int) -> None:
        nonlocal issued
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        i = offset
        while True:
            with lock:
                if issued >= max_requests or time.perf_counter() > stop_at:
                    break
                issued += 1
            start = time.perf_counter()
            request(conn, "POST", "/search", {"query": texts[i % len(texts)], "k": k})
            took = time.perf_counter() - start
            with lock:
                latencies.append(took)
            i += clients
        conn.close()

    threads = [threading.Thread(target=client, args=(c * 7919,)) for c in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    ms = sorted(x * 1000 for x in latencies)

    def pct(p: float) -> float:
        return ms[min(len(ms) - 1, round(p / 100 * (len(ms) - 1)))]

    return {"n": len(ms), "p50": pct(50), "p95": pct(95), "p99": pct(99),
            "rps": len(ms) / wall, "wall": wall}


def one_shot(index: Path, text: str, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run([*KOSEARCH, "-q", "query", text, "-i", str(index), "--json", "-k", "10"],
                       check=True, env=ENV, capture_output=True)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="local sentence-transformers model dir")
    parser.add_argument("--index", required=True, type=Path, help="index dir (built if missing)")
    parser.add_argument("--corpus", type=Path, default=DATA)
    parser.add_argument("-n", type=int, default=10_000, help="reviews to index")
    parser.add_argument("--clients", default="1,4,16", help="comma-separated client counts")
    parser.add_argument("--requests", type=int, default=400, help="most requests per level")
    parser.add_argument("--seconds", type=float, default=20.0, help="most seconds per level")
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--compare-batching", action="store_true",
                        help="also run the server with --no-batching")
    args = parser.parse_args()

    build_index(args.index, args.corpus, args.n, args.model)
    texts = queries(args.corpus, args.n, 2000)
    levels = [int(c) for c in args.clients.split(",")]
    rows: list[tuple[str, int, dict[str, float], float]] = []
    for batching in [True, False] if args.compare_batching else [True]:
        server = Server(args.index, batching)
        try:
            for n in range(20):  # warm-up, not measured
                request(http.client.HTTPConnection("127.0.0.1", server.port, timeout=60),
                        "POST", "/search", {"query": texts[-1 - n], "k": args.k})
            for clients in levels:
                before = server.get("/health")
                result = load(server.port, clients, texts, args.requests, args.seconds, args.k)
                after = server.get("/health")
                calls = after["searches"] - before["searches"]
                batch = (after["queries"] - before["queries"]) / calls if calls else 0.0
                rows.append(("on" if batching else "off", clients, result, batch))
                print(f"batching {'on' if batching else 'off'}, {clients} clients: {result}",
                      file=sys.stderr)
        finally:
            server.stop()
    shots = one_shot(args.index, texts[0], 3)

    print(f"\nkosearch serve, {args.n} passages, k={args.k}, model {Path(args.model).name}, "
          f"{os.cpu_count()} CPUs (clients share them)")
    print(f"{'batching':<9}{'clients':>8}{'requests':>9}{'p50 ms':>9}{'p95 ms':>9}"
          f"{'p99 ms':>9}{'req/s':>8}{'q/batch':>9}")
    for mode, clients, r, batch in rows:
        print(f"{mode:<9}{clients:>8}{r['n']:>9.0f}{r['p50']:>9.1f}{r['p95']:>9.1f}"
              f"{r['p99']:>9.1f}{r['rps']:>8.1f}{batch:>9.2f}")
    print(f"one-shot `kosearch query` process: median {statistics.median(shots):.2f}s "
          f"(runs: {', '.join(f'{s:.2f}' for s in shots)})")


if __name__ == "__main__":
    main()
