"""``digitseq app`` on a machine where Streamlit never ran (empty HOME, no terminal) starts at
once and prints its URL; the sidebar names the model without the server's paths."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request

from digitseq.apps.webapp.view import APP_SCRIPT, free_port


def test_app_starts_with_an_empty_home_and_no_terminal(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    port = free_port()
    env = {**os.environ, "HOME": str(home)}
    env.pop("STREAMLIT_SERVER_HEADLESS", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "digitseq", "app", "--port", str(port)],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True,
    )  # fmt: skip
    try:
        deadline, ok = time.monotonic() + 60, False
        while time.monotonic() < deadline and proc.poll() is None and not ok:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1):
                    ok = True
            except OSError:
                time.sleep(0.3)
        assert ok, "the app did not start (stuck at Streamlit's first-run prompt?)"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # digitseq and the streamlit it started
        out = proc.communicate(timeout=15)[0]
    assert f"http://127.0.0.1:{port}" in out and "Email" not in out


def test_sidebar_shows_the_model_name_not_its_path():
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(APP_SCRIPT), default_timeout=120).run()
    texts = [c.value for c in at.sidebar.caption] + [m.value for m in at.sidebar.markdown]
    repo = str(APP_SCRIPT.parents[4])
    assert texts and not any(repo in str(t) or "/models/" in str(t) for t in texts)
