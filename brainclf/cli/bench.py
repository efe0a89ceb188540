"""python -m brainclf bench: runs brainclf.serving.bench, prints its table and writes its JSON."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from .common import say
from .prediction import check_output_file


def cmd_bench(args) -> int:
    from ..data import resolve_data_root
    from ..errors import ConfigError
    from ..serving import format_bench, run_bench

    if not 1 <= args.runs <= 10_000:
        raise ConfigError(f"--runs must be between 1 and 10000, got {args.runs}.")
    if args.json_out:
        check_output_file(args.json_out, "--json-out", overwrite=args.overwrite)  # before minutes of measuring
    warnings.filterwarnings("ignore", category=UserWarning)  # Keras input-structure notes on the naive path
    res = run_bench([Path(m) for m in args.model], resolve_data_root(args.data), app=not args.no_app,
                    runs=args.runs)
    say(format_bench(res))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(res, indent=1))
        say(f"wrote {args.json_out}")
    return 0


def add_parsers(sub) -> None:
    b = sub.add_parser("bench", help="measure speed on this machine (not a test)",
                       description="Model load, single-image latency (preprocess, forward, Grad-CAM) vs the naive "
                       "path, evaluation throughput, training s/epoch, peak memory and app cold start.")
    b.add_argument("--model", nargs="+", default=["models/seed.keras", "models/default.keras"])
    b.add_argument("--data", help="dataset root with Testing/ (default: $BRAINCLF_DATA)")
    b.add_argument("--runs", type=int, default=50, help="timed runs per latency figure (after warm-up)")
    b.add_argument("--json-out", default="bench.json", help="also write the results here, a new file (default "
                   "bench.json; '' for none)")
    b.add_argument("--overwrite", action="store_true", help="replace an existing --json-out file")
    b.add_argument("--no-app", action="store_true", help="skip the app cold-start measurement")
    b.set_defaults(func=cmd_bench)
