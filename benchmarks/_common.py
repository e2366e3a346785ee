"""Helpers shared by the benchmark scripts: where the shared data is, tables, child processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ESVA_SHARED", ROOT.parent / "shared" / "data"))


def require_shared() -> Path:
    if not SHARED.is_dir():
        sys.exit(f"benchmarks need the shared data at {SHARED} (set ESVA_SHARED to its location)")
    return SHARED


def markdown_table(header: list[str], rows: list[list]) -> str:
    def fmt(v):
        return f"{v:.3g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def run_child(code: str, payload: dict, threads: int = 2) -> dict:
    """Run ``code`` (which reads PAYLOAD and prints one JSON line) in a fresh interpreter, so
    that its peak memory (ru_maxrss) and start-up are its own."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PAYLOAD": json.dumps(payload)}
    wrapped = (
        "import json, os, resource, time\n"
        "PAYLOAD = json.loads(os.environ['PAYLOAD'])\n" + code + "\n"
        "RESULT['peak_rss_mb'] = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,\n"
        "    resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024\n"
        "print(json.dumps(RESULT))\n"
    )
    proc = subprocess.run([sys.executable, "-c", wrapped], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])
