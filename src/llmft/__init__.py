"""llmft: declarative LLM fine-tuning experiments on Kubernetes."""

__version__ = "0.1.0"
