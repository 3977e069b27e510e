"""digitseq: read handwritten numbers of any length with a segmentation-free CTC line reader
trained on numbers synthesized from MNIST (CLI, Python API, web app, HTTP service, batch)."""

__version__ = "0.1.0"
