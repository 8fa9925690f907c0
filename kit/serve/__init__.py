"""Serving strategies: each wraps a Predictor and is one (cache, batching, routing, resilience...).

Import the modules you need (``kit.serve.cache``, ``kit.serve.sessions``...) directly;
this package imports nothing so that each stays optional and ``import kit`` stays fast.
"""
