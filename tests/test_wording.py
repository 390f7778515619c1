"""The book's generated sentences read naturally at the edges: 0, 1 and all."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from aadlib import decisions, wording


@pytest.mark.parametrize(
    ("n", "expected"), [(0, "0 models"), (1, "1 model"), (2, "2 models"), (23, "23 models")]
)
def test_plural_agrees_with_the_count(n, expected):
    assert wording.plural(n, "model") == expected


def test_plural_takes_an_irregular_plural_and_numpy_counts():
    assert wording.plural(np.int64(2), "analysis", "analyses") == "2 analyses"
    assert wording.plural(1, "analysis", "analyses") == "1 analysis"


@pytest.mark.parametrize("bad", [-1, 1.5, True])
def test_a_count_is_a_whole_number(bad):
    with pytest.raises(ValueError, match="whole number"):
        wording.plural(bad, "model")


def test_every_says_every_frame_for_one_and_a_number_otherwise():
    assert wording.every(1, "frame") == "every frame"
    assert wording.every(4, "frame") == "every 4 frames"
    with pytest.raises(ValueError):
        wording.every(0, "frame")


@pytest.mark.parametrize(
    ("n", "total", "expected"),
    [
        (0, 8, "none of the 8 per-ID rows"),
        (1, 8, "1 of the 8 per-ID rows"),
        (3, 8, "3 of the 8 per-ID rows"),
        (8, 8, "all 8 per-ID rows"),
        (2, 2, "both per-ID rows"),
        (0, 2, "none of the 2 per-ID rows"),
        (1, 1, "the only per-ID row"),
        (0, 1, "no per-ID row"),
        (0, 0, "no per-ID row"),
    ],
)
def test_count_of_says_none_and_all_in_words(n, total, expected):
    text = wording.count_of(n, total, "per-ID row")
    assert text == expected
    assert "0 of" not in text and "(" not in text


def test_count_of_refuses_a_part_larger_than_its_whole():
    with pytest.raises(ValueError, match="exceed"):
        wording.count_of(5, 4, "ID", "IDs")


def test_agree_picks_the_verb_of_the_count():
    assert [wording.agree(n, "is", "are") for n in (0, 1, 2)] == ["are", "is", "are"]


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        ([], "none"),
        (["fan"], "fan"),
        (["fan", "pump"], "fan and pump"),
        (["fan", "pump", "valve"], "fan, pump and valve"),
    ],
)
def test_join_lists_like_a_sentence(items, expected):
    assert wording.join(items) == expected


def test_join_takes_its_conjunction_and_empty_word():
    assert wording.join(["a", "b"], "or") == "a or b"
    assert wording.join([], empty="no type") == "no type"


@pytest.mark.parametrize(
    ("low", "high", "side", "verdict", "claim"),
    [
        (0.5, 3.0, "above", "better", "holds beyond the noise"),
        (-3.0, -0.5, "below", "worse", "is contradicted beyond the noise"),
        (-1.0, 2.0, "within", "within the noise", "can be neither"),
        (0.0, 2.0, "within", "within the noise", "can be neither"),
    ],
)
def test_verdicts_follow_the_interval_of_the_difference(low, high, side, verdict, claim):
    assert wording.side_of_zero(low, high) == side
    assert wording.difference_verdict(low, high) == verdict
    assert wording.claim_verdict(low, high).startswith(claim)


def test_relation_to_names_the_other_model():
    assert wording.relation_to(1, 2, "the baseline") == "above the baseline beyond the noise"
    assert wording.relation_to(-2, -1) == "below it beyond the noise"
    assert wording.relation_to(-1, 1, "the Dense AE") == "within the noise of the Dense AE"


@pytest.mark.parametrize(("low", "high"), [(2.0, 1.0), (float("nan"), 1.0)])
def test_a_broken_interval_is_refused(low, high):
    with pytest.raises(ValueError):
        wording.side_of_zero(low, high)


def test_a_correction_stands_beside_the_printed_value():
    assert wording.printed_and_corrected(77.237, 77.403) == "77.2 as printed (77.4 corrected)"
    assert (
        wording.printed_and_corrected(72.07, 73.07, digits=2)
        == "72.07 as printed (73.07 corrected)"
    )
    # Where the correction changes nothing at the shown precision, one value is shown.
    assert wording.printed_and_corrected(76.925, 76.925) == "76.9"


def test_ids_phrase_numbers_ids_as_the_book_does():
    assert wording.ids_phrase([]) == "no ID"
    assert wording.ids_phrase([2]) == "ID 02"
    assert wording.ids_phrase([0, 2, 4]) == "IDs 00, 02 and 04"


@pytest.mark.parametrize(
    "text",
    ["run `make bench-gpu`", "**bold** paragraph", "1 model(s)", "(CPU (2 cores))", "__init__"],
)
def test_glue_refuses_markup_the_page_would_show_as_is(text):
    with pytest.raises(ValueError, match="plain text"):
        wording.glue("sentence", text)


def test_glue_hands_plain_values_to_myst_nb(monkeypatch):
    import myst_nb

    seen = {}
    monkeypatch.setattr(myst_nb, "glue", lambda name, value, display: seen.update({name: value}))
    wording.glue("x", np.float64(2.5))
    wording.glue("s", "IDs 00 and 02 (both below 50)")
    assert seen == {"x": 2.5, "s": "IDs 00 and 02 (both below 50)"}
    assert type(seen["x"]) is float


def test_every_planted_kind_has_a_listening_cue():
    from aadlib import soundmodel

    assert set(wording.LISTEN_FOR) == set(soundmodel.ANOMALY_KINDS)
    assert "severity 0.90: strong" in wording.listen_for("knocks", 0.9)
    assert "subtle" in wording.listen_for("knocks", 0.1)
    assert "not labelled" in wording.listen_for(None)
    with pytest.raises(KeyError, match="known"):
        wording.listen_for("squeal")


def test_every_learning_status_has_its_phrase():
    from aadlib import pipeline

    statuses = {
        pipeline.learning_status(pd.DataFrame({"val_loss": losses}))
        for losses in ([1.0], [1.0, 0.5, 0.2], [1.0, 1.0, 1.0])
    }
    assert statuses == set(wording.LEARNING)
    assert wording.learning_phrase("improving").startswith("still improving")
    with pytest.raises(KeyError, match="known"):
        wording.learning_phrase("converged")


# Verdicts of comparisons with a model that stopped while improving


def test_a_comparison_with_an_unfinished_model_is_undecided_whatever_its_interval():
    assert wording.undecided_reason([]) == ""
    assert (
        wording.undecided_reason(["CNN AE"]) == "undecided: the CNN AE stopped before its plateau"
    )
    both = wording.undecided_reason(["CNN AE", "Dense AE"])
    assert both == "undecided: the CNN AE and the Dense AE stopped before their plateau"
    # A clear interval does not override an unfinished training.
    assert wording.claim_verdict(5.0, 9.0, undecided=["CNN AE"]).startswith("is undecided")
    assert wording.claim_verdict(5.0, 9.0) == "holds beyond the noise"
    assert wording.relation_to(-9.0, -5.0, "the baseline", undecided=["CNN AE"]).startswith(
        "undecided"
    )
    assert wording.relation_to(-9.0, -5.0, "the baseline") == "below the baseline beyond the noise"


def test_runs_status_says_how_many_runs_had_not_finished():
    assert wording.runs_status(["plateau"]) == "plateau"
    assert wording.runs_status(["improving"]) == "improving"
    assert wording.runs_status(["plateau"] * 3) == "plateau"
    assert wording.runs_status(["plateau", "improving", "improving"]) == "improving (2 of 3 runs)"
    assert wording.runs_status(["too short", "plateau"]) == "too short (1 of 2 runs)"


def test_by_type_sentence_counts_decided_types_and_names_the_undecided_ones():
    titles = {"cnn": "CNN AE"}
    text = wording.by_type_sentence(
        "Dense AE", "the baseline", [1, -5, -1, 2], [3, -1, 1, 4], ["", "", "", ""], titles
    )
    assert text == (
        "the Dense AE is above the baseline beyond the noise on 2 types, "
        "below it on 1 type and within the noise on 1 type"
    )
    text = wording.by_type_sentence(
        "CNN AE", "the baseline", [1, -5, -1], [3, -1, 1], ["cnn", "cnn", ""], titles
    )
    assert text == (
        "the CNN AE is above the baseline beyond the noise on no type, below it on no type and "
        "within the noise on 1 type; undecided where a model stopped before its plateau "
        "(the CNN AE on 2 types)"
    )
    none = wording.by_type_sentence("CNN AE", "the baseline", [1], [3], ["cnn"], titles)
    assert none.startswith("no type decides between the CNN AE and the baseline")
    assert "(s)" not in text and "(s)" not in none


# What the ID classifiers learned, and ranks


def _identity_row(machine_type, finding, normal=0.8, anomalous=0.5):
    return {
        "machine_type": machine_type,
        "finding": finding,
        "chance": 0.25,
        "normal": normal,
        "anomalous": anomalous,
        "train_accuracy": 0.97,
        "val_accuracy": 0.31,
    }


def test_identity_sentence_names_each_finding_with_its_types_and_figures():
    text = wording.identity_sentence(
        [
            _identity_row("fan", "identity blurred"),
            _identity_row("pump", "identity blurred", 0.7, 0.4),
            _identity_row("valve", "identity kept", 0.81, 0.79),
            _identity_row("ToyConveyor", "not told apart", 0.3, 0.3),
        ]
    )
    assert "On fan (80 % against 50 %) and pump (70 % against 40 %)" in text
    assert "valve (81 % of the normal clips, 79 % of the anomalous ones)" in text
    assert "ToyConveyor (30 % of the normal clips against a chance of 25 %" in text
    assert "97 % of its training patches and 31 % of its validation patches" in text
    only = wording.identity_sentence([_identity_row("fan", "identity blurred")])
    assert "not learned" not in only and "keep their identity" not in only
    assert not wording.MARKUP.search(text)


def test_ordinals_and_rank_phrases():
    assert [wording.ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 101, 111)] == [
        "1st",
        "2nd",
        "3rd",
        "4th",
        "11th",
        "12th",
        "13th",
        "21st",
        "22nd",
        "101st",
        "111th",
    ]
    assert wording.rank_phrase({"a": 2, "b": 7}, 7) == "a ranked 2nd of 7 and b 7th"
    assert wording.rank_phrase({"its score": 1}, 5) == "its score ranked 1st of 5"
    with pytest.raises(ValueError):
        wording.rank_phrase({}, 3)


def test_noise_covered_names_the_noise_of_each_models_interval():
    assert wording.noise_covered({"baseline": 3, "Dense AE": 3, "CNN AE": 1}) == (
        "for the baseline and the Dense AE, trained 3 times each with different seeds, the "
        "resamples draw the training runs along with the test clips, so the interval covers "
        "both the choice of test clips and the seed; for the CNN AE, trained once, it covers "
        "the test clips only."
    )
    assert wording.noise_covered({"Dense AE": 2}).startswith(
        "for the Dense AE, trained 2 times with different seeds,"
    )
    assert "(baseline 3 and Dense AE 5)" in wording.noise_covered({"baseline": 3, "Dense AE": 5})
    assert wording.noise_covered({"baseline": 1, "CNN AE": 1}) == (
        "it resamples the test clips; each model was trained once, so the spread between "
        "training runs is not in it."
    )
    assert "the model was trained once" in wording.noise_covered({"CNN AE": 1})
    with pytest.raises(ValueError):
        wording.noise_covered({})


def test_best_single_sentence_sets_the_best_beside_the_dense_ae():
    mean_auc = {"baseline": 76.04, "dense": 74.01, "gmm": 69.4}
    assert wording.best_single_sentence(mean_auc, "baseline") == (
        "Of the single detectors, the DCASE 2020 baseline has the highest mean AUC over types "
        "on this page's data (76.0, against 74.0 for the Dense AE)."
    )
    shown = {"baseline": "76.0 [74.5, 77.5]", "dense": "74.0 [72.0, 76.0]"}
    assert wording.best_single_sentence(mean_auc, "baseline", shown=shown).endswith(
        "(76.0 [74.5, 77.5], against 74.0 [72.0, 76.0] for the Dense AE)."
    )


def test_best_single_sentence_does_not_set_the_dense_ae_beside_itself():
    said = wording.best_single_sentence({"baseline": 72.7, "dense": 74.04}, "dense")
    assert said.endswith(
        "the Dense AE has the highest mean AUC over types on this page's data (74.0)."
    )
    assert "against" not in said and not wording.MARKUP.search(said)


# Chapter 6's sentences: every branch, since one book build reads only one of them.


def _line(fpr, low, high):
    return {"fpr": fpr, "fpr_low": low, "fpr_high": high}


def test_fpr_side_places_the_interval_of_the_measured_fpr_beside_the_target():
    assert wording.fpr_side(_line(0.2, 0.15, 0.25), 0.1) == "above"
    assert wording.fpr_side(_line(0.03, 0.01, 0.06), 0.1) == "below"
    assert wording.fpr_side(_line(0.12, 0.08, 0.16), 0.1) == "within"
    assert wording.fpr_side(pd.Series(_line(0.2, 0.15, 0.25)), 0.1) == "above"  # a table row


def test_trap_verdict_names_the_trap_only_when_the_learned_threshold_flags_too_many():
    learned, held = _line(0.25, 0.2, 0.3), _line(0.11, 0.08, 0.14)
    assert wording.trap_at_work(learned, held, 0.1)
    text = wording.trap_verdict(learned, held, 0.1, "unseen clips")
    assert "That is the trap at work." in text
    assert (
        "For the threshold from the unseen clips, the intended rate lies within its interval"
        in text
    )
    # Above the target but no worse than the held-out threshold: no trap.
    assert not wording.trap_at_work(learned, _line(0.3, 0.25, 0.35), 0.1)
    text = wording.trap_verdict(learned, _line(0.3, 0.25, 0.35), 0.1, "unseen clips")
    assert "trap" not in text and "lies below its interval: the threshold flags more" in text
    text = wording.trap_verdict(_line(0.02, 0.01, 0.05), _line(0.03, 0.01, 0.06), 0.1, "x")
    assert text.startswith("The threshold from the learned clips flags fewer")
    assert "lies above its interval: the threshold flags fewer" in text
    text = wording.trap_verdict(_line(0.1, 0.07, 0.13), held, 0.1, "x")
    assert text.startswith("The intended rate lies within the interval")


def test_trap_verdict_adds_the_few_validation_clips_either_way():
    learned, held = _line(0.25, 0.2, 0.3), _line(0.11, 0.08, 0.14)
    lucky = wording.trap_verdict(learned, held, 0.1, "x", _line(0.09, 0.06, 0.13), 1)
    assert (
        "The 1 validation clip that training held out" in lucky
        and "luck as much as design" in lucky
    )
    missed = wording.trap_verdict(learned, held, 0.1, "x", _line(0.31, 0.26, 0.36), 12)
    assert "12 validation clips" in missed and "it flags 31% of the test's normal clips" in missed
    for text in (lucky, missed):
        assert not wording.MARKUP.search(text)


def test_held_out_source_says_where_each_kind_of_clip_comes_from():
    assert wording.held_out_source("unseen", 1, 7).startswith("1 normal clip per machine ID")
    assert (
        wording.held_out_source("validation", 20, 7)
        == "the 7 validation clips that training held out"
    )
    assert "only 1 clip was held out" in wording.held_out_source("out_of_fold", 0, 1)
    assert wording.held_out_source("out_of_fold", 0, 3).startswith(
        "out-of-fold scores: only 3 clips"
    )
    with pytest.raises(ValueError, match="unseen"):
        wording.held_out_source("test", 1, 1)


@pytest.mark.parametrize(
    ("share", "words"), [(0.5, "much like"), (0.42, "much like"), (0.6, "higher"), (0.3, "lower")]
)
def test_shift_sentence_reads_the_share_above_the_held_out_median(share, words):
    assert words in wording.shift_sentence(share)


def test_trade_off_sentence_says_whether_the_losses_warned():
    assert "give no warning" in wording.trade_off_sentence(True, 0.01)
    assert "clearly above the training loss" in wording.trade_off_sentence(True, 0.1)
    assert "also lies below the training loss" in wording.trade_off_sentence(True, -0.1)
    assert "no worse than the held-out clips" in wording.trade_off_sentence(False, 0.01)


def test_f1_floor_sentence_names_the_ids_below_flagging_every_clip():
    assert "do no better than flagging every clip" in wording.f1_floor_sentence(0.5, 0.5, [], 0.3)
    assert wording.f1_floor_sentence(0.7, 0.5, [], 0.3).endswith("on every ID.")
    one = wording.f1_floor_sentence(0.7, 0.5, pd.Series(["2"]), 0.3)
    assert "on ID 02 the threshold's F1" in one and "that ID's anomalies" in one
    two = wording.f1_floor_sentence(0.7, 0.5, ["0", "4"], 0.3)
    assert "those IDs' anomalies" in two and "are 30% anomalous" in two


def test_strict_threshold_check_applies_the_rule_of_three():
    assert "does not keep its promise" in wording.strict_threshold_check(0.05, 100, 8640)
    text = wording.strict_threshold_check(0.0, 100, 8640)
    assert "cannot confirm" in text and "up to about 3.0%" in text and "1 in 8,640" in text


def _costs(rows):
    table = pd.DataFrame(rows, columns=["cost_miss", "tpr", "fpr_gamma", "false_alarms_per_day"])
    return table.set_index("cost_miss")


def test_cost_extremes_sentence_explains_a_threshold_that_flags_every_clip():
    table = _costs([(10.0, 0.5, 0.1, 864.0), (100.0, 1.0, 0.6, 5184.0), (1000.0, 1.0, 0.9, 7776.0)])
    text = wording.cost_extremes_sentence(table, 1.0, 0.01, 8640)
    assert text.startswith("At a miss cost of 100 and at a miss cost of 1,000 the least-cost")
    assert "at a miss cost of 1,000 a fraction 0.90" in text and "7,776 false alarms a day" in text
    # Each check weighs a miss by 1,000 x 1 % = 10 units and a false alarm by 0.99: ratio 0.099.
    assert "or 10.00 units" in text and "or 0.99 units" in text and "their ratio, 0.099" in text
    single = wording.cost_extremes_sentence(table.iloc[:2], 1.0, 0.01, 8640)
    assert (
        single.startswith("At a miss cost of 100 the") and "at a miss cost of 100 a" not in single
    )


def test_cost_extremes_sentence_names_the_costs_that_flag_nothing_or_says_none_do():
    table = _costs([(10.0, 0.0, 0.0, 0.0), (100.0, 0.4, 0.05, 432.0)])
    assert wording.cost_extremes_sentence(table, 1.0, 0.01, 8640).startswith(
        "At a miss cost of 10 the least-cost threshold flags no clip"
    )
    table = _costs([(10.0, 0.3, 0.02, 173.0), (100.0, 1.0, 0.4, 3456.0)])  # all caught, few flagged
    assert wording.cost_extremes_sentence(table, 1.0, 0.01, 8640) == (
        "None of these costs leads to a threshold that flags every clip or none."
    )


def test_cost_extremes_sentence_reads_the_columns_of_a_real_cost_table():
    rng = np.random.default_rng(0)
    normal, anomalous = rng.gamma(4.0, 1.0, 300), rng.gamma(4.0, 1.0, 30) + 1.0
    labels = ["normal"] * 300 + ["anomaly"] * 30
    table = decisions.cost_table(
        normal, labels, np.concatenate([normal, anomalous]),
        cost_misses=(1.0, 1e6), cost_false_alarm=1.0, prior=0.01,
    )  # fmt: skip
    assert table.loc[1e6, "tpr"] == 1  # a miss that dear: catch every anomaly
    said = wording.cost_extremes_sentence(table, 1.0, 0.01, 8640)
    assert "a miss cost of 1,000,000" in said
    # The ratio of the two weights is where decisions puts the least cost on the ROC curve.
    assert decisions.cost_slope(1.0, 1e6, 0.01) == pytest.approx(0.000099)
    assert "their ratio, 0.000099." in said


def _below(**changes):
    row = {"method": "Dense AE error", "axis": "frequency", "kind": "extra_tone", "rate": 0.2,
           "random": 0.4, "n": 10, "truth_at_top": 0.1, "truth_at_random": 0.3,
           "favourite": "0:6", "favourite_share": 0.6, "relevant_at_favourite": 0.05}  # fmt: skip
    return pd.Series({**row, **changes})


def test_below_random_reason_says_what_pulls_a_method_or_that_the_anomaly_fills_the_axis():
    pulled = wording.below_random_reason(_below())
    assert pulled.startswith("Dense AE error in frequency on extra tone clips hits 20% of them")
    assert "It is pulled: 60% of its top positions fall in the stretch 0:6" in pulled
    assert "would put 10% there), where only 5% of the positions" in pulled
    # Spread out (less than three times a random share in one stretch): not pulled.
    plain = wording.below_random_reason(_below(favourite_share=0.25))
    assert plain.endswith("against 30% for a random one")
    # A stretch that holds more of the anomaly than random does not pull either.
    assert "pulled" not in wording.below_random_reason(_below(relevant_at_favourite=0.5))
    filling = wording.below_random_reason(_below(random=0.95, rate=0.9, favourite_share=0.25))
    assert "so 1 miss in 10 clips suffices to fall" in filling
    assert "(25% in the most frequent of 10 stretches of the axis)" in filling
    two = wording.below_random_reason(_below(random=0.95, rate=0.8, favourite_share=0.25))
    assert "so 2 misses in 10 clips suffice to fall" in two and not wording.MARKUP.search(two)


def _id_training(status, epochs_run, best_epoch, cap=30):
    types = ["fan", "pump", "valve"][: len(status)]
    return pd.DataFrame(
        {"status": status, "epochs_run": epochs_run, "best_epoch": best_epoch, "epoch_cap": cap},
        index=pd.Index(types, name="machine_type"),
    )


def test_classifier_status_sentence_names_the_unfinished_or_counts_the_early_stops():
    done = wording.classifier_status_sentence(
        _id_training(["plateau"] * 3, [20, 30, 12], [15, 28, 4])
    )
    assert "early stopping ended 2 of the 3 runs before the cap of 30 epochs" in done
    assert done.endswith("the kept epochs lie between 4 and 28.")
    one = wording.classifier_status_sentence(
        _id_training(["plateau", "improving"], [20, 30], [15, 30])
    )
    assert one.startswith(
        "The 1 classifier of pump stopped while still improving, at the cap of 30"
    )
    assert "involves it reads undecided" in one
    two = wording.classifier_status_sentence(_id_training(["improving"] * 2, [30, 30], [30, 29]))
    assert "The 2 classifiers of fan and pump" in two and "involves them" in two


def _noise_counts(rows):
    columns = ["detector", "better", "worse", "within_noise", "undecided", "types", "overall"]
    return pd.DataFrame(rows, columns=columns).set_index("detector")


def test_beats_sentence_counts_the_types_won_lost_and_undecided():
    counts = _noise_counts(
        [("gmm", 4, 1, 1, 0, 6, "better"), ("mahalanobis", 1, 2, 1, 2, 6, "")]
    )  # fmt: skip
    assert wording.beats_sentence(counts, "dense").startswith("The Dense AE itself has the highest")
    assert wording.beats_sentence(counts, "gmm") == (
        "Beyond the noise, gmm beats the Dense AE in 4 of the 6 machine types and loses to it in "
        "1 of the 6 machine types; over all types together, its difference is better."
    )
    said = wording.beats_sentence(counts, "mahalanobis")
    assert "loses to it in 2 of the 6 machine types; 2 machine types undecided." in said
    assert said.endswith("undecided.") and "over all types" not in said


def test_clearly_better_phrase_needs_half_the_types_and_counts_undecided_cells():
    counts = _noise_counts(
        [("gmm", 3, 1, 2, 0, 6, ""), ("mahalanobis", 2, 0, 4, 0, 6, ""), ("x", 6, 0, 0, 0, 6, "")]
    )  # fmt: skip
    assert wording.clearly_better_phrase(counts) == "gmm and x"
    counts.loc["mahalanobis", "undecided"] = 1
    assert wording.clearly_better_phrase(counts.drop(index=["gmm", "x"])) == (
        "none (undecided in 1 of the 6 cells of the table, where a model of the pair stopped "
        "before its plateau)"
    )


def _shares(rows):
    return pd.DataFrame(rows, index=["frequency", "time"]).T.rename_axis("kind")


def test_modulation_sentence_sets_the_modulated_clips_beside_the_other_kinds():
    share = _shares(
        {"amplitude_modulation": [0.95, 0.4], "knocks": [0.3, 0.05], "extra_tone": [0.1, 1.0]}
    )
    said = wording.modulation_sentence(share)
    assert said.startswith("on amplitude-modulated clips, 95% of the mel bins")
    assert "against 10% to 30% for the other kinds" in said and said.endswith("a hit says nothing.")
    said = wording.modulation_sentence(share.assign(frequency=[0.5, 0.3, 0.3]))
    assert "against 30% for the other kinds" in said and said.endswith(
        "A random bin hits 50% of the time."
    )
    alone = wording.modulation_sentence(share.loc[["amplitude_modulation"]])
    assert "other kinds" not in alone
    assert wording.modulation_sentence(share.drop(index="amplitude_modulation")) == (
        "the sample holds no amplitude-modulated clip."
    )


def test_steady_and_filling_sentences_name_the_kinds_by_their_shares():
    share = _shares(
        {"amplitude_modulation": [0.95, 0.4], "knocks": [0.3, 0.05], "extra_tone": [0.1, 1.0]}
    )
    assert wording.steady_sentence(share) == (
        "On average, the criterion holds for 100% of the frames of extra tone clips and 5% of the "
        "frames of knocks clips."
    )
    assert wording.steady_sentence(share.loc[["amplitude_modulation"]]).endswith("for no clip.")
    assert wording.filling_phrase(share) == (
        "amplitude modulation in frequency and extra tone in time (at least 90 % of the "
        "positions on average)."
    )
    assert wording.filling_phrase(share, at_least=1.01).startswith("none of the kinds here")


def test_seed_spread_sentence_reads_the_spread_or_names_the_models_run_more_than_once():
    spread = pd.DataFrame(
        {"model": ["dense", "baseline"], "machine_type": ["fan", "pump"], "spread": [1.25, 4.0]}
    )
    said = wording.seed_spread_sentence(spread, {})
    assert "moved by 1.2 to 4.0 points (the most: the DCASE 2020 baseline on pump)" in said
    assert said.endswith("a difference of 4.0 points could be the seed's alone.")
    empty = spread.iloc[:0]
    assert wording.seed_spread_sentence(empty, {"baseline": 3, "dense": 2, "cnn": 1}).endswith(
        "; the quick profile trains the DCASE 2020 baseline 3 times and the Dense AE 2 times."
    )
    assert wording.seed_spread_sentence(empty, {"cnn": 1}).endswith("moves a result.")
