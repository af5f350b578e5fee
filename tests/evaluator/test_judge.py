"""The RAGAS judge path: exact scores from a scripted judge, missing (never zero) on unusable
output, endpoint and key errors that name the field, and the real Ollama serving SmolLM2."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from evaluator.standin_judge import RELEVANCY_QUESTION, StandInJudge
from llmft.api.common import SecretKeyRef
from llmft.api.evaluation import Judge
from llmft.api.layout import ENV_JUDGE_API_KEY
from llmft.models import MINILM
from llmft.retrieval import Embedder
from llmft.workloads.entry import WorkloadError
from llmft.workloads.evaluator.judge import (
    JudgeInput,
    JudgeUnreachable,
    RagasJudge,
    check_judge,
    judge_budget,
)

ALL = ["accuracy", "relevance", "faithfulness"]
CONTEXT = ("Full-time employees receive 27 days of annual leave plus 8 public holidays.",)


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder(MINILM)


@pytest.fixture
def standin() -> Iterator[StandInJudge]:
    server = StandInJudge().start()
    yield server
    server.stop()


def _cfg(url: str, **kw: object) -> Judge:
    return Judge.model_validate(
        {"provider": "openai", "endpoint": url + "/v1", "model": "stand-in", "maxRetries": 1, **kw}
    )


def _item(answer: str, contexts: tuple[str, ...] = CONTEXT) -> JudgeInput:
    return JudgeInput(RELEVANCY_QUESTION, answer, "27 days plus 8 public holidays.", contexts)


def test_scripted_judge_scores_flow_through_exactly(standin, embedder) -> None:  # type: ignore[no-untyped-def]
    judge = RagasJudge(_cfg(standin.url), ALL, embedder)
    [result] = judge.score([_item("You get 27 days.")])
    # accuracy: ratings 4 and 2 -> (1 + 0.5) / 2; relevance: the judge's question is the
    # asked question, cosine 1; faithfulness: 3 of 4 statements supported.
    assert result.scores["accuracy"] == pytest.approx(0.75)
    assert result.scores["relevance"] == pytest.approx(1.0, abs=1e-5)
    assert result.scores["faithfulness"] == pytest.approx(0.75)
    assert result.errors == {}


def test_unusable_output_is_retried_then_missing_not_zero(standin, embedder) -> None:  # type: ignore[no-untyped-def]
    judge = RagasJudge(_cfg(standin.url, maxRetries=2), ALL, embedder)
    [result] = judge.score([_item("UNUSABLE reply")])
    assert result.scores == {"accuracy": None, "relevance": None, "faithfulness": None}
    assert set(result.errors) == set(ALL)
    assert "AnswerRelevanceOutput" in result.errors["relevance"]
    # 3 attempts each; accuracy asks its two judge prompts 3 times each.
    assert standin.calls[("AnswerAccuracyOutput", "UNUSABLE")] == 6
    assert standin.calls[("AnswerRelevanceOutput", "UNUSABLE")] == 3
    assert standin.calls[("StatementGeneratorOutput", "UNUSABLE")] == 3


def test_a_retry_recovers_from_one_bad_reply(standin, embedder) -> None:  # type: ignore[no-untyped-def]
    judge = RagasJudge(_cfg(standin.url), ALL, embedder)
    [result] = judge.score([_item("FLAKY reply")])
    assert result.scores["accuracy"] == pytest.approx(0.75)
    assert result.scores["relevance"] == pytest.approx(1.0, abs=1e-5)
    assert result.scores["faithfulness"] == pytest.approx(0.75)


def test_a_noncommittal_answer_is_a_real_zero_and_no_context_skips_faithfulness(  # type: ignore[no-untyped-def]
    standin, embedder
) -> None:
    judge = RagasJudge(_cfg(standin.url), ALL, embedder)
    [result] = judge.score([_item("EVASIVE: I cannot say.", contexts=())])
    assert result.scores["relevance"] == 0.0
    assert "faithfulness" not in result.scores
    assert result.errors == {}


def test_an_empty_answer_scores_zero_without_asking_the_judge(standin, embedder) -> None:  # type: ignore[no-untyped-def]
    judge = RagasJudge(_cfg(standin.url), ALL, embedder)
    [result] = judge.score([_item("  ")])
    assert result.scores == {"accuracy": 0.0, "relevance": 0.0, "faithfulness": None}
    assert sum(standin.calls.values()) == 0


def test_results_keep_input_order(standin, embedder) -> None:  # type: ignore[no-untyped-def]
    judge = RagasJudge(_cfg(standin.url, maxRetries=0), ["accuracy"], embedder)
    done: list[int] = []
    results = judge.score([_item("ok"), _item("UNUSABLE"), _item("ok too")], on_item=done.append)
    assert [r.scores["accuracy"] for r in results] == [0.75, None, 0.75]
    assert sorted(done) == [1, 2, 3]


def test_api_key_comes_from_the_secret_env_var(monkeypatch, embedder) -> None:  # type: ignore[no-untyped-def]
    server = StandInJudge(api_key="s3cret").start()
    try:
        ref = SecretKeyRef(name="judge", key="apiKey").to_wire()
        cfg = _cfg(server.url, apiKeySecretRef=ref)
        monkeypatch.delenv(ENV_JUDGE_API_KEY, raising=False)
        with pytest.raises(WorkloadError, match=r"spec\.judge\.apiKeySecretRef"):
            check_judge(cfg)
        monkeypatch.setenv(ENV_JUDGE_API_KEY, "wrong")
        with pytest.raises(WorkloadError, match="refused the key"):
            check_judge(cfg)
        monkeypatch.setenv(ENV_JUDGE_API_KEY, "s3cret")
        check_judge(cfg)
        [result] = RagasJudge(cfg, ["accuracy"], embedder).score([_item("27 days")])
        assert result.scores["accuracy"] == pytest.approx(0.75)
    finally:
        server.stop()


def test_unreachable_endpoint_names_the_field() -> None:
    cfg = Judge(provider="openai", endpoint="http://127.0.0.1:9/v1", model="x")
    with pytest.raises(WorkloadError, match=r"spec\.judge\.endpoint"):
        check_judge(cfg, timeout=2)


def test_ollama_model_missing_names_the_field(standin) -> None:  # type: ignore[no-untyped-def]
    cfg = Judge(provider="ollama", endpoint=standin.url, model="llama3:8b")
    with pytest.raises(WorkloadError, match=r"spec\.judge\.model"):
        check_judge(cfg)
    check_judge(Judge(provider="ollama", endpoint=standin.url, model="stand-in"))


@pytest.mark.ollama
@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_real_ollama_judge_completes_with_scores_in_range_or_missing(  # type: ignore[no-untyped-def]
    ollama_server, embedder
) -> None:
    """SmolLM2-135M is a poor judge (it often echoes the JSON schema instead of filling it in):
    whatever it says, each score is in 0..1 or missing with a reason. One item, one attempt per
    call, short replies: each call takes a minute or two on a busy CPU."""
    cfg = Judge.model_validate(
        {
            "provider": "ollama",
            "endpoint": ollama_server.url,
            "model": ollama_server.model,
            "maxRetries": 0,
            "maxTokens": 64,
            "relevancyQuestions": 1,
            "timeoutSeconds": 300,
            "concurrency": 1,  # parallel requests on a CPU Ollama only share the same cores
        }
    )
    check_judge(cfg)
    item = _item("Full-time employees get 27 days of annual leave plus 8 public holidays.")
    [result] = RagasJudge(cfg, ["accuracy", "relevance"], embedder).score([item])
    assert set(result.scores) == {"accuracy", "relevance"}
    for key, value in result.scores.items():
        assert value is None or 0.0 <= value <= 1.0
        assert (value is None) == (key in result.errors)


def test_a_judge_that_stops_answering_fails_at_once_naming_its_address(embedder) -> None:  # type: ignore[no-untyped-def]
    server = StandInJudge().start()
    cfg = _cfg(server.url)
    judge = RagasJudge(cfg, ["accuracy", "relevance"], embedder)
    check_judge(cfg)
    server.stop()  # the endpoint dies after the start-up check, before any answer is judged
    with pytest.raises(JudgeUnreachable) as err:
        judge.score([_item(f"You get {n} days.") for n in range(20)])
    assert "spec.judge.endpoint" in str(err.value) and server.url in str(err.value)


def _record(**scores: float | None) -> dict[str, object]:
    errors = {k: "ValidationError: bad json" for k, v in scores.items() if v is None}
    return {"scores": {"rougeL": 0.5, **scores}, "judgeErrors": errors}


def test_the_judge_budget_marks_too_many_missing_scores_as_degraded() -> None:
    records = [_record(accuracy=0.5, relevance=None)] * 3 + [_record(accuracy=0.7, relevance=0.9)]
    budget = judge_budget(records, max_missing_share=0.25)
    assert (budget["judgeScores"], budget["judgeMissing"]) == (8, 3)
    assert budget["judgeMissingShare"] == pytest.approx(0.375)
    assert budget["degraded"].startswith("JudgeFailures: 3 of 8 judge scores are missing")
    assert "spec.judge.maxMissingShare" in budget["degraded"]
    assert "degraded" not in judge_budget(records, max_missing_share=0.4)


def test_an_empty_answer_without_statements_is_not_a_judge_failure() -> None:
    empty = {
        "scores": {"faithfulness": None},
        "judgeErrors": {"faithfulness": "empty answer: no statements"},
    }
    budget = judge_budget([empty, _record(faithfulness=0.5)], max_missing_share=0.0)
    assert (budget["judgeScores"], budget["judgeMissing"]) == (1, 0)
    assert "degraded" not in budget
