"""Training speed (chapter 5): the switches of aadlib.profiles.Acceleration compute the
same numbers with and without them, reach Keras, and leave checkpoints resumable; several
models trained at once give the scores of one after another; ``make bench-gpu`` runs.

No timing is asserted here: ``benchmarks/bench_gpu.py`` measures the speed.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import dense_config, small_dense_model, toy_logmels

from aadlib import models, pipeline, profiles, scoring, training
from aadlib.profiles import Acceleration
from aadlib.training import fit_autoencoder

pytestmark = pytest.mark.usefixtures("checkpoint_every_epoch")

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"

# The current loop: one step per compiled call, no XLA.
CURRENT = Acceleration(steps_per_execution=1, jit_compile=False)


# --------------------------------------------------------------------------------------
# The settings
# --------------------------------------------------------------------------------------


def test_auto_settings_are_decided_by_the_device():
    cpu = Acceleration().on(gpu=False, cores=2)
    assert (cpu.steps_per_execution, cpu.jit_compile, cpu.parallel_models) == (16, False, 2)
    assert cpu.score_batch is None and cpu.precision == "float32"
    assert not cpu.prefetch_to_device
    gpu = Acceleration().on(gpu=True, cores=16)
    assert (gpu.steps_per_execution, gpu.jit_compile, gpu.parallel_models) == (32, True, 3)
    assert gpu.score_batch == 4096
    assert Acceleration().on(gpu=True, cores=2).parallel_models == 2  # a core per process
    # What is set stays set; deciding twice changes nothing.
    mine = Acceleration(steps_per_execution=4, jit_compile=False, parallel_models=2)
    assert mine.on(gpu=True).on(gpu=False) == mine.on(gpu=True)
    assert mine.on(gpu=True).steps_per_execution == 4


@pytest.mark.parametrize(
    "bad",
    [
        {"steps_per_execution": 0},
        {"steps_per_execution": "many"},
        {"jit_compile": "yes"},
        {"precision": "float16"},
        {"parallel_models": 0},
        {"score_batch": True},
        {"prefetch_to_device": "auto"},
    ],
)
def test_bad_settings_are_refused(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        Acceleration(**bad)


def test_profiles_hold_the_settings_and_only_precision_enters_the_record():
    for profile in profiles.PROFILES.values():
        assert profile.acceleration == Acceleration()
    assert Acceleration().record == {}
    assert Acceleration(precision="mixed_float16").record == {"precision": "mixed_float16"}
    config = training.paper_config("dense")
    plain = training.run_record("dense", 1, config, {"data": "x"})
    assert "precision" not in plain  # records written before the setting existed still match
    mixed = training.run_record("dense", 1, config, {"data": "x"}, precision="mixed_bfloat16")
    assert mixed == {**plain, "precision": "mixed_bfloat16"}


# --------------------------------------------------------------------------------------
# The same numbers with and without each switch
# --------------------------------------------------------------------------------------


def _train(acceleration, epochs=3, **config):
    model = small_dense_model()
    history = fit_autoencoder(
        model,
        toy_logmels(20, 60),
        "dense",
        dense_config(epochs=epochs, batch_size=16, patience=50, **config),
        verbose=0,
        acceleration=acceleration,
    )
    return model, history


@pytest.fixture(scope="module")
def current():
    """The small model trained by the current loop."""
    return _train(CURRENT)


@pytest.mark.parametrize(
    ("switch", "exact"),
    [
        ({"steps_per_execution": 8}, True),
        ({"prefetch_to_device": True}, True),
        ({"steps_per_execution": 8, "prefetch_to_device": True}, True),
        # Slow: XLA compiles the training step (make test runs them; test-fast does not).
        pytest.param({"jit_compile": True}, False, marks=pytest.mark.slow),
        pytest.param(
            {"steps_per_execution": 8, "jit_compile": True}, False, marks=pytest.mark.slow
        ),
    ],
    ids=["steps_per_execution", "prefetch", "spe+prefetch", "xla", "spe+xla"],
)
def test_each_switch_trains_the_same_model(current, switch, exact):
    model, history = _train(dataclasses.replace(CURRENT, **switch))
    base_model, base_history = current
    assert model.steps_per_execution == switch.get("steps_per_execution", 1)
    assert model.jit_compile == switch.get("jit_compile", False)
    if exact:  # the same operations in the same order: the same bits
        pd.testing.assert_frame_equal(
            history.drop(columns="seconds"), base_history.drop(columns="seconds")
        )
        for a, b in zip(model.get_weights(), base_model.get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)
    else:  # XLA fuses operations: float rounding differs, nothing else
        np.testing.assert_allclose(history.loss, base_history.loss, rtol=1e-4)
        np.testing.assert_allclose(history.val_loss, base_history.val_loss, rtol=1e-4)
        weights = base_model.get_weights()
        scale = max(np.abs(w).max() for w in weights)
        for a, b in zip(model.get_weights(), weights, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4 * scale)
        probe = toy_logmels(3, 20, seed=1).frames[:15].reshape(3, 640)
        np.testing.assert_allclose(
            model.predict(probe, verbose=0),
            base_model.predict(probe, verbose=0),
            rtol=1e-3,
            atol=1e-3,  # outputs of order 1; rounding differences grow over 189 steps
        )


def test_the_default_settings_reach_keras_on_this_machine():
    model, _ = _train(None, epochs=1)
    expected = Acceleration().on(training.gpu_visible())
    assert model.steps_per_execution == expected.steps_per_execution
    assert model.jit_compile == expected.jit_compile


def test_a_compiled_call_never_crosses_a_capped_epoch():
    # The private rule itself: through fit, a wrong value shows only as a slower run.
    assert training._execution_steps(32, []) == 32
    assert training._execution_steps(32, [11_103]) == 3  # 3 x 3701
    assert training._execution_steps(16, [6, 4]) == 2
    assert training._execution_steps(8, [7]) == 7
    # 6 training and 6 validation batches per epoch: 3 per call, and 6 steps per epoch.
    model, history = _train(dataclasses.replace(CURRENT, steps_per_execution=4), steps_per_epoch=6)
    assert model.steps_per_execution == 3
    assert int(model.optimizer.iterations.numpy()) == 3 * 6
    base_model, base_history = _train(CURRENT, steps_per_epoch=6)
    pd.testing.assert_frame_equal(
        history.drop(columns="seconds"), base_history.drop(columns="seconds")
    )


# --------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------


def _fit_in(run_dir, acceleration, epochs, seed=0, model=None):
    return fit_autoencoder(
        model or small_dense_model(seed),
        toy_logmels(20, 60),
        "dense",
        dense_config(epochs=epochs, batch_size=16, patience=50),
        run_dir=run_dir,
        verbose=0,
        acceleration=acceleration,
    )


# Slow: four trainings, one compiled with XLA; make test runs it.
@pytest.mark.slow
def test_a_checkpoint_resumes_with_a_neutral_switch_changed(tmp_path, caplog):
    # Two epochs in the current loop, the session ends; the next one resumes with several
    # steps per call and prefetching: the run goes on, as one unbroken run would.
    run_dir = tmp_path / "run"
    first = _fit_in(run_dir, CURRENT, epochs=2)
    faster = Acceleration(steps_per_execution=8, jit_compile=False, prefetch_to_device=True)
    model = small_dense_model(seed=5)
    with caplog.at_level("WARNING", logger="aadlib"):
        resumed = _fit_in(run_dir, faster, epochs=4, model=model)
    assert not caplog.records  # nothing discarded
    assert list(resumed.epoch) == [1, 2, 3, 4]
    pd.testing.assert_frame_equal(resumed.iloc[:2].reset_index(drop=True), first)
    unbroken_model = small_dense_model()
    unbroken = _fit_in(tmp_path / "unbroken", CURRENT, epochs=4, model=unbroken_model)
    cols = ["epoch", "loss", "val_loss"]
    pd.testing.assert_frame_equal(resumed[cols], unbroken[cols])
    for a, b in zip(model.get_weights(), unbroken_model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    # XLA too resumes the same run (its rounding differs, its record does not).
    with caplog.at_level("WARNING", logger="aadlib"):
        again = _fit_in(run_dir, Acceleration(jit_compile=True), epochs=5)
    assert not caplog.records and list(again.epoch) == [1, 2, 3, 4, 5]


# Slow: three trainings, two in mixed precision with graphs of their own; make test runs it.
@pytest.mark.slow
def test_mixed_precision_is_another_run(tmp_path, caplog):
    run_dir = tmp_path / "run"
    _fit_in(run_dir, CURRENT, epochs=2)
    mixed = dataclasses.replace(CURRENT, precision="mixed_float16")
    model = models.build_model("dense", "mixed_float16", hidden_units=32, n_hidden=1)
    with caplog.at_level("WARNING", logger="aadlib"):
        history = _fit_in(run_dir, mixed, epochs=3, model=model)
    (message,) = [r.getMessage() for r in caplog.records]
    assert "made with other precision" in message and "training afresh" in message
    assert list(history.epoch) == [1, 2, 3] and np.all(np.isfinite(history.loss))
    assert json.loads((run_dir / "state.json").read_text())["record"]["precision"] == (
        "mixed_float16"
    )
    # A mixed run resumes as a mixed run (the loss scale's variables included).
    caplog.clear()
    again = models.build_model("dense", "mixed_float16", hidden_units=32, n_hidden=1)
    with caplog.at_level("WARNING", logger="aadlib"):
        more = _fit_in(run_dir, mixed, epochs=4, model=again)
    assert not caplog.records and list(more.epoch) == [1, 2, 3, 4]
    # Its reconstructions are float32, so it scores as any model does.
    scores = scoring.score_clips(again, toy_logmels(4, 20), "dense", hop=2)
    assert scores.dtype == np.float64 and np.all(np.isfinite(scores))


@pytest.mark.parametrize("precision", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_models_compute_in_16_bits_with_a_float32_output(precision):
    model = models.build_model("dense", precision)
    plain = models.build_model("dense")
    assert model.count_params() == plain.count_params()
    assert [layer.name for layer in model.layers] == [layer.name for layer in plain.layers]
    assert model.dtype_policy.name == precision
    assert model.layers[-1].dtype_policy.name == "float32"
    assert {layer.compute_dtype for layer in model.layers[1:-1]} == {precision.split("_")[1]}
    assert all(w.dtype == "float32" for w in model.weights)
    assert plain.dtype_policy.name == "float32"  # the global policy is back to float32


# --------------------------------------------------------------------------------------
# Several models at once
# --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_parallel_training_gives_the_sequential_scores(tmp_path):
    home = tmp_path / "home"
    tiny = profiles.resolve("tiny", home=home, data_root=home / "data", results=home / "one")
    kinds = ("baseline", "dense")
    one = pipeline.run_experiment(tiny, ["valve"], kinds, log=None, parallel=1)
    lines: list[str] = []
    both = tiny.replace(results=home / "both")
    two = pipeline.run_experiment(both, ["valve"], kinds, log=lines.append, parallel=2)
    pd.testing.assert_frame_equal(two, one)
    for kind in kinds:
        saved = pd.read_csv(both.results / kind / "valve" / "scores.csv")
        pd.testing.assert_frame_equal(
            saved, pd.read_csv(tiny.results / kind / "valve" / "scores.csv")
        )
        record = json.loads((both.results / kind / "valve" / "run.json").read_text())["record"]
        assert (
            record == json.loads((tiny.results / kind / "valve" / "run.json").read_text())["record"]
        )
    assert sorted(line.split()[0] for line in lines) == sorted(kinds)
    timings = pd.read_csv(both.results / "timings.csv")
    assert list(timings.model) == list(kinds) and "reused" not in timings.columns
    # Run again: every model is reused from its folder, as in a sequential run.
    lines.clear()
    again = pipeline.run_experiment(both, ["valve"], kinds, log=lines.append, parallel=2)
    pd.testing.assert_frame_equal(again, one)
    assert all("saved model reused" in line for line in lines) and len(lines) == 2


@pytest.mark.slow
def test_saved_detectors_fitted_side_by_side_give_the_sequential_scores(tmp_path, monkeypatch):
    home = tmp_path / "home"
    tiny = profiles.resolve("tiny", home=home, data_root=home / "data", results=home / "one")
    types = ["valve", "slider"]
    pipeline.prepare_data(tiny, types, progress=False)

    def at_once(profile, n):
        return profile.replace(
            acceleration=dataclasses.replace(profile.acceleration, parallel_models=n)
        )

    one = pipeline.run_detector(at_once(tiny, 1), "id-classifier", types)
    # The pools started: which process fitted a detector shows nowhere else.
    pools = []
    in_processes = pipeline._in_processes
    monkeypatch.setattr(
        pipeline,
        "_in_processes",
        lambda calls, *a, **k: [pools.append(len(calls)), in_processes(calls, *a, **k)],
    )
    both = at_once(tiny.replace(results=home / "both"), 2)
    two = pipeline.run_detector(both, "id-classifier", types)
    assert pools == [2]
    pd.testing.assert_frame_equal(two.scores, one.scores, check_exact=True)
    assert list(two.timings.machine_type) == types and not two.timings.reused.any()
    for machine_type in types:
        assert (both.results / "id-classifier" / machine_type / "model.keras").is_file()
    # Run again: each fit is read back here, with no worker.
    again = pipeline.run_detector(both, "id-classifier", types)
    assert pools == [2] and again.timings.reused.all()
    pd.testing.assert_frame_equal(again.scores, one.scores, check_exact=True)
    # refit=True fits both again, side by side; a single type to fit starts no pool.
    pipeline.run_detector(both, "id-classifier", types, refit=True)
    assert pools == [2, 2]
    pipeline.run_detector(both.replace(results=home / "three"), "id-classifier", ["valve"])
    assert pools == [2, 2]


# --------------------------------------------------------------------------------------
# make bench-gpu
# --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_bench_gpu_runs_end_to_end_capped_on_the_cpu(tmp_path, capsys):
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    import bench_gpu

    out = tmp_path / "bench_gpu.csv"
    status = bench_gpu.main(
        [
            "--profile",
            "tiny",
            "--data-root",
            str(tmp_path / "data"),
            "--results",
            str(tmp_path / "results"),
            "--out",
            str(out),
            "--kinds",
            "baseline",  # the others' steps are slower on a CPU; the code is the same
            "--steps",
            "2",
            "--rounds",
            "2",
            "--spe",
            "2",
            "--epoch-steps",
            "2",
            "--score-clips",
            "2",
            "--settings",
            "current,spe",
        ]
    )
    printed = capsys.readouterr().out
    assert status == 0
    if not training.gpu_visible():
        assert "no GPU visible to TensorFlow" in printed
    rows = pd.read_csv(out)
    assert set(rows.section) == {"device", "epoch", "steps", "projection"}
    steps = rows[(rows.section == "steps") & rows.what.str.contains("training")]
    assert set(steps.kind) == {"baseline"} and set(steps.setting) == {"current", "spe"}
    assert set(steps.feed) == {"memory", "fed"}
    assert (steps.value.astype(float) > 0).all()
    assert np.allclose(steps[steps.setting == "current"].ratio, 1.0)
    total = rows[rows.what.str.startswith("full reproduction")]
    assert len(total) == 1 and total.value.iloc[0] > 0
    assert "| model | setting |" in printed and "full reproduction" in printed


# Slow: two Python processes that load TensorFlow; make test runs it.
@pytest.mark.slow
def test_a_script_without_a_main_guard_trains_in_its_own_process(tmp_path):
    """Spawned workers import the main script again: one without the guard would run its
    own code in each worker. The default falls back to one process; asking for two says
    what to change, before any data is made. (A private name: the check itself.)"""
    home = tmp_path / "home"
    body = (
        "from aadlib import pipeline, profiles\n"
        f"tiny = profiles.resolve('tiny', home={str(home)!r})\n"
        "print('unguarded:', pipeline._unguarded_script())\n"
        "pipeline.run_experiment(tiny, ['valve'], ['baseline'], log=None, parallel=2)\n"
    )
    script = tmp_path / "train.py"
    script.write_text(body)
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    assert run.returncode == 1
    assert f"unguarded: {script}" in run.stdout
    assert "if __name__ ==" in run.stderr and str(script) in run.stderr
    assert not (home / "data").exists()  # refused before making the data
    guarded = tmp_path / "guarded.py"
    guarded.write_text(
        "from aadlib import pipeline\n"
        "if __name__ == '__main__':\n"
        "    print('unguarded:', pipeline._unguarded_script())\n"
    )
    run = subprocess.run([sys.executable, str(guarded)], capture_output=True, text=True)
    assert run.returncode == 0 and "unguarded: None" in run.stdout
