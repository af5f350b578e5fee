"""A stand-in workload for the runner tests: the real entrypoint and reporter, no model.

Annotations on the resource steer it: `llmft.test/fail` makes it fail with a WorkloadError,
`llmft.test/steps` and `llmft.test/step-seconds` make it take steps, saving a checkpoint after
each one and resuming from it, as the real workloads do.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from llmft.reporting import Reporter
from llmft.workloads.entry import WorkloadError, run_workload

CHECKPOINT = "checkpoint.json"


def main(res: Any, reporter: Reporter) -> None:
    notes = res.metadata.annotations
    out = Path(res.spec.output.path)
    if "llmft.test/fail" in notes:
        raise WorkloadError(notes["llmft.test/fail"])
    steps = int(notes.get("llmft.test/steps", "1"))
    pause = float(notes.get("llmft.test/step-seconds", "0"))
    checkpoint = out / CHECKPOINT
    start = json.loads(checkpoint.read_text())["step"] if checkpoint.exists() else 0
    if start:
        reporter.progress(force=True, resumedFromStep=start, message=f"resumed at {start}")
    for step in range(start + 1, steps + 1):
        time.sleep(pause)
        checkpoint.write_text(json.dumps({"step": step}))
        reporter.progress(force=True, step=step, total=steps, unit="steps", loss=1.0 / step)
    with open(os.environ["STANDIN_LOG"], "a") as log:
        threads = os.environ.get("OMP_NUM_THREADS")
        entry = {"key": f"{res.kind}/{res.metadata.name}", "from": start, "threads": threads}
        log.write(json.dumps(entry) + "\n")
    reporter.result({"steps": steps, "resumedFrom": start}, {"dir": str(out)})


if __name__ == "__main__":
    sys.exit(run_workload(os.environ["LLMFT_KIND"], "stand-in workload for tests", main))
