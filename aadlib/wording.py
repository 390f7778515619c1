"""The book's wording: the sentences that chapters build from computed values.

Every chapter's prose quotes computed values through myst-nb's ``glue`` (:func:`glue`).
Where a value is a phrase rather than a number (a count, a list, a verdict), the phrase
is built here, once, so that it reads naturally on every profile: "1 model" and
"2 models", "none of the 8 rows" rather than "0 of the 8 rows", "a and b" rather than
"a, b". Chapters 1 to 10 call these functions; the tests cover the edge cases (0, 1, all).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

import numpy as np

from . import paper

__all__ = [
    "glue",
    "MARKUP",
    "plural",
    "every",
    "count_of",
    "agree",
    "join",
    "side_of_zero",
    "difference_verdict",
    "undecided_reason",
    "relation_to",
    "claim_verdict",
    "runs_status",
    "noise_covered",
    "by_type_sentence",
    "printed_and_corrected",
    "ids_phrase",
    "LEARNING",
    "learning_phrase",
    "identity_sentence",
    "ordinal",
    "rank_phrase",
    "LISTEN_FOR",
    "listen_for",
    "DETECTOR_TITLES",
    "title",
    "best_single_sentence",
    "fpr_side",
    "trap_at_work",
    "trap_verdict",
    "held_out_source",
    "shift_sentence",
    "trade_off_sentence",
    "f1_floor_sentence",
    "strict_threshold_check",
    "cost_extremes_sentence",
    "below_random_reason",
    "classifier_status_sentence",
    "beats_sentence",
    "clearly_better_phrase",
    "modulation_sentence",
    "steady_sentence",
    "filling_phrase",
    "seed_spread_sentence",
]

#: What glued text must not contain: markup that the page would show literally (glued
#: text is pasted as plain text), and the "(s)" of a plural not worked out.
MARKUP = re.compile(r"`|\*\*|__|\(s\)|\)\)")


def glue(name: str, value, display: bool = False) -> None:
    """Keep ``value`` under ``name`` for the page's prose (myst-nb's ``glue``). Chapters 1 to 10.

    While the book is built, the text quotes the value with ``{glue:text}`name```, so a
    sentence and the output it describes always agree. Glued text is pasted as plain
    text: a string holding markup (backticks, ``**``), a doubled closing parenthesis
    or an unresolved plural ``(s)`` is refused with a :class:`ValueError` naming it.
    Where myst-nb is not installed (Colab), nothing needs it and nothing happens.
    """
    if isinstance(value, str) and MARKUP.search(value):
        found = MARKUP.search(value).group(0)
        raise ValueError(
            f"glued text {name!r} holds {found!r}, which the page would show as is: "
            f"write it as plain text ({value!r})"
        )
    if isinstance(value, np.generic):  # a NumPy scalar's repr is not a number to format
        value = value.item()
    try:
        from myst_nb import glue as myst_glue  # the book's dependency: only while pages build
    except ImportError:
        return
    myst_glue(name, value, display=display)


def _count(n) -> int:
    if isinstance(n, bool) or int(n) != n or n < 0:
        raise ValueError(f"a count must be a whole number of at least 0, not {n!r}")
    return int(n)


def plural(n: int, noun: str, plural_form: str | None = None) -> str:
    """``"1 model"``, ``"2 models"``, ``"0 models"``: a count with its noun. Chapters 3 to 9.

    ``plural_form`` is the noun's plural where adding "s" is wrong ("IDs" is right,
    "analyses" is not).
    """
    n = _count(n)
    return f"{n} {noun if n == 1 else plural_form or noun + 's'}"


def every(n: int, noun: str, plural_form: str | None = None) -> str:
    """``"every frame"`` for 1, ``"every 4 frames"`` for 4. Chapters 3, 4."""
    n = _count(n)
    if n == 0:
        raise ValueError("'every 0' means nothing: the step must be at least 1")
    return f"every {noun}" if n == 1 else f"every {plural(n, noun, plural_form)}"


def count_of(n: int, total: int, noun: str, plural_form: str | None = None) -> str:
    """How many of ``total`` things, in words. Chapters 1, 3, 4, 6, 7, 8, 10.

    ``"none of the 8 rows"``, ``"1 of the 8 rows"``, ``"3 of the 8 rows"``, ``"all 8
    rows"``; with one thing in all, ``"the only row"`` or ``"no row"``. Use :func:`agree`
    for the verb that follows.
    """
    n, total = _count(n), _count(total)
    if n > total:
        raise ValueError(f"{n} of {total} {noun}: a part cannot exceed its whole")
    many = plural_form or noun + "s"
    if total == 0:
        return f"no {noun}"
    if total == 1:
        return f"the only {noun}" if n == 1 else f"no {noun}"
    if n == 0:
        return f"none of the {total} {many}"
    if n == total:
        return f"all {total} {many}" if total > 2 else f"both {many}"
    return f"{n} of the {total} {many}"


def agree(n: int, singular: str, plural_form: str) -> str:
    """The word that agrees with a count: ``agree(1, "is", "are")``. Chapters 1 to 10."""
    return singular if _count(n) == 1 else plural_form


def join(items: Iterable, conjunction: str = "and", empty: str = "none") -> str:
    """``"a"``, ``"a and b"``, ``"a, b and c"``; ``empty`` for nothing. Chapters 1 to 10."""
    words = [str(item) for item in items]
    if not words:
        return empty
    if len(words) == 1:
        return words[0]
    return f"{', '.join(words[:-1])} {conjunction} {words[-1]}"


def side_of_zero(low: float, high: float) -> str:
    """Where an interval of a difference lies: ``"above"``, ``"below"`` or ``"within"`` (0 inside).

    The one rule behind every "beyond the noise" of the book: a difference is beyond the
    noise when its 95 % interval excludes zero. Chapters 3 to 9.
    """
    if math.isnan(low) or math.isnan(high):
        raise ValueError("an interval with a missing bound cannot be judged")
    if low > high:
        raise ValueError(f"interval [{low}, {high}] has its bounds the wrong way round")
    return "above" if low > 0 else "below" if high < 0 else "within"


def difference_verdict(low: float, high: float) -> str:
    """``"better"``, ``"worse"`` or ``"within the noise"``: what an interval says. Chapter 7."""
    return {"above": "better", "below": "worse", "within": "within the noise"}[
        side_of_zero(low, high)
    ]


def undecided_reason(models: Iterable[str]) -> str:
    """Why a comparison is undecided: ``"undecided: the CNN AE stopped before its plateau"``.

    ``models`` names the models of the comparison that stopped while still improving; an
    empty list gives ``""`` (the comparison is decided). Chapters 5, 9.
    """
    models = list(models)
    if not models:
        return ""
    whose = agree(len(models), "its", "their")
    return f"undecided: {join(f'the {m}' for m in models)} stopped before {whose} plateau"


def relation_to(low: float, high: float, other: str = "it", undecided: Iterable[str] = ()) -> str:
    """A verdict for "A is ... B": above or below B beyond the noise, or within its noise.

    ``other`` names B: ``"above the baseline beyond the noise"``. ``undecided`` names the
    models of the pair that stopped while still improving: then the verdict is
    :func:`undecided_reason`, whatever the interval. Chapters 3, 4, 9.
    """
    reason = undecided_reason(undecided)
    if reason:
        return reason
    side = side_of_zero(low, high)
    return (
        f"within the noise of {other}" if side == "within" else f"{side} {other} beyond the noise"
    )


def claim_verdict(low: float, high: float, undecided: Iterable[str] = ()) -> str:
    """What the interval of "model minus baseline" says of the claim that the model is better.

    ``"holds beyond the noise"``, ``"is contradicted beyond the noise"`` or ``"can be
    neither confirmed nor rejected: the difference is within the noise"``; with
    ``undecided`` (models of the pair that stopped while improving) ``"is undecided: the
    CNN AE stopped before its plateau"``. Chapter 5.
    """
    reason = undecided_reason(undecided)
    if reason:
        return f"is {reason}"
    return {
        "above": "holds beyond the noise",
        "below": "is contradicted beyond the noise",
        "within": "can be neither confirmed nor rejected: the difference is within the noise",
    }[side_of_zero(low, high)]


def printed_and_corrected(
    printed: float, corrected: float, digits: int = 1, correction: str = "corrected"
) -> str:
    """A published value as printed, with its correction beside it where they differ.

    ``"77.2 as printed (77.4 corrected)"``; a value whose correction rounds to the same
    figure reads ``"76.9"``. The printed value always comes first: it is what the
    publication says. Chapters 5, 7, 9.
    """
    first, second = f"{printed:.{digits}f}", f"{corrected:.{digits}f}"
    return first if first == second else f"{first} as printed ({second} {correction})"


def ids_phrase(ids: Iterable) -> str:
    """Machine IDs as the book writes them: ``"ID 02"``, ``"IDs 00, 02 and 04"``. Chapters 4, 6."""
    labels = [f"{int(i):02d}" for i in ids]
    if not labels:
        return "no ID"
    return f"ID {labels[0]}" if len(labels) == 1 else f"IDs {join(labels)}"


#: What each kind of planted anomaly sounds like, for the captions of audio players.
LISTEN_FOR: dict[str, str] = {
    "extra_tone": "a new steady tone, a whistle or hum that the normal machine does not make",
    "knocks": "short knocks or clicks at irregular moments",
    "frequency_drift": "the pitch of the machine's hum sliding up or down during the clip",
    "amplitude_modulation": "the whole sound swelling and fading, a few times a second",
    "noise_change": "the background hiss growing or thinning in one band of frequencies",
}


def listen_for(kind: str | None, severity: float | None = None) -> str:
    """What to listen for in an anomalous clip: its kind's sound, how strong. Chapters 1 to 8.

    ``kind`` is a synthetic anomaly's kind (:data:`LISTEN_FOR`), or ``None`` for a real
    recording, whose fault is not labelled.
    """
    if kind is None:
        return (
            "Listen for: whatever differs from the normal sound of this machine "
            "(the fault is not labelled)."
        )
    if kind not in LISTEN_FOR:
        raise KeyError(f"no listening cue for anomaly kind {kind!r}; known: {join(LISTEN_FOR)}")
    strength = ""
    if severity is not None:
        strength = " (severity {:.2f}: {})".format(
            severity, "subtle" if severity < 0.34 else "clear" if severity < 0.67 else "strong"
        )
    return f"Listen for: {LISTEN_FOR[kind]}{strength}."


#: What a training run's learning status (:func:`aadlib.pipeline.learning_status`) says
#: of the model, for "the model is ...".
LEARNING: dict[str, str] = {
    "plateau": "close to its plateau: further epochs would change little",
    "improving": "still improving when training stopped: it has not finished learning, and a "
    "longer training would lower its error further",
    "too short": "trained too briefly for its curve to say whether it has finished learning",
}


def learning_phrase(status: str) -> str:
    """The phrase of a learning status, for "the model is ...". Chapters 3, 4."""
    if status not in LEARNING:
        raise KeyError(f"unknown learning status {status!r}; known: {join(LEARNING)}")
    return LEARNING[status]


def runs_status(statuses: Iterable[str]) -> str:
    """One learning status for a model's training runs on a type. Chapter 5.

    ``"plateau"`` when every run levelled off; otherwise the other runs' status, with how
    many of the runs it concerns when there are several: ``"improving (2 of 3 runs)"``.
    """
    statuses = list(statuses)
    left = [s for s in statuses if s != "plateau"]
    if not left:
        return "plateau"
    worst = "improving" if "improving" in left else left[0]
    return worst if len(statuses) == 1 else f"{worst} ({len(left)} of {len(statuses)} runs)"


def noise_covered(runs: dict[str, int]) -> str:
    """Which noise a table's intervals cover, given each model's training runs. Chapter 5.

    ``runs`` maps model titles to their number of training runs (seeds). Models trained
    several times have their runs resampled with the test clips (the interval covers both);
    a model trained once has an interval over the test clips only.
    """
    if not runs:
        raise ValueError("no models to describe")
    repeated = {title: n for title, n in runs.items() if n > 1}
    once = [title for title, n in runs.items() if n <= 1]
    if not repeated:
        trained = "the model was" if len(once) == 1 else "each model was"
        return (
            f"it resamples the test clips; {trained} trained once, so the spread between "
            "training runs is not in it."
        )
    counts = sorted(set(repeated.values()))
    times = (
        f"{plural(counts[0], 'time')}{' each' if len(repeated) > 1 else ''}"
        if len(counts) == 1
        else "several times (" + join(f"{t} {n}" for t, n in repeated.items()) + ")"
    )
    models = join(f"the {title}" for title in repeated)
    text = (
        f"for {models}, trained {times} with different seeds, the resamples draw "
        "the training runs along with the test clips, so the interval covers both the choice "
        "of test clips and the seed"
    )
    if once:
        text += f"; for {join(f'the {title}' for title in once)}, trained once, it covers "
        text += "the test clips only"
    return text + "."


def by_type_sentence(
    model: str, other: str, lows, highs, undecided_models, titles: dict | None = None
) -> str:
    """A comparison type by type, in words: where ``model`` is above, below or within the
    noise of ``other``, and where the comparison is undecided. Chapter 5.

    ``lows`` and ``highs`` are the per-type intervals of the difference; ``undecided_models``
    holds, per type, the comma-separated models that stopped while improving
    (:func:`aadlib.tables.compare_models`' ``undecided``), named through ``titles``.
    """
    titles = titles or {}
    above = below = within = 0
    stopped: dict[str, int] = {}
    for low, high, names in zip(lows, highs, undecided_models):
        names = [n for n in str(names or "").split(", ") if n]
        if names:
            for name in names:
                stopped[titles.get(name, name)] = stopped.get(titles.get(name, name), 0) + 1
            continue
        side = side_of_zero(low, high)
        above, below, within = (
            above + (side == "above"),
            below + (side == "below"),
            within + (side == "within"),
        )

    def on(n: int) -> str:
        return "no type" if n == 0 else plural(n, "type")

    if above + below + within:
        text = (
            f"the {model} is above {other} beyond the noise on {on(above)}, below it on "
            f"{on(below)} and within the noise on {on(within)}"
        )
    else:
        text = f"no type decides between the {model} and {other}"
    if stopped:
        where = join(f"the {name} on {plural(n, 'type')}" for name, n in stopped.items())
        text += f"; undecided where a model stopped before its plateau ({where})"
    return text


def _significant(x: float, digits: int = 2) -> str:
    """``x`` to ``digits`` significant digits, never in scientific notation: 0.099, 0.000099."""
    return np.format_float_positional(x, precision=digits, unique=False, fractional=False, trim="-")


def _kind(name: str) -> str:
    """An anomaly kind as prose names it: ``extra_tone`` -> ``extra tone``."""
    return name.replace("_", " ")


def _percent(x: float) -> str:
    return f"{100 * x:.0f} %"


def identity_sentence(rows: Iterable[dict]) -> str:
    """What each type's ID classifier learned, in words, from its measurements. Chapter 7.

    ``rows``: one dict per type with ``machine_type``, ``finding`` (of
    :func:`aadlib.detectors.identity_findings`), ``chance``, ``normal`` and ``anomalous``
    (shares of test clips assigned to their own ID), ``train_accuracy`` and
    ``val_accuracy`` (shares of patches at the kept epoch). One sentence per finding
    that occurs, the types named with their figures.
    """
    rows = list(rows)
    by = {
        f: [r for r in rows if r["finding"] == f] for f in dict.fromkeys(r["finding"] for r in rows)
    }
    parts = []
    if "identity blurred" in by:
        named = join(
            f"{r['machine_type']} ({_percent(r['normal'])} against {_percent(r['anomalous'])})"
            for r in by["identity blurred"]
        )
        parts.append(
            f"On {named}, the classifier assigns normal test clips to their own machine more "
            "often than chance and anomalous ones less often than normal ones, beyond the "
            "noise: there the anomalies blur the machine's identity, which the score feeds on."
        )
    if "identity kept" in by:
        named = join(
            f"{r['machine_type']} ({_percent(r['normal'])} of the normal clips, "
            f"{_percent(r['anomalous'])} of the anomalous ones)"
            for r in by["identity kept"]
        )
        parts.append(
            f"On {named}, it tells the machines apart, but the anomalous clips keep their "
            "identity about as well as the normal ones: the anomalies leave the cues that "
            "identify the machine in place, and the score has little to feed on."
        )
    if "not told apart" in by:
        named = join(
            f"{r['machine_type']} ({_percent(r['normal'])} of the normal clips against a "
            f"chance of {_percent(r['chance'])}; at its kept epoch {_percent(r['train_accuracy'])} "
            f"of its training patches and {_percent(r['val_accuracy'])} of its validation "
            "patches were assigned to their ID)"
            for r in by["not told apart"]
        )
        parts.append(
            f"On {named}, it has not learned to tell the machines apart: what it learned "
            "from its training clips does not carry over to held-out clips of the same "
            "machines, so every "
            "clip looks equally uncertain and the score cannot single out anomalies."
        )
    return " ".join(parts)


def ordinal(n: int) -> str:
    """``1st``, ``2nd``, ``3rd``, ``4th``, ``11th``, ``22nd``. Chapters 7, 9."""
    n = _count(n)
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def rank_phrase(ranks: dict, total: int) -> str:
    """Ranks among ``total`` in words: ``"a ranked 2nd of 7 and b 5th"``. Chapters 7, 9.

    ``ranks`` maps what is ranked to its rank (1 the best); their order is kept.
    """
    if not ranks:
        raise ValueError("rank_phrase needs at least one rank")
    parts = [f"{name} {ordinal(rank)}" for name, rank in ranks.items()]
    first_name, first_rank = next(iter(ranks.items()))
    parts[0] = f"{first_name} ranked {ordinal(first_rank)} of {total}"
    return join(parts)


#: How the book's prose names each detector score that is not an autoencoder; filled
#: from each detector class's ``titles`` by :func:`aadlib.detectors.register_detector`.
DETECTOR_TITLES: dict[str, str] = {}


def title(name: str) -> str:
    """How prose names a model or detector score: ``"Dense AE"``, ``"ID classifier"``.

    Chapters 7, 10.

    Autoencoders by their :data:`aadlib.paper.MODELS` title, detectors by
    :data:`DETECTOR_TITLES`; any other name (an ensemble) as it is.
    """
    if name in paper.MODELS:
        return paper.MODELS[name].title
    return DETECTOR_TITLES.get(name, name)


def best_single_sentence(mean_auc, best: str, against: str = "dense", shown=None) -> str:
    """The single detector with the highest mean AUC, beside the Dense AE's, in words. Chapter 7.

    ``mean_auc`` maps each model or detector score to its mean AUC over types (in %);
    ``best`` is the highest of the single detectors. When that is ``against`` itself, the
    sentence says so instead of setting it beside itself. ``shown`` maps names to how
    their means are written (e.g. with intervals, :func:`aadlib.tables.with_intervals`);
    by default, to one decimal.
    """

    def mean(name: str) -> str:
        return shown[name] if shown is not None else f"{mean_auc[name]:.1f}"

    said = (
        f"Of the single detectors, the {title(best)} has the highest mean AUC over types "
        f"on this page's data ({mean(best)}"
    )
    if best == against:
        return said + ")."
    return said + f", against {mean(against)} for the {title(against)})."


# Chapter 6: where a threshold's false-positive rate lands, and what the costs choose.


def fpr_side(line, target: float) -> str:
    """Where a measured FPR's 95 % interval lies beside the intended ``target``. Chapter 6.

    ``line`` holds ``fpr_low`` and ``fpr_high`` (a row of
    :func:`aadlib.decisions.summarize_decisions`). ``"above"``: the threshold flags more
    normal clips than intended, beyond what the test set can measure; ``"below"``: fewer;
    ``"within"``: the test set cannot tell.
    """
    return side_of_zero(line["fpr_low"] - target, line["fpr_high"] - target)


def trap_at_work(learned, held, target: float) -> bool:
    """Whether the threshold from learned clips flags too many, and more than the held-out one.

    Chapter 6: the trap of fitting a threshold on clips the model learned from. ``learned``
    and ``held`` are rows as for :func:`fpr_side`, with ``fpr``.
    """
    return fpr_side(learned, target) == "above" and learned["fpr"] > held["fpr"]


_HELD_SIDE = {
    "within": "within its interval: the threshold lands as close to its target as the test "
    "set can tell",
    "above": "below its interval: the threshold flags more normal clips than intended",
    "below": "above its interval: the threshold flags fewer normal clips than intended",
}


def trap_verdict(
    learned, held, target: float, held_name: str, validation=None, n_validation: int = 0
) -> str:
    """What the thresholds from learned and from held-out clips do to the FPR. Chapter 6.

    Rows as for :func:`trap_at_work`; ``held_name`` names the held-out clips. Where the
    held-out clips are not the validation clips, ``validation`` (its row, or ``None``
    where they gave no threshold) and ``n_validation`` (their number) add a sentence on
    the few clips that training held out.
    """
    if trap_at_work(learned, held, target):
        text = (
            "The threshold from the learned clips flags more of the test's normal clips than "
            "intended, beyond what the test set can measure: the intended rate lies below its "
            "interval. That is the trap at work."
        )
    elif fpr_side(learned, target) == "below":
        text = (
            "The threshold from the learned clips flags fewer of the test's normal clips than "
            "intended: the intended rate lies above its interval."
        )
    else:
        text = (
            "The intended rate lies within the interval of the threshold from the learned "
            "clips: the test set cannot tell it from a threshold that keeps its promise."
        )
    text += (
        f" For the threshold from the {held_name}, the intended rate lies "
        f"{_HELD_SIDE[fpr_side(held, target)]}."
    )
    if validation is None:
        return text
    few = (
        f"The {plural(n_validation, 'validation clip')} that training held out carry no bias either"
    )
    if fpr_side(validation, target) == "within":
        return text + (
            f" {few}, and their threshold lands within the test's uncertainty of the target "
            "here; from so few clips that is luck as much as design, as the next sections "
            "measure."
        )
    return text + (
        f" {few}, but a threshold from so few misses its target beyond the test's "
        f"uncertainty: it flags {validation['fpr']:.0%} of the test's normal clips. The next "
        "sections measure how much a threshold from few clips varies."
    )


def held_out_source(kind: str, per_id: int, n_validation: int) -> str:
    """Where chapter 6's held-out normal clips come from, in words. Chapter 6.

    ``kind`` is ``"unseen"`` (rendered after training, ``per_id`` clips per machine ID),
    ``"validation"`` or ``"out_of_fold"`` (``n_validation`` clips held out, too few).
    """
    sources = {
        "unseen": f"{plural(per_id, 'normal clip')} per machine ID that the generator rendered "
        "after training, which no model has seen",
        "validation": f"the {plural(n_validation, 'validation clip')} that training held out",
        "out_of_fold": f"out-of-fold scores: only {plural(n_validation, 'clip')} "
        f"{agree(n_validation, 'was', 'were')} held out, "
        "too few for a fit, so more models were trained, each scoring the clips it did not see",
    }
    if kind not in sources:
        raise ValueError(
            f"unknown source of held-out clips {kind!r}; expected one of {list(sources)}"
        )
    return sources[kind]


def shift_sentence(share_above: float) -> str:
    """How the test's normal clips score beside the held-out ones, in their bulk. Chapter 6.

    ``share_above``: the share of test normal clips above the held-out clips' median;
    between 0.42 and 0.58 reads as alike (were the two groups alike, about half).
    """
    if 0.42 <= share_above <= 0.58:
        return "So the test's normal clips score much like the held-out clips."
    return (
        f"So in the bulk of their range the test's normal clips score "
        f"{'higher' if share_above > 0.5 else 'lower'} than the held-out clips. A threshold at "
        "the 90th percentile depends on the upper tail, though, and there the FPRs above "
        "compare the two."
    )


def trade_off_sentence(trap: bool, loss_gap: float) -> str:
    """Whether the losses warned of the trap. Chapter 6.

    ``trap`` from :func:`trap_at_work`; ``loss_gap`` is (validation loss - training loss) /
    validation loss at the kept epoch, close when within 0.02.
    """
    if trap and abs(loss_gap) <= 0.02:
        return (
            "Here the two losses are close, and yet the learned clips set the threshold too "
            "low. The losses average the error over every window of every clip; a threshold at "
            "the 90th percentile depends on the few clips that score highest, and those are the "
            "clips whose unusual passages a model learns to reconstruct once it has trained on "
            "them. The losses give no warning of that; only clips the model never saw show it."
        )
    if trap:
        return (
            f"Here the validation loss also lies {'clearly above' if loss_gap > 0 else 'below'} "
            "the training loss; the clip scores show the bias where it matters, in their upper "
            "tail."
        )
    return (
        "Here the learned clips give a threshold no worse than the held-out clips: with this "
        "training, the model has not learned its training clips well enough to bias them. "
        "Longer training can change that."
    )


def f1_floor_sentence(
    mean_f1: float, mean_flag_all_f1: float, below_floor: Iterable, anomaly_share: float
) -> str:
    """How the thresholds' F1 compares with flagging every clip. Chapter 6.

    ``mean_f1`` and ``mean_flag_all_f1`` are the means over IDs as the page shows them;
    ``below_floor`` the IDs whose F1 falls below their flag-every-clip F1;
    ``anomaly_share`` the test set's share of anomalous clips.
    """
    below_floor = list(below_floor)
    if mean_f1 <= mean_flag_all_f1:
        return (
            "On average the held-out thresholds do no better than flagging every clip: their "
            "scores do not separate the anomalies well enough for a threshold to pay by F1."
        )
    if not below_floor:
        return "The held-out thresholds beat flagging every clip on every ID."
    whose = agree(len(below_floor), "that ID's", "those IDs'")
    return (
        "The held-out thresholds beat flagging every clip on average, but not everywhere: on "
        f"{ids_phrase(below_floor)} the threshold's F1 falls below that floor. It passes so "
        f"many of {whose} anomalies that F1, which weighs a miss like a false alarm, rates it "
        f"below flagging everything on a test set whose clips are {anomaly_share:.0%} anomalous."
    )


def strict_threshold_check(test_fpr: float, n_normal: int, checks_per_day: int) -> str:
    """What the test set can say of a threshold meant for one false alarm a day. Chapter 6.

    ``test_fpr`` is its FPR on the test's normal clips, ``n_normal`` the fewest normal
    test clips of an ID. Above the rule of three's 95 % upper bound (3 / ``n_normal``)
    the promise is broken; below it, the test set is too small to confirm it.
    """
    if test_fpr > 3 / n_normal:
        return (
            "The test set shows that this threshold does not keep its promise: it flags far "
            f"more normal clips than 1 in {checks_per_day:,}. The gamma fitted to the held-out "
            "clips underestimates how often normal clips score high, and an extrapolation that "
            "far into its tail cannot be trusted."
        )
    return (
        f"The test set cannot confirm an FPR that small: with {n_normal} normal clips per ID, "
        "even none flagged is compatible with an FPR of up to about "
        f"{3 / n_normal:.1%} (the rule of three for a 95 % upper bound), far above 1 in "
        f"{checks_per_day:,}. Only long recordings of normal operation can check a strict "
        "threshold."
    )


def cost_extremes_sentence(
    cost_table, cost_false_alarm: float, prior: float, checks_per_day: int
) -> str:
    """The costs of a miss whose least-cost threshold flags (nearly) every clip, or none.

    Chapter 6. ``cost_table`` is :func:`aadlib.decisions.cost_table` output (indexed by
    the cost of a miss). A threshold that catches every anomaly while flagging at least
    half the normal checks by the gamma fit counts as flagging every clip; one that
    catches none, as flagging none. The weights a check gives a miss
    (``cost_miss * prior``) and a false alarm (``cost_false_alarm * (1 - prior)``), and
    their ratio, the ROC slope where the cost is least
    (:func:`aadlib.decisions.cost_slope`), explain the choice.
    """
    everything = cost_table[(cost_table["tpr"] == 1) & (cost_table["fpr_gamma"] >= 0.5)].index
    nothing = cost_table[cost_table["tpr"] == 0].index
    if len(everything):
        costs = join((f"a miss cost of {c:,.0f}" for c in everything), "and at")
        c_miss = everything[-1]
        row = cost_table.loc[c_miss]
        miss_weight, alarm_weight = c_miss * prior, cost_false_alarm * (1 - prior)
        return (
            f"At {costs} the least-cost threshold sits below the lowest anomalous score of the "
            "ID: it catches every anomaly and flags most normal clips with them, "
            + ("" if len(everything) == 1 else f"at a miss cost of {c_miss:,.0f} ")
            + f"a fraction {row['fpr_gamma']:.2f} of the normal checks by the gamma fit, "
            f"{row['false_alarms_per_day']:,.0f} false alarms a day out of {checks_per_day:,} "
            "checks, close to flagging every clip; a monitor that alarms at most checks tells "
            "the staff little. The cost model says why. Each check weighs a miss by the prior, "
            f"{c_miss:,.0f} times {prior:.0%}, or {miss_weight:.2f} units, and a false alarm "
            f"by the share of healthy checks, {cost_false_alarm:.0f} times {1 - prior:.0%}, or "
            f"{alarm_weight:.2f} units. Lowering the threshold pays as long as the anomalies it "
            "catches, times the first weight, are worth more than the normal clips it flags, "
            "times the second: the threshold comes down until the ROC curve's slope falls to "
            f"their ratio, {_significant(alarm_weight / miss_weight)}. With misses that dear "
            "the ratio is small, and this ID's lowest anomalous scores sit among its normal "
            "ones, so catching the last anomalies means flagging most normal clips too. Such a "
            "choice says that the costs, not the threshold, need another look: a fault that "
            "lasts many checks needs one alarm, not one per check."
        )
    if len(nothing):
        costs = join((f"a miss cost of {c:,.0f}" for c in nothing), "and at")
        return (
            f"At {costs} the least-cost threshold flags no clip: a false alarm, weighted by the "
            "share of healthy checks, outweighs what catching the anomalies saves, weighted by "
            "the prior, and the cheapest monitor is none."
        )
    return "None of these costs leads to a threshold that flags every clip or none."


def below_random_reason(row, parts: int = 10) -> str:
    """Why an explanation method hits less often than random on a kind of anomaly. Chapter 8.

    ``row``: a row of :func:`aadlib.explain.hit_rates` below random, joined with
    :func:`aadlib.explain.where_methods_point` (split into ``parts`` stretches): ``method``,
    ``axis``, ``kind``, ``rate``, ``random``, ``n``, ``truth_at_top``, ``truth_at_random``,
    ``favourite``, ``favourite_share`` and ``relevant_at_favourite``. A method is pulled
    when at least three times a random share of its top positions falls in one stretch
    that holds less of the anomaly than random; an anomaly that fills almost the whole
    axis (random at least 0.9) makes a few misses enough.
    """
    share = 1 / parts  # a random explanation's share of top positions in one stretch
    found = (
        f"{row['method']} in {row['axis']} on {_kind(row['kind'])} clips hits "
        f"{row['rate']:.0%} of them against {row['random']:.0%} for a random position, and its "
        "top positions lie where the true difference is "
        f"{row['truth_at_top']:.0%} of its maximum on average, against "
        f"{row['truth_at_random']:.0%} for a random one"
    )
    if row["favourite_share"] >= 3 * share and row["relevant_at_favourite"] < row["random"]:
        return found + (
            f". It is pulled: {row['favourite_share']:.0%} of its top positions fall in the "
            f"stretch {row['favourite']} (a random explanation would put {share:.0%} there), "
            f"where only {row['relevant_at_favourite']:.0%} of the positions belong to the "
            "anomaly"
        )
    if row["random"] >= 0.9:
        misses = row["n"] - round(row["rate"] * row["n"])
        return found + (
            f". The anomaly fills almost the whole axis, so "
            f"{plural(misses, 'miss', 'misses')} in {row['n']} clips "
            f"{agree(misses, 'suffices', 'suffice')} to fall below "
            "random; its top positions are not drawn to one place "
            f"({row['favourite_share']:.0%} in the most frequent of {parts} stretches of the axis)"
        )
    return found


# Chapter 7: the stronger detectors' training and their differences from the Dense AE.


def classifier_status_sentence(id_training) -> str:
    """Whether every type's ID classifier finished learning, in words. Chapter 7.

    ``id_training`` is :func:`aadlib.detectors.training_table` output, indexed by machine
    type: ``status``, ``epochs_run``, ``epoch_cap`` and ``best_epoch``.
    """
    cap = int(id_training["epoch_cap"].max())
    improving = list(id_training.index[id_training["status"] != "plateau"])
    if improving:
        return (
            f"The {plural(len(improving), 'classifier')} of {join(improving)} stopped while "
            f"still improving, at the cap of {cap} epochs: every comparison below that "
            f"involves {agree(len(improving), 'it', 'them')} reads undecided."
        )
    stopped_early = int((id_training["epochs_run"] < id_training["epoch_cap"]).sum())
    return (
        "Every type's classifier reached its plateau: early stopping ended "
        f"{count_of(stopped_early, len(id_training), 'run')} before the cap of {cap} epochs, "
        f"and the kept epochs lie between {int(id_training['best_epoch'].min())} and "
        f"{int(id_training['best_epoch'].max())}."
    )


def beats_sentence(counts, best: str, against: str = "dense") -> str:
    """How the single detector with the highest mean AUC fares against ``against``, per type.

    Chapter 7. ``counts`` is :func:`aadlib.tables.noise_counts` output (indexed by
    detector, compared with ``against``); ``best`` names the detector as its table row
    does.
    """
    if best == against:
        return f"The {title(against)} itself has the highest mean AUC of the single detectors here."
    row, n = counts.loc[best], int(counts.loc[best, "types"])
    text = (
        f"Beyond the noise, {best} beats the {title(against)} in "
        f"{count_of(int(row['better']), n, 'machine type')} and loses to it in "
        f"{count_of(int(row['worse']), n, 'machine type')}"
    )
    if row["undecided"]:
        text += f"; {plural(int(row['undecided']), 'machine type')} undecided"
    if row["overall"]:
        return text + f"; over all types together, its difference is {row['overall']}."
    return text + "."


def clearly_better_phrase(counts) -> str:
    """The detectors better beyond the noise in at least half of the types. Chapter 7.

    ``counts`` as for :func:`beats_sentence`; ``"none"`` when no detector is, followed by
    how many cells of the comparison are undecided, where there are any.
    """
    clearly = [
        name for name in counts.index if counts.loc[name, "better"] >= counts.loc[name, "types"] / 2
    ]
    words = join(clearly)
    n_undecided, n_cells = int(counts["undecided"].sum()), int(counts["types"].sum())
    if n_undecided:
        words += (
            f" (undecided in {count_of(n_undecided, n_cells, 'cell')} of the table, where a "
            "model of the pair stopped before its plateau)"
        )
    return words


# Chapter 8: how much of each axis an anomaly fills.


def modulation_sentence(share) -> str:
    """How much of the mel axis amplitude modulation fills, beside the other kinds. Chapter 8.

    ``share`` is :func:`aadlib.explain.relevant_shares` output: one row per kind, one
    column per axis, the mean share of positions at least half the maximum difference.
    """
    if "amplitude_modulation" not in share.index:
        return "the sample holds no amplitude-modulated clip."
    am = share.loc["amplitude_modulation", "frequency"]
    others = share.drop(index="amplitude_modulation")["frequency"]
    text = f"on amplitude-modulated clips, {am:.0%} of the mel bins meet the criterion on average"
    if len(others):
        low, high = f"{others.min():.0%}", f"{others.max():.0%}"
        text += f", against {low if low == high else f'{low} to {high}'} for the other kinds"
    if am >= 0.9:
        return text + (
            ". Almost every bin is part of the anomaly: any explanation hits, and a hit says "
            "nothing."
        )
    return text + f". A random bin hits {am:.0%} of the time."


def steady_sentence(share) -> str:
    """How much of the time axis the steady kinds fill (a tone, a background, knocks). Chapter 8.

    ``share`` as for :func:`modulation_sentence`.
    """
    steady = [k for k in ("extra_tone", "noise_change", "knocks") if k in share.index]
    parts = [f"{share.loc[k, 'time']:.0%} of the frames of {_kind(k)} clips" for k in steady]
    return "On average, the criterion holds for " + join(parts, empty="no clip") + "."


def filling_phrase(share, at_least: float = 0.9) -> str:
    """The kinds that fill an axis: no explanation can locate them there. Chapter 8.

    ``share`` as for :func:`modulation_sentence`; a kind fills an axis when at least
    ``at_least`` of its positions count as the anomaly on average.
    """
    filling = [
        f"{_kind(kind)} in {axis}"
        for axis in share.columns
        for kind in share.index
        if share.loc[kind, axis] >= at_least
    ]
    return (
        join(filling, empty="none of the kinds here")
        + f" (at least {100 * at_least:.0f} % of the positions on average)."
    )


# Chapter 5: the seed's share of a result.


def seed_spread_sentence(spread, runs_elsewhere: dict, elsewhere: str = "quick") -> str:
    """How far the training seed moved a type's average AUC, in words. Chapter 5.

    ``spread`` is :func:`aadlib.tables.seed_spread` output. Where it is empty (one run
    per model), the sentence says which models the ``elsewhere`` profile trains more than
    once: ``runs_elsewhere`` maps model kinds to their runs there.
    """
    if len(spread):
        widest = spread.loc[spread["spread"].idxmax()]
        low, high = spread["spread"].min(), spread["spread"].max()
        return (
            f"Between runs with different seeds, a type's average AUC moved by {low:.1f} to "
            f"{high:.1f} points (the most: the {title(widest['model'])} on "
            f"{widest['machine_type']}). A single run could have landed anywhere in that "
            "range, which is why the intervals above resample the runs: between two models "
            f"trained once, a difference of {high:.1f} points could be the seed's alone."
        )
    repeated = [f"the {title(kind)} {n} times" for kind, n in runs_elsewhere.items() if n > 1]
    text = "With one run per model, this page cannot show how far the seed moves a result"
    if not repeated:
        return text + "."
    return text + f"; the {elsewhere} profile trains {join(repeated)}."
