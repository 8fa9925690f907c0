"""Profilers: measuring predictors, latency statistics, environment capture."""

from kit.profile.profiler import ProfileConfig, ProfileResult, compare, profile, results_frame
from kit.profile.stats import latency_summary, median_spread
from kit.profile.sysinfo import environment, environment_frame, has_fast_int8

__all__ = ["ProfileConfig", "ProfileResult", "compare", "environment", "environment_frame",
           "has_fast_int8", "latency_summary", "median_spread", "profile", "results_frame"]
