"""Which device a local workload gets: the CPU, or one local GPU when asked for and present."""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Placement:
    """Environment that pins the workload to its device, and a line saying what was chosen."""

    device: str
    env: dict[str, str] = field(default_factory=dict)
    note: str | None = None


def local_gpus() -> list[str]:
    """Ids of the NVIDIA GPUs this process may use, without importing torch.

    CUDA_VISIBLE_DEVICES, when set, is the answer (the user already chose); otherwise
    `nvidia-smi -L` lists the GPUs, and no nvidia-smi means none.
    """
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [v.strip() for v in visible.split(",") if v.strip() and v.strip() != "-1"]
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return []
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("GPU ")]
    return [str(i) for i in range(len(lines))]


def place(gpu_count: int, gpus: list[str]) -> Placement:
    """CPU for gpuCount 0; the first GPU for gpuCount >= 1 when there is one; else the CPU."""
    cpu_only = {"CUDA_VISIBLE_DEVICES": ""}  # keep torch off a GPU the spec did not ask for
    if gpu_count == 0:
        return Placement("cpu", cpu_only)
    if not gpus:
        return Placement(
            "cpu",
            cpu_only,
            note=f"asks for {gpu_count} GPU(s) but this machine has none: running on the CPU",
        )
    note = None
    if gpu_count > 1:
        note = f"asks for {gpu_count} GPUs; the local runner uses one (GPU {gpus[0]})"
    return Placement(f"cuda (GPU {gpus[0]})", {"CUDA_VISIBLE_DEVICES": gpus[0]}, note)


THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def cpu_threads(quantity: str, available: int | None = None) -> int:
    """Threads for a workload from its `resources.cpu` quantity ("2", "500m"), at most the
    machine's cores and at least one."""
    available = available or os.cpu_count() or 1
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(m?)", quantity.strip())
    if match is None:
        return available
    cores = float(match.group(1)) / (1000 if match.group(2) else 1)
    return max(1, min(available, math.ceil(cores)))


def thread_env(quantity: str) -> dict[str, str]:
    """OMP/MKL thread counts as the pod's CPU limit would give them, unless the user set them.

    Torch otherwise starts one thread per core, and on a busy machine threads that wait for
    each other at every operation make generation several times slower than fewer threads.
    """
    if any(os.environ.get(v) for v in THREAD_VARS):
        return {}
    threads = str(cpu_threads(quantity))
    return dict.fromkeys(THREAD_VARS, threads)
