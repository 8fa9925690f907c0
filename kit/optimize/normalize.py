"""Load-time normalization of a user's ONNX model, done once before any optimization rewrites it.

Models the kit did not build break the optimizers in a few recurring ways (DESIGN.md §7):

- IR-3 graphs list every initializer as a graph input as well. Passes that raise the IR
  version keep them as inputs, which makes them *overridable*, so ONNX Runtime can no
  longer constant-fold them (the "optimized" graph ran 0.42-0.73x as fast), and
  pre-processing turned one such model into a "success" with 242 inputs.
- Weights stored as ``Constant`` nodes rather than initializers (Paddle and other
  exporters): ORT's quantizer says "expected ... to be an initializer".
- Unnamed nodes: onnxconverter-common names the casts it inserts after the node, so two
  unnamed nodes give two casts of the same name.
- ``If``/``Loop``/``Scan`` subgraphs read main-graph names: any "unused input" check that
  looks only at the main graph deletes what a subgraph needs (:func:`used_names`).

:func:`normalize` fixes the first three once and says what it changed, for the lineage;
:func:`check_same_inputs` is the check every variant passes before it is returned.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kit.artifacts import ModelArtifact, ModelLike
from kit.engines.probe import ONNX_IR_VERSION
from kit.errors import KitError, ModelLoadError

MAX_IR_VERSION = ONNX_IR_VERSION
"""The IR version every model the kit writes is capped at (one constant, ``kit.engines.probe.ONNX_IR_VERSION``):
ONNX Runtime 1.31 reads IR <= 13 and onnx 1.23 writes 14 by default; 10 keeps a margin for older runtimes."""

MIN_IR_SEPARATE_INITIALIZERS = 4
"""From IR 4 on, initializers need not be graph inputs; below it they must be (and then cannot be folded)."""

ModelSource = ModelLike  # kept for callers that named it here


def load_onnx(artifact: ModelArtifact, error: type[KitError] = ModelLoadError) -> Any:
    """The artifact's ``onnx.ModelProto``; a non-ONNX or unreadable file raises ``error`` saying what was expected."""
    import onnx

    if artifact.format != "onnx":
        raise error(f"{artifact.name} is a {artifact.format} model; this optimization takes an ONNX model "
                    f"(convert it with kit.optimize.convert first)")
    try:
        return onnx.load(str(artifact.path))
    except Exception as exc:
        raise error(f"cannot read {artifact.path} as ONNX: {exc}") from exc


def subgraphs(graph: Any) -> Iterator[Any]:
    """Every subgraph nested in ``graph``'s nodes (``If`` branches, ``Loop``/``Scan`` bodies), depth first."""
    from onnx import AttributeProto

    for node in graph.node:
        for attr in node.attribute:
            if attr.type == AttributeProto.GRAPH:
                yield attr.g
                yield from subgraphs(attr.g)
            elif attr.type == AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    yield sub
                    yield from subgraphs(sub)


def used_names(graph: Any) -> set[str]:
    """Names read by any node of ``graph`` or of its subgraphs, plus its outputs.

    A subgraph reads main-graph values by name without listing them as inputs, so this
    is the set every "drop unused inputs/initializers" step must keep. It over-approximates
    (a subgraph's own names are included), which can only keep too much, never too little.
    """
    used = {name for node in graph.node for name in node.input if name} | {o.name for o in graph.output}
    for sub in subgraphs(graph):
        used |= {name for node in sub.node for name in node.input if name} | {o.name for o in sub.output}
    return used


def _drop_initializer_inputs(model: Any, all_versions: bool) -> int:
    inits = {i.name for i in model.graph.initializer}
    if not all_versions and model.ir_version >= MIN_IR_SEPARATE_INITIALIZERS:
        return 0
    listed = [v for v in model.graph.input if v.name in inits]
    for value in listed:
        model.graph.input.remove(value)
    return len(listed)


def _fold_constants(model: Any) -> int:
    """Turn main-graph ``Constant`` nodes with a tensor ``value`` into initializers."""
    from onnx import AttributeProto

    outputs = {o.name for o in model.graph.output}
    folded = []
    for node in model.graph.node:
        if node.op_type != "Constant" or node.domain not in ("", "ai.onnx") or node.output[0] in outputs:
            continue
        attr = next((a for a in node.attribute if a.name == "value" and a.type == AttributeProto.TENSOR), None)
        if attr is None:
            continue
        tensor = copy.deepcopy(attr.t)
        tensor.name = node.output[0]
        model.graph.initializer.append(tensor)
        folded.append(node)
    for node in folded:
        model.graph.node.remove(node)
    return len(folded)


def _name_nodes(model: Any) -> int:
    graphs = [model.graph, *subgraphs(model.graph)]
    taken = {n.name for g in graphs for n in g.node if n.name}
    count = 0
    for graph in graphs:
        for index, node in enumerate(graph.node):
            if node.name:
                continue
            name, suffix = f"{node.op_type}_kit{index}", 0
            while name in taken:
                suffix += 1
                name = f"{node.op_type}_kit{index}_{suffix}"
            node.name = name
            taken.add(name)
            count += 1
    return count


def normalize(model: Any, drop_initializer_inputs: bool = False) -> tuple[Any, list[str]]:
    """A normalized copy of ``model`` and a short list of what changed (empty: nothing did).

    Initializers listed as graph inputs are dropped from the inputs of IR < 4 graphs (where
    the listing was mandatory, not a request to override them) and, with
    ``drop_initializer_inputs``, of any graph (quantization: a run-time override of a
    quantized weight cannot work). Tensor-valued ``Constant`` nodes become initializers;
    unnamed nodes get unique names; the IR version is raised to at least 4 when that is
    needed and capped at :data:`MAX_IR_VERSION`.
    """
    model = copy.deepcopy(model)
    changes: list[str] = []
    ir = model.ir_version
    dropped = _drop_initializer_inputs(model, drop_initializer_inputs)
    if dropped:
        changes.append(f"{dropped} initializer(s) no longer listed as graph inputs")
    folded = _fold_constants(model)
    if folded:
        changes.append(f"{folded} Constant node(s) folded into initializers")
    named = _name_nodes(model)
    if named:
        changes.append(f"{named} unnamed node(s) named")
    if (dropped or folded) and model.ir_version < MIN_IR_SEPARATE_INITIALIZERS:
        model.ir_version = MIN_IR_SEPARATE_INITIALIZERS
    model.ir_version = min(model.ir_version, MAX_IR_VERSION)
    if model.ir_version != ir:
        changes.append(f"IR version {ir} -> {model.ir_version}")
    return model, changes


def input_signature(model: Any) -> dict[str, tuple[int, int]]:
    """Real inputs (graph inputs that are not initializers): name -> (ONNX element type, rank)."""
    inits = {i.name for i in model.graph.initializer}
    return {v.name: (v.type.tensor_type.elem_type, len(v.type.tensor_type.shape.dim))
            for v in model.graph.input if v.name not in inits}


def _describe(signature: dict[str, tuple[int, int]]) -> str:
    from onnx import helper

    def dtype(elem: int) -> str:
        try:
            return helper.tensor_dtype_to_np_dtype(elem).name
        except (KeyError, ValueError):  # undefined or non-tensor types
            return f"type{elem}"

    return ", ".join(f"{name}: {dtype(elem)} rank {rank}" for name, (elem, rank) in signature.items()) or "none"


def check_same_inputs(parent: Any, child: Any, what: str = "the variant",
                      error: type[KitError] = ModelLoadError) -> None:
    """Raise ``error`` unless ``child`` has exactly ``parent``'s real inputs (names, dtypes, ranks).

    Both are ``ModelProto``s or paths. Initializers do not count: a variant that turned
    constants into inputs (242 of them, once) cannot be fed the user's data, and one that lost
    an input a subgraph used does not load; either is a broken variant, never a success.
    """
    import onnx

    def proto(model: Any) -> Any:
        return model if hasattr(model, "graph") else onnx.load(str(Path(model)), load_external_data=False)

    want, got = input_signature(proto(parent)), input_signature(proto(child))
    if want == got:
        return
    parts = []
    if set(got) - set(want):
        parts.append(f"added {sorted(set(got) - set(want))[:10]} ({len(set(got) - set(want))})")
    if set(want) - set(got):
        parts.append(f"lost {sorted(set(want) - set(got))[:10]}")
    changed = [n for n in want if n in got and want[n] != got[n]]
    if changed:
        parts.append(f"changed dtype or rank of {changed[:10]}")
    raise error(f"{what} does not keep the model's real inputs: {'; '.join(parts)}; "
                f"expected exactly [{_describe(want)}], got [{_describe(got)}]")
