"""float16 conversion (``onnxconverter_common.float16``) that survives models from elsewhere.

Float32 inputs and outputs are kept (``keep_io_types``); op types that break the converter
(``Cast`` type mismatches and the like) are kept in float32 and named in the lineage;
subgraphs are sorted and outputs consumed inside the graph split so the converter's
casts land where ONNX Runtime accepts them. The result passes the same self-check as a
quantized variant (kit.optimize.prepare).
"""

from __future__ import annotations

import copy
import logging
import re
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kit.artifacts import ModelArtifact, as_artifact, atomic_output
from kit.config import resolve
from kit.errors import QuantizationError, first_line
from kit.optimize.normalize import MAX_IR_VERSION, ModelSource
from kit.optimize.prepare import (
    _check_feeds,
    _default_out,
    _exclusions,
    _onnx,
    _tuple,
    check_original,
    prepare,
    self_check,
    verify,
)
from kit.optimize.quality import Slices

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Float16Config:
    """float16 weights and compute with float32 inputs and outputs kept (``keep_io_types``)."""

    keep_io_types: bool = True
    exclude_op_types: tuple[str, ...] = ()
    exclude_nodes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("exclude_op_types", "exclude_nodes"):
            object.__setattr__(self, name, _tuple(getattr(self, name), name))

    @property
    def tag(self) -> str:
        return "fp16"

def _split_consumed_outputs(model) -> int:
    """Give each graph output that other nodes also read its own Identity; returns how many.

    ``convert_float_to_float16(keep_io_types=True)`` casts such an output back to float32
    and then feeds that float32 tensor to the float16 consumers, which ONNX Runtime
    rejects (type mismatch); routing the output through an Identity avoids it.
    """
    from onnx import helper

    outputs = {o.name for o in model.graph.output}
    consumed = {i for node in model.graph.node for i in node.input} & outputs
    for name in consumed:
        inner = f"{name}__kit_inner"
        for node in model.graph.node:
            for idx, value in enumerate(node.output):
                if value == name:
                    node.output[idx] = inner
            for idx, value in enumerate(node.input):
                if value == name:
                    node.input[idx] = inner
        model.graph.node.append(helper.make_node("Identity", [inner], [name], name=f"{name}__kit_output"))
    return len(consumed)


_NODE_IN_ERROR = re.compile(r"\b[Nn]ode \(([^)]*)\)")  # "of node (x)", "in node (x)", "Node (x)"


def _all_nodes(model) -> list:
    from kit.optimize.normalize import subgraphs

    return [n for g in (model.graph, *subgraphs(model.graph)) for n in g.node]


def _float32_casts(model) -> list[str]:
    """``Cast(to=FLOAT)`` nodes: onnxconverter-common retypes their outputs to float16 but not their ``to``,
    which ONNX Runtime rejects ("Type (tensor(float16)) of output arg ... does not match expected type")."""
    return [n.name for n in _all_nodes(model) if n.op_type == "Cast"
            and any(a.name == "to" and a.i == _onnx().TensorProto.FLOAT for a in n.attribute)]


def _sort_subgraphs(model) -> None:
    """Topologically sort every subgraph's nodes, in place.

    onnxconverter-common appends the casts it inserts at the end of a graph and sorts only
    the main graph, so a blocked node inside an ``If`` branch leaves the branch unsorted
    ("Nodes in a graph must be topologically sorted"). Names a graph does not produce come
    from the outer scope and are always available.
    """
    from onnx import AttributeProto

    from kit.optimize.normalize import subgraphs, used_names

    def needs(node) -> set[str]:  # inputs, and what the node's own subgraphs read from this scope
        names = {i for i in node.input if i}
        for attr in node.attribute:
            for sub in ([attr.g] if attr.type == AttributeProto.GRAPH else list(attr.graphs)):
                names |= used_names(sub)
        return names

    for graph in subgraphs(model.graph):
        nodes = list(graph.node)
        produced = {o for n in nodes for o in n.output}
        wants = [needs(n) & produced for n in nodes]
        ready: set[str] = set()
        pending, ordered = list(range(len(nodes))), []
        while pending:
            rest = [i for i in pending if not wants[i] <= ready]
            done = [i for i in pending if wants[i] <= ready]
            if not done:  # a cycle: leave the rest as it was, ONNX Runtime will name it
                ordered += rest
                break
            for i in done:
                ready.update(nodes[i].output)
            ordered += done
            pending = rest
        nodes = [copy.deepcopy(nodes[i]) for i in ordered]
        del graph.node[:]
        graph.node.extend(nodes)


def _float16_count(model) -> int:
    """float16 weights (initializers and ``Constant`` values) in every graph: zero means nothing was converted."""
    from kit.optimize.normalize import subgraphs

    fp16 = _onnx().TensorProto.FLOAT16
    graphs = (model.graph, *subgraphs(model.graph))
    return (sum(1 for g in graphs for i in g.initializer if i.data_type == fp16)
            + sum(1 for g in graphs for n in g.node if n.op_type == "Constant"
                  for a in n.attribute if a.t.data_type == fp16))


def _failing_op(model, message: str, blocked: Mapping[str, list[str]]) -> str | None:
    """The op type to keep in float32 next: of the innermost node an ONNX Runtime type error names
    (subgraphs included; inserted casts carry their node's name), or, when that op type is already
    kept, of the node enclosing it (an ``If`` error names the ``If`` and then its branch's node)."""
    nodes = _all_nodes(model)
    for wanted in reversed(_NODE_IN_ERROR.findall(message)):
        named = sorted((n for n in nodes if n.name and wanted.startswith(n.name)), key=lambda n: len(n.name),
                       reverse=True)
        if not named:
            continue
        op = named[0].op_type
        if op not in blocked or not {n.name for n in nodes if n.op_type == op} <= set(blocked[op]):
            return op
    return None


def to_float16(artifact: ModelSource, config: Float16Config | None = None, out: str | Path | None = None,
               feeds: Mapping[str, np.ndarray] | None = None, slices: Slices | None = None,
               padding_mask: Mapping[str, Sequence[str]] | None = None, **overrides: Any) -> ModelArtifact:
    """float16 conversion (``onnxconverter_common.float16``) of an artifact or a path, float32 I/O kept by default.

    Op types that break the conversion stay in float32 and the lineage says which
    (``float32_op_types``): ``Cast(to=FLOAT)`` nodes always (blocked by node, since putting
    ``Cast`` in the converter's ``op_block_list`` makes it loop forever on the casts it
    inserts), and any op type a failed load names, retried a few times. The result is
    checked against its float32 parent on ``feeds`` (or synthetic inputs) and refused if it
    returns NaN/inf where the parent does not (DESIGN.md §6).
    """
    try:
        from onnxconverter_common import float16
    except ImportError as exc:
        from kit.errors import MissingDependencyError

        raise MissingDependencyError("onnxconverter-common", "float16 conversion") from exc
    artifact = as_artifact(artifact)
    config = resolve(Float16Config, config, overrides)
    target = _default_out(artifact, config.tag, out)
    name = f"{artifact.name}-{config.tag}"
    with tempfile.TemporaryDirectory(prefix="kit-fp16-") as work:
        source, notes = prepare(artifact, Path(work), preprocess=False)
        onnx = _onnx()
        model = onnx.load(str(source))
        checked, note = _check_feeds(model, feeds)
        _, run_on, _ = check_original(source, name, checked, note)  # before blocking op types the inputs break
        nodes = _exclusions(model, config.exclude_nodes, config.exclude_op_types)  # before the added Identities
        if _split_consumed_outputs(model):
            notes["outputs_split"] = True
        casts = _float32_casts(model)
        blocked: dict[str, list[str]] = {"Cast": casts} if casts else {}
        with atomic_output(target) as tmp:
            for _ in range(4):
                extra = [n for names in blocked.values() for n in names]
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")  # "value truncated" chatter: quality is checked below
                        converted = float16.convert_float_to_float16(
                            copy.deepcopy(model), keep_io_types=config.keep_io_types,
                            node_block_list=list(dict.fromkeys(nodes + extra)) or None)
                except Exception as exc:
                    raise QuantizationError(f"float16 conversion of {artifact.name} failed: {first_line(exc)}; "
                                            f"kept in float32: {sorted(blocked) or 'nothing'}; exclude the op "
                                            f"types involved (exclude_op_types=...)") from exc
                _sort_subgraphs(converted)
                converted.ir_version = min(converted.ir_version, MAX_IR_VERSION)
                onnx.save(converted, str(tmp))
                try:
                    verify(tmp, name, run_on)
                    break
                except QuantizationError as exc:
                    op = _failing_op(model, str(exc), blocked)
                    if op is None:
                        raise QuantizationError(f"{exc}; kept in float32: {sorted(blocked) or 'nothing'}") from exc
                    blocked[op] = [n.name for n in _all_nodes(model) if n.op_type == op]
                    log.info("float16 conversion of %s: keeping %s nodes in float32 (%s)", artifact.name, op,
                             first_line(exc))
            else:
                raise QuantizationError(f"float16 conversion of {artifact.name} still does not load with "
                                        f"{sorted(blocked)} kept in float32; exclude more op types "
                                        f"(exclude_op_types=...) or keep this model in float32")
            if blocked:
                notes["float32_op_types"] = sorted(blocked)
                notes["float32_nodes"] = sum(len(v) for v in blocked.values())
            if not _float16_count(converted):
                raise QuantizationError(f"nothing in {artifact.name} was converted to float16: with "
                                        f"{sorted(blocked) or 'no op types'} kept in float32 (they break the "
                                        f"conversion), every float weight and op stayed float32")
            check = self_check(source, tmp, name, checked, note, slices, padding_mask)
    return artifact.derive(target, "to_float16", name=name, params={**asdict(config), **notes}, metrics=check)

