"""Shapes and names shared by every stage (no imports beyond the standard library)."""

from __future__ import annotations

N_DIGITS = 5  # digits per number in the fixed-length (5-digit) datasets and models
DIGIT_SIZE = 28  # MNIST digit side, pixels
IMG_H = DIGIT_SIZE  # model input height
IMG_W = DIGIT_SIZE * N_DIGITS  # fixed-length model input width (28 x 140)
FRAME_STRIDE = 4  # input columns per output frame of the CTC line reader

# what a line reader reads: class 0 is the CTC blank, class i + 1 is ALPHABET[i]. The alphabet
# follows from the number of classes a model outputs (11: digits; 20: digits and separators)
DIGITS = "0123456789"
TEXT_ALPHABET = DIGITS + ".,-/:()+ "  # decimal and thousands marks, dates, times, phones, gaps
ALPHABETS = {len(a) + 1: a for a in (DIGITS, TEXT_ALPHABET)}
ALPHABET_NAMES = {"digits": DIGITS, "text": TEXT_ALPHABET}  # a line reader's ``alphabet``

# how digits are placed (data/layouts.py): four single layouts and three mixes of them
LAYOUTS = ("seed", "natural", "touching", "spaced", "mixed", "mix3", "mix4", "people")
SPLITS = ("train", "val", "test")
