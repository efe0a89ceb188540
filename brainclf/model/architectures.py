"""Registry of named Keras 3 architectures.

Every model ends in a Dense layer named "logits" followed by a softmax named "probs", so temperature
scaling and logit-based scores work the same for all of them, and names its last convolutional feature
map "last_conv" for Grad-CAM.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

import keras
import numpy as np
from keras import layers

from .. import ARCHITECTURE_DESCRIPTIONS, ARCHITECTURE_NAMES, CLASS_NAMES, DEFAULT_ARCHITECTURE  # noqa: F401 - re-exported
from ..errors import ConfigError, ModelError
from ..input.preprocess import InputContract
from .backend import to_numpy, training_forward

GRADCAM_LAYER = "last_conv"
N_CLASSES = len(CLASS_NAMES)


@dataclass(frozen=True)
class Architecture:
    name: str
    build: Callable[[InputContract], keras.Model]
    default_contract: InputContract
    description: str
    # Layers whose per-channel mean and spread feed the OOD guard (brainclf.inference.ood): early and middle stages,
    # whose texture statistics separate MRI from photos, documents and drawings best (measured on
    # compact_cnn: 67/68 of the non-MRI set flagged with stages 0-2, 38/68 with the last conv layer).
    ood_layers: tuple[str, ...] = ("last_conv",)
    # Grad-CAM feature maps: one per network; an ensemble sums the maps of its members.
    gradcam_layers: tuple[str, ...] = (GRADCAM_LAYER,)
    # An ensemble: `members` independently trained copies of `member`, averaged in one flat graph.
    member: str | None = None
    members: int = 1


def _head(x, dropout: float, hidden: int | None = None):
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    if hidden:
        x = layers.Dense(hidden, activation="relu", name="hidden")(x)
    x = layers.Dropout(dropout, name="head_dropout")(x)
    x = layers.Dense(N_CLASSES, name="logits")(x)
    return layers.Activation("softmax", name="probs", dtype="float32")(x)


def build_seed(contract: InputContract) -> keras.Model:
    """The student study's CNN, rebuilt exactly: 2,364 parameters (2,308 trainable) at 120x120x3.

    Three blocks of Conv2D 3x3 valid (ReLU) → BatchNorm → MaxPool 2 → Dropout with 4, 8, 16 filters,
    GlobalAveragePooling, Dense 32 ReLU, Dropout, Dense 4 softmax.
    """
    inputs = keras.Input(contract.shape, name="image")
    x = inputs
    for i, filters in enumerate((4, 8, 16), 1):
        name = GRADCAM_LAYER if i == 3 else f"conv{i}"
        x = layers.Conv2D(filters, 3, padding="valid", activation="relu", name=name)(x)
        x = layers.BatchNormalization(name=f"bn{i}")(x)
        x = layers.MaxPooling2D(2, name=f"pool{i}")(x)
        x = layers.Dropout(0.2, name=f"drop{i}")(x)
    # Grad-CAM wants the conv output itself; in this model the last conv is followed by BN/pool/dropout,
    # all of which keep spatial layout, so the conv layer is the right place.
    outputs = _head(x, dropout=0.2, hidden=32)
    return keras.Model(inputs, outputs, name="seed")


def _conv_bn_relu(x, filters: int, name: str, stride: int = 1):
    x = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.ReLU(name=name)(x)


COMPACT_WIDTHS = (24, 48, 96, 160)


def compact_cnn_logits(inputs, widths: tuple[int, ...] = COMPACT_WIDTHS, prefix: str = ""):
    """The compact CNN from input to class logits; `prefix` names the layers of one ensemble member."""
    x = _conv_bn_relu(inputs, widths[0], f"{prefix}stem", stride=2)
    for s, w in enumerate(widths):
        x = _conv_bn_relu(x, w, f"{prefix}s{s}a")
        last = s == len(widths) - 1
        x = _conv_bn_relu(x, w, prefix + (GRADCAM_LAYER if last else f"s{s}b"))
        if not last:
            x = layers.MaxPooling2D(2, name=f"{prefix}s{s}_pool")(x)
    x = layers.GlobalAveragePooling2D(name=f"{prefix}gap")(x)
    x = layers.Dropout(0.3, name=f"{prefix}head_dropout")(x)
    return layers.Dense(N_CLASSES, name=f"{prefix}logits")(x)


def build_compact_cnn(contract: InputContract, widths: tuple[int, ...] = COMPACT_WIDTHS) -> keras.Model:
    """A plain VGG-style CNN sized for a 2-core CPU: strided stem, then per stage two 3x3 conv-BN-ReLU
    and a max-pool; global average pooling and dropout before the classifier."""
    inputs = keras.Input(contract.shape, name="image")
    outputs = layers.Activation("softmax", name="probs", dtype="float32")(compact_cnn_logits(inputs, widths))
    return keras.Model(inputs, outputs, name="compact_cnn")


def build_compact_cnn_ensemble(contract: InputContract, members: int = 2) -> keras.Model:
    """`members` compact CNNs side by side on one input, their logits averaged (a geometric-mean
    ensemble). One flat graph, so Grad-CAM, the OOD guard and temperature scaling treat it like any
    other model: "logits" is the averaged score, member k's layers are prefixed "m{k}_"."""
    inputs = keras.Input(contract.shape, name="image")
    logits = [compact_cnn_logits(inputs, prefix=f"m{k}_") for k in range(members)]
    mean = layers.Average(name="logits")(logits)
    outputs = layers.Activation("softmax", name="probs", dtype="float32")(mean)
    return keras.Model(inputs, outputs, name=f"compact_cnn_x{members}")


def ensemble_from_members(arch: Architecture, contract: InputContract, members: list[keras.Model]) -> keras.Model:
    """Copy the weights of independently trained member networks into the flat ensemble graph."""
    model = arch.build(contract)
    for k, member in enumerate(members):
        for layer in member.layers:
            if layer.weights:
                model.get_layer(f"m{k}_{layer.name}").set_weights(layer.get_weights())
    return model


@contextmanager
def dtype_policy(name: str):
    """Build layers under a Keras dtype policy ("float32", or "mixed_bfloat16": bfloat16 maths with
    float32 weights, ~1.7x faster training on CPUs with AVX512-BF16/AMX), then restore the old one."""
    old = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(old)


def build_compact_cnn_wide(contract: InputContract) -> keras.Model:
    """A wider compact CNN for users with a GPU (about 4x the compute of compact_cnn)."""
    return build_compact_cnn(contract, widths=(48, 96, 192, 320))


RESNET_WIDTHS = (32, 64, 128, 192)
# ResNet-18's own widths are (64, 128, 256, 512): 11 M parameters, 45 MB saved, twice resnet_small's CPU time per
# image at 128 px. Five eighths of them trains at 128 px about as fast as compact_cnn at 160 px on this project's
# CPU (18.6 vs 17.6 ms per training slice over a whole run) and saves under 18 MB.
RESNET_WIDE_WIDTHS = (40, 80, 160, 320)


def _basic_block(x, filters: int, name: str, stride: int):
    """ResNet's basic block: two 3x3 conv-BN with an identity (or 1x1 projection) shortcut, then ReLU."""
    y = _conv_bn_relu(x, filters, f"{name}a", stride)
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}b_conv")(y)
    y = layers.BatchNormalization(name=f"{name}b_bn")(y)
    if stride != 1 or x.shape[-1] != filters:
        x = layers.Conv2D(filters, 1, strides=stride, use_bias=False, name=f"{name}_proj")(x)
        x = layers.BatchNormalization(name=f"{name}_proj_bn")(x)
    return layers.ReLU(name=name)(layers.Add(name=f"{name}_add")([x, y]))


def build_resnet_small(contract: InputContract, widths: tuple[int, ...] = RESNET_WIDTHS) -> keras.Model:
    """ResNet-18's layout (strided stem, max-pool, four stages of two basic blocks) at about a third of its
    width: 1.9 M parameters, the same CPU training cost per image as compact_cnn at 160 px (10 ms here).
    Stage s's last block is "s{s}b1"; the network's last block is "last_conv" for Grad-CAM."""
    inputs = keras.Input(contract.shape, name="image")
    x = _conv_bn_relu(inputs, widths[0], "stem", stride=2)
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)
    for s, w in enumerate(widths):
        x = _basic_block(x, w, f"s{s}b0", stride=1 if s == 0 else 2)
        x = _basic_block(x, w, GRADCAM_LAYER if s == len(widths) - 1 else f"s{s}b1", stride=1)
    return keras.Model(inputs, _head(x, dropout=0.3), name="resnet_small")


def build_resnet_wide(contract: InputContract) -> keras.Model:
    """resnet_small's layout at five eighths of ResNet-18's width (4.4 M parameters), meant for 128 px."""
    model = build_resnet_small(contract, widths=RESNET_WIDE_WIDTHS)
    model.name = "resnet_wide"
    return model


ARCHITECTURES: dict[str, Architecture] = {
    a.name: a
    for a in (
        Architecture("seed", build_seed, InputContract(size=120, channels=3), ARCHITECTURE_DESCRIPTIONS["seed"],
                     ("conv2",)),
        Architecture("compact_cnn", build_compact_cnn, InputContract(size=128, channels=1),
                     ARCHITECTURE_DESCRIPTIONS["compact_cnn"], ("s0b", "s1b", "s2b")),
        Architecture("compact_cnn_wide", build_compact_cnn_wide, InputContract(size=128, channels=1),
                     ARCHITECTURE_DESCRIPTIONS["compact_cnn_wide"], ("s0b", "s1b", "s2b")),
        Architecture("resnet_small", build_resnet_small, InputContract(size=160, channels=1),
                     ARCHITECTURE_DESCRIPTIONS["resnet_small"], ("s0b1", "s1b1", "s2b1")),
        Architecture("resnet_wide", build_resnet_wide, InputContract(size=128, channels=1),
                     ARCHITECTURE_DESCRIPTIONS["resnet_wide"], ("s0b1", "s1b1", "s2b1")),
        Architecture("compact_cnn_x2", build_compact_cnn_ensemble, InputContract(size=128, channels=1),
                     ARCHITECTURE_DESCRIPTIONS["compact_cnn_x2"], ("m0_s0b", "m0_s1b", "m0_s2b"),
                     gradcam_layers=("m0_last_conv", "m1_last_conv"), member="compact_cnn", members=2),
    )
}
assert tuple(ARCHITECTURES) == ARCHITECTURE_NAMES, "keep brainclf.ARCHITECTURE_NAMES in step with the registry"


def get_architecture(name: str) -> Architecture:
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise ConfigError(f"Unknown architecture {name!r}; choose one of: {', '.join(ARCHITECTURES)}.") from None


def build_model(name: str, contract: InputContract | None = None) -> keras.Model:
    arch = get_architecture(name)
    contract = contract or arch.default_contract
    if not 32 <= contract.size <= 1024:
        raise ConfigError(f"Input size must be between 32 and 1024 pixels, got {contract.size}.")
    if contract.channels not in (1, 3):
        raise ConfigError(f"Channels must be 1 (grayscale) or 3 (RGB), got {contract.channels}.")
    return arch.build(contract)


def activations_per_image(model: keras.Model, largest: bool = False) -> int:
    """Values the model's layers output for one image, those of sub-models' layers included: what a training step
    keeps for its backward pass, per image of the batch (the memory that grows with batch size and input size
    squared); `largest`: the largest single output instead (inference holds few at once).

    Raises:
        ModelError: a layer's output has no shape to count (an unusual uploaded model).
    """
    sizes = _output_sizes(model)
    return max(sizes, default=0) if largest else sum(sizes)


def _output_sizes(model: keras.Model) -> list[int]:
    sizes = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            sizes += _output_sizes(layer)
            continue
        try:
            outputs = keras.tree.flatten(layer.output)
            sizes += [int(np.prod([d or 1 for d in out.shape[1:]])) for out in outputs]
        except (AttributeError, TypeError, ValueError) as e:
            raise ModelError(f"Layer {layer.name!r}'s output has no shape to count ({type(e).__name__}).") from None
    return sizes


def recalibrate_batchnorm(model: keras.Model, x, batch_size: int = 64, max_batches: int = 80, seed: int = 0) -> int:
    """Re-estimate every BatchNormalization layer's moving mean/variance for the final weights.

    During training the moving averages trail weights that keep changing (badly so at a high learning
    rate, and they also average augmented images); here they become the plain average of batch
    statistics over clean training images ("precise BN"). Weights are untouched. Returns batches used.

    Each batch runs through one compiled training-mode pass (backend.training_forward: on TensorFlow a
    tf.function, 40 % faster than eager calls on 2 cores) with momentum 0, so it leaves its own statistics in
    the moving variables; their average over the batches is the result (the same as a cumulative momentum
    (n - 1) / n, which a compiled pass could not change between batches). A frozen layer keeps its own.
    """
    bns = [layer for layer in model.layers if isinstance(layer, layers.BatchNormalization)]
    if not bns or len(x) == 0:
        return 0
    old = [bn.momentum for bn in bns]
    order = np.random.default_rng(seed).permutation(len(x))
    starts = range(0, min(len(x), batch_size * max_batches), batch_size)
    stats = [(bn.moving_mean, bn.moving_variance) for bn in bns]
    sums = [[np.zeros(v.shape, np.float64) for v in pair] for pair in stats]
    try:
        for bn in bns:
            bn.momentum = 0.0  # set before the pass is compiled: it reads the momentum then
        forward = training_forward(model, tuple(x.shape[1:]))
        for start in starts:
            forward(np.asarray(x[order[start:start + batch_size]], np.float32))
            for pair, total in zip(stats, sums):
                for variable, acc in zip(pair, total):
                    acc += to_numpy(variable)
        for pair, total in zip(stats, sums):
            for variable, acc in zip(pair, total):
                variable.assign((acc / len(starts)).astype(variable.dtype))
    finally:
        for bn, m in zip(bns, old):
            bn.momentum = m
    return len(starts)
