"""The llmft operator: kopf handlers that run each llmft resource's workload as a GPU Job."""
