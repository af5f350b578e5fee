"""The GPU workloads (dataset generation, training, evaluation) run inside the Jobs' pods."""
