"""brainclf.model.model_config: what a .keras config asks Keras to build is estimated from config.json and refused over
the budget (brainclf.input.limits) before Keras, or TensorFlow, is even imported."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from brainclf.errors import ModelError
from brainclf.input import limits
from brainclf.model import check_model_config
from brainclf.model.model_archive import check_model_archive

REPO = Path(__file__).resolve().parent.parent


def tensor(layer: str, shape: list) -> dict:
    return {"class_name": "__keras_tensor__",
            "config": {"shape": shape, "dtype": "float32", "keras_history": [layer, 0, 0]}}


def layer(cls: str, name: str, config: dict, inputs: list | None = None, build: list | None = None) -> dict:
    """A layer as Keras 3 saves it in a functional model (inputs: [(layer, declared shape)])."""
    d = {"module": "keras.layers", "class_name": cls, "registered_name": None, "name": name,
         "config": {"name": name, "trainable": True, "dtype": "float32", **config},
         "inbound_nodes": [{"args": [tensor(*i) for i in inputs], "kwargs": {}}] if inputs else []}
    if build:
        d["build_config"] = {"input_shape": build}
    return d


def functional(layers: list, output: str) -> dict:
    return {"module": "keras.src.models.functional", "class_name": "Functional", "registered_name": "Functional",
            "config": {"name": "m", "trainable": True, "layers": layers, "input_layers": [[layers[0]["name"], 0, 0]],
                       "output_layers": [[output, 0, 0]]}}


def dense_model(width: int, units: int, declared_width: int | None = None) -> dict:
    """Input(width) → Dense(units); the tensor's declared shape may lie (Keras rebuilds it from the graph)."""
    return functional([layer("InputLayer", "x", {"batch_shape": [None, width]}),
                       layer("Dense", "big", {"units": units}, [("x", [None, declared_width or width])])], "big")


def archive(path: Path, config: dict) -> Path:
    """A .keras of a few KB: config.json, metadata.json and an empty weights file."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("metadata.json", json.dumps({"keras_version": "3.15.1"}))
        zf.writestr("config.json", json.dumps(config))
        zf.writestr("model.weights.h5", b"")
    return path


def test_a_huge_dense_layer_is_refused_from_its_config_without_importing_tensorflow(tmp_path):
    """The attack: a 12 KB file declaring Dense(20000) on a 20000-wide input took the CLI to 8.8 GB."""
    path = archive(tmp_path / "big.keras", dense_model(20000, 20000))
    assert path.stat().st_size < 20_000
    code = ("import json, sys; from brainclf.model.card import load_model; from brainclf.model.model_archive import "
            "check_model_archive; from brainclf.errors import ModelError\n"
            f"try:\n    check_model_archive({str(path)!r}); print(json.dumps(['accepted']))\n"
            "except ModelError as e:\n    print(json.dumps([str(e), 'tensorflow' in sys.modules, "
            "'keras' in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    message, tf, keras = json.loads(out.stdout.strip().splitlines()[-1])
    assert "400,020,000 parameters" in message and "'big'" in message and "limit of 25,000,000" in message
    assert "refused before loading" in message and not tf and not keras


def test_load_model_refuses_it_too(tmp_path):
    """load_model (the CLI's and the model process's way in) runs the check before Keras builds anything."""
    from test_model_file_limits import with_card

    from brainclf.model import load_model

    with pytest.raises(ModelError, match="parameters"):
        load_model(with_card(archive(tmp_path / "big.keras", dense_model(20000, 20000))))


@pytest.mark.parametrize("config", [
    dense_model(20000, 20000, declared_width=4),  # the tensor claims 4 wide: Keras uses the real 20000
    functional([layer("InputLayer", "x", {"batch_shape": [None, 30]}),  # built from build_config first
                layer("Dense", "big", {"units": 20000}, [("x", [None, 30])], build=[None, 20000])], "big"),
    functional([layer("InputLayer", "x", {"batch_shape": [None, 64, 64, 512]}),
                layer("Conv2D", "conv", {"filters": 4096, "kernel_size": [5, 5]}, [("x", [None, 64, 64, 512])])],
               "conv"),
    functional([layer("InputLayer", "x", {"batch_shape": [None, 10]}),
                layer("Embedding", "emb", {"input_dim": 10_000_000, "output_dim": 64}, [("x", [None, 10])])], "emb"),
    functional([layer("InputLayer", "x", {"batch_shape": [None, 8, 512]}),  # a type this module does not know
                layer("MultiHeadAttention", "mha", {"num_heads": 64, "key_dim": 512}, [("x", [None, 8, 512])])],
               "mha"),
    functional([layer("InputLayer", "x", {"batch_shape": [None, 16, 16, 64]}),  # Flatten → 16,384 wide
                layer("Flatten", "flat", {}, [("x", [None, 16, 16, 64])]),
                layer("Dense", "fc", {"units": 4096}, [("flat", [None, 4])])], "fc"),
    {"class_name": "Sequential", "config": {"name": "s", "layers": [  # a Sequential model
        {"class_name": "InputLayer", "config": {"batch_shape": [None, 8000]}},
        {"class_name": "Dense", "config": {"units": 8000}}]}},
])
def test_layers_over_the_parameter_budget_are_refused(config):
    with pytest.raises(ModelError, match=r"parameters .*above the limit of 25,000,000"):
        check_model_config(config, "m.keras")


def test_declared_inputs_and_outputs_have_limits_too():
    with pytest.raises(ModelError, match="an input of shape"):
        check_model_config(dense_model(10 ** 8, 1), "m.keras")
    wide = functional([layer("InputLayer", "x", {"batch_shape": [None, 1024, 1024, 3]}),
                       layer("Conv2D", "conv", {"filters": 64, "kernel_size": 1}, [("x", [None, 1024, 1024, 3])])],
                      "conv")
    with pytest.raises(ModelError, match="outputs 67,108,864 values per image"):
        check_model_config(wide, "m.keras")


@pytest.mark.parametrize("config", [{}, [], {"class_name": "Functional", "config": {"layers": 3}},
                                    {"class_name": "Dense", "config": {"units": "many"}}])
def test_a_config_that_is_not_a_model_is_a_clear_error(config):
    with pytest.raises(ModelError, match="does not describe a Keras model"):
        check_model_config(config, "m.keras")


def test_the_shipped_models_pass_with_an_estimate_close_to_their_parameters():
    for path in sorted((REPO / "models").glob("*.keras")):
        params = json.loads(path.with_suffix(".json").read_text())["params"]
        estimate = check_model_config(json.loads(zipfile.ZipFile(path).read("config.json")), path.name)
        assert params <= estimate <= 1.01 * params, path.name
        check_model_archive(path)
    assert limits.MAX_MODEL_PARAMS >= 20 * max(json.loads(p.read_text())["params"]
                                               for p in (REPO / "models").glob("*.json"))
