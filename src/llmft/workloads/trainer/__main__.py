"""`python -m llmft.workloads.trainer --spec FILE`: fine-tune an adapter from a resolved spec."""

import sys

from llmft.workloads.entry import run_workload
from llmft.workloads.trainer.pipeline import main

if __name__ == "__main__":
    sys.exit(run_workload("FineTuneJob", __doc__ or "", main))
