"""Keras 3 builders for the paper's autoencoders, and a table of a model's layers.

Chapters 3 (the Dense AE) and 4 (the CNN AE).
"""

from __future__ import annotations

import contextlib

import keras
import numpy as np
import pandas as pd
from keras import layers

from .paper import MODEL_KINDS, N_MELS, model_spec

__all__ = [
    "build_baseline_ae",
    "build_dense_ae",
    "build_cnn_ae",
    "build_model",
    "layer_table",
    "multiply_adds",
    "CNN_ENCODER",
]


def _dense_block(x, units: int, name: str, bn_momentum: float = 0.99):
    x = layers.Dense(units, name=f"{name}_dense")(x)
    x = layers.BatchNormalization(momentum=bn_momentum, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def build_dense_ae(
    input_dim: int = model_spec("dense").input_values,
    hidden_units: int = 512,
    n_hidden: int = 4,
    bottleneck: int = 8,
    bottleneck_bn_relu: bool = False,
    bn_momentum: float = 0.99,
    name: str = "dense_ae",
) -> keras.Model:
    """The paper's Dense AE (Section 2.3, Fig. 3 top). Chapters 3, 4.

    Encoder ``n_hidden`` x [Dense(512), BatchNorm, ReLU], a Dense(8) bottleneck,
    decoder ``n_hidden`` x [Dense(512), BatchNorm, ReLU] and a linear
    Dense(``input_dim``) output. ``bottleneck_bn_relu=True`` follows the bottleneck
    with BatchNorm and ReLU, as the authors' code does. ``bn_momentum`` is Keras'
    default unless a short profile needs faster-moving statistics.
    """
    inputs = keras.Input(shape=(input_dim,), name="frames")
    x = inputs
    for i in range(n_hidden):
        x = _dense_block(x, hidden_units, f"enc{i + 1}", bn_momentum)
    if bottleneck_bn_relu:
        x = _dense_block(x, bottleneck, "bottleneck", bn_momentum)
    else:
        x = layers.Dense(bottleneck, name="bottleneck")(x)
    for i in range(n_hidden):
        x = _dense_block(x, hidden_units, f"dec{i + 1}", bn_momentum)
    outputs = layers.Dense(input_dim, name="reconstruction")(x)
    return keras.Model(inputs, outputs, name=name)


def build_baseline_ae(
    input_dim: int = model_spec("baseline").input_values, bn_momentum: float = 0.99
) -> keras.Model:
    """The official DCASE 2020 Task 2 baseline autoencoder (Table 2's first column). Chapter 3.

    Its ``keras_model.py``: four blocks of Dense(128), BatchNorm and ReLU, a Dense(8)
    bottleneck also followed by BatchNorm and ReLU, four more Dense(128) blocks and a linear
    Dense(640): 269,992 parameters, a ninth of the Dense AE's.
    """
    return build_dense_ae(
        input_dim,
        hidden_units=128,
        n_hidden=4,
        bottleneck=8,
        bottleneck_bn_relu=True,
        bn_momentum=bn_momentum,
        name="dcase_baseline_ae",
    )


# (filters, kernel, strides) of the encoder, Section 2.3.
CNN_ENCODER = (
    (32, 5, (1, 2)),
    (64, 5, (1, 2)),
    (128, 5, (2, 2)),
    (256, 3, (2, 2)),
    (512, 3, (2, 2)),
)
# The decoder mirrors it; the last layer maps back to one channel, linearly.
CNN_DECODER = (
    (256, 3, (2, 2)),
    (128, 3, (2, 2)),
    (64, 5, (2, 2)),
    (32, 5, (1, 2)),
)


def _conv_block(x, filters, kernel, strides, name, transpose=False, bn_momentum=0.99):
    conv = layers.Conv2DTranspose if transpose else layers.Conv2D
    x = conv(filters, kernel, strides=strides, padding="same", name=f"{name}_conv")(x)
    x = layers.BatchNormalization(momentum=bn_momentum, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def build_cnn_ae(
    input_shape: tuple[int, int, int] = (model_spec("cnn").window_frames, N_MELS, 1),
    bottleneck: int = 40,
    bn_momentum: float = 0.99,
) -> keras.Model:
    """The paper's CNN AE (Section 2.3, Fig. 3 bottom), for 32 x 128 patches. Chapter 4.

    Encoder: five Conv2D blocks (32, 64, 128, 256, 512 filters; kernels 5, 5, 5, 3, 3;
    strides (1,2), (1,2), (2,2), (2,2), (2,2); 'same' padding; BatchNorm and ReLU),
    reaching 4 x 4 x 512. Bottleneck: Conv2D(40, 4x4, 'valid') flattened to 40 values.
    Decoder: Dense(4*4*512) reshaped to 4 x 4 x 512, four Conv2DTranspose blocks
    mirroring the encoder, and a linear Conv2DTranspose(1, 5, (1,2)) back to 32 x 128.
    """
    inputs = keras.Input(shape=input_shape, name="patch")
    x = inputs
    for i, (filters, kernel, strides) in enumerate(CNN_ENCODER):
        x = _conv_block(x, filters, kernel, strides, f"enc{i + 1}", bn_momentum=bn_momentum)
    encoded_shape = tuple(x.shape[1:])
    x = layers.Conv2D(bottleneck, encoded_shape[:2], padding="valid", name="bottleneck_conv")(x)
    x = layers.Flatten(name="latent")(x)
    x = layers.Dense(encoded_shape[0] * encoded_shape[1] * encoded_shape[2], name="dec_dense")(x)
    x = layers.Reshape(encoded_shape, name="dec_reshape")(x)
    for i, (filters, kernel, strides) in enumerate(CNN_DECODER):
        x = _conv_block(
            x, filters, kernel, strides, f"dec{i + 1}", transpose=True, bn_momentum=bn_momentum
        )
    outputs = layers.Conv2DTranspose(
        input_shape[-1], 5, strides=(1, 2), padding="same", name="reconstruction"
    )(x)
    return keras.Model(inputs, outputs, name="cnn_ae")


#: The builder of each model kind of :data:`aadlib.paper.MODELS`. A new kind is an entry
#: there and its builder here; profiles give it the paper's settings of its spec.
BUILDERS = {"baseline": build_baseline_ae, "dense": build_dense_ae, "cnn": build_cnn_ae}


@contextlib.contextmanager
def computing_in(precision: str):
    """Layers made (or loaded) inside compute in ``precision``, a Keras dtype policy."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def build_model(kind: str, precision: str = "float32", **kwargs) -> keras.Model:
    """Build a model by kind name (:data:`aadlib.paper.MODEL_KINDS`). Chapter 5.

    ``"float32"`` is the paper's model as it is. With a mixed policy (``"mixed_float16"``,
    ``"mixed_bfloat16"``) every layer computes in 16 bits and keeps float32 weights,
    except the output layer, which computes in float32: reconstructions and errors stay
    float32 (:func:`aadlib.training.fit_autoencoder` scales the loss for float16).
    ``kwargs`` go to the kind's builder (e.g. ``bn_momentum``).
    """
    model_spec(kind)  # an unknown kind gets the error that lists the kinds
    if precision == "float32":
        return BUILDERS[kind](**kwargs)
    with computing_in(precision):
        model = BUILDERS[kind](**kwargs)
        output = model.layers[-1].name

        def clone(layer):
            config = layer.get_config()
            if layer.name == output:
                config["dtype"] = "float32"
            return layer.__class__.from_config(config)

        return keras.models.clone_model(model, clone_function=clone)


def layer_table(model: keras.Model, with_parameters_only: bool = False) -> pd.DataFrame:
    """One row per layer: name, type, output shape and parameter count. Chapters 3, 4, 7."""
    rows = [
        (layer.name, type(layer).__name__, tuple(layer.output.shape[1:]), layer.count_params())
        for layer in model.layers
    ]
    table = pd.DataFrame(rows, columns=["layer", "type", "output shape", "parameters"])
    if with_parameters_only:
        table = table[table.parameters > 0]
    return table.reset_index(drop=True)


assert set(BUILDERS) == set(MODEL_KINDS), "every model kind of aadlib.paper has a builder"


def multiply_adds(model: keras.Model) -> int:
    """Multiply-adds of one forward pass of one example, dense and convolution layers.

    Chapters 4, 5.

    A dense layer from ``m`` to ``n`` units costs ``m * n``; a convolution with a ``k x k``
    kernel from ``c_in`` to ``c_out`` channels costs ``k * k * c_in * c_out`` per output
    position, and a transposed convolution the same per *input* position. Batch
    normalisation and activations, a few operations per value, are left out.
    """
    total = 0
    for layer in model.layers:
        if isinstance(layer, layers.Dense):
            total += int(layer.kernel.shape[0]) * int(layer.units)
        elif isinstance(layer, layers.Conv2DTranspose):
            kh, kw, c_out, c_in = layer.kernel.shape
            positions = int(np.prod(layer.input.shape[1:3]))
            total += int(kh * kw * c_in * c_out) * positions
        elif isinstance(layer, layers.Conv2D):
            kh, kw, c_in, c_out = layer.kernel.shape
            positions = int(np.prod(layer.output.shape[1:3]))
            total += int(kh * kw * c_in * c_out) * positions
    return total
