"""Profilers: measuring predictors, load generation, workloads, thread sweeps, metrics, environment.

``kit.profile.loadgen`` is the one measuring core: ``profile`` (one query at a time),
``compare`` (several predictors interleaved in rounds) and the load generator's scenarios
all run there, take a ``LoadConfig`` and return a ``LoadResult``.
"""

from kit.profile.figures import Figure
from kit.profile.loadgen import compare, profile
from kit.profile.metrics import Instrumented, MetricsRecorder
from kit.profile.results import LoadResult, summary_frame
from kit.profile.scenarios import Concurrency, LoadConfig, Offline, Server, SingleStream, Steps
from kit.profile.search import find_max_rate
from kit.profile.stats import latency_summary, median_spread
from kit.profile.sysinfo import environment, environment_frame, has_fast_int8
from kit.profile.threads import ThreadSweepConfig, sweep_ort_threads, sweep_tf_threads, sweep_tflite_threads
from kit.profile.workloads import Workload

__all__ = ["Concurrency", "Figure", "Instrumented", "LoadConfig", "LoadResult", "MetricsRecorder", "Offline", "Server",
    "SingleStream", "Steps", "ThreadSweepConfig", "Workload", "compare", "environment", "environment_frame",
    "find_max_rate", "has_fast_int8", "latency_summary", "median_spread", "profile", "summary_frame",
    "sweep_ort_threads", "sweep_tf_threads", "sweep_tflite_threads"]
