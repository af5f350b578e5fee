"""Tests of the `llmft` command line, the local runner and the report."""
