"""End-to-end tests: manifests to report through `llmft run` and `llmft report`."""
