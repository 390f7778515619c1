"""Data profiles: how a run's folders, seed and per-kind settings are decided."""

from __future__ import annotations

from pathlib import Path

import pytest

from aadlib import data, paper, profiles
from aadlib.profiles import PROFILES, Acceleration, ModelSettings, Profile


@pytest.fixture
def clean_env(monkeypatch):
    """No profile, folder or results variable from the caller's shell."""
    for name in ("AADLIB_PROFILE", "AADLIB_HOME", "AADLIB_DATA_ROOT", "AADLIB_RESULTS"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


# --- resolve: which profile, which folders, which seed ----------------------------------------


def test_resolve_defaults_to_quick_and_its_synthetic_folder(clean_env, tmp_path):
    profile = profiles.resolve(home=tmp_path)
    assert profile.name == "quick"
    assert profile.data_root == tmp_path / "data" / "synthetic-quick"
    assert profile.results == tmp_path / "results" / "quick"
    assert profile.cache_dir == tmp_path / "cache" / "features"


@pytest.mark.parametrize(
    ("name", "folder"),
    [
        ("tiny", "synthetic-tiny"),
        ("full", "dcase2020-task2-dev"),
        ("full-synthetic", "synthetic-full"),
        ("folder", "own"),
    ],
)
def test_each_kind_of_data_gets_its_own_default_folder(clean_env, tmp_path, name, folder):
    profile = profiles.resolve(name, home=tmp_path)
    assert profile.data_root == tmp_path / "data" / folder
    assert profile.results == tmp_path / "results" / name  # results never mix profiles


def test_arguments_beat_environment_variables_which_beat_defaults(clean_env, tmp_path):
    clean_env.setenv("AADLIB_PROFILE", "tiny")
    clean_env.setenv("AADLIB_HOME", str(tmp_path / "env-home"))
    clean_env.setenv("AADLIB_DATA_ROOT", str(tmp_path / "env-data"))
    clean_env.setenv("AADLIB_RESULTS", str(tmp_path / "env-results"))
    from_env = profiles.resolve()
    assert from_env.name == "tiny"
    assert from_env.home == tmp_path / "env-home"
    assert from_env.data_root == tmp_path / "env-data"
    assert from_env.results == tmp_path / "env-results" / "tiny"

    given = profiles.resolve(
        "quick", home=tmp_path / "h", data_root=tmp_path / "d", results=tmp_path / "r"
    )
    assert (given.name, given.home) == ("quick", tmp_path / "h")
    assert (given.data_root, given.results) == (tmp_path / "d", tmp_path / "r" / "quick")


def test_a_user_folder_is_expanded(clean_env, tmp_path):
    clean_env.setenv("HOME", str(tmp_path))
    profile = profiles.resolve("tiny", home="~/aad", data_root="~/clips")
    assert profile.home == tmp_path / "aad"
    assert profile.data_root == tmp_path / "clips"


def test_an_unknown_profile_names_the_choices_and_the_switches(clean_env, tmp_path):
    with pytest.raises(ValueError) as error:
        profiles.resolve("fast", home=tmp_path)
    message = str(error.value)
    assert "'fast'" in message and "--profile" in message and "AADLIB_PROFILE" in message
    assert all(name in message for name in PROFILES)


def test_resolve_keeps_the_profiles_seed_unless_given_one(clean_env, tmp_path):
    assert profiles.resolve("tiny", home=tmp_path).seed == PROFILES["tiny"].seed
    assert profiles.resolve("tiny", home=tmp_path, seed=7).seed == 7


def test_a_resolved_profile_is_a_copy_and_the_registry_is_unchanged(clean_env, tmp_path):
    profiles.resolve("tiny", home=tmp_path, seed=9)
    assert PROFILES["tiny"].home is None and PROFILES["tiny"].seed == 0


def test_folders_are_refused_before_resolve():
    with pytest.raises(RuntimeError, match="resolve"):
        _ = PROFILES["quick"].cache_dir


# --- settings per model kind -------------------------------------------------------------------


def test_the_full_profile_trains_every_kind_with_the_papers_settings():
    full = PROFILES["full"]
    for kind in paper.MODEL_KINDS:
        spec = paper.model_spec(kind)
        settings = full.model(kind)
        assert (settings.epochs, settings.patience) == (spec.epochs, spec.patience)
        assert settings.train_hop == settings.score_hop == spec.hop
        assert settings.normalise == spec.normalise
        assert settings == ModelSettings.paper(kind)


def test_a_machine_type_of_its_own_overrides_the_kinds_settings():
    own = ModelSettings(10, 3, 16, 64, True)
    kind, machine_type = "cnn", "slider"
    quick = PROFILES["quick"].replace(overrides={(kind, machine_type): own})
    assert quick.model(kind, machine_type) == own
    other = next(t for t in data.MACHINE_TYPES if t != machine_type)
    assert quick.model(kind, other) == quick.models[kind] != own


def test_an_unknown_kind_is_refused_with_the_list_of_kinds():
    with pytest.raises(ValueError, match="baseline"):
        PROFILES["quick"].model("transformer")


def test_with_model_changes_one_kind_and_leaves_the_others():
    quick = PROFILES["quick"]
    changed = quick.with_model("dense", epochs=7, seeds=5)
    assert (changed.model("dense").epochs, changed.model("dense").seeds) == (7, 5)
    assert changed.model("baseline") == quick.model("baseline")
    assert (quick.model("dense").epochs, quick.model("dense").seeds) != (7, 5)


def test_with_models_caps_epochs_everywhere_and_never_raises_them():
    quick = PROFILES["quick"]
    quick = quick.replace(overrides={("cnn", "slider"): ModelSettings(10, 3, 16, 64, True)})
    capped = quick.with_models(epochs=2)
    for kind in paper.MODEL_KINDS:
        assert capped.model(kind).epochs == min(2, quick.model(kind).epochs)
    for key, settings in capped.overrides.items():
        assert settings.epochs == min(2, quick.overrides[key].epochs)
    raised = quick.with_models(epochs=10_000)
    assert all(raised.model(k).epochs == quick.model(k).epochs for k in paper.MODEL_KINDS)


@pytest.mark.parametrize("field", ["epochs", "train_hop", "score_hop", "seeds"])
def test_settings_below_one_are_refused(field):
    settings = {"baseline": PROFILES["quick"].model("baseline")}
    bad = {"baseline": settings["baseline"].__class__(**{**vars(settings["baseline"]), field: 0})}
    with pytest.raises(ValueError, match=f"baseline {field} must be at least 1"):
        Profile("x", "synthetic", "tiny", "test", models=bad)


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"steps_per_epoch": 0}, "steps_per_epoch"),
        ({"seed": -1}, "seed"),
        ({"seed": 2**32}, "seed"),
        ({"mix_down": "left"}, "mix_down"),
    ],
)
def test_profile_fields_out_of_range_are_refused(changes, words):
    with pytest.raises(ValueError, match=words):
        PROFILES["tiny"].replace(**changes)


# --- acceleration ------------------------------------------------------------------------------


def test_auto_acceleration_is_decided_per_device_and_explicit_values_stay():
    auto = Acceleration()
    on_cpu, on_gpu = auto.on(gpu=False, cores=2), auto.on(gpu=True, cores=2)
    assert on_cpu.jit_compile is False and on_gpu.jit_compile is True
    assert on_cpu.parallel_models == 2  # two small models at once keep 2 cores busier
    assert auto.on(gpu=False, cores=1).parallel_models == 1
    assert on_gpu.parallel_models == min(Acceleration.GPU_PARALLEL, 2)
    assert Acceleration().on(gpu=True, cores=16).parallel_models == Acceleration.GPU_PARALLEL
    fixed = Acceleration(steps_per_execution=4, jit_compile=False).on(gpu=True)
    assert (fixed.steps_per_execution, fixed.jit_compile) == (4, False)


def test_only_precision_enters_a_runs_record():
    assert Acceleration(steps_per_execution=64, jit_compile=True).record == {}
    assert Acceleration(precision="mixed_bfloat16").record == {"precision": "mixed_bfloat16"}


@pytest.mark.parametrize(
    "changes",
    [
        {"steps_per_execution": 0},
        {"parallel_models": True},
        {"jit_compile": "yes"},
        {"prefetch_to_device": 1.5},
        {"precision": "float64"},
    ],
)
def test_bad_acceleration_settings_are_refused(changes):
    with pytest.raises(ValueError):
        Acceleration(**changes)


def test_session_info_names_the_profile_and_shows_folders_under_the_home(clean_env, tmp_path):
    profile = profiles.resolve("tiny", home=tmp_path, data_root=tmp_path / "clips")
    info = profiles.session_info(profile)
    assert "profile 'tiny'" in info
    assert str(Path("$AADLIB_HOME") / "clips") in info
    assert str(Path("$AADLIB_HOME") / "results" / "tiny") in info
    assert "device:" in info


def test_quick_counts_seed_noise_for_the_models_it_can_afford_to_repeat():
    from aadlib import pipeline  # loads TensorFlow: only for this test

    quick = PROFILES["quick"]
    assert quick.model("baseline").seeds >= 3 and quick.model("dense").seeds >= 3
    departures = pipeline.profile_departures(["quick"])
    assert departures.loc["dense: training runs (seeds)", "paper"] == "1"
    assert departures.loc["dense: training runs (seeds)", "quick"] == str(
        quick.model("dense").seeds
    )
