"""digitseq: read handwritten 5-digit numbers with a CNN trained on MNIST sequences."""

__version__ = "0.1.0"
