"""TensorFlow Serving's deployment side: what a TF Serving server reads, and ``kit serve``.

versions (``ModelRegistry``: the ``<base>/<name>/<version>/`` layout, version policies, labels),
modelconfig (``models.config``), batching_parameters (``batching_parameters.txt``), warmup
(``assets.extra/tf_serving_warmup_requests``), sources (what the server serves from), server
(``kit serve``: the Predict API over gRPC and REST). The wire codec shared with the client engine
stays in ``kit.engines.tfserving_wire``: the client is an engine, and this package imports engines,
so the codec lives on the side both can reach without a cycle.
"""

from kit.tfserving.modelconfig import VersionPolicy
from kit.tfserving.server import ModelServer, ServerConfig
from kit.tfserving.versions import ModelRegistry
from kit.tfserving.warmup import read_tfserving_warmup, write_tfserving_warmup

__all__ = ["ModelRegistry", "ModelServer", "ServerConfig", "VersionPolicy", "read_tfserving_warmup",
           "write_tfserving_warmup"]
