"""The Evaluation workload: arms (base or fine-tuned, with or without RAG) answer held-out
questions; answers are scored with text metrics and an LLM judge and the arms are ranked."""

import os

# RAGAS reports usage to its authors unless told not to; workload pods stay quiet.
os.environ.setdefault("RAGAS_DO_NOT_TRACK", "true")
