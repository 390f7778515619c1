"""Tests of aadlib.models: architectures checked layer by layer against the paper.

Expected shapes and parameter counts are computed here from the layer formulas:
Dense ``in*out + out``; BatchNorm ``4*C`` (``2*C`` trainable: gamma, beta);
Conv2D and Conv2DTranspose ``k*k*c_in*c_out + c_out``.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import layers

from aadlib import paper
from aadlib.models import build_cnn_ae, build_dense_ae, build_model
from aadlib.paper import MODEL_KINDS


def dense_params(n_in, n_out):
    return n_in * n_out + n_out


def bn_params(c):
    return 4 * c


def conv_params(k, c_in, c_out):
    return k * k * c_in * c_out + c_out


def _trainable(layer):
    return sum(int(np.prod(w.shape)) for w in layer.trainable_weights)


def _check_layers(model, expected):
    """``expected``: (layer type, output shape without batch, params) per layer after the input."""
    got = [
        (type(layer).__name__, tuple(layer.output.shape[1:]), layer.count_params())
        for layer in model.layers
        if not isinstance(layer, keras.layers.InputLayer)
    ]
    assert got == expected


@pytest.fixture(scope="module")
def dense():
    return build_dense_ae()


@pytest.fixture(scope="module")
def cnn():
    return build_cnn_ae()


def _dense_expected(bn_relu_bottleneck=False):
    expected = []
    width = 640
    for _ in range(4):
        expected += [
            ("Dense", (512,), dense_params(width, 512)),
            ("BatchNormalization", (512,), bn_params(512)),
            ("ReLU", (512,), 0),
        ]
        width = 512
    expected.append(("Dense", (8,), dense_params(512, 8)))
    if bn_relu_bottleneck:
        expected += [("BatchNormalization", (8,), bn_params(8)), ("ReLU", (8,), 0)]
    width = 8
    for _ in range(4):
        expected += [
            ("Dense", (512,), dense_params(width, 512)),
            ("BatchNormalization", (512,), bn_params(512)),
            ("ReLU", (512,), 0),
        ]
        width = 512
    expected.append(("Dense", (640,), dense_params(512, 640)))
    return expected


def test_dense_layers(dense):
    _check_layers(dense, _dense_expected())


def test_dense_totals(dense):
    total = (
        dense_params(640, 512)
        + 3 * dense_params(512, 512)
        + dense_params(512, 8)
        + dense_params(8, 512)
        + 3 * dense_params(512, 512)
        + dense_params(512, 640)
        + 8 * bn_params(512)
    )
    non_trainable = 8 * 2 * 512  # moving mean and variance of 8 BatchNorm layers
    assert dense.count_params() == total
    assert sum(_trainable(layer) for layer in dense.layers) == total - non_trainable
    assert tuple(dense.inputs[0].shape[1:]) == (640,)
    assert tuple(dense.outputs[0].shape[1:]) == (640,)


def test_dense_bottleneck_is_8(dense):
    bottleneck = dense.get_layer("bottleneck")
    assert isinstance(bottleneck, layers.Dense)
    assert bottleneck.units == 8
    assert bottleneck.get_config()["activation"] == "linear"
    # The narrowest layer of the model is the bottleneck.
    widths = [layer.output.shape[-1] for layer in dense.layers]
    assert min(widths) == 8


def test_dense_bottleneck_bn_relu_option():
    model = build_dense_ae(bottleneck_bn_relu=True)
    _check_layers(model, _dense_expected(bn_relu_bottleneck=True))
    assert model.count_params() == build_dense_ae().count_params() + bn_params(8)


def test_dense_hidden_layers_bn_before_relu(dense):
    # Every hidden Dense is followed by BatchNorm then ReLU, and has no activation itself.
    hidden = [layer for layer in dense.layers if isinstance(layer, layers.Dense)]
    assert len(hidden) == 10
    for layer in hidden:
        assert layer.get_config()["activation"] == "linear"


def test_dense_options():
    model = build_dense_ae(input_dim=40, hidden_units=16, n_hidden=2, bottleneck=3)
    dense_layers = [layer for layer in model.layers if isinstance(layer, layers.Dense)]
    assert [layer.units for layer in dense_layers] == [16, 16, 3, 16, 16, 40]
    assert model.count_params() == (
        dense_params(40, 16)
        + dense_params(16, 16)
        + dense_params(16, 3)
        + dense_params(3, 16)
        + dense_params(16, 16)
        + dense_params(16, 40)
        + 4 * bn_params(16)
    )


def _cnn_expected():
    expected = []
    c_in = 1
    encoder = [
        (32, 5, (32, 64)),
        (64, 5, (32, 32)),
        (128, 5, (16, 16)),
        (256, 3, (8, 8)),
        (512, 3, (4, 4)),
    ]
    for filters, k, (h, w) in encoder:
        expected += [
            ("Conv2D", (h, w, filters), conv_params(k, c_in, filters)),
            ("BatchNormalization", (h, w, filters), bn_params(filters)),
            ("ReLU", (h, w, filters), 0),
        ]
        c_in = filters
    expected += [
        ("Conv2D", (1, 1, 40), conv_params(4, 512, 40)),
        ("Flatten", (40,), 0),
        ("Dense", (4 * 4 * 512,), dense_params(40, 4 * 4 * 512)),
        ("Reshape", (4, 4, 512), 0),
    ]
    decoder = [(256, 3, (8, 8)), (128, 3, (16, 16)), (64, 5, (32, 32)), (32, 5, (32, 64))]
    c_in = 512
    for filters, k, (h, w) in decoder:
        expected += [
            ("Conv2DTranspose", (h, w, filters), conv_params(k, c_in, filters)),
            ("BatchNormalization", (h, w, filters), bn_params(filters)),
            ("ReLU", (h, w, filters), 0),
        ]
        c_in = filters
    expected.append(("Conv2DTranspose", (32, 128, 1), conv_params(5, 32, 1)))
    return expected


def test_cnn_layers(cnn):
    _check_layers(cnn, _cnn_expected())


def test_cnn_totals(cnn):
    expected = _cnn_expected()
    total = sum(params for *_, params in expected)
    bn_channels = [shape[-1] for kind, shape, _ in expected if kind == "BatchNormalization"]
    assert bn_channels == [32, 64, 128, 256, 512, 256, 128, 64, 32]
    assert cnn.count_params() == total
    non_trainable = 2 * sum(bn_channels)
    assert sum(_trainable(layer) for layer in cnn.layers) == total - non_trainable
    assert tuple(cnn.inputs[0].shape[1:]) == (32, 128, 1)
    assert tuple(cnn.outputs[0].shape[1:]) == (32, 128, 1)


def test_cnn_strides_kernels_padding(cnn):
    convs = [
        layer for layer in cnn.layers if isinstance(layer, layers.Conv2D | layers.Conv2DTranspose)
    ]
    got = [(layer.filters, layer.kernel_size, layer.strides, layer.padding) for layer in convs]
    assert got == [
        (32, (5, 5), (1, 2), "same"),
        (64, (5, 5), (1, 2), "same"),
        (128, (5, 5), (2, 2), "same"),
        (256, (3, 3), (2, 2), "same"),
        (512, (3, 3), (2, 2), "same"),
        (40, (4, 4), (1, 1), "valid"),
        (256, (3, 3), (2, 2), "same"),
        (128, (3, 3), (2, 2), "same"),
        (64, (5, 5), (2, 2), "same"),
        (32, (5, 5), (1, 2), "same"),
        (1, (5, 5), (1, 2), "same"),
    ]
    for layer in convs:
        assert layer.get_config()["activation"] == "linear"  # BN and ReLU are layers


def test_cnn_bottleneck_is_40(cnn):
    latent = cnn.get_layer("latent")
    assert tuple(latent.output.shape[1:]) == (40,)
    encoder = keras.Model(cnn.inputs, latent.output)
    z = encoder.predict(np.zeros((2, 32, 128, 1), np.float32), verbose=0)
    assert z.shape == (2, 40)


def test_final_layers_are_linear(dense, cnn):
    for model in (dense, cnn):
        last = model.layers[-1]
        assert last.name == "reconstruction"
        assert last.get_config()["activation"] == "linear"
    # A linear output can produce negative values, which dB features need.
    assert isinstance(dense.layers[-1], layers.Dense)
    assert isinstance(cnn.layers[-1], layers.Conv2DTranspose)


@pytest.mark.parametrize(("kind", "shape"), [("dense", (3, 640)), ("cnn", (3, 32, 128, 1))])
def test_output_shape_equals_input_shape(kind, shape):
    model = build_model(kind)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    y = model.predict(x, verbose=0)
    assert y.shape == x.shape
    assert y.dtype == np.float32


def test_build_model_kinds():
    assert MODEL_KINDS == tuple(paper.MODELS) and {"dense", "cnn"} <= set(MODEL_KINDS)
    assert build_model("dense").name == "dense_ae"
    assert build_model("cnn").name == "cnn_ae"
    assert build_model("dense", bottleneck=4).get_layer("bottleneck").units == 4


@pytest.mark.parametrize("kind", ["lstm", "Dense", "", "conv"])
def test_build_model_unknown_kind(kind):
    with pytest.raises(ValueError, match="unknown model kind") as info:
        build_model(kind)
    assert "dense" in str(info.value) and "cnn" in str(info.value)


def test_multiply_adds_follow_the_layer_formulas(dense, cnn):
    from aadlib.models import build_baseline_ae, multiply_adds

    # Dense layers: inputs x units.
    dense_macs = 640 * 512 + 3 * 512 * 512 + 512 * 8 + 8 * 512 + 3 * 512 * 512 + 512 * 640
    assert multiply_adds(dense) == dense_macs
    assert (
        multiply_adds(build_baseline_ae())
        == 640 * 128 + 3 * 128**2 + 128 * 8 + 8 * 128 + 3 * 128**2 + 128 * 640
    )
    # Convolutions: k*k*c_in*c_out per output position; transposed ones per input position.
    encoder = [
        (5, 1, 32, 32 * 64),
        (5, 32, 64, 32 * 32),
        (5, 64, 128, 16 * 16),
        (3, 128, 256, 8 * 8),
        (3, 256, 512, 4 * 4),
    ]
    bottleneck = 4 * 4 * 512 * 40  # one output position
    decoder_dense = 40 * 4 * 4 * 512
    decoder = [
        (3, 512, 256, 4 * 4),
        (3, 256, 128, 8 * 8),
        (5, 128, 64, 16 * 16),
        (5, 64, 32, 32 * 32),
        (5, 32, 1, 32 * 64),
    ]
    cnn_macs = (
        sum(k * k * a * b * n for k, a, b, n in encoder + decoder) + bottleneck + decoder_dense
    )
    assert multiply_adds(cnn) == cnn_macs
    assert 120 < multiply_adds(cnn) / multiply_adds(dense) < 140  # "about 130 times" (chapter 4)
