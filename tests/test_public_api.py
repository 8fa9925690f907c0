"""Each package's public names, pinned: a rename or removal is a decision someone makes here, not a side effect.

When a name is added or removed on purpose, update the pin in the same commit.
"""

from __future__ import annotations

import importlib

import pytest

PUBLIC = {'kit': ['CacheConfig', 'CircuitBreaker', 'CircuitOpen', 'Closed', 'ConfigError', 'ConversionError', 'Dataset',
         'DeadlineExceeded', 'DynamicBatcher', 'Figure', 'FormatUnavailable', 'InferenceError', 'InputError',
         'Instrumented', 'KitError', 'LoadConfig', 'LoadResult', 'MetricsRecorder', 'MissingDependencyError',
         'ModelArtifact',
         'ModelLoadError', 'ModelRegistry', 'ModelServer', 'Objective', 'OnnxRuntimeEngine', 'OrtOptions',
         'Overloaded', 'Predictor', 'PredictorBase', 'ProviderUnavailableError', 'QuantizationError', 'ResultCache',
         'Retry', 'Router', 'SearchSpace', 'ServingError', 'TFServingEngine', 'TensorSpec', 'Tuner', 'Wrapper',
         '__version__', 'available_formats', 'batch_axes', 'check_feeds', 'choose_providers', 'compare',
         'create_engine', 'digits_data', 'discover_providers', 'environment', 'finding', 'get_model', 'interactive',
         'lineage_frame', 'load_data', 'measure', 'publish', 'resolve_model', 'sample_feeds', 'summary_frame',
         'supports_batching', 'synthetic_feeds'],
 'kit.engines': ['ENGINES', 'Predictor', 'PredictorBase', 'Wrapper', 'create_engine'],
 'kit.export': ['Bundle', 'ExportConfig', 'TARGETS', 'describe_artifacts', 'export', 'export_tfserving',
                'export_triton', 'links_html', 'read_config', 'save_artifacts', 'save_registry', 'target_for',
                'verify'],
 'kit.loading': ['EnginePool', 'OptimizedModelCache', 'first_request_penalty', 'load_breakdown', 'warm_up',
                 'warming'],
 'kit.optimize': ['DynamicQuantConfig', 'EQUIVALENT', 'EvalConfig', 'Float16Config', 'Gate', 'PassConfig',
                  'QualityReport', 'Recommendation', 'Slice', 'StaticQuantConfig', 'TFLiteQuantConfig',
                  'apply_passes', 'compare', 'evaluate', 'graph_diff', 'graph_summary', 'keras_to_savedmodel',
                  'normalize', 'op_histogram', 'ort_optimize', 'pareto_front', 'quantize_dynamic',
                  'quantize_dynamic_within', 'quantize_static', 'quantize_tflite', 'recommend', 'savedmodel_to_onnx',
                  'savedmodel_to_tflite', 'standard_variants', 'to_float16'],
 'kit.profile': ['Concurrency', 'Figure', 'Instrumented', 'LoadConfig', 'LoadResult', 'MemoryResult', 'MetricsRecorder',
                 'Offline', 'OpProfile', 'Server', 'SingleStream', 'Steps', 'ThreadSweepConfig', 'Workload',
                 'compare', 'compare_op_profiles', 'environment', 'environment_frame', 'find_max_rate',
                 'has_fast_int8', 'latency_summary', 'measure_memory', 'median_spread', 'memory_frame',
                 'op_profile', 'op_profile_summary', 'parse_ort_profile', 'profile', 'summary_frame',
                 'sweep_ort_threads', 'sweep_tf_threads', 'sweep_tflite_threads'],
 'kit.report': ['PROFILES', 'finding', 'interactive', 'is_headless', 'list_notebooks', 'parameters',
                'profile_parameters', 'publish'],
 'kit.serve': ['BatchingConfig', 'BreakerConfig', 'CacheConfig', 'CircuitBreaker', 'DynamicBatcher', 'FaultConfig',
               'FaultInjector', 'Fixed', 'LatencyAware', 'Ledgered', 'RequestLedger', 'ResultCache', 'Retry',
               'RetryPolicy', 'Router', 'Rules', 'ScalingConfig', 'ScalingPool', 'Shadow', 'Timeout',
               'WeightedSplit'],
 'kit.tfserving': ['ModelRegistry', 'ModelServer', 'ServerConfig', 'VersionPolicy', 'read_tfserving_warmup',
                   'write_tfserving_warmup'],
 'kit.tune': ['BestTrial', 'OBJECTIVES', 'Objective', 'OrtEvaluator', 'SearchSpace', 'TrialConfig', 'Tuner',
              'batch_plan', 'classification_accuracy'],
 'kit.zoo': ['DigitsData', 'MODELS', 'MODEL_FORMATS', 'RETIRED', 'ZOO_FORMATS', 'cache_root', 'check_name',
             'digits_data', 'eval_hints', 'get_model', 'model_inputs', 'quality_caveat', 'sample_feeds',
             'zoo_samples']}


@pytest.mark.parametrize("package", sorted(PUBLIC))
def test_public_names_are_pinned_and_importable(package):
    module = importlib.import_module(package)
    assert sorted(module.__all__) == PUBLIC[package]
    assert [name for name in module.__all__ if not hasattr(module, name)] == []
