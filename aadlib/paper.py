"""Every number of the method, in one place: the paper's settings and the model kinds.

Chapters: 2 (features), 3 and 4 (models and training), 5 (the whole method).

Coelho et al. (2021), Sections 2.2-2.4, checked against the authors' code. The module
imports nothing heavy, so that a table, a profile or the command line can read it without
loading TensorFlow or librosa.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "SAMPLE_RATE",
    "N_FFT",
    "HOP_LENGTH",
    "N_MELS",
    "POWER",
    "LEARNING_RATE",
    "VALIDATION_FRACTION",
    "MAX_EPOCHS",
    "PATIENCE",
    "MAX_FPR",
    "ModelSpec",
    "MODELS",
    "MODEL_KINDS",
    "model_order",
    "model_spec",
]

#: Sample rate of every clip of DCASE 2020 Task 2 (Hz).
SAMPLE_RATE = 16_000
#: STFT frame (64 ms) and hop (32 ms, 50 % overlap), in samples.
N_FFT = 1024
HOP_LENGTH = 512
#: Mel bands of the log-mel spectrogram.
N_MELS = 128
#: Magnitude spectrum (energy ``20 * log10``), as the paper and the authors' CNN code.
POWER = 1.0

#: Adam's learning rate.
LEARNING_RATE = 1e-3
#: Share of the training clips held out to watch the validation loss.
VALIDATION_FRACTION = 0.1
#: Upper bound on epochs.
MAX_EPOCHS = 100
#: Epochs without improvement of the validation loss before training stops.
PATIENCE = 10

#: pAUC is computed over false-positive rates in [0, MAX_FPR].
MAX_FPR = 0.1


@dataclass(frozen=True)
class ModelSpec:
    """What defines one model kind of the method: its input windows and its schedule.

    Attributes
    ----------
    kind
        The name used by the command line, the profiles and the tables.
    title
        The name in prose and figures.
    window_frames
        Consecutive log-mel frames in one input window (5 frames, 640 values, for the
        dense models; a 32-frame patch for the CNN AE).
    patches
        Whether the model reads a window as an image ``(frames, mel bins, 1)``;
        otherwise as one flat vector of ``frames * mel bins`` values.
    batch_size
        Training batch size.
    hop
        Frames between consecutive windows of a clip, in training and in scoring.
    epochs
        Upper bound on epochs.
    patience
        Epochs without improvement before early stopping; ``None``: no early stopping,
        every epoch runs and the last weights are kept.
    feature_power
        1.0: magnitude spectrum, energy ``20 * log10``; 2.0: power spectrum, ``10 * log10``.
    normalise
        Whether the model reads each mel bin z-normalised with training statistics.
    score_batch
        Windows per batch when scoring (windows of many clips share a batch).
    """

    kind: str
    title: str
    window_frames: int
    patches: bool
    batch_size: int
    hop: int
    epochs: int
    patience: int | None
    feature_power: float
    normalise: bool
    score_batch: int

    @property
    def input_values(self) -> int:
        """Values of one window: frames times mel bands."""
        return self.window_frames * N_MELS


#: The model kinds, in the column order of the paper's Table 2.
MODELS: dict[str, ModelSpec] = {
    # The official DCASE 2020 Task 2 baseline (y-kawagu/dcase2020_task2_baseline,
    # baseline.yaml and keras_model.py): power spectrum, 100 epochs, no early stopping.
    "baseline": ModelSpec(
        kind="baseline",
        title="DCASE 2020 baseline",
        window_frames=5,
        patches=False,
        batch_size=512,
        hop=1,
        epochs=MAX_EPOCHS,
        patience=None,
        feature_power=2.0,
        normalise=False,
        score_batch=512,
    ),
    "dense": ModelSpec(
        kind="dense",
        title="Dense AE",
        window_frames=5,
        patches=False,
        batch_size=512,
        hop=1,
        epochs=MAX_EPOCHS,
        patience=PATIENCE,
        feature_power=POWER,
        normalise=False,
        score_batch=512,
    ),
    "cnn": ModelSpec(
        kind="cnn",
        title="CNN AE",
        window_frames=32,
        patches=True,
        batch_size=64,
        # "every second ... about 100 ms" in the paper: 3 frames of 32 ms in the code.
        hop=3,
        epochs=MAX_EPOCHS,
        patience=PATIENCE,
        feature_power=POWER,
        normalise=True,
        score_batch=256,
    ),
}

#: Names of the model kinds, in Table 2's order.
MODEL_KINDS: tuple[str, ...] = tuple(MODELS)


def model_order(name: str) -> tuple[int, str]:
    """Sort key of models and detectors in every table: Table 2's kinds first, in its
    order, then the other detectors by name."""
    return (MODEL_KINDS.index(name), "") if name in MODEL_KINDS else (len(MODEL_KINDS), name)


def model_spec(kind: str) -> ModelSpec:
    """The :class:`ModelSpec` of a kind, with an error that lists the kinds."""
    try:
        return MODELS[kind]
    except KeyError:
        raise ValueError(
            f"unknown model kind {kind!r}; choose one of {', '.join(MODEL_KINDS)}"
        ) from None
