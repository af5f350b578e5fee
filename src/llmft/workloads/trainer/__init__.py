"""The fine-tuning workload: QLoRA or LoRA adapters, causal or instruct, with or without RAG."""
