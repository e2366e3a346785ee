"""Helpers shared by the benchmark scripts: where the shared data is, tables, child processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ESVA_SHARED", ROOT.parent / "shared" / "data"))
# fusion_dev.py's work folder; generalise.py --dev-models writes its held-out voice models here
FUSION_DEV_WORK = ROOT / "runs" / "fusion_dev"


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


def report_and_install(out: Path, install: bool, sort: bool = False) -> dict[str, str]:
    """Print the sha256 of each file of the default model folder ``out`` against the recorded
    ones (esva.assets.DEFAULT_MODEL_SHA256); with ``install`` copy them into the package."""
    import shutil

    from esva.assets import DEFAULT_MODEL_SHA256, default_model_dir
    from esva.hashing import file_sha256

    names = sorted(DEFAULT_MODEL_SHA256) if sort else list(DEFAULT_MODEL_SHA256)
    hashes = {name: file_sha256(out / name) for name in names}
    for name, sha in hashes.items():
        size = (out / name).stat().st_size
        same = "matches" if DEFAULT_MODEL_SHA256[name] == sha else "DIFFERS from"
        print(f"{name}: {size / 1e6:.2f} MB sha256 {sha} ({same} the recorded hash)")
    print("DEFAULT_MODEL_SHA256 = " + repr(hashes))
    if install:
        target = default_model_dir(verify=False)
        target.mkdir(parents=True, exist_ok=True)
        for name in hashes:
            shutil.copyfile(out / name, target / name)
        print(f"installed into {target}; record the hashes above in src/esva/assets/__init__.py")
    return hashes


def train_and_export(run, work: Path, view, streams: str, tag: str) -> tuple[Path, Path]:
    """Train ``run`` (a RunConfig) and export its kept epoch to ``work/model`` as a shipped
    model folder, bit for bit: config.json, model.safetensors with fixed metadata (several keys
    would be written in a per-process hash order), extraction.json read from the feature
    stores' extract.json (esva predict extracts new files exactly so). Returns the folder
    (written atomically). ``view``: the feature-store view trained on."""
    import time

    from safetensors.torch import save_file

    from esva.extract.provenance import model_extraction, write_extraction
    from esva.io import atomic_dir, write_json
    from esva.model import CONFIG_NAME, WEIGHTS_NAME, ESVAModel
    from esva.recipes.train_esva import train

    t0 = time.perf_counter()
    res = train(run)
    print(
        f"[{tag}] trained {res.epochs_run} epochs in {time.perf_counter() - t0:.0f} s "
        f"(kept epoch {res.best_epoch}, lowest training loss)",
        flush=True,
    )
    model = ESVAModel.from_pretrained(res.best_dir)
    out = work / "model"
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    with atomic_dir(out) as tmp:
        write_json(tmp / CONFIG_NAME, model.config.to_dict())
        save_file(state, str(tmp / WEIGHTS_NAME), metadata={"format": "pt"})
        write_extraction(tmp, model_extraction(view, {"audio": streams}))
    return out
