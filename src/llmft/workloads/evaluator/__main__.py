"""`python -m llmft.workloads.evaluator --spec FILE`: evaluate the arms of a resolved spec."""

import sys

from llmft.workloads.entry import run_workload
from llmft.workloads.evaluator.pipeline import main

if __name__ == "__main__":
    sys.exit(run_workload("Evaluation", __doc__ or "", main))
