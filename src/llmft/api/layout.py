"""The names of the files each kind writes, and where a workload pod finds its inputs."""

from __future__ import annotations

# Files a DatasetGeneration writes into its output directory.
INSTRUCT_TRAIN = "train.jsonl"
INSTRUCT_EVAL = "eval.jsonl"  # the documents split: questions about held-out documents
INSTRUCT_EVAL_CLOSED_BOOK = "eval_closed_book.jsonl"  # questions about trained-on documents
CORPUS_TRAIN = "corpus_train.jsonl"
CORPUS_EVAL = "corpus_eval.jsonl"
CHUNKS = "chunks.jsonl"
DATASET_MANIFEST = "manifest.json"

# Files a FineTuneJob writes.
ADAPTER_DIR = "adapter"
ADAPTER_TRAINING = "llmft_training.json"  # in the adapter dir: method, mode, base, RAG settings
MERGED_DIR = "merged"
CHECKPOINTS_DIR = "checkpoints"
TRAIN_METRICS = "metrics.json"
TRAIN_LOG = "log_history.jsonl"

# Files an Evaluation writes.
EVAL_ITEMS = "items.jsonl"
EVAL_SUMMARY = "summary.json"

# Every workload writes its final result here too (also sent as the termination message).
RESULT = "result.json"


# Where a workload pod finds its inputs (the operator mounts them; the local runner needs none).
SPEC_FILE = "/etc/llmft/spec.json"
CONFIGMAP_DOCUMENTS_MOUNT = "/etc/llmft/documents"
PVC_DOCUMENTS_MOUNT = "/mnt/llmft/documents"

# Environment variables a workload pod gets for the secrets its spec references
# (always through secretKeyRef: the values never appear in a spec, a status or a log).
ENV_HF_TOKEN = "HF_TOKEN"  # pulling gated/private models; huggingface_hub reads it by itself
ENV_HF_PUSH_TOKEN = "LLMFT_HF_PUSH_TOKEN"  # pushing the result (spec.output.huggingFace)
ENV_JUDGE_API_KEY = "LLMFT_JUDGE_API_KEY"  # spec.judge.apiKeySecretRef
ENV_WEAVIATE_API_KEY = "LLMFT_WEAVIATE_API_KEY"  # spec.retrieval.apiKeySecretRef
ENV_MLFLOW_TOKEN = "MLFLOW_TRACKING_TOKEN"  # spec.tracking.mlflow.tokenSecretRef (MLflow reads it)
ENV_MLFLOW_PASSWORD = "MLFLOW_TRACKING_PASSWORD"  # spec.tracking.mlflow.passwordSecretRef


# spec.arms[i].endpoint.apiKeySecretRef: one variable per arm (their keys differ).
ENV_ARM_API_KEY = "LLMFT_ARM_{index}_API_KEY"


def arm_api_key_env(index: int) -> str:
    """The variable holding spec.arms[index].endpoint.apiKeySecretRef."""
    return ENV_ARM_API_KEY.format(index=index)
