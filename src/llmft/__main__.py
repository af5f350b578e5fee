"""`python -m llmft`: the same as the `llmft` command."""

import sys

from llmft.cli import main

sys.exit(main())
