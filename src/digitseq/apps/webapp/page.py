"""The digitseq web app: read a handwritten number of any length from an upload, a drawing, a
test number or one of the original project's samples, and show why the model read what it read.

Start it with ``digitseq app`` (or ``streamlit run src/digitseq/apps/webapp/page.py``). Environment:
``DIGITSEQ_MODEL`` picks the default model (run folder, model folder or .pth file; default: the
bundled model); ``DIGITSEQ_RUNS_DIR`` is where run folders are listed (default:
``$DIGITSEQ_HOME/runs``). Nothing is written to disk. A session keeps no upload bytes: each
image is turned into a small gray copy at once, the upload is dropped from Streamlit's upload
store, and what a session holds is capped (MAX_READINGS images, MAX_SESSION_MB of copies).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import streamlit as st
from PIL import Image

from digitseq.apps.webapp.sources import SAMPLES_DIR, sample_labels, test_pool
from digitseq.apps.webapp.view import (
    LOW_CONFIDENCE,
    MAX_DIGITS,
    Entry,
    card_figures,
    digit_chart,
    enlarge,
    keep_copy,
    length_text,
    model_choices,
    probability_chart,
    runs_root,
    spans_picture,
    unsure_message,
)
from digitseq.core import paths
from digitseq.core.errors import DigitseqError, one_line
from digitseq.reading import preprocess
from digitseq.reading.predictor import FORMATS, Predictor, Reading

MAX_UPLOAD_MB = 10  # per file; the uploader refuses larger files, upload_ui double-checks
MAX_READINGS = 50  # images kept per session, newest first
MAX_SESSION_MB = 48  # gray copies + thumbnails + model inputs kept per session
CANVAS_W, CANVAS_H, STROKE = 840, 140, 14
MAX_FIGURES = 14  # model-card figures listed in the sidebar


# --- models -----------------------------------------------------------------------------------


@st.cache_resource(show_spinner="Loading the model…", max_entries=4)
def load_predictor(path: str) -> Predictor:
    return Predictor.load(path)


# --- the session's images ---------------------------------------------------------------------


def add_entry(name: str, source, truth: str | None = None, error: str | None = None) -> None:
    """Keep a compact copy of an image (never its bytes) at the top of the session's list."""
    ss = st.session_state
    image = thumb = None
    if error is None:
        try:
            image, thumb = keep_copy(source)
        except DigitseqError as exc:
            error = str(exc)
        except Exception as exc:  # noqa: BLE001 - a decoder's own failure is one line
            error = f"cannot read image ({one_line(exc)})"
    ss.entries.insert(0, Entry(ss.next_id, name, image, thumb, truth, error))
    ss.next_id += 1
    cap_session()


def cap_session() -> None:
    """At most MAX_READINGS images and MAX_SESSION_MB held: the oldest go first."""
    entries = st.session_state.entries
    del entries[MAX_READINGS:]
    total = sum(e.nbytes for e in entries)
    while len(entries) > 1 and total > MAX_SESSION_MB * 2**20:
        total -= entries.pop().nbytes


def drop_upload(file_id: str) -> None:
    """Free an upload's bytes in Streamlit's upload store once the session has its copy (the
    store would otherwise hold them until the session ends)."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    if ctx is not None and ctx.uploaded_file_mgr is not None:
        ctx.uploaded_file_mgr.remove_file(ctx.session_id, file_id)


# --- page parts -------------------------------------------------------------------------------


def model_ui() -> tuple[str, Predictor] | None:
    """Sidebar model picker and model card; None when no model can be loaded."""
    st.sidebar.header("Model")
    choices = model_choices()
    if not choices:
        st.error(
            f"No model found: the bundled model is missing at {paths.bundled_model_dir()} and "
            f"{runs_root()} holds no run folders. Train one with `make demo` or `digitseq train`."
        )
        return None
    label = st.sidebar.selectbox("Model", list(choices), key="model")
    path = choices[label]
    st.sidebar.caption(Path(path).name)  # the name only: visitors never see server paths
    try:
        predictor = load_predictor(path)
    except Exception as exc:  # noqa: BLE001 - shown in the page, never as a traceback
        st.error(f"Could not load the model {label}: {one_line(exc)}")
        return None
    model_card_ui(predictor.info, Path(path))
    return path, predictor


def model_card_ui(info: dict, path: Path) -> None:
    st.sidebar.markdown(f"**{info.get('name', path.name)}** · `{info.get('arch', '?')}`")
    folder = path if path.is_dir() else path.parent
    figures = card_figures(info, folder)
    if figures:
        rows = [f"| {k} | {v} |" for k, v in list(figures.items())[:MAX_FIGURES]]
        st.sidebar.markdown("\n".join(["| figure | value |", "|---|---:|", *rows]))
    else:
        st.sidebar.caption("No evaluation figures stored with this model.")
    with st.sidebar.expander("Details"):
        st.json({k: v for k, v in info.items() if k not in ("metrics", "test_metrics")})
    readme = folder / "README.md"
    if readme.is_file():
        with st.sidebar.expander("Model card"):
            st.markdown(readme.read_text(errors="replace"))


def length_ui(predictor: Predictor) -> tuple[int, int] | str | None:
    """What the caller knows of the number: N digits (passed to the predictor as ``digits=``)
    or a format (``pattern=``: a named one or the user's regular expression)."""
    st.sidebar.header("Number of digits")
    if predictor.decoder.lengths is not None:
        st.sidebar.caption(f"This model reads exactly {predictor.decoder.lengths[0]} digits.")
        return None
    mode = st.sidebar.radio(
        "The number has",
        ["any number of digits", "exactly", "between", "a format"],
        key="length-mode",
    )
    if mode == "a format":
        name = st.sidebar.selectbox("Format", [*FORMATS, "my own pattern"], key="format")
        if name != "my own pattern":
            return name
        own = st.sidebar.text_input("Pattern (a regular expression)", r"\d{2}/\d{2}/\d{4}",
                                    max_chars=200, key="pattern")  # fmt: skip
        return own or None
    if mode == "exactly":
        n = st.sidebar.number_input("digits", 1, MAX_DIGITS, 5, key="length-n")
        return int(n), int(n)
    if mode == "between":
        lo = st.sidebar.number_input("at least", 1, MAX_DIGITS, 3, key="length-lo")
        hi = st.sidebar.number_input("at most", int(lo), MAX_DIGITS, max(int(lo), 6),
                                     key="length-hi")  # fmt: skip
        return int(lo), int(hi)
    return None


def upload_ui() -> None:
    files = st.file_uploader(
        "Images of handwritten numbers: PNG, JPEG, BMP, GIF, TIFF or WebP, any size; "
        "dark ink on light paper or light ink on dark",
        accept_multiple_files=True,
        max_upload_size=MAX_UPLOAD_MB,
        key="uploads",
    )
    seen = st.session_state.seen_uploads
    for f in files or []:
        if f.file_id in seen:
            continue
        seen.add(f.file_id)
        if f.size > MAX_UPLOAD_MB * 2**20:
            too_big = f"{f.size / 2**20:.1f} MB is over the {MAX_UPLOAD_MB} MB limit per image"
            add_entry(f.name, None, error=too_big)
        else:
            add_entry(f.name, f.getvalue())
        drop_upload(f.file_id)
        f.close()


def draw_ui(predictor: Predictor, digits) -> None:
    from streamlit_drawable_canvas import st_canvas  # only importable inside the app

    st.caption(
        "Write a number with the mouse, any number of digits, left to right; "
        "the reading updates as you draw."
    )
    canvas = st_canvas(
        stroke_width=STROKE,
        stroke_color="#000000",
        background_color="#ffffff",
        width=CANVAS_W,
        height=CANVAS_H,
        drawing_mode="freedraw",
        return_image_data=True,
        key="canvas",
    )
    data = canvas.image_bytes
    ss = st.session_state
    if data is None or not (np.asarray(canvas.image_data)[..., :3].min(axis=-1) < 200).any():
        ss.drawing = None
        st.info("Draw a number on the canvas above.")
        return
    key = (hashlib.sha256(data).hexdigest(), predictor.source, digits)
    if ss.drawing is None or ss.drawing[0] != key:  # read each new drawing once
        entry = Entry(-1, "your drawing", None)
        try:
            entry.image, entry.thumb = keep_copy(data)
        except Exception as exc:  # noqa: BLE001
            entry.error = one_line(exc)
        ss.drawing = (key, entry, read_entries(predictor, [entry], digits)[0])
    _, entry, reading = ss.drawing
    result_ui(entry, reading, predictor, key="canvas")


def test_split_ui(only: tuple[int, int] | None) -> None:
    st.caption("A number the model never saw in training, with its true label.")
    if not st.button("Pick a random test number", key="pick-test"):
        return
    try:
        images, labels, source = test_pool(only)
    except Exception as exc:  # noqa: BLE001
        st.error(f"Could not prepare test numbers: {one_line(exc)}")
        return
    i = int(st.session_state.rng.integers(len(labels)))
    add_entry(f"test #{i} ({source})", np.asarray(images[i]), labels[i])


def examples_ui() -> None:
    labels = sample_labels()
    if not labels:
        st.info(f"No example images found in {SAMPLES_DIR}.")
        return
    st.caption("The original project's sample uploads: 28×140, white digits on black.")
    name = st.selectbox("Example", list(labels), format_func=lambda n: f"{n} ({labels[n]})")
    st.image(enlarge(np.asarray(Image.open(SAMPLES_DIR / name).convert("L"))))
    one, every = st.columns(2)
    picked = [name] if one.button("Read this example", key="read-example") else []
    if every.button(f"Read all {len(labels)} examples", key="read-examples"):
        picked = list(reversed(labels))
    for n in picked:
        add_entry(f"example {n}", (SAMPLES_DIR / n).read_bytes(), labels[n])


# --- readings ---------------------------------------------------------------------------------


def read_entries(predictor: Predictor, entries: list[Entry], digits) -> list:
    """Readings (or error texts) of entries; each entry's model input is computed once per kind
    of preprocessing and kept, so a new length constraint or model only reruns the model."""
    line = predictor.line
    kind = "line" if line else "cells"
    readings: list = []
    for e in entries:
        if e.error is not None:
            readings.append(e.error)
            continue
        if kind not in e.inputs:
            try:
                e.inputs[kind] = preprocess.preprocess(e.image, line=line)
            except DigitseqError as exc:
                e.inputs[kind] = str(exc)
            except Exception as exc:  # noqa: BLE001
                e.inputs[kind] = f"cannot read image ({one_line(exc)})"
        x = e.inputs[kind]
        readings.append(Reading(file=e.name, error=x) if isinstance(x, str) else
                        Reading(file=e.name, input=x))  # fmt: skip
    pattern = digits if isinstance(digits, str) else None
    digits = None if pattern else digits
    try:
        predictor.predict_prepared([r for r in readings if isinstance(r, Reading)], digits=digits,
                                   pattern=pattern)  # fmt: skip
    except Exception as exc:  # noqa: BLE001
        return [one_line(exc)] * len(entries)
    return [r if isinstance(r, str) or r.error is None else r.error for r in readings]


def result_ui(entry: Entry, reading, predictor: Predictor, key: str) -> None:
    """One reading: the number, its confidence, the pictures, the per-digit probabilities."""
    with st.container(border=True):
        error = entry.error or (reading if isinstance(reading, str) else None)
        if error:
            st.error(f"Could not read {entry.name}: {error}")
            return
        st.caption(entry.name)
        left, right = st.columns([1, 2])
        with left:
            number = reading.text or reading.digits or "–"
            size = min(3.4, 20 / max(1, len(number)))  # rem: long numbers stay on one line
            st.markdown(
                f'<div class="digitseq-number" style="font: 700 {size:.2f}rem monospace; '
                f'letter-spacing: .25em; overflow-wrap: anywhere">{number}</div>',
                unsafe_allow_html=True,
            )
            if not reading.digits:
                st.info("no digit found")
            if reading.value:  # held to a date, time or amount: what it means
                st.caption(f"means {reading.value}")
            st.metric("whole-number confidence", f"{reading.confidence:.1%}")
            if entry.truth is not None:
                if reading.digits == entry.truth:
                    st.success(f"hit: the true number is {entry.truth}")
                else:
                    st.error(f"miss: the true number is {entry.truth}")
            if reading.warning:
                st.warning(reading.warning)
            unsure = unsure_message(reading)
            if unsure:
                st.warning(unsure)
        with right:
            if entry.thumb is not None:
                st.image(entry.thumb, caption="original")
            x = reading.input
            if reading.input_spans is not None:
                st.image(
                    spans_picture(x, reading.digits, reading.input_spans),
                    caption=f"model input, 28×{x.shape[1]}: each digit's columns boxed",
                )
            else:
                st.image(enlarge(x), caption=f"model input: 28×{x.shape[1]}, white on black")
        if reading.probabilities is not None:
            st.vega_lite_chart(spec=probability_chart(reading.probabilities), width="content")
        elif reading.digits:
            st.vega_lite_chart(
                spec=digit_chart(reading.digits, reading.digit_confidences), width="content"
            )
        steps_ui(entry, predictor, key)


def steps_ui(entry: Entry, predictor: Predictor, key: str) -> None:
    steps = st.expander("Preprocessing steps", key=f"steps-{key}", on_change="rerun")
    if not steps.open:  # computed only on request
        return
    with steps:
        try:
            _, pictures = preprocess.preprocess_steps(entry.image, line=predictor.line)
        except Exception as exc:  # noqa: BLE001
            st.error(one_line(exc))
            return
        for name, picture in pictures:
            st.image(enlarge(picture), caption=name)


def readings_ui(predictor: Predictor, digits) -> None:
    ss = st.session_state
    if not ss.entries:
        return
    head, clear = st.columns([4, 1])
    head.subheader("Readings")
    if clear.button("Clear readings", key="clear"):
        ss.entries.clear()
        ss.readings = {}
        return
    key = (predictor.source, digits)
    if ss.readings_key != key:  # another model or length: only the current readings are kept
        ss.readings_key, ss.readings = key, {}
    todo = [e for e in ss.entries if e.id not in ss.readings]
    if todo:
        with st.spinner(f"Reading {len(todo)} image(s)…"):
            ss.readings.update(zip([e.id for e in todo], read_entries(predictor, todo, digits),
                                   strict=True))  # fmt: skip
        kept = {e.id for e in ss.entries}  # forget readings of entries dropped off the list
        ss.readings = {i: r for i, r in ss.readings.items() if i in kept}
        cap_session()
    st.caption(
        f"Reading numbers of {length_text(digits)}; a whole number under "
        f"{LOW_CONFIDENCE:.0%} confidence is flagged “not sure”."
    )
    for e in ss.entries:
        result_ui(e, ss.readings.get(e.id), predictor, key=str(e.id))


def init_state() -> None:
    ss = st.session_state
    ss.setdefault("entries", [])  # list[Entry], newest first
    ss.setdefault("readings", {})  # entry id -> Reading or error text, for readings_key
    ss.setdefault("readings_key", None)  # (model source, length constraint)
    ss.setdefault("seen_uploads", set())  # uploader file ids already added
    ss.setdefault("drawing", None)  # (key, Entry, Reading) of the canvas's last drawing
    ss.setdefault("next_id", 0)
    ss.setdefault("rng", np.random.default_rng())


def main() -> None:
    st.set_page_config(page_title="digitseq", page_icon="🔢", layout="wide")
    init_state()
    st.title("digitseq: read a handwritten number")
    loaded = model_ui()
    if loaded is None:
        return
    _, predictor = loaded
    digits = length_ui(predictor)
    upload, draw, test, examples = st.tabs(["Upload", "Draw", "Test split", "Examples"])
    with upload:
        upload_ui()
    with draw:
        draw_ui(predictor, digits)
    with test:
        test_split_ui(predictor.decoder.lengths)
    with examples:
        examples_ui()
    readings_ui(predictor, digits)


if __name__ == "__main__":  # streamlit runs the script as __main__; importing it does nothing
    main()
