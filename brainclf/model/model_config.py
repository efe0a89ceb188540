"""What a .keras file's config.json asks Keras to allocate, estimated from the JSON alone, before Keras builds
anything (brainclf.model.model_archive calls it; the budgets are in brainclf.input.limits).

The zip checks bound the bytes a file inflates to, not what its config declares: a 12 KB file whose config
holds Dense(units=20000) on a 20000-wide input made Keras allocate gigabytes while building the layer. Here
the shapes are followed through the graph as Keras would (a functional model's nodes, a Sequential's order,
nested models) from the declared inputs, never trusting the shapes a config claims for its tensors (Keras
rebuilds those) but also counting what each layer's `build_config` would build; each layer's parameters are
estimated from its config (Dense units x input width, a convolution's kernel x filters x input channels,
Embedding input_dim x output_dim, ...). A layer type not known here is counted conservatively: every size-like
argument (units, filters, *_dim, *size*, heads, ...) multiplied together, times its input width, four times.
"""

from __future__ import annotations

import math

from ..errors import ModelError
from ..input import limits

MODEL_CLASSES = ("Functional", "Model", "Sequential")
SIZE_WORDS = ("units", "filters", "dim", "size", "heads", "depth", "multiplier", "tokens", "length")
# Layers whose output has their input's shape and that hold no parameters (or, *_PER_CHANNEL, a few per channel).
SAME_SHAPE = frozenset({
    "Activation", "ReLU", "LeakyReLU", "ELU", "Softmax", "Dropout", "SpatialDropout1D", "SpatialDropout2D",
    "SpatialDropout3D", "GaussianNoise", "GaussianDropout", "AlphaDropout", "Rescaling", "Identity", "Masking",
    "ActivityRegularization", "RandomFlip", "RandomRotation", "RandomZoom", "RandomTranslation", "RandomContrast",
    "RandomBrightness", "CenterCrop", "Resizing"})
PARAMS_PER_CHANNEL = {"BatchNormalization": 4, "LayerNormalization": 2, "GroupNormalization": 2,
                      "UnitNormalization": 0, "Normalization": 3, "PReLU": 1}
MERGES = frozenset({"Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"})


class Budget:
    """Running totals of one config: parameters, and the largest layer output (values per image)."""

    def __init__(self) -> None:
        self.params, self.largest_output, self.biggest = 0, 0, ("", 0)

    def layer(self, name: str, params: int, outputs: list) -> None:
        self.params += params
        if params > self.biggest[1]:
            self.biggest = (name, params)
        for shape in outputs:
            self.largest_output = max(self.largest_output, _values(shape[1:]))


def check_model_config(config: object, file_name: str) -> int:
    """Estimate the parameters a .keras config declares (returns them); ModelError when they, a declared input
    or a layer's output are over brainclf.input.limits' budgets, or the config is not a model's."""
    budget = Budget()
    try:
        if not (isinstance(config, dict) and isinstance(config.get("config"), dict)):
            raise TypeError("no model in it")
        _object(config, None, budget)
    except (TypeError, ValueError, KeyError, AttributeError, IndexError, RecursionError, OverflowError) as e:
        raise ModelError(f"{file_name}: its config.json does not describe a Keras model this project can check "
                         f"({type(e).__name__}: {str(e)[:120]}); refused before loading.") from None
    if budget.params > limits.MAX_MODEL_PARAMS:
        layer, most = budget.biggest
        raise ModelError(f"{file_name}: its config declares about {budget.params:,} parameters (layer "
                         f"{str(layer)[:60]!r} alone ~{most:,}), above the limit of {limits.MAX_MODEL_PARAMS:,}; "
                         "refused before loading (the models of this project have about 0.5-1 M).")
    if budget.largest_output > limits.MAX_MODEL_LAYER_OUTPUT_VALUES:
        raise ModelError(f"{file_name}: a layer of its config outputs {budget.largest_output:,} values per image, "
                         f"above the limit of {limits.MAX_MODEL_LAYER_OUTPUT_VALUES:,}; refused before loading.")
    return budget.params


def _object(obj: dict, inputs: list | None, budget: Budget) -> list:
    """A model or a layer inside one: its output shapes, its parameters added to the budget."""
    cls, cfg = obj.get("class_name"), obj.get("config") or {}
    if cls in MODEL_CLASSES or "layers" in cfg:
        if "input_layers" in cfg or any(isinstance(x, dict) and x.get("inbound_nodes") for x in cfg["layers"]):
            return _functional(cfg, budget)
        return _sequential(cfg, inputs or _build_shapes(obj), budget)
    if cls == "InputLayer":
        return [_input_shape(cfg)]
    ins = inputs or _build_shapes(obj) or [[None]]
    params, outs = _layer(str(cls), cfg, ins)
    built = _build_shapes(obj)
    if built and built != ins:  # Keras builds the layer from its build_config first
        params = max(params, _layer(str(cls), cfg, built)[0])
    budget.layer(cfg.get("name") or obj.get("name") or cls, params, outs)
    return outs


def _functional(cfg: dict, budget: Budget) -> list:
    """Layers in the order saved (Keras saves them in order), each node called on the shapes its inputs gave."""
    outputs: dict[str, list] = {}  # layer name → per node, its output shapes
    for layer in cfg["layers"]:
        name = layer.get("name") or layer["config"].get("name")
        if layer.get("class_name") == "InputLayer":
            outputs[name] = [[_input_shape(layer["config"])]]
            continue
        outputs[name], params = [], 0
        for node in layer.get("inbound_nodes") or [{"args": []}]:
            ins = [_resolve(t, outputs) for t in _tensors(node)]
            sub = Budget()  # a shared layer is counted once (its largest build), however many nodes call it
            outputs[name].append(_object(layer, ins or None, sub))
            params, budget.largest_output = max(params, sub.params), max(budget.largest_output, sub.largest_output)
        budget.layer(name, params, [s for node in outputs[name] for s in node])
    return [_resolve(t, outputs) for t in _history(cfg.get("output_layers"))] or [[None]]


def _sequential(cfg: dict, shapes: list | None, budget: Budget) -> list:
    shapes = shapes or [[None]]
    for layer in cfg["layers"]:
        shapes = _object(layer, shapes, budget)
    return shapes


def _tensors(node) -> list:
    """The (layer, node, tensor) histories of the tensors a node passes, wherever they sit in its args."""
    found = []
    if isinstance(node, dict):
        if node.get("class_name") == "__keras_tensor__":
            return [node["config"]["keras_history"]]
        for v in node.values():
            found += _tensors(v)
    elif isinstance(node, list):
        for v in node:
            found += _tensors(v)
    return found


def _history(spec) -> list:
    """output_layers: [name, node, tensor] or a list (or dict) of them."""
    if isinstance(spec, list) and len(spec) == 3 and isinstance(spec[0], str):
        return [spec]
    items = spec.values() if isinstance(spec, dict) else spec if isinstance(spec, list) else []
    return [h for item in items for h in _history(item)]


def _resolve(history: list, outputs: dict) -> list:
    name, node, tensor = history
    return outputs[name][int(node)][int(tensor)]


def _input_shape(cfg: dict) -> list:
    shape = cfg.get("batch_shape") or [None, *(cfg.get("shape") or cfg.get("batch_input_shape", [None])[1:])]
    shape = [None if d is None else int(d) for d in shape]
    if any(d is not None and d < 0 for d in shape) or _values(shape[1:]) > limits.MAX_MODEL_INPUT_VALUES:
        raise ValueError(f"an input of shape {str(shape)[:80]} (at most {limits.MAX_MODEL_INPUT_VALUES:,} values)")
    return shape


def _build_shapes(obj: dict) -> list | None:
    shape = (obj.get("build_config") or {}).get("input_shape")
    if not shape:
        return None
    shapes = shape if isinstance(shape[0], list) else [shape]
    return [[None if d is None else int(d) for d in s] for s in shapes]


def _values(dims) -> int:
    return math.prod(max(int(d or 1), 1) for d in dims)


def _layer(cls: str, cfg: dict, ins: list) -> tuple[int, list]:
    """(parameters, output shapes) of one layer called on `ins`."""
    x = list(ins[0])
    first = cfg.get("data_format") == "channels_first"
    c = max(int((x[1] if first and len(x) > 2 else x[-1]) or 1), 1)  # input channels (width)
    if cls in SAME_SHAPE or cls in PARAMS_PER_CHANNEL:
        return PARAMS_PER_CHANNEL.get(cls, 0) * c, [x]
    if cls == "Dense":
        units = int(cfg["units"])
        return (c + 1) * units, [x[:-1] + [units]]
    if "Conv" in cls:
        return _conv(cls, cfg, x, c)
    if cls == "Embedding":
        return int(cfg["input_dim"]) * int(cfg["output_dim"]), [x + [int(cfg["output_dim"])]]
    if "Pooling" in cls:
        return 0, [_pooled(cls, cfg, x)]
    if cls == "Flatten":
        return 0, [[x[0], _values(x[1:])]]
    if cls == "Reshape":
        target = [int(d) for d in cfg["target_shape"]]
        known = _values(d for d in target if d != -1)
        return 0, [[x[0]] + [max(_values(x[1:]) // known, 1) if d == -1 else d for d in target]]
    if cls == "Concatenate":
        axis, out = int(cfg.get("axis", -1)), list(x)
        out[axis] = sum(int(s[axis] or 1) for s in ins)
        return 0, [out]
    if cls in MERGES:
        return 0, [[max((s[i] or 1 for s in ins if len(s) > i), default=None) for i in range(len(x))]]
    if cls.startswith("UpSampling"):
        size = _ints(cfg.get("size", 2), len(x) - 2)
        return 0, [[x[0], *(d and d * k for d, k in zip(x[1:-1], size)), x[-1]]]
    return _unknown(cfg, x, c)


def _conv(cls: str, cfg: dict, x: list, c: int) -> tuple[int, list]:
    """Conv1D/2D/3D, their Transpose, DepthwiseConv and SeparableConv (channels last)."""
    rank = len(x) - 2
    kernel = _ints(cfg.get("kernel_size", 1), rank)
    k = _values(kernel)
    multiplier = int(cfg.get("depth_multiplier", 1))
    if "Depthwise" in cls:
        filters, params = c * multiplier, k * c * multiplier + c * multiplier
    elif "Separable" in cls:
        filters = int(cfg["filters"])
        params = k * c * multiplier + c * multiplier * filters + filters
    else:
        filters = int(cfg["filters"])
        params = k * (c // max(int(cfg.get("groups", 1)), 1) or 1) * filters + filters
    strides = _ints(cfg.get("strides", 1), rank)
    if "Transpose" in cls:
        spatial = [d and d * s for d, s in zip(x[1:-1], strides)]
    else:
        spatial = [_strided(d, kk, s, cfg.get("padding")) for d, kk, s in zip(x[1:-1], kernel, strides)]
    return params, [[x[0], *spatial, filters]]


def _pooled(cls: str, cfg: dict, x: list) -> list:
    if cls.startswith("Global"):
        return [x[0], *([1] * (len(x) - 2) if cfg.get("keepdims") else []), x[-1]]
    pool = _ints(cfg.get("pool_size", 2), len(x) - 2)
    strides = _ints(cfg.get("strides") or pool, len(x) - 2)
    return [x[0], *(_strided(d, p, s, cfg.get("padding")) for d, p, s in zip(x[1:-1], pool, strides)), x[-1]]


def _unknown(cfg: dict, x: list, c: int) -> tuple[int, list]:
    """A layer type not known here: 4 x input width x the product of its size-like arguments (0 without any)."""
    sizes = [v for key, value in cfg.items() if isinstance(key, str) and any(w in key for w in SIZE_WORDS)
             for v in (value if isinstance(value, list) else [value])
             if isinstance(v, int) and not isinstance(v, bool) and v > 1]
    if not sizes:
        return 0, [x]
    return 4 * (c + 1) * math.prod(sizes), [x[:-1] + [max(c, *sizes)]]


def _ints(value, rank: int) -> list[int]:
    return [int(v) for v in value] if isinstance(value, list | tuple) else [int(value)] * rank


def _strided(d, k: int, s: int, padding) -> int | None:
    if d is None:
        return None
    span = d if padding == "same" else d - k + 1
    return max(-(-span // max(s, 1)), 1)
