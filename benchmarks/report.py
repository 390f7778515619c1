"""The benchmark's table: rows made from the measurements' numbers, as text and as CSV.

Each function here turns the plain dicts that :mod:`measure`'s tasks return into rows
of the table, with their targets and notes; nothing here measures anything.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

__all__ = [
    "COLUMNS",
    "row",
    "failed_row",
    "extraction_rows",
    "cache_row",
    "input_rows",
    "training_rows",
    "scoring_row",
    "book_rows",
    "format_table",
    "format_notes",
    "write_csv",
    "missed",
    "failed",
]

#: The columns of the table, in the CSV file's order.
COLUMNS = [
    "what",
    "unit",
    "ours",
    "reference",
    "ratio",
    "peak_rss_ours_mb",
    "peak_rss_reference_mb",
    "target",
    "met",
    "note",
]

#: Most peak RSS (MB) while training on all clips of the full-size set.
TRAINING_RSS_LIMIT_MB = 1536


def row(
    what,
    unit,
    ours,
    reference,
    ratio=None,
    rss_ours=None,
    rss_ref=None,
    target="",
    met=None,
    note="",
) -> dict:
    """One row; ``ratio`` defaults to ours over reference."""
    if ratio is None and isinstance(ours, int | float) and isinstance(reference, int | float):
        ratio = ours / reference if reference else float("nan")
    return {
        "what": what,
        "unit": unit,
        "ours": ours,
        "reference": reference,
        "ratio": ratio,
        "peak_rss_ours_mb": rss_ours,
        "peak_rss_reference_mb": rss_ref,
        "target": target,
        "met": "" if met is None else ("yes" if met else "NO"),
        "note": note,
    }


def failed_row(label: str, error: BaseException) -> dict:
    """The row of a measurement that failed: its label and the error's last line."""
    message = str(error).strip().splitlines()
    note = "FAILED: " + (message[-1] if message else repr(error))
    return row(label, "", None, None, ratio="", met=False, note=note)


def extraction_rows(
    tag: str, n_clips: int, ours: dict, reference: dict, difference: float, workers: int
) -> list[dict]:
    """Feature extraction (clips per second) and the largest difference of the features."""
    ours_rate = ours["clips"] / ours["seconds"]
    ref_rate = reference["clips"] / reference["seconds"]
    return [
        row(
            f"{tag}: feature extraction, {n_clips} training clips",
            "clips/s",
            ours_rate,
            ref_rate,
            rss_ours=max(ours["peak_rss_mb"], ours["tree_peak_rss_mb"]),
            rss_ref=reference["peak_rss_mb"],
            target=">= 1.7x",
            met=ours_rate / ref_rate >= 1.7,
            note=f"ours {ours['seconds']:.1f} s with {workers} workers (RSS: process and "
            f"workers); reference {reference['seconds']:.1f} s for {reference['clips']} clips, "
            "one process",
        ),
        row(
            f"{tag}: features, max abs difference",
            "dB",
            difference,
            0.0,
            ratio="",
            target="< 1e-3",
            met=difference < 1e-3,
            note=f"over the {reference['clips']} clips both extracted",
        ),
    ]


def cache_row(tag: str, cached: dict, ours: dict) -> dict:
    """The second run, which reads the cache, against extracting again."""
    speedup = ours["seconds"] / cached["seconds"]
    return row(
        f"{tag}: features, second run (cache)",
        "s",
        cached["seconds"],
        ours["seconds"],
        ratio=speedup,
        rss_ours=cached["peak_rss_mb"],
        target=">= 20x",
        met=speedup >= 20,
        note="reference column: extracting again (ours, cold); the cached run reads every frame",
    )


def input_rows(label: str, tag: str, kind: str, batch: int, rounds: int, fed: dict) -> list[dict]:
    """The training input as ``fit`` receives it, and the NumPy batches alone."""
    ratio = fed["fed_ours"] / fed["fed_ref"]
    input_ms = fed["ours_ms_per_batch"]
    return [
        row(
            f"{label}, as fit receives it ({fed['windows']} windows)",
            "windows/s",
            fed["fed_ours"],
            fed["fed_ref"],
            rss_ours=fed["peak_rss_ours_mb"],
            rss_ref=fed["peak_rss_mb"],
            target=">= 5x",
            met=ratio >= 5,
            note=f"pulled by a compiled loop, as fit's train step pulls them: ours "
            f"WindowBatches.as_tf_dataset(), whole epochs ({fed['blocks']} blocks, "
            f"{input_ms:.2f} ms per batch of {batch}); reference: the generator as Keras "
            f"feeds a PyDataset (tf.data from_generator, prefetched), which gives our "
            f"batches {fed['fed_ours_pydataset']:,.0f} windows/s; median of {rounds} "
            f"alternating rounds; reference RSS includes its stacked float64 clips "
            f"({fed['stacked_bytes'] / 2**30:.2f} GiB)",
        ),
        row(
            f"{tag}: {kind} input, NumPy batches",
            "windows/s",
            fed["ours"],
            fed["ref"],
            note="batches.batch(i) against generator[i], before either reaches TensorFlow: "
            "a copy of random windows, bound by memory bandwidth (ours float32, the "
            "reference float64, one window at a time)",
        ),
    ]


def training_rows(
    label: str,
    tag: str,
    kind: str,
    windows_word: str,
    ours: dict,
    reference: dict,
    full_bytes: int,
    input_ms: float,
) -> list[dict]:
    """Peak RSS while training, and one batch of input against one training step.

    ``reference`` was measured holding the windows of a subset of clips; its figure is
    extrapolated to all clips by adding the bytes of the others' windows (``full_bytes``
    for all of them).
    """
    extrapolated = reference["peak_rss_mb"] + (full_bytes - reference["array_bytes"]) / 2**20
    peak = ours["peak_rss_mb"]
    step, alone = ours["step_ms"], ours["memory_step_ms"]
    return [
        row(
            f"{label} ({ours['clips']} clips)",
            "MB",
            peak,
            extrapolated,
            ratio=extrapolated / peak,
            rss_ours=peak,
            rss_ref=extrapolated,
            target=f"< {TRAINING_RSS_LIMIT_MB} MB",
            met=peak < TRAINING_RSS_LIMIT_MB,
            note=f"ours measured over {ours['steps']} steps and {ours['val_steps']} "
            f"validation steps ({ours['frames_bytes'] / 2**20:.0f} MiB of frames mapped); "
            f"reference: all {windows_word} as float64 take {full_bytes / 2**30:.2f} GiB "
            f"(computed); it measured {reference['peak_rss_mb']:.0f} MB holding those of "
            f"{reference['clips']} clips, extrapolated by adding the other clips' bytes",
        ),
        row(
            f"{tag}: {kind} input time / training step ({ours['device']})",
            "ms",
            input_ms,
            alone,
            ratio=alone / input_ms,
            target="input << step",
            met=input_ms < 0.1 * alone,
            note=f"one batch from the input pipeline against one training step on one "
            f"batch held in memory ({100 * input_ms / alone:.2f} % of it); the step fed "
            f"by the pipeline took {step:.2f} ms ({step / alone:.2f}x); the input stays "
            f"off the critical path while a step takes more than {input_ms:.2f} ms",
        ),
    ]


def scoring_row(label: str, score_batch: int, scores: dict) -> dict:
    """Test clips scored per second, batched across clips against per-clip predict."""
    return row(
        label,
        "clips/s",
        scores["ours"],
        scores["reference"],
        rss_ours=scores["peak_rss_ours_mb"],
        rss_ref=scores["peak_rss_mb"],
        note=f"batched across clips ({score_batch} windows a batch) vs model.predict per "
        f"clip; scores differ by at most {scores['max_rel_diff']:.1e} (relative); "
        "untrained model",
    )


def book_rows(runs: list[dict], skipped: str) -> list[dict]:
    """The book's cold build and cached rebuild; one row saying why when not timed."""
    if not runs:
        return [row("book: cold build / cached rebuild", "s", None, None, ratio="", note=skipped)]
    rows = []
    for run in runs:
        if "seconds" not in run:
            rows.append(row(run["what"], "s", None, None, ratio="", note=run["note"]))
            continue
        note = (
            "fresh copy, execution cache and AADLIB_HOME"
            if "cold" in run["what"]
            else "nothing changed: notebooks come from the execution cache"
        )
        if not run["ok"]:
            note = "FAILED: " + run["log"][-300:].replace("\n", " ")
        rows.append(row(run["what"], "s", run["seconds"], None, ratio="", note=note))
    if len(runs) == 2 and "seconds" in runs[1]:
        rows[-1]["ratio"] = runs[0]["seconds"] / runs[1]["seconds"]
        rows[-1]["note"] += " (ratio: the cold build's time over this one)"
    return rows


def _format_value(value) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if value == 0:
            return "0"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 1:
            return f"{value:.2f}"
        return f"{value:.2g}"
    return str(value)


def format_table(rows: list[dict]) -> str:
    """The table as fixed-width text: what, unit, ours, reference, ratio, peak RSS, target."""
    shown = [c for c in COLUMNS if c != "note"]
    heads = {"peak_rss_ours_mb": "RSS ours MB", "peak_rss_reference_mb": "RSS ref MB"}
    left = {"what", "unit", "target", "met"}
    cells = [[heads.get(c, c) for c in shown]]
    for values in rows:
        line = []
        for column in shown:
            text = _format_value(values.get(column))
            if column == "ratio" and text and text != "nan":
                text += "x"
            line.append(text)
        cells.append(line)
    widths = [max(len(r[i]) for r in cells) for i in range(len(shown))]
    lines = []
    for n, values in enumerate(cells):
        line = "  ".join(
            v.ljust(w) if column in left else v.rjust(w)
            for column, v, w in zip(shown, values, widths)
        )
        lines.append(line.rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_notes(rows: list[dict]) -> str:
    """One line per row that has a note: ``- what: note``."""
    return "\n".join(f"- {r['what']}: {r['note']}" for r in rows if r["note"])


def write_csv(rows: list[dict], path: str | Path) -> Path:
    """Write the table as CSV (the columns of :data:`COLUMNS`), replacing the file at once."""
    import pandas as pd

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        pd.DataFrame(rows, columns=COLUMNS).to_csv(tmp, index=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def missed(rows: list[dict]) -> list[str]:
    """The rows whose target was missed."""
    return [r["what"] for r in rows if r["met"] == "NO"]


def failed(rows: list[dict]) -> bool:
    """Whether a measurement (or the book's build) failed."""
    return any(str(r["note"]).startswith("FAILED") for r in rows)
