"""Run the helm binary on the llmft-operator chart and read what it renders."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from servers.launch import BIN

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "llmft-operator"
REPO_CRDS = ROOT / "crds"

# Every optional part switched on, so one render covers every template.
EVERYTHING_ON: dict[str, Any] = {
    "images": {"pullSecrets": ["registry-creds"]},
    "operator": {
        "extraArgs": ["--verbose"],
        "extraEnv": [{"name": "EXTRA", "value": "1"}],
        "allowedEndpoints": ["https://huggingface.co"],
    },
    "workloads": {"kueueQueue": "gpu-queue", "serviceWaitSeconds": 300},
    "artifacts": {"pvc": {"create": True, "storageClassName": "fast"}},
    "ollama": {"enabled": True, "persistence": {"enabled": True}},
    "weaviate": {"enabled": True, "persistence": {"enabled": True}},
    "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}},
    "networkPolicy": {"enabled": True, "apiServerCIDRs": ["10.0.0.1/32"]},
}


def merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`override` laid over `base`, mapping by mapping, as helm merges -f files."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


def helm_binary() -> Path:
    path = BIN / "helm"
    if not path.exists():
        pytest.fail(f"{path} is missing: run `bash tests/servers/install-cli.sh`")
    return path


def helm(*args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(helm_binary()), *args], capture_output=True, text=True, timeout=timeout
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"helm {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return result


def values_file(tmp_path: Path, values: dict[str, Any], name: str = "values.json") -> Path:
    """JSON is YAML, so a dict becomes a -f file without a YAML writer's surprises."""
    path = tmp_path / name
    path.write_text(json.dumps(values))
    return path


def render(
    tmp_path: Path,
    values: dict[str, Any] | None = None,
    *extra: str,
    release: str = "llmft",
    namespace: str = "llmft-system",
) -> list[dict[str, Any]]:
    """`helm template` of the chart: the manifests as dicts, in render order."""
    args = ["template", release, str(CHART), "--namespace", namespace, *extra]
    if values:
        args += ["-f", str(values_file(tmp_path, values))]
    return [doc for doc in yaml.safe_load_all(helm(*args).stdout) if doc]


def find(
    docs: list[dict[str, Any]], kind: str, name: str | None = None, namespace: str | None = None
) -> dict[str, Any]:
    found = [
        d
        for d in docs
        if d["kind"] == kind
        and (name is None or d["metadata"]["name"] == name)
        and (namespace is None or d["metadata"].get("namespace") == namespace)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]
