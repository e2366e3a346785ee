"""Benchmark: how long ``esva predict`` takes, cold and in a batch, against a baseline commit.

    python benchmarks/predict_speed.py [--repeats 3] [--baseline b50d73b]
    # needs ../shared/data; writes results/predict_speed.md

1. Whole ``esva predict FILE --json`` in a fresh process (imports, model loading, the file,
   exit), on a ~4 s RAVDESS speech FLAC and a ~4 s RAVDESS talking-face MP4. The baseline is
   the code at git commit ``--baseline`` checked out into a temporary worktree and run with
   ``PYTHONPATH=<worktree>/src``, alternated with this checkout's run so both see the same load.
   Wall time and CPU time (user + sys of the child) are reported: on a shared machine the CPU
   time is the steadier number.
2. Batch: one process, the model loaded once (``esva.apps.batch.run_batch``), per-clip time as
   a share of real time (clip duration), on a few audio files and a few videos.
3. Peak resident memory (ru_maxrss) of each process.
4. Where the seconds of one cold run go, for the baseline and now: the stages of one real
   ``Recognizer`` run timed in a fresh process (each stage wraps the library call that does it),
   and ``python -X importtime`` of the whole ``esva predict`` grouped by top-level package (self
   time, so a package's figure is its own modules' execution).

Goals (issue): whole predict <= 2.5 s (audio) / <= 3.5 s (video); batch <= 0.05x (audio) /
<= 0.25x (video) real time.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, markdown_table, require_shared
from esva.io import atomic_write, write_json

BATCH = r"""
import json, resource, sys, time
import soundfile
t0 = time.perf_counter()
from esva.apps.batch import run_batch
from esva.apps.inference import Recognizer
from pathlib import Path
rec = Recognizer.from_pretrained(None)
load_s = time.perf_counter() - t0
out = {}
for kind, files in json.loads(sys.argv[1]).items():
    paths = [Path(f) for f in files]
    rec.predict(paths[0])  # warm-up: lazy parts (sync space, face detector) load here
    durations = []
    for p in paths:
        durations.append(rec.predict(p).duration_s)
    t = time.perf_counter()
    summary = run_batch(paths, recognizer=rec, progress=False)
    wall = time.perf_counter() - t
    assert not summary.failed, summary.failed
    out[kind] = {"n": len(paths), "seconds": wall, "media_s": sum(durations)}
out["load_s"] = load_s
out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
"""


# One cold `esva predict FILE --json` cut into stages, in one process: the CLI's own `main` runs
# the request, and each stage wraps the library call that does it, so the stages add up to that
# run; the process's wall time minus their sum is interpreter start-up and exit. Where the code
# has esva.cli.heap (the `esva` script's gc.freeze), it is used as the script uses it.
STAGES = r"""
import contextlib, io, json, sys, time
T = {}
def timed(name, fn):
    def wrapper(*a, **k):
        t = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            T[name] = T.get(name, 0.0) + time.perf_counter() - t
    return wrapper
t = time.perf_counter()
import esva.cli.main as cli
T["import the CLI (typer)"] = time.perf_counter() - t
t = time.perf_counter(); import torch; T["import torch"] = time.perf_counter() - t
t = time.perf_counter()
import esva.apps.inference as inf
T["import the rest of the inference path (numpy, PyAV, esva)"] = time.perf_counter() - t
import esva.model, esva.sync.clip_media
esva.model.ESVAModel.from_pretrained = timed(
    "load the ESVA model", esva.model.ESVAModel.from_pretrained)
inf.extractor_for_model = timed(
    "audio encoder set-up (import, weights hash + read, build)", inf.extractor_for_model)
FACE = "face track (MTCNN, every frame; video)"
try:  # the clip face track (esva.media.track); older code: esva.sync.clip_media's
    import esva.media.track as track
    track.track_clip_face = timed(FACE, track.track_clip_face)
except ImportError:
    esva.sync.clip_media.track_sync_face = timed(FACE, esva.sync.clip_media.track_sync_face)
inf.measure_offset = timed("sync space + audio-video offset (video)", inf.measure_offset)
if hasattr(inf, "analyse_clip"):  # the clip analysis; older code: analyse_file
    inf.analyse_clip = timed("analyse", inf.analyse_clip)
else:
    inf.analyse_file = timed("analyse", inf.analyse_file)
try:
    from esva.cli import heap
    heap.process_entry = True
except ImportError:
    heap = None
t = time.perf_counter()
with contextlib.redirect_stdout(io.StringIO()):
    assert cli.main(["predict", sys.argv[1], "--json"]) == 0
total = time.perf_counter() - t
T["decode + audio features"] = T.pop("analyse") - T.get(FACE, 0.0)
inside = sum(v for k, v in T.items() if not k.startswith("import"))
T["CLI parsing, model forward, timeline, JSON"] = total - inside
if heap is not None:
    heap.settle()
print(json.dumps(T))
"""


def _stages(file: Path, pythonpath: str) -> dict[str, float]:
    """Seconds per stage of one cold Recognizer run on ``file`` plus the rest of the process."""
    r = _run([sys.executable, "-c", STAGES, str(file)], pythonpath)
    stages = json.loads(r["stdout"].splitlines()[-1])
    stages["interpreter start-up and exit"] = r["wall"] - sum(stages.values())
    return stages


def _imports(file: Path, pythonpath: str) -> dict[str, float]:
    """Self import time (s) per top-level package of one cold ``esva predict FILE --json``."""
    cli = ["-m", "esva.cli.main", "predict", str(file), "--json"]
    cmd = [sys.executable, "-X", "importtime", *cli]
    env = {**os.environ, "PYTHONPATH": pythonpath, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    total: collections.Counter = collections.Counter()
    for line in proc.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+\d+ \|\s*(\S+)", line)
        if m:
            total[m[2].split(".")[0]] += int(m[1]) / 1e6
    return dict(total)


def _run(cmd: list[str], pythonpath: str) -> dict:
    """Run ``cmd`` and return wall s, CPU s (user + sys) and peak RSS (MB) of the child."""
    env = {**os.environ, "PYTHONPATH": pythonpath, "OMP_NUM_THREADS": "1"}
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    stdout, stderr = proc.stdout.read(), proc.stderr.read()
    proc.stdout.close(), proc.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{stderr.decode()[-2000:]}")
    return {
        "wall": wall,
        "cpu": usage.ru_utime + usage.ru_stime,
        "rss": usage.ru_maxrss / 1024,
        "stdout": stdout.decode(),
    }


def _baseline(commit: str, where: Path) -> Path:
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(where), commit],
        check=True,
        capture_output=True,
    )
    return where


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--baseline", default="b50d73b", help="commit to compare with (b50d73b: before the "
        "plain-torch Whisper encoder, when transformers was imported on every predict)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "predict_speed.md")
    args = parser.parse_args()
    shared = require_shared()
    audio = sorted((shared / "ravdess_speech" / "Actor_01").glob("*.flac"))
    video = sorted((shared / "ravdess_av" / "Actor_01").glob("01-01-*.mp4"))
    if not audio or not video:
        sys.exit("needs ravdess_speech/Actor_01/*.flac and ravdess_av/Actor_01/01-01-*.mp4")
    load_before = os.getloadavg()
    ours = str(ROOT / "src")
    cli = [sys.executable, "-m", "esva.cli.main", "predict"]
    rows, cold, stages, imports = [], {}, {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        base = _baseline(args.baseline, Path(tmp) / "base")
        try:
            for kind, file in (("audio", audio[0]), ("video", video[0])):
                runs: dict[str, list[dict]] = {"baseline": [], "now": []}
                for _ in range(args.repeats):  # alternated: both see the same machine load
                    for name, path in (("baseline", str(base / "src")), ("now", ours)):
                        runs[name].append(_run([*cli, str(file), "--json"], path))
                b, n = runs["baseline"], runs["now"]
                pb, pn = json.loads(b[0]["stdout"]), json.loads(n[0]["stdout"])
                # A baseline in other classes (before the fused ser7 default) cannot give the
                # same numbers: the column then says so instead of "NO".
                comparable = list(pb["probabilities"]) == list(pn["probabilities"])
                same = (
                    comparable
                    and pb["label"] == pn["label"]
                    and all(
                        abs(pb["probabilities"][c] - pn["probabilities"][c]) < 1e-6
                        for c in pb["probabilities"]
                    )
                )
                answer = ("yes" if same else "NO") if comparable else "n/a (other classes)"
                med = {k: {m: statistics.median(r[m] for r in v) for m in ("wall", "cpu", "rss")}
                       for k, v in runs.items()}  # fmt: skip
                cold[kind] = med
                for name, path in (("baseline", str(base / "src")), ("now", ours)):
                    runs_ = [_stages(file, path) for _ in range(args.repeats)]
                    stages[f"{kind} {name}"] = {
                        k: statistics.median(r.get(k, 0.0) for r in runs_) for k in runs_[0]
                    }
                    imports[f"{kind} {name}"] = _imports(file, path)
                goal = 2.5 if kind == "audio" else 3.5
                rows.append(
                    [
                        f"whole `esva predict` ({kind}, {pn['duration_s']:.1f} s clip)",
                        f"{med['baseline']['wall']:.2f} s / {med['baseline']['cpu']:.2f} s",
                        f"{med['now']['wall']:.2f} s / {med['now']['cpu']:.2f} s",
                        f"{med['now']['wall'] / med['baseline']['wall']:.2f}x / "
                        f"{med['now']['cpu'] / med['baseline']['cpu']:.2f}x",
                        f"{med['baseline']['rss']:.0f} / {med['now']['rss']:.0f} MB",
                        f"<= {goal} s; same answer: {answer}",
                    ]
                )
        finally:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)],
                capture_output=True,
            )
    files = {"audio": [str(p) for p in audio[:6]], "video": [str(p) for p in video[:4]]}
    batch = json.loads(
        _run([sys.executable, "-c", BATCH, json.dumps(files)], ours)["stdout"].splitlines()[-1]
    )
    for kind, goal in (("audio", 0.05), ("video", 0.25)):
        r = batch[kind]
        per = r["seconds"] / r["n"]
        rows.append(
            [
                f"batch per clip ({kind}, {r['n']} clips, {r['media_s'] / r['n']:.1f} s each)",
                "-",
                f"{per:.2f} s",
                f"{r['seconds'] / r['media_s']:.3f}x real time",
                f"{batch['peak_rss_mb']:.0f} MB",
                f"<= {goal}x real time",
            ]
        )
    load_after = os.getloadavg()
    header = ["measure", f"baseline {args.baseline} (wall / CPU)", "now (wall / CPU)",
              "ratio now/baseline", "peak RSS (base / now)", "goal"]  # fmt: skip
    table = markdown_table(header, rows)
    cores = os.cpu_count()
    note = (
        f"Machine: {cores} CPU cores shared with other jobs; load average "
        f"{load_before[0]:.1f} before, {load_after[0]:.1f} after (1 min). Medians of "
        f"{args.repeats} cold runs each, baseline and now alternated; OMP_NUM_THREADS=1. "
        f"CPU = user + sys time of the process (steadier than wall time under load). "
        f"Batch: model loaded once ({batch['load_s']:.1f} s), after one warm-up file."
    )
    columns = list(stages)
    names = list(dict.fromkeys(k for c in columns for k in stages[c]))
    stage_rows = [[n, *(f"{stages[c].get(n, 0.0):.2f}" for c in columns)] for n in names]
    stage_rows.append(["total", *(f"{sum(stages[c].values()):.2f}" for c in columns)])
    packages = sorted({p for c in columns for p in imports[c]},
                      key=lambda p: -max(imports[c].get(p, 0.0) for c in columns))  # fmt: skip
    import_rows = [[p, *(f"{imports[c].get(p, 0.0):.2f}" for c in columns)] for p in packages[:12]]
    import_rows.append(["all packages", *(f"{sum(imports[c].values()):.2f}" for c in columns)])
    header2 = ["stage (wall s, median)", *columns]
    text = (
        f"# esva predict speed\n\n{table}\n\n{note}\n\n"
        f"## Where the seconds go\n\nWall seconds per stage, median of {args.repeats} cold "
        f"processes per column (baseline = {args.baseline}); each process runs one "
        "`esva predict FILE --json` through the CLI's `main`, each stage wrapping the library "
        "call that does it (the total is the sum of the medians):\n\n"
        f"{markdown_table(header2, stage_rows)}\n\n"
        "`python -X importtime -m esva.cli.main predict FILE --json`, self time (s) summed per "
        "top-level package (the 12 largest), one run per column:\n\n"
        f"{markdown_table(['package', *columns], import_rows)}\n"
    )
    print(text)
    with atomic_write(args.out) as handle:
        handle.write(text)
    write_json(
        args.out.with_suffix(".json"),
        {"baseline": args.baseline, "cold": cold, "batch": batch, "stages": stages,
         "imports": imports},
    )  # fmt: skip


if __name__ == "__main__":
    main()
