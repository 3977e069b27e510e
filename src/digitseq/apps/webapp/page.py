"""The digitseq web app: read a handwritten 5-digit number from an upload, a drawing, a test
sequence or one of the original project's samples, and show why the model read what it read.

Start it with ``digitseq app`` (or ``streamlit run src/digitseq/apps/webapp/page.py``). Environment:
``DIGITSEQ_MODEL`` picks the default model (run folder, model folder or .pth file; default: the
bundled model); ``DIGITSEQ_RUNS_DIR`` is where run folders are listed (default:
``$DIGITSEQ_HOME/runs``). Nothing is written to disk: uploads and drawings stay in memory.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import streamlit as st
from PIL import Image

from digitseq.apps.webapp.view import (
    SHOW_W,
    Entry,
    card_figures,
    enlarge,
    model_choices,
    original_picture,
    probability_chart,
    runs_root,
    spoken_list,
    unsure_positions,
)
from digitseq.core import paths
from digitseq.core.errors import DigitseqError, one_line
from digitseq.reading import preprocess
from digitseq.reading.predictor import Predictor

SAMPLES_DIR = Path(__file__).resolve().parents[4] / "examples" / "seed-samples"
MAX_UPLOAD_MB = 10  # per file; the uploader refuses larger files, read_uploads double-checks
MAX_READINGS = 50  # readings kept per session, newest first
TEST_POOL_SIZE = 300  # numbers composed on the fly when there is no stored dataset
CANVAS_W, CANVAS_H, STROKE = 700, 140, 14  # the canvas keeps the model's 1:5 aspect ratio
MAX_FIGURES = 14  # model-card figures listed in the sidebar


# --- models -----------------------------------------------------------------------------------


@st.cache_resource(show_spinner="Loading the model…", max_entries=4)
def load_predictor(path: str) -> Predictor:
    return Predictor.load(path)


# --- sources of images ------------------------------------------------------------------------


@st.cache_resource(show_spinner="Preparing test numbers…")
def test_pool() -> tuple[np.ndarray, np.ndarray, str]:
    """(images (N, 28, 140) uint8, labels (N, 5) uint8, where they come from)."""
    from digitseq.data import compose, mnist, storage

    dataset = paths.default_dataset_dir()
    if (dataset / "manifest.json").is_file():
        try:
            split = storage.load_split(dataset, "test")
            return split.images, split.labels, f"the test split of {dataset}"
        except DigitseqError:
            pass  # unusable dataset: compose numbers instead
    images, labels, _ = mnist.split_pool(mnist.load(), "test")
    seqs, digits, _, _ = compose.generate_fixed(
        images, labels, TEST_POOL_SIZE, np.random.default_rng(0)
    )
    return seqs, digits, f"{TEST_POOL_SIZE} numbers composed from MNIST test digits"


@st.cache_data
def sample_labels() -> dict[str, str]:
    """The example images' file names -> their true numbers."""
    path = SAMPLES_DIR / "labels.csv"
    if not path.is_file():
        return {}
    with path.open(newline="") as f:
        rows = {r["file"]: r["label"].zfill(5) for r in csv.DictReader(f)}
    return dict(sorted(rows.items(), key=lambda kv: (len(kv[0]), kv[0])))


def add_entry(name: str, payload, truth: str | None = None, error: str | None = None) -> None:
    ss = st.session_state
    ss.entries.insert(0, Entry(ss.next_id, name, payload, truth, error))
    ss.next_id += 1
    del ss.entries[MAX_READINGS:]


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


def upload_ui() -> None:
    files = st.file_uploader(
        "Images of 5-digit numbers: PNG, JPEG, BMP, GIF, TIFF or WebP, any size; "
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


def draw_ui(predictor: Predictor) -> None:
    from streamlit_drawable_canvas import st_canvas  # only importable inside the app

    st.caption("Write five digits left to right with the mouse; the reading updates as you draw.")
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
    image = canvas.image_data
    if image is None or not (np.asarray(image)[..., :3].min(axis=-1) < 200).any():
        st.info("Draw a number on the canvas above.")
        return
    entry = Entry(-1, "your drawing", canvas.image_bytes)
    try:
        reading = predictor.predict([entry.payload])[0]
    except Exception as exc:  # noqa: BLE001
        reading = one_line(exc)
    result_ui(entry, reading, key="canvas")


def test_split_ui() -> None:
    st.caption("A number the model never saw in training, with its true label.")
    if not st.button("Pick a random test number", key="pick-test"):
        return
    try:
        images, labels, source = test_pool()
    except Exception as exc:  # noqa: BLE001
        st.error(f"Could not prepare test numbers: {one_line(exc)}")
        return
    i = int(st.session_state.rng.integers(len(labels)))
    add_entry(f"test #{i} ({source})", np.array(images[i]), "".join(map(str, labels[i])))


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


def result_ui(entry: Entry, reading, key: str) -> None:
    """One reading: the number, its confidence, the pictures, the per-position probabilities."""
    with st.container(border=True):
        error = entry.error or (reading if isinstance(reading, str) else reading.error)
        if error:
            st.error(f"Could not read {entry.name}: {error}")
            return
        st.caption(entry.name)
        left, right = st.columns([1, 2])
        with left:
            digits = reading.digits or "?????"
            st.markdown(
                f'<div class="digitseq-number" style="font: 700 3.4rem monospace; '
                f'letter-spacing: .25em">{digits}</div>',
                unsafe_allow_html=True,
            )
            st.metric("sequence confidence", f"{reading.confidence:.1%}")
            if entry.truth is not None:
                if reading.digits == entry.truth:
                    st.success(f"hit: the true number is {entry.truth}")
                else:
                    st.error(f"miss: the true number is {entry.truth}")
            unsure = unsure_positions(reading)
            if unsure:
                s = "s" if len(unsure) > 1 else ""
                st.warning(f"not sure: check digit{s} {spoken_list(unsure)}")
        with right:
            picture = original_picture(entry.payload)
            if picture is not None:
                st.image(picture, caption="original", width=min(SHOW_W, picture.shape[1]))
            st.image(enlarge(reading.input), caption="model input: 28×140, white on black")
        st.vega_lite_chart(spec=probability_chart(reading.probabilities), width="content")
        steps_ui(entry, key)


def steps_ui(entry: Entry, key: str) -> None:
    steps = st.expander("Preprocessing steps", key=f"steps-{key}", on_change="rerun")
    if not steps.open:  # computed only on request
        return
    with steps:
        try:
            _, pictures = preprocess.preprocess_steps(entry.payload)
        except Exception as exc:  # noqa: BLE001
            st.error(one_line(exc))
            return
        for name, picture in pictures:
            picture = enlarge(picture)
            st.image(picture, caption=name, width=min(SHOW_W, picture.shape[1]))


def readings_ui(model_key: str, predictor: Predictor) -> None:
    ss = st.session_state
    if not ss.entries:
        return
    head, clear = st.columns([4, 1])
    head.subheader("Readings")
    if clear.button("Clear readings", key="clear"):
        ss.entries.clear()
        ss.readings.clear()
        return
    todo = [e for e in ss.entries if e.error is None and (model_key, e.id) not in ss.readings]
    if todo:
        with st.spinner(f"Reading {len(todo)} image(s)…"):
            try:
                readings = predictor.predict([e.payload for e in todo])
            except Exception as exc:  # noqa: BLE001
                readings = [one_line(exc)] * len(todo)
        ss.readings.update({(model_key, e.id): r for e, r in zip(todo, readings, strict=True)})
        kept = {e.id for e in ss.entries}  # forget readings of entries dropped off the list
        ss.readings = {k: r for k, r in ss.readings.items() if k[1] in kept}
    for e in ss.entries:
        result_ui(e, ss.readings.get((model_key, e.id)), key=str(e.id))


def init_state() -> None:
    ss = st.session_state
    ss.setdefault("entries", [])  # list[Entry], newest first
    ss.setdefault("readings", {})  # (model path, entry id) -> Reading or error text
    ss.setdefault("seen_uploads", set())  # uploader file ids already added
    ss.setdefault("next_id", 0)
    ss.setdefault("rng", np.random.default_rng())


def main() -> None:
    st.set_page_config(page_title="digitseq", page_icon="🔢", layout="wide")
    init_state()
    st.title("digitseq: read a handwritten 5-digit number")
    loaded = model_ui()
    if loaded is None:
        return
    model_key, predictor = loaded
    upload, draw, test, examples = st.tabs(["Upload", "Draw", "Test split", "Examples"])
    with upload:
        upload_ui()
    with draw:
        draw_ui(predictor)
    with test:
        test_split_ui()
    with examples:
        examples_ui()
    readings_ui(model_key, predictor)


if __name__ == "__main__":  # streamlit runs the script as __main__; importing it does nothing
    main()
