"""What users see, in a real headless Chromium: a figure drawn with the network off, and the table on the
parent run's page of a real `sweeper server`, reached from the link the server prints.

Both skip outside CI when no Chromium is installed (Debian: apt-get install chromium); under CI=true a
missing browser fails them.
"""

from __future__ import annotations

import copy
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import TINY_SPEC, free_port
from PIL import Image
from rich.console import Console

from sweeper import sweep, tables
from sweeper.plots import save_figure
from sweeper.tables import compare

# No network: every host resolves to nothing and every proxied request goes to a closed port.
OFFLINE = ["--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1", "--proxy-server=http://127.0.0.1:9"]


@pytest.fixture(scope="module")
def chromium() -> str:
    found = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
    if found is None:
        reason = "Chromium not installed (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return found


def browse(chromium: str, url: str, *flags: str, budget_ms: int = 20000) -> subprocess.CompletedProcess:
    """Chromium headless on a URL after the page's scripts ran (virtual time), with extra flags."""
    args = [chromium, "--headless", "--no-sandbox", "--disable-gpu", f"--virtual-time-budget={budget_ms}", *flags, url]
    return subprocess.run(
        args, capture_output=True, timeout=180, env={**os.environ, "HOME": os.environ.get("HOME", "/tmp")}
    )


def test_a_comparison_figure_draws_with_the_network_off(chromium, tmp_path):
    curve = pd.DataFrame(
        [(0, "ReLU", e, 0.5 + e / 10, 0.01, 0.49 + e / 10, 0.51 + e / 10, 2) for e in (1, 2, 3)],
        columns=["row", "label", "epoch", "mean", "std", "min", "max", "n"],
    )
    bar = pd.DataFrame(
        [("ReLU", 80.0, 1.0, 2, "ok", 87.2)], columns=["label", "mean", "std", "n", "status", "reported"]
    )
    fig = compare.comparison_figure(curve, bar, "val_acc", "Test Acc. (%)", "Offline figure")
    page = save_figure(fig, tmp_path / "figure", png=False)[0]
    shot = tmp_path / "figure.png"
    done = browse(chromium, page.as_uri(), *OFFLINE, f"--screenshot={shot}", "--window-size=1300,600")
    assert shot.is_file(), done.stderr.decode(errors="replace")[-2000:]
    dom = browse(chromium, page.as_uri(), *OFFLINE, "--dump-dom").stdout.decode()
    assert 'class="main-svg"' in dom and "trace bars" in dom, "plotly drew the figure from its own copy"
    pixels = np.asarray(Image.open(io.BytesIO(shot.read_bytes())).convert("RGB"))
    coloured = (pixels.max(axis=2) - pixels.min(axis=2) > 60).mean()  # bars and lines, not a white page
    assert coloured > 0.01, f"the figure is blank ({coloured:.4f} of its pixels are coloured)"


@pytest.fixture(scope="module")
def served(tmp_path_factory, synthetic_data):
    """A tiny sweep in a local store, then `sweeper server` over it as a user starts it: (its output, process)."""
    tmp = tmp_path_factory.mktemp("ui")
    spec = copy.deepcopy(TINY_SPEC)
    spec["base"]["epochs"] = 1
    spec["base"]["data"] |= {"train_size": 64, "val_size": 20, "test_size": 20}
    path = tmp / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    uri = f"sqlite:///{tmp / 'mlruns' / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("SWEEPER_PNG", "0")
        sweep.run(path, tracking_uri=uri, device="cpu", data=synthetic_data, console=Console(quiet=True))
    port = str(free_port())
    env = {**os.environ, "SWEEPER_STORE_DIR": str(tmp / "mlruns"), "SWEEPER_PNG": "0"}
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "sweeper", "server", "--port", port, "--workers", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=tmp,
    )
    lines: list[str] = []
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not any(line.strip().startswith("tiny:") for line in lines):
        line = proc.stdout.readline() if proc.stdout else ""
        if not line and proc.poll() is not None:
            break
        lines.append(line)
    try:
        yield {"output": "".join(lines), "uri": uri, "path": path}
    finally:
        proc.send_signal(signal.SIGINT)  # as Ctrl-C: the command stops its mlflow server
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_the_printed_link_opens_the_runs_and_the_parent_run_shows_the_table(chromium, served):
    link = re.search(r"tiny: (http://\S+)", served["output"])
    assert link, served["output"]
    url = link.group(1)
    assert url.endswith("?workflowType=machine_learning") and "/#/experiments/" in url
    runs_page = browse(chromium, url, "--dump-dom").stdout.decode()
    assert "tiny [default]" in runs_page, "the experiment's runs, in the model-training view"
    assert "No data available" not in runs_page
    table = tables.build(str(served["path"]), tracking_uri=served["uri"])
    run_page = url.replace("?", f"/runs/{table.parent_run}?")
    dom = browse(chromium, run_page, "--dump-dom").stdout.decode()
    first = table.labels[0], tables.render(table).splitlines()[2].split("|")[2].strip(" *")  # ReLU, its value
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom))
    assert f"{first[0]} {first[1]}" in text, f"the table's first row on the parent run's page: {first}"
    assert f"test_acc/{first[0]}" in text, "its metrics"
