"""Profilers: measuring predictors, load generation, workloads, thread sweeps, metrics, environment."""

from kit.profile.loadgen import Concurrency, LoadConfig, LoadResult, Offline, Server, SingleStream, find_max_rate
from kit.profile.metrics import Instrumented, MetricsRecorder
from kit.profile.profiler import ProfileConfig, ProfileResult, compare, profile, summary_frame
from kit.profile.stats import latency_summary, median_spread
from kit.profile.sysinfo import environment, environment_frame, has_fast_int8
from kit.profile.threads import ThreadSweepConfig, sweep_ort_threads, sweep_tf_threads, sweep_tflite_threads
from kit.profile.workloads import Workload

__all__ = ["Concurrency", "Instrumented", "LoadConfig", "LoadResult", "MetricsRecorder", "Offline",
           "ProfileConfig", "ProfileResult", "Server", "SingleStream", "ThreadSweepConfig", "Workload", "compare",
           "environment", "environment_frame", "find_max_rate", "has_fast_int8", "latency_summary",
           "median_spread", "profile", "summary_frame", "sweep_ort_threads", "sweep_tf_threads",
           "sweep_tflite_threads"]
