"""`python -m llmft.workloads.datagen --spec FILE`: generate a dataset from a resolved spec."""

import sys

from llmft.workloads.datagen.pipeline import main
from llmft.workloads.entry import run_workload

if __name__ == "__main__":
    sys.exit(run_workload("DatasetGeneration", __doc__ or "", main))
