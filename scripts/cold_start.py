"""Cold start as a clinician meets it: `streamlit run app.py` → root URL → Predict → upload → Grad-CAM.

Starts a fresh server per run (local mode, the bundled default model) on 127.0.0.1 and drives Debian's
chromium with Playwright; the browser is launched before the server so its own start-up is not counted.
Prints every run's timeline (seconds since `streamlit run`) and the median; --json writes them. A
benchmark, not a test: run it on an idle machine.

    .venv/bin/python scripts/cold_start.py [--runs 5] [--image SLICE.png] [--visit-after S] [--json OUT.json]

Without --image it uploads brainclf.serving.bench.synthetic_slice() (made up: no dataset image).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from brainclf.model import machine_description  # noqa: E402
from brainclf.serving import bench_app, synthetic_slice  # noqa: E402

STEPS = ("health_s", "home_s", "predict_page_s", "result_s", "first_prediction_s", "visit_to_prediction_s")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--image", type=Path, help="the slice to upload (default: a synthetic one)")
    ap.add_argument("--timeout", type=float, default=90)
    ap.add_argument("--json", type=Path, help="write the timelines here")
    ap.add_argument("--visit-after", type=float, default=0.0, metavar="S",
                    help="the first visit comes S seconds after the server is healthy (a server started before "
                    "anyone visits); default 0: at once, as `make run` and a browser opened right away")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        image = args.image
        if image is None:
            image = Path(tmp) / "synthetic.png"
            synthetic_slice().save(image)
        runs = []
        for i in range(args.runs):
            res = bench_app(image, timeout=args.timeout, visit_after=args.visit_after)
            runs.append(res)
            errors = {k: v for k, v in res.items() if k.endswith("_error")}
            print(f"run {i + 1}: " + "  ".join(f"{k[:-2]} {res[k]:.1f} s" for k in STEPS if k in res)
                  + (f"  {errors}" if errors else ""), flush=True)
    medians = {k: statistics.median(r[k] for r in runs) for k in STEPS if all(k in r for r in runs)}
    print(f"median of {args.runs} on {machine_description()}: "
          + "  ".join(f"{k[:-2]} {v:.1f} s" for k, v in medians.items()))
    if args.json:
        args.json.write_text(json.dumps({"machine": machine_description(), "runs": runs, "median": medians},
                                        indent=2))
    return 0 if "first_prediction_s" in medians else 1


if __name__ == "__main__":
    sys.exit(main())
