"""The models' input windows: sizes shared by training, scoring and the benchmark.

One place for these numbers. The module imports nothing heavy, so that the
benchmark's parent process can read it without loading TensorFlow.
"""

from __future__ import annotations

__all__ = ["WINDOW_FRAMES", "PAPER_BATCH", "PAPER_HOP", "SCORE_BATCH"]

#: Frames per window: 5 stacked frames (640 values) for the Dense AE, a 32-frame
#: patch (about 1 s) for the CNN AE.
WINDOW_FRAMES = {"dense": 5, "cnn": 32}

#: The paper's training batch sizes.
PAPER_BATCH = {"dense": 512, "cnn": 64}

#: The paper's frames between windows, in training and in scoring: every frame for the
#: Dense AE, about 100 ms (3 frames of 32 ms) for the CNN AE.
PAPER_HOP = {"dense": 1, "cnn": 3}

#: Windows per batch when scoring: windows of many clips share a batch.
SCORE_BATCH = {"dense": 512, "cnn": 256}
