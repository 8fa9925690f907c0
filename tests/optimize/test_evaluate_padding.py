"""A transformer's padded positions never decide quality, its real ones always do (EvalConfig.padding_mask)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from kit.artifacts import ModelArtifact
from kit.errors import ConfigError, InputError
from kit.optimize.evaluate import EvalConfig, evaluate

FAST = dict(min_duration_s=0.05, rounds=2, min_queries=3, warmup=1, batch_sizes=(1,), top1=False)
MASK = {"mask": ["hidden"]}


def _encoder(path, pad: float = 0.0, real: float = 0.0) -> ModelArtifact:
    """x[batch, seq, 4], mask[batch, seq] -> hidden = x * (1 + pad at padding, 1 + real at tokens), pooled.

    ``pooled`` sums ``hidden`` over real tokens only, as a sentence embedding does, so noise at
    padded positions (``pad``) leaves it exactly as it was.
    """
    consts = [helper.make_tensor("a", TensorProto.FLOAT, [], [1.0 + pad]),
              helper.make_tensor("b", TensorProto.FLOAT, [], [real - pad]),
              helper.make_tensor("two", TensorProto.INT64, [1], [2]),
              helper.make_tensor("one", TensorProto.INT64, [1], [1])]
    nodes = [helper.make_node("Cast", ["mask"], ["m"], to=TensorProto.FLOAT),
             helper.make_node("Unsqueeze", ["m", "two"], ["m3"]),
             helper.make_node("Mul", ["m3", "b"], ["bm"]),
             helper.make_node("Add", ["bm", "a"], ["scale"]),
             helper.make_node("Mul", ["x", "scale"], ["hidden"]),
             helper.make_node("Mul", ["hidden", "m3"], ["kept"]),
             helper.make_node("ReduceSum", ["kept", "one"], ["pooled"], keepdims=0)]
    graph = helper.make_graph(nodes, "encoder",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", 4]),
                               helper.make_tensor_value_info("mask", TensorProto.INT64, ["batch", "seq"])],
                              [helper.make_tensor_value_info("hidden", TensorProto.FLOAT, ["batch", "seq", 4]),
                               helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["batch", 4])], consts)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return ModelArtifact.from_path(path, name=path.stem)


def _data(n: int = 12, seq: int = 6) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    lengths = rng.integers(2, seq, n)  # every sample has padding, none is all padding
    return {"x": rng.random((n, seq, 4), dtype=np.float32) + 0.5,
            "mask": (np.arange(seq)[None, :] < lengths[:, None]).astype(np.int64)}


@pytest.fixture
def models(tmp_path) -> dict[str, ModelArtifact]:
    return {"ref": _encoder(tmp_path / "ref.onnx"), "padnoise": _encoder(tmp_path / "padnoise.onnx", pad=5.0),
            "realnoise": _encoder(tmp_path / "realnoise.onnx", pad=5.0, real=0.5)}


def test_padded_positions_do_not_decide_but_real_ones_do(models):
    variants = [models["padnoise"], models["realnoise"]]
    whole = evaluate(variants, models["ref"], _data(), **FAST).set_index("name")
    assert not whole.loc["padnoise", "quality_ok"] and whole.loc["padnoise", "worst_output"] == "hidden"
    assert whole.loc["padnoise", "rel_error[pooled]"] == 0.0  # the embedding itself is untouched

    frame = evaluate(variants, models["ref"], _data(), padding_mask=MASK, **FAST)
    rows = frame.set_index("name")
    assert rows.loc["padnoise", "quality_ok"], rows.loc["padnoise", "quality_reason"]
    assert rows.loc["padnoise", "rel_error[hidden]"] == 0.0  # still judged, at real tokens
    assert "padded positions left out" in rows.loc["padnoise", "quality"]
    assert not rows.loc["realnoise", "quality_ok"] and rows.loc["realnoise", "worst_output"] == "hidden"
    assert {"rel_error[hidden]", "cosine[hidden]", "rel_error[pooled]", "cosine[pooled]"} <= set(frame.columns)
    table = frame.attrs["quality"]["padnoise"]
    hidden = next(p for p in table if p["output"] == "hidden")
    assert hidden["masked"] == int((_data()["mask"] == 0).sum()) and hidden["shape"] == "(12, 6, 4)"


def test_padding_mask_names_are_checked_against_the_model(models):
    ref = models["ref"]
    with pytest.raises(ConfigError, match=r"mask input\(s\) \['attention_mask'\].*inputs are \['x', 'mask'\]"):
        evaluate([], ref, _data(), padding_mask={"attention_mask": ["hidden"]}, **FAST)
    with pytest.raises(ConfigError, match=r"output\(s\) \['last_hidden_state'\].*outputs are \['hidden', 'pooled'\]"):
        evaluate([], ref, _data(), padding_mask={"mask": ["last_hidden_state"]}, **FAST)
    with pytest.raises(ConfigError, match=r"'pooled' has shape \(12, 4\).*sequence axis"):
        evaluate([], ref, _data(), padding_mask={"mask": ["pooled"]}, **FAST)
    empty = {**_data(), "mask": np.zeros((12, 6), np.int64)}
    with pytest.raises(InputError, match="0 everywhere"):
        evaluate([], ref, empty, padding_mask=MASK, **FAST)


@pytest.mark.parametrize("bad", ["attention_mask", {"mask": []}, {"mask": [1]}, {"": ["hidden"]},
                                 {"m1": ["hidden"], "m2": ["hidden"]}])
def test_a_malformed_padding_mask_fails_before_any_model_loads(bad):
    with pytest.raises(ConfigError, match="padding_mask"):
        EvalConfig(padding_mask=bad)


def test_a_bare_output_name_is_a_list_of_one():
    assert EvalConfig(padding_mask={"mask": "hidden"}).padding_mask == {"mask": ("hidden",)}


@pytest.mark.slow
@pytest.mark.tensorflow  # building MiniLM into an empty zoo cache needs TensorFlow (~3 min); cached, it does not
def test_minilm_dynamic_int8_is_judged_at_real_tokens(tmp_path):
    import kit
    from kit.models import model_data
    from kit.optimize.quantize_onnx import quantize_dynamic
    from kit.zoo import eval_hints, get_model

    source = get_model("minilm", format="onnx")
    with kit.create_engine(source) as probe:
        data = model_data("minilm", None, probe.input_specs, samples=32, split="test")
    assert (data.arrays["attention_mask"] == 0).any()  # the zoo's test sentences are padded to 128 tokens
    variant = quantize_dynamic(source, out=tmp_path / "dyn.onnx", feeds=data.batches(1)[0])  # its own check
    name = variant.name
    judged = dict(FAST, **eval_hints("minilm"))
    rows = evaluate([variant], source, data, **judged).set_index("name")
    whole = evaluate([variant], source, data, **{**judged, "padding_mask": {}}).set_index("name")
    # padded rows of last_hidden_state moved by >20% of its range, the real tokens by far less
    assert not whole.loc[name, "quality_ok"] and whole.loc[name, "worst_output"] == "last_hidden_state"
    assert rows.loc[name, "quality_ok"], rows.loc[name, "quality_reason"]
    assert rows.loc[name, "rel_error[last_hidden_state]"] < whole.loc[name, "rel_error[last_hidden_state]"]


def test_the_quantizers_self_check_judges_at_real_tokens_too(models):
    """A variant's own check after quantization (kit.optimize.prepare.self_check) takes the same padding_mask."""
    from kit.optimize.prepare import self_check

    feeds = _data()
    whole = self_check(models["ref"].path, models["padnoise"].path, "padnoise", feeds, "test feeds")
    masked = self_check(models["ref"].path, models["padnoise"].path, "padnoise", feeds, "test feeds",
                        padding_mask=MASK)
    assert not whole["quality_ok"] and masked["quality_ok"]
    assert masked["min_cosine"] == pytest.approx(1.0)
    real = self_check(models["ref"].path, models["realnoise"].path, "realnoise", feeds, "test feeds",
                      padding_mask=MASK)
    assert real["worst_rel_error"] > 0.1  # noise at real tokens still counts
