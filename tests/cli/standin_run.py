"""`llmft ...` with every kind's workload replaced by the stand-in (for tests that need a
real `llmft run` process to interrupt)."""

import sys

from llmft.cli import main
from llmft.runner import execute

execute.workload_module = lambda kind: "cli.standin_workload"

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
