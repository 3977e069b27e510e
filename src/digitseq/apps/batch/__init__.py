"""Reading many files: ``inputs`` (what to read), ``output`` (text, JSONL, resume), ``work`` (the
prepare / model halves), ``local`` (``--jobs``: worker processes) and ``ray_engine``
(``--engine ray``: Ray Data; the only module that imports ray)."""
