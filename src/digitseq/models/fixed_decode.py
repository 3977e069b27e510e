"""Decoding of the fixed-length readers (five 10-way heads), numpy only: what the predictor, the
evaluation and calibration agree a reading and its confidence are. (CTC line readers decode in
``ctc_decode``: there the confidence is the string's probability.)"""

from __future__ import annotations

import numpy as np


def sequence_confidence(probs: np.ndarray) -> np.ndarray:
    """(..., 5, 10) per-position probabilities -> (...,) float64: the product of the five
    per-digit top probabilities (the probability of the read number, heads independent)."""
    return np.asarray(probs).astype(np.float64).max(-1).prod(-1)
