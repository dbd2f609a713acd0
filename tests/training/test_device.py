"""Device rules on the CPU: memory formats per conv, narrow convs, and CPU threads on a busy machine."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import torch
from helpers import cfg

from sweeper.models import create_model
from sweeper.training.device import apply_threads, free_cores, input_format, to_device


def test_cpu_runs_the_first_conv_nchw_and_the_rest_channels_last():
    model = to_device(create_model("baseline_cnn"), cfg(), torch.device("cpu"))
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs[0].weight.is_contiguous()
    assert all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs[1:])
    assert input_format(cfg(), torch.device("cpu")) == torch.contiguous_format
    assert input_format(cfg(), torch.device("cuda")) == torch.channels_last
    assert input_format(cfg(channels_last=False), torch.device("cuda")) == torch.contiguous_format


NARROW_DOWNSAMPLE = """
import torch
from sweeper.models import create_model
from sweeper.schema.config import TrainConfig
from sweeper.training.device import to_device
cfg = TrainConfig.model_validate({"model": {"name": "resnet_basic", "stem": 4, "widths": [4, 8], "blocks": [1, 1]}, "epochs": 1})
model = to_device(create_model("resnet_basic", stem=4, widths=[4, 8], blocks=[1, 1]), cfg, torch.device("cpu"))
for _ in range(3):
    model(torch.randn(8, 3, 32, 32)).sum().backward()
convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
print("nchw" if all(c.weight.is_contiguous() for c in convs) else "channels_last")
"""


def test_a_conv_narrower_than_8_channels_trains_nchw_on_cpu_without_crashing():
    # oneDNN corrupts memory in this backward under channels_last (a segfault on AVX2 hosts): run it
    # in its own process so a crash fails this test instead of killing the suite.
    done = subprocess.run([sys.executable, "-c", NARROW_DOWNSAMPLE], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "nchw"


BUSY = "import time\nend = time.monotonic() + 30\nwhile time.monotonic() < end:\n    pass\n"


def test_auto_threads_leave_the_cores_other_processes_use(monkeypatch):
    cores = len(os.sched_getaffinity(0))
    cpu = torch.device("cpu")
    before = torch.get_num_threads()
    try:
        assert apply_threads("1", cpu) == 1 and torch.get_num_threads() == 1
        hogs = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(cores)]
        try:
            # Poll until the hogs show, rather than sleep a guess at how long a loaded machine takes to start them.
            deadline, busy = time.monotonic() + 60, free_cores(0.5)
            while busy is not None and busy >= 0.75 and time.monotonic() < deadline:
                busy = free_cores(0.5)
            assert busy is not None and busy < 0.75, f"{cores} spinning processes left {busy} cores free"
            assert apply_threads("auto", cpu) == 1  # never below one thread
        finally:
            for hog in hogs:
                hog.kill()
                hog.wait()
        # our own work is not "another process": a busy loop here must not read as a busy machine
        assert apply_threads("auto", cpu) >= 1
        assert apply_threads("auto", torch.device("meta")) == torch.get_num_threads()  # not a CPU: untouched
    finally:
        torch.set_num_threads(before)
