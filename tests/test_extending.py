"""Extending aadlib through its public interface alone: a new detector and a new model kind.

A detector is one class and one :func:`aadlib.detectors.register_detector` line; a model
kind is an entry in :data:`aadlib.paper.MODELS` and a builder in
:data:`aadlib.models.BUILDERS`. Nothing else is edited: the pipeline trains, scores, saves
and reuses them, and tables, figures and prose name them.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pytest

from aadlib import detectors, models, paper, pipeline, plots, published, tables, wording


class LoudnessDetector:
    """A clip's mean log-mel level, as a z-score against its ID's normal training clips."""

    family = "loudness"
    names = ("loudness",)
    titles = {"loudness": "loudness detector"}
    colors = {"loudness": "#000000"}
    settings = None
    reused = False

    def __init__(self):
        self.levels: dict[int, tuple[float, float]] = {}
        self.fit_seconds = 0.0

    @classmethod
    def from_profile(cls, profile, seed=0):
        return cls()

    def _levels(self, logmels):
        return np.array([logmels.clip(i).mean() for i in range(len(logmels))])

    def fit(self, logmels, machine_ids, verbose=0):
        levels, ids = self._levels(logmels), np.asarray(machine_ids)
        self.levels = {
            int(i): (levels[ids == i].mean(), levels[ids == i].std() + 1e-6) for i in np.unique(ids)
        }
        return self

    def scores(self, logmels, machine_ids):
        levels = self._levels(logmels)
        mean, std = np.array([self.levels[int(i)] for i in machine_ids]).T
        return {"loudness": np.abs(levels - mean) / std}


def build_small_dense_ae(bn_momentum: float = 0.99) -> keras.Model:
    inputs = keras.Input((paper.MODELS["dense"].input_values,))
    code = keras.layers.Dense(8, activation="relu")(inputs)
    return keras.Model(inputs, keras.layers.Dense(inputs.shape[-1])(code), name="small_dense_ae")


SMALL = dataclasses.replace(paper.MODELS["dense"], kind="small", title="Small AE", epochs=2)


@pytest.fixture
def extended(monkeypatch):
    """The toy detector registered and the toy kind added, both removed after the test."""
    monkeypatch.setattr(detectors, "DETECTORS", dict(detectors.DETECTORS))
    monkeypatch.setattr(wording, "DETECTOR_TITLES", dict(wording.DETECTOR_TITLES))
    detectors.register_detector(LoudnessDetector)
    monkeypatch.setitem(paper.MODELS, "small", SMALL)
    monkeypatch.setitem(models.BUILDERS, "small", build_small_dense_ae)


def test_a_registered_detector_runs_through_the_pipeline_like_the_others(tiny, extended):
    run = pipeline.run_detector(tiny, "loudness", ["valve"])
    assert set(run.scores.model) == {"loudness"}
    assert (tiny.results / "loudness" / "valve" / "scores.csv").is_file()
    table = tables.per_id_table(run.scores)
    assert table["auc"].between(0, 100).all()
    assert "loudness" in detectors.score_names()
    assert plots.model_color("loudness") == "#000000"
    assert wording.title("loudness") == "loudness detector"
    with pytest.raises(ValueError, match="taken"):
        detectors.register_detector(type("Clash", (LoudnessDetector,), {"family": "other"}))


def test_a_class_without_the_interface_is_refused(extended):
    with pytest.raises(TypeError, match="scores"):
        detectors.register_detector(
            type(
                "Half",
                (),
                {
                    "family": "half",
                    "names": ("half",),
                    "titles": {},
                    "colors": {},
                    "from_profile": None,
                    "fit": None,
                },
            )
        )


def test_an_added_model_kind_trains_scores_and_is_reused_with_the_paper_s_path(tiny, extended):
    scores = pipeline.run_experiment(tiny, ["valve"], kinds=("small",), parallel=1, log=None)
    assert set(scores.model) == {"small"}
    assert tiny.model("small") == tiny.model("small", "valve")  # the spec's settings
    history = pipeline.run_history(tiny, "small", "valve")
    assert len(history) == SMALL.epochs
    again = pipeline.train_machine_type("valve", "small", tiny)
    assert again.reused, "the saved run is reused as the paper's kinds' are"
    # Tables, figures and prose take it; the published tables simply have no row for it.
    compared = tables.per_id_table(scores)
    assert compared["auc"].between(0, 100).all()
    assert plots.model_color("small") not in plots.MODEL_COLORS.values()
    assert wording.title("small") == "Small AE"
    assert "small" not in set(published.table2_long().model)
