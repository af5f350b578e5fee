"""`llmft report` on a local state directory: table numbers, charts and the HTML page."""

from __future__ import annotations

import re
import struct
from html.parser import HTMLParser
from pathlib import Path

import pytest

from cli.report_state import build_quickstart_state, read_items, read_log_history, read_summary
from llmft.api import Phase
from llmft.api.crdgen import status_pruned_paths
from llmft.cli import main
from llmft.report import local_inputs
from llmft.report.charts import tuning_deltas
from llmft.report.summary import parse_summary, summary_from_status
from llmft.runner.state import StateDir
from llmft.workloads.evaluator.summary import status_metrics


class _Tables(HTMLParser):
    """Rows of every <table> in a page, as lists of cell texts."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@pytest.fixture
def state(tmp_path: Path) -> StateDir:
    return build_quickstart_state(tmp_path / "state")


def _report(
    state: StateDir, out: Path, capsys: pytest.CaptureFixture[str], *extra: str
) -> tuple[int, str, str]:
    code = main(["report", "--state-dir", str(state.root), "--out", str(out), *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "220")  # rich would otherwise fold the table's cells


def test_table_rows_follow_the_summary_ranking_with_its_numbers(
    state: StateDir, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, _ = _report(state, tmp_path / "report", capsys)
    assert code == 0
    summary = read_summary(state)
    parser = _Tables()
    parser.feed((tmp_path / "report" / "report.html").read_text())
    header, *rows = parser.rows
    primary = summary["primaryMetric"]
    arms = {a["name"]: a for a in summary["arms"]}

    assert [r[1].removesuffix(" ★") for r in rows] == summary["ranking"]
    col = {h: i for i, h in enumerate(header)}
    for row in rows:
        arm = arms[row[1].removesuffix(" ★")]
        stat = arm["metrics"][primary]
        half = (stat["ciHigh"] - stat["ciLow"]) / 2
        assert row[col[f"{primary} (mean ± CI)"]] == f"{stat['mean']:.3f} ± {half:.3f}"
        for metric in ("bleu", "chrf", "rouge1", "ngram"):
            assert row[col[metric]] == f"{arm['metrics'][metric]['mean']:.3f}"
        if arm["name"] == summary["baseline"]:
            assert row[col[f"Δ {primary}"]] == "baseline"
        else:
            assert row[col[f"Δ {primary}"]] == f"{arm['delta'][primary]:+.3f}"
        hit = arm["retrievalHitRate"]
        assert row[col["hit rate"]] == ("-" if hit is None else f"{hit:.3f}")
        assert row[col["RAG"]] == ("yes" if arm["rag"] else "no")


def test_summary_means_are_the_means_of_the_items_the_evaluator_wrote(state: StateDir) -> None:
    summary = read_summary(state)
    items = read_items(state)
    for arm in summary["arms"]:
        scores = [r["scores"]["bleu"] for r in items if r["arm"] == arm["name"]]
        known = [s for s in scores if s is not None]
        assert arm["metrics"]["bleu"]["mean"] == pytest.approx(sum(known) / len(known))
        assert arm["metrics"]["bleu"]["n"] == len(known)


def test_terminal_table_shows_the_verdict_and_each_arms_primary_score(
    state: StateDir, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, out, _ = _report(state, tmp_path / "report", capsys)
    summary = read_summary(state)
    lines = {
        arm["name"]: next(
            ln for ln in out.splitlines() if re.search(rf"│ \d+ │ {arm['name']}( ★)? +│", ln)
        )
        for arm in summary["arms"]
    }
    # The fixture's best arm leads the runner-up by less than its noise over 12 questions.
    assert summary["winner"] is None
    assert not any("★" in line for line in lines.values())
    assert "no significant winner: lora-rag vs base-rag on rougeL" in " ".join(out.split())
    for name, line in lines.items():
        stat = next(a for a in summary["arms"] if a["name"] == name)["metrics"]["rougeL"]
        assert f"{stat['mean']:.3f}" in line
    assert f"ranked by {summary['primaryMetric']}" in out
    assert summary["retrievalBackend"] == "embedded"
    assert "RAG context retrieved from the in-process vector store (no Weaviate)" in out


def test_report_writes_the_three_charts_as_pngs(
    state: StateDir, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _report(state, tmp_path / "report", capsys)
    for chart in ("metrics", "deltas", "loss"):
        width, height = _png_size(tmp_path / "report" / f"hr-compare-{chart}.png")
        assert width >= 600 and height >= 400


def test_loss_curve_points_are_the_logged_losses(state: StateDir) -> None:
    (item,) = local_inputs(state)
    (curve,) = item.curves
    history = read_log_history(state)
    assert curve.label == "hr-lora"
    assert curve.train == [(e["step"], e["loss"]) for e in history if "loss" in e]
    assert curve.eval == [(e["step"], e["eval_loss"]) for e in history if "eval_loss" in e]


def test_deltas_compare_each_tuned_arm_with_the_base_arm_of_the_same_rag_setting(
    state: StateDir,
) -> None:
    data = read_summary(state)
    title, sets = tuning_deltas(parse_summary(data, "hr-compare"))
    means = {a["name"]: {m: s["mean"] for m, s in a["metrics"].items()} for a in data["arms"]}
    assert title.startswith("Fine-tuned minus base")
    assert {s.label for s in sets} == {"lora - base", "lora-rag - base-rag"}
    rag = next(s for s in sets if s.label == "lora-rag - base-rag")
    assert rag.deltas["rougeL"] == pytest.approx(
        means["lora-rag"]["rougeL"] - means["base-rag"]["rougeL"]
    )


def test_html_page_is_self_contained(
    state: StateDir, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _report(state, tmp_path / "report", capsys)
    page = (tmp_path / "report" / "report.html").read_text()
    assert "http://" not in page and "https://" not in page and "//cdn" not in page
    sources = re.findall(r'src="([^"]*)"', page)
    assert len(sources) == 3 and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "<link" not in page and "<script" not in page


def test_an_unfinished_evaluation_is_reported_with_its_phase(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = build_quickstart_state(tmp_path / "state", evaluation_phase=Phase.FAILED)
    code, out, _ = _report(state, tmp_path / "report", capsys)
    assert code == 0
    assert "Evaluation/hr-compare is Failed: showing the summary it last wrote" in out


def test_report_before_any_run_says_what_to_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _report(StateDir(tmp_path / "empty"), tmp_path / "report", capsys)
    assert code == 2
    assert "no Evaluation has run" in err and "llmft run -f" in err


def test_report_names_the_evaluations_there_when_asked_for_another(
    state: StateDir, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _report(state, tmp_path / "report", capsys, "--evaluation", "nope")
    assert code == 2
    assert "'nope'" in err and "hr-compare" in err


def test_a_broken_summary_is_named_with_its_field(
    state: StateDir, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = state.read_spec("Evaluation/hr-compare") or {}
    path = Path(spec["spec"]["output"]["path"]) / "summary.json"
    path.write_text(path.read_text().replace('"primaryMetric": "rougeL"', '"primaryMetric": 3'))
    code, _, err = _report(state, tmp_path / "report", capsys, "--evaluation", "hr-compare")
    assert code == 2
    assert "primaryMetric" in err and str(path) in err


def test_a_cluster_status_holding_the_summary_reports_intervals(tmp_path: Path) -> None:
    summary = read_summary(build_quickstart_state(tmp_path / "state"))
    status = {"phase": "Succeeded", "metrics": status_metrics(summary), "summary": summary}

    assert status_pruned_paths("Evaluation", status) == []  # the CRD keeps all of it
    parsed = summary_from_status("hr-compare", status, {})

    assert parsed.source.endswith("status.summary")
    assert parsed.ranking == summary["ranking"]
    stat = parsed.arms[0].metrics["rougeL"]
    assert stat.ci_low is not None and stat.ci_low <= (stat.mean or 0) <= (stat.ci_high or 0)
