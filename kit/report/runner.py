"""The main job: execute notebooks with papermill, export HTML, write an index.

Each notebook gets ``<stem>.ipynb`` (executed), ``<stem>.html`` (code-free with ``hide_code``),
``<stem>.params.json``, ``<stem>.results.json`` and ``thumbs/<stem>.png`` (its key plot); the run
gets ``environment.json``, ``run.json`` and ``index.html``. Every path in ``run.json`` is relative
to the run folder, so the folder can be copied anywhere and its index still works.
A failing notebook is recorded as failed with its error and the others still run; the
caller exits non-zero.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kit._quiet import silenced_stderr
from kit.errors import ConfigError, first_line
from kit.report.executed import thumbnail_for
from kit.report.index import write_index
from kit.report.profiles import (
    NOTEBOOK_DIR,
    PROFILES,
    check_parameters,
    list_notebooks,
    profile_parameters,
    typed_parameters,
)
from kit.report.publish import HEADLESS_ENV, RESULTS_ENV
from kit.report.skips import NotebookSkipped

log = logging.getLogger(__name__)

QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "1", "PYTHONWARNINGS": "ignore",
             "ABSL_MIN_LOG_LEVEL": "3", "GRPC_VERBOSITY": "ERROR"}


@dataclass
class NotebookRun:
    """Outcome of one notebook: status, timings, error and where its files are."""

    notebook: str
    status: str = "pending"
    seconds: float = 0.0
    error: str | None = None
    failed_cell: int | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    headline: dict[str, Any] = field(default_factory=dict)
    skipped_sections: dict[str, str] = field(default_factory=dict)
    html: str | None = None
    model: str | None = None
    title: str | None = None
    findings: list[str] = field(default_factory=list)
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    thumbnail: str | None = None
    executed: str | None = None


def resolve_notebooks(names: Sequence[str] | None, directory: Path = NOTEBOOK_DIR) -> list[Path]:
    """Notebook paths from names such as ``00_engines``, ``00_engines.ipynb`` or a path."""
    available = list_notebooks(directory)
    if not names:
        return available
    chosen = []
    for name in names:
        path = Path(name)
        if path.suffix == ".ipynb" and path.exists():
            chosen.append(path)
            continue
        matches = [p for p in available if p.stem == path.stem or p.stem.startswith(path.stem)]
        if len(matches) != 1:
            raise ConfigError(f"notebook {name!r} matches {[p.name for p in matches] or 'nothing'}; "
                              f"available: {[p.stem for p in available]}")
        chosen.append(matches[0])
    return chosen


def export_html(executed: Path, target: Path, hide_code: bool = False) -> None:
    import nbformat
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(exclude_input=hide_code, exclude_input_prompt=hide_code,
                            exclude_output_prompt=hide_code)
    exporter.log.setLevel(logging.ERROR)  # e.g. "alternative text is missing" for every plot
    body, _ = exporter.from_notebook_node(nbformat.read(executed, as_version=4))
    target.write_text(body, encoding="utf-8")


def run_notebook(notebook: Path, out_dir: Path, profile: str, hide_code: bool = False,
                 extra_parameters: dict[str, Any] | None = None, timeout_s: int = 1800) -> NotebookRun:
    """Execute one notebook into ``out_dir``; never raises for a notebook's own failure."""
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    params = {**profile_parameters(notebook, profile), **(extra_parameters or {})}
    run = NotebookRun(notebook=notebook.stem, parameters=params)
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        check_parameters(notebook, params)
    except ConfigError as exc:
        run.status, run.error = "failed", f"ConfigError: {exc}"
        return run
    executed = out_dir / f"{notebook.stem}.ipynb"
    results = out_dir / f"{notebook.stem}.results.json"
    for stale in (results, executed):  # a failed start must not show the previous run's results
        stale.unlink(missing_ok=True)
    (out_dir / f"{notebook.stem}.params.json").write_text(json.dumps(params, indent=2))
    saved_env = {k: os.environ.get(k) for k in (RESULTS_ENV, HEADLESS_ENV, *QUIET_ENV)}
    os.environ.update({RESULTS_ENV: str(results.resolve()), HEADLESS_ENV: "1", **QUIET_ENV})
    start = time.perf_counter()
    try:
        with silenced_stderr():  # the kernel's own start-up chatter; failures are recorded below
            pm.execute_notebook(str(notebook), str(executed), parameters=params, kernel_name="python3",
                                progress_bar=False, cwd=str(notebook.parent), execution_timeout=timeout_s,
                                log_output=False)
        run.status = "ok"
    except PapermillExecutionError as exc:
        if exc.ename == NotebookSkipped.__name__:  # nothing in it applies to this model: not a failure
            run.status, run.error = "skipped", exc.evalue
        else:
            run.status, run.failed_cell = "failed", exc.exec_count
            run.error = f"{exc.ename}: {exc.evalue}"
    except Exception as exc:  # kernel died, timeout, bad notebook: record and go on
        run.status, run.error = "failed", f"{type(exc).__name__}: {first_line(exc)}"
    finally:
        run.seconds = time.perf_counter() - start
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    collect_outputs(run, out_dir, notebook.stem, hide_code)
    return run


def _artifact_records(recorded: dict[str, Any]) -> list[dict[str, Any]]:
    """The artifacts a notebook saved (``save_artifacts``' records), top-level or published as a table."""
    records = recorded.get("artifacts")
    if records is None:
        records = (recorded.get("tables") or {}).get("artifacts")
    if not isinstance(records, list):
        return []
    return [r for r in records if isinstance(r, dict) and isinstance(r.get("file"), str)]


def collect_outputs(run: NotebookRun, out_dir: Path, stem: str, hide_code: bool = False) -> NotebookRun:
    """Fill ``run`` from what the notebook left in ``out_dir``: its results JSON (headline, findings,
    skipped sections, artifacts), its HTML export, key-plot thumbnail and title. Never raises for a
    notebook's own files: what cannot be made is left out and, for the HTML, said in ``run.error``."""
    results = out_dir / f"{stem}.results.json"
    recorded: Any = None
    if results.exists():
        try:
            recorded = json.loads(results.read_text())
        except (OSError, ValueError) as exc:
            log.warning("unreadable %s: %s", results.name, exc)
    if isinstance(recorded, dict):
        headline, skipped = recorded.get("headline"), recorded.get("skipped_sections")
        run.headline = headline if isinstance(headline, dict) else {}
        run.skipped_sections = skipped if isinstance(skipped, dict) else {}
        findings = recorded.get("findings")
        run.findings = [str(f) for f in findings] if isinstance(findings, list) else []
        run.artifacts = _artifact_records(recorded)
    executed = out_dir / f"{stem}.ipynb"
    if executed.exists():
        run.executed = executed.name
        html = out_dir / f"{stem}.html"
        try:
            export_html(executed, html, hide_code)
            run.html = html.name
        except Exception as exc:  # the run is still recorded; the index says why there is no page
            run.error = (run.error or "") + f" (HTML export failed: {exc})"
        try:
            run.thumbnail, run.title = thumbnail_for(executed, out_dir)
        except Exception as exc:  # e.g. a notebook file the kernel left half-written
            log.warning("no thumbnail for %s: %s", executed.name, exc)
    return run


def _slug(model: str) -> str:
    """A folder name for a model's sub-report: the zoo name, or the file's stem."""
    stem = Path(model).name
    for suffix in (".onnx", ".tflite", ".keras"):
        stem = stem.removesuffix(suffix)
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in stem) or "model"


def _check_model(model: str) -> None:
    """Refuse a model that cannot be one, before any folder is written or kernel started.

    A user's file is also loaded once in its own format: a model its runtime cannot load (a TFLite
    custom op, a corrupt graph) would otherwise fail every notebook with the same error.
    """
    from kit.engines import create_engine
    from kit.models import resolve_model

    artifact = resolve_model(model)
    if Path(model).exists() and artifact.format != "keras":  # a .keras file is served as its SavedModel
        create_engine(artifact).close()


def run_reports(profile: str = "full", notebooks: Sequence[str] | None = None,
                out: str | Path = "reports/latest", hide_code: bool = False, models: Sequence[str] | None = None,
                data: str | None = None, parameters: Sequence[tuple[str, str]] = ()) -> list[NotebookRun]:
    """Run every (or the named) notebook with ``profile`` into ``out`` and write the index.

    With ``models``, each model gets its own sub-report ``out/<model>/`` and the top index has a
    row per model and notebook. ``data`` and ``parameters`` (``-p NAME VALUE`` pairs, typed by
    each notebook's declared types) go to every notebook that declares them. Every input is
    checked before anything is written.
    """
    from tqdm.auto import tqdm

    from kit.profile.sysinfo import environment

    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; expected one of {PROFILES}")
    paths = resolve_notebooks(notebooks)
    pairs = list(parameters)
    if data:
        pairs.append(("data", str(Path(data).absolute()) if ":" not in data or Path(data).exists() else data))
    extra = typed_parameters(paths, pairs)
    for path in paths:  # fail fast, before any kernel starts
        check_parameters(path, {**profile_parameters(path, profile), **extra[path.stem]})
    targets: list[str | None] = [None]
    if models:
        for model in models:
            _check_model(model)
        targets = [str(Path(m).absolute()) if Path(m).exists() else m for m in models]
        slugs = [_slug(m) for m in targets]
        if len(set(slugs)) != len(slugs):
            raise ConfigError(f"two models would share a report folder: {slugs}; rename one file")
    out_dir = _writable_folder(Path(out))
    env = environment()
    (out_dir / "environment.json").write_text(json.dumps(env, indent=2, default=str))
    runs: list[NotebookRun] = []
    started = time.time()
    jobs = [(model, path) for model in targets for path in paths]
    bar = tqdm(jobs, desc=f"kit report ({profile})", unit="notebook")
    for model, path in bar:
        sub = None if model is None else _slug(model)  # the model's sub-report folder
        label = path.stem if sub is None else f"{sub}/{path.stem}"
        bar.set_postfix_str(label)
        params = dict(extra[path.stem]) | ({"model": model} if model is not None else {})
        run = run_notebook(path, out_dir if sub is None else out_dir / sub, profile, hide_code,
                           extra_parameters=params)
        run.model = model
        if sub is not None:  # paths in run.json are relative to the top folder, where the index is
            run.html, run.thumbnail, run.executed = (None if f is None else f"{sub}/{f}"
                                                     for f in (run.html, run.thumbnail, run.executed))
            run.artifacts = [{**a, "file": f"{sub}/{a['file']}"} for a in run.artifacts]
        runs.append(run)
        bar.write(f"{run.status:>7}  {run.seconds:6.1f} s  {label}" + (f"  {run.error}" if run.error else ""))
    summary = {"profile": profile, "started": started, "seconds": time.time() - started,
               "environment": env, "models": [m for m in targets if m is not None],
               "data": data, "overrides": [list(p) for p in parameters], "hide_code": hide_code,
               "notebooks": [asdict(r) for r in runs]}
    (out_dir / "run.json").write_text(json.dumps(summary, indent=2, default=str))
    write_index(out_dir, summary)
    return runs


def _writable_folder(out: Path) -> Path:
    """``out`` created if missing; a file in the way or a read-only folder is a ``ConfigError``."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder for the report")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".kit-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"cannot write the report into {out}: {exc.strerror or exc}") from exc
    return out
