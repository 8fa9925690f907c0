"""One parameters class per notebook: the fields are the names in its ``parameters`` cell.

The mechanism (checks, ``from_globals``) is ``kit.report.parameters``; the same name keeps the
same check and unit in every class here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kit.engines.onnxruntime import GRAPH_OPTIMIZATION_LEVELS
from kit.errors import ConfigError
from kit.report.parameters import (
    BATCH_SIZES,
    DATA,
    INPUT_SHAPES,
    MIN_DURATION,
    MODEL,
    MONITOR_REQUESTS,
    ROUNDS,
    SEED,
    VALUE_RANGES,
    NotebookParameters,
    between,
    flag,
    int_between,
    list_of,
    non_empty_text,
    non_negative_int,
    non_negative_number,
    one_of,
    param,
    positive_int,
    positive_number,
    ranges,
    register,
    shapes,
    text,
)

ENGINE_NAMES = ("onnxruntime", "tensorflow", "tflite")
MEMORY_ROUNDS = "fresh processes per variant measuring peak memory, interleaved; their range is its spread"
PADDING_MASK = ("mask input -> outputs with a sequence axis, compared only where the mask is 1 (real tokens), "
                "e.g. {'attention_mask': ['last_hidden_state']}; {} uses the zoo's")


def padding_masks(name: str, value: Any) -> None:
    """``EvalConfig.padding_mask``'s own check: one rule for the notebook parameter and the config field."""
    from kit.optimize.evaluate import check_padding_mask

    check_padding_mask(value)


@dataclass(frozen=True)
class ModelParameters(NotebookParameters):
    """The four parameters every notebook opens with: which model, and what to feed it."""

    model: str = param(non_empty_text, MODEL)
    data: str = param(text, DATA)
    input_shapes: dict = param(shapes, INPUT_SHAPES)
    value_ranges: dict = param(ranges, VALUE_RANGES)


@register
@dataclass(frozen=True)
class EnginesParameters(ModelParameters):
    notebook = "00_engines"
    engines: tuple[str, ...] = param(list_of(one_of(*ENGINE_NAMES)), "engines to run the model on")
    batch_sizes: tuple[int, ...] = param(list_of(positive_int), BATCH_SIZES)
    intra_op_num_threads: int = param(positive_int, "intra-op threads for every engine")
    min_duration_s: float = param(positive_number, MIN_DURATION)
    rounds: int = param(positive_int, ROUNDS)
    monitor_requests: int = param(positive_int, MONITOR_REQUESTS)


@register
@dataclass(frozen=True)
class QuantizationParameters(ModelParameters):
    notebook = "01_quantization"
    batch_sizes: tuple[int, ...] = param(list_of(positive_int), BATCH_SIZES)
    accuracy_budget: float = param(non_negative_number, "allowed accuracy drop, percentage points")
    min_cosine: float = param(between(-1.0, 1.0), "minimum cosine similarity of outputs to float32")
    calibration_method: str = param(one_of("minmax", "entropy", "percentile"), "static calibration method")
    calibration_samples: int = param(positive_int, "samples that calibrate static quantization")
    eval_samples: int = param(positive_int, "samples every variant is compared with float32 on")
    padding_mask: dict = param(padding_masks, PADDING_MASK)
    min_duration_s: float = param(positive_number, MIN_DURATION)
    rounds: int = param(positive_int, ROUNDS)
    memory_rounds: int = param(positive_int, MEMORY_ROUNDS)
    fallback_search: bool = param(flag, "also make dynamic int8 with the noisiest MatMuls kept in float")
    tflite_modes: tuple[str, ...] = param(
        list_of(one_of("dynamic_range", "float16", "full_integer", "integer_float_fallback"), allow_empty=True),
        "TFLite post-training recipes ([] skips)")
    monitor_requests: int = param(positive_int, MONITOR_REQUESTS)


@register
@dataclass(frozen=True)
class GraphOptimizationParameters(ModelParameters):
    notebook = "02_graph_optimization"
    passes: tuple[str, ...] = param(list_of(non_empty_text, allow_empty=True), "onnxoptimizer passes, in order")
    graph_optimization_levels: tuple[str, ...] = param(list_of(one_of(*GRAPH_OPTIMIZATION_LEVELS)),
                                                       "ONNX Runtime offline optimization levels to write")
    batch_sizes: tuple[int, ...] = param(list_of(positive_int), BATCH_SIZES)
    eval_samples: int = param(positive_int, "samples every variant is compared with the original on")
    min_duration_s: float = param(positive_number, MIN_DURATION)
    rounds: int = param(positive_int, ROUNDS)
    memory_rounds: int = param(positive_int, MEMORY_ROUNDS)
    load_repeats: int = param(positive_int, "session loads per variant for the load-time comparison")
    monitor_requests: int = param(positive_int, MONITOR_REQUESTS)

    def check_together(self) -> None:
        from kit.optimize.graph import PassConfig

        PassConfig(passes=self.passes)  # an unknown pass fails here, listing the valid ones


@register
@dataclass(frozen=True)
class CachingParameters(ModelParameters):
    notebook = "03_caching"
    skews: tuple[float, ...] = param(list_of(non_negative_number), "Zipf skews of the request streams, 0 is uniform")
    requests: int = param(positive_int, "requests per stream")
    pool_size: int = param(positive_int, "distinct inputs the streams draw from")
    max_entries: int = param(positive_int, "result cache bound in entries")
    max_bytes: int = param(positive_int, "result cache bound in bytes")
    load_repeats: int = param(positive_int, "fresh loads per cold/warm start measurement")
    warmup_requests: int = param(positive_int, "warm-up requests run right after a load")
    warmup_file_records: int = param(int_between(1, 1000), "requests in the TF Serving warm-up file (1 to 1000)")
    monitor_requests: int = param(positive_int, MONITOR_REQUESTS)


@register
@dataclass(frozen=True)
class ProvidersParameters(ModelParameters):
    notebook = "04_providers"
    candidates: tuple[str, ...] = param(list_of(non_empty_text), "execution providers to try, in priority order")
    batch_sizes: tuple[int, ...] = param(list_of(positive_int), BATCH_SIZES)
    rounds: int = param(positive_int, ROUNDS)
    min_duration_s: float = param(positive_number, MIN_DURATION)
    cuda_device_id: int = param(non_negative_int, "CUDA device used when CUDA runs")
    cuda_mem_limit_mb: int = param(non_negative_int, "cap of the CUDA memory arena, MB (0: no cap)")
    cudnn_conv_algo_search: str = param(one_of("EXHAUSTIVE", "HEURISTIC", "DEFAULT"), "cuDNN convolution search")
    trt_fp16: bool = param(flag, "TensorRT: allow float16 kernels")
    trt_engine_cache_dir: str = param(text, "TensorRT: directory keeping built engines ('': no cache)")
    thread_batch_size: int = param(positive_int, "batch size of the thread sweeps")
    intra_op_num_threads: tuple[int, ...] = param(list_of(non_negative_int), "intra-op thread counts to sweep")
    inter_op_num_threads: tuple[int, ...] = param(list_of(non_negative_int), "inter-op thread counts to sweep")
    execution_modes: tuple[str, ...] = param(list_of(one_of("sequential", "parallel")), "ORT execution modes")
    tf_sweep: bool = param(flag, "also sweep TensorFlow SavedModel threads")
    seed: int = param(non_negative_int, SEED)
    monitor_requests: int = param(positive_int, MONITOR_REQUESTS)

    def check_together(self) -> None:
        from kit.engines.providers import validate_provider_names

        validate_provider_names(self.candidates)


@register
@dataclass(frozen=True)
class BatchingParameters(ModelParameters):
    notebook = "05_batching"
    engines: tuple[str, ...] = param(list_of(one_of("onnxruntime", "tensorflow")), "engines to compare")
    max_batch_size: int = param(positive_int, "batcher max_batch_size: rows per batch, never more")
    batch_timeouts_micros: tuple[int, ...] = param(list_of(non_negative_int), "batch_timeout_micros values")
    concurrency_levels: tuple[int, ...] = param(list_of(positive_int), "closed-loop clients per curve point")
    max_enqueued_batches: int = param(positive_int, "batcher queue bound, in batches")
    min_duration_s: float = param(positive_number, MIN_DURATION)
    min_queries: int = param(positive_int, "minimum measured queries per point")
    offline_rounds: int = param(positive_int,
                                "rounds of the batch-1 vs full-batch measurement and of the busiest closed-loop point")
    latency_target_ms: float = param(positive_number, "p99 latency target, ms")
    rate_search_runs: int = param(positive_int, "open-loop runs spent per rate search")
    monitor_s: float = param(positive_number, "seconds of traffic per monitored variant")

    def check_together(self) -> None:
        if self.rate_search_runs < 2:
            raise ConfigError(f"rate_search_runs must be >= 2 (one rate that meets the target, one that misses), "
                              f"got {self.rate_search_runs}")
        if list(self.concurrency_levels) != sorted(self.concurrency_levels):
            raise ConfigError(f"concurrency_levels must increase, got {list(self.concurrency_levels)}")


@register
@dataclass(frozen=True)
class RoutingParameters(ModelParameters):
    notebook = "06_hybrid_routing"
    batch_sizes: tuple[int, ...] = param(list_of(positive_int), BATCH_SIZES)
    rounds: int = param(positive_int, ROUNDS)
    min_duration_s: float = param(positive_number, MIN_DURATION)
    requests: int = param(positive_int, "requests per routing policy (over all rounds)")
    rule_batch_threshold: int = param(positive_int, "Rules policy: batches of at least this size go to TF")
    canary_percent: float = param(between(0.0, 100.0), "weighted policy: share sent to the gRPC route, %")
    ewma_alpha: float = param(between(1e-9, 1.0), "latency-aware policy: EWMA smoothing factor in (0, 1]")
    explore: float = param(between(0.0, 1.0), "latency-aware policy: share of random picks")
    seed: int = param(non_negative_int, SEED)
    monitor_requests: int = param(positive_int, MONITOR_REQUESTS)


@register
@dataclass(frozen=True)
class SchedulingParameters(ModelParameters):
    notebook = "07_scheduling"
    worker_bound_model: str = param(non_empty_text, "worker-bound scenario: model behind the remote wait")
    remote_wait_ms: float = param(non_negative_number, "worker-bound scenario: wait per request, ms")
    min_workers: int = param(positive_int, "fewest workers the pool keeps")
    max_workers: int = param(positive_int, "most workers the pool may start")
    interval_s: float = param(positive_number, "how often the pool reads the machine and decides, s")
    queue_high: float = param(positive_number, "queued requests per worker at which load counts as high")
    queue_low: float = param(non_negative_number, "queued requests per worker at or below which load is low")
    latency_target_ms: float = param(non_negative_number, "p95 latency above which load is high, ms (0: none)")
    cpu_high_percent: float = param(between(0.0, 100.0), "CPU at which scaling up holds, %")
    memory_high_percent: float = param(between(0.0, 100.0), "memory use at which the pool sheds workers, %")
    up_after: int = param(positive_int, "consecutive high readings before adding a worker")
    down_after: int = param(positive_int, "consecutive low readings before removing one")
    cooldown_s: float = param(non_negative_number, "no second change within this long of the last, s")
    low_load: float = param(positive_number, "offered load in the quiet phases, fraction of one worker")
    high_load: float = param(positive_number, "offered load in the busy phase, same unit")
    phase_seconds: tuple[float, ...] = param(list_of(positive_number, unique=False), "quiet, busy, quiet, s")
    rounds: int = param(positive_int, "step loads per pool, interleaved; their p99s' range is the p99's spread")
    seed: int = param(non_negative_int, SEED)
    monitor_s: float = param(positive_number, "seconds of busy-phase traffic per monitored scenario")

    def check_together(self) -> None:
        if self.min_workers > self.max_workers:
            raise ConfigError(f"min_workers {self.min_workers} must be <= max_workers {self.max_workers}")
        if self.queue_low >= self.queue_high:
            raise ConfigError(f"queue_low {self.queue_low} must be below queue_high {self.queue_high}")
        if not 0 < self.low_load < self.high_load:
            raise ConfigError(f"need 0 < low_load < high_load, got {self.low_load} and {self.high_load}")
        if len(self.phase_seconds) != 3:
            raise ConfigError(f"phase_seconds must hold 3 durations (quiet, busy, quiet), got {self.phase_seconds}")


@register
@dataclass(frozen=True)
class AutotuneParameters(ModelParameters):
    notebook = "08_autotune"
    variants: tuple[str, ...] = param(list_of(one_of("fp32", "int8")), "model variants to try")
    intra_op_num_threads: tuple[int, ...] = param(list_of(non_negative_int), "intra-op thread counts to try")
    graph_optimization_levels: tuple[str, ...] = param(list_of(one_of(*GRAPH_OPTIMIZATION_LEVELS)),
                                                       "ONNX Runtime graph optimization levels to try")
    batch_sizes: tuple[int, ...] = param(list_of(positive_int), "batcher max_batch_size values to try")
    batch_timeouts_micros: tuple[int, ...] = param(list_of(non_negative_int), "batch_timeout_micros values to try")
    objective: str = param(one_of("throughput", "p95_latency"), "what the search optimizes")
    accuracy_budget: float = param(non_negative_number, "allowed accuracy drop, percentage points")
    p99_target_ms: float = param(positive_number, "largest accepted p99 latency, ms")
    arrival_rate: float = param(positive_number, "requests per second the batcher sees")
    sampler: str = param(one_of("tpe", "grid"), "search: Optuna's TPE or every grid point")
    n_trials: int = param(positive_int, "TPE trials (a grid search runs every point)")
    min_duration_s: float = param(positive_number, MIN_DURATION)
    storage: str = param(text, "Optuna storage URL; empty: SQLite in a fresh folder")
    study: str = param(text, "study name; one that exists in storage is attached to, read-only")
    monitor_s: float = param(positive_number, "seconds of load on the served configuration")


@register
@dataclass(frozen=True)
class VersionsParameters(ModelParameters):
    notebook = "09_versions_and_resilience"
    canary_steps: tuple[float, ...] = param(list_of(between(1e-9, 100.0)), "canary traffic percentages, in order")
    requests_per_step: int = param(positive_int, "requests at each canary step")
    canary_error_rate: float = param(between(0.0, 1.0), "error rate injected into the bad release")
    max_canary_error_rate: float = param(between(0.0, 1.0), "roll the canary back above this error rate")
    fault_error_rate: float = param(between(0.0, 1.0), "error rate injected on the primary route")
    fault_slow_rate: float = param(between(0.0, 1.0), "fraction of primary calls slowed down")
    fault_slow_ms: float = param(non_negative_number, "extra latency of a slowed call, ms")
    outage_hang_ms: float = param(non_negative_number, "during the outage round every call hangs this long, ms")
    requests: int = param(positive_int, "requests per resilience configuration (over all rounds)")
    rounds: int = param(positive_int, ROUNDS)
    timeout_ms: float = param(positive_number, "per-attempt timeout on the primary, ms")
    retry_attempts: int = param(positive_int, "attempts of the retry wrapper, first try included")
    breaker_failures: int = param(positive_int, "consecutive failures that open the breaker")
    breaker_cool_down_ms: float = param(positive_number, "how long the breaker stays open before probing, ms")
    seed: int = param(non_negative_int, SEED)

    def check_together(self) -> None:
        if self.rounds < 3 or self.requests < self.rounds:
            raise ConfigError(f"need rounds >= 3 (the middle one is the outage) and requests >= rounds, got "
                              f"rounds={self.rounds}, requests={self.requests}")
