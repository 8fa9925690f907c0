"""Profilers: measuring predictors, load generation, workloads, thread sweeps, metrics, environment.

``kit.profile.loadgen`` is the one measuring core: ``profile`` (one query at a time),
``compare`` (several predictors interleaved in rounds) and the load generator's scenarios
all run there, take a ``LoadConfig`` and return a ``LoadResult``. Where the time goes inside
one request (per operator) is ``kit.profile.op_profile``; where the memory goes (peak resident
memory per model, each in its own process) is ``kit.profile.memory``.
"""

from kit.profile.figures import Figure
from kit.profile.loadgen import compare, profile
from kit.profile.memory import MemoryResult, measure_memory, memory_frame
from kit.profile.metrics import Instrumented, MetricsRecorder
from kit.profile.op_profile import OpProfile, compare_op_profiles, op_profile, op_profile_summary, parse_ort_profile
from kit.profile.results import LoadResult, summary_frame
from kit.profile.scenarios import Concurrency, LoadConfig, Offline, Server, SingleStream, Steps
from kit.profile.search import find_max_rate
from kit.profile.stats import latency_summary, median_spread
from kit.profile.sysinfo import environment, environment_frame, has_fast_int8
from kit.profile.threads import ThreadSweepConfig, sweep_ort_threads, sweep_tf_threads, sweep_tflite_threads
from kit.profile.workloads import Workload

__all__ = ["Concurrency", "Figure", "Instrumented", "LoadConfig", "LoadResult", "MemoryResult", "MetricsRecorder",
    "Offline",
    "OpProfile", "Server", "SingleStream", "Steps", "ThreadSweepConfig", "Workload", "compare",
    "compare_op_profiles", "environment", "environment_frame", "find_max_rate", "has_fast_int8", "latency_summary",
    "measure_memory", "median_spread", "memory_frame", "op_profile", "op_profile_summary", "parse_ort_profile",
    "profile", "summary_frame", "sweep_ort_threads", "sweep_tf_threads", "sweep_tflite_threads"]
