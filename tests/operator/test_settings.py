"""The operator's LLMFT_* settings: read from the environment, defaults where unset, and a
refused value named by its variable."""

from __future__ import annotations

import pytest

from llmft_operator.settings import OperatorSettings, SettingsError


def test_variables_fill_the_settings_and_empty_ones_keep_defaults() -> None:
    settings = OperatorSettings.from_env(
        {
            "LLMFT_IMAGE_TRAINER": "example.org/trainer:1",
            "LLMFT_IMAGE_PULL_SECRETS": "regcred, other ,",
            "LLMFT_JOB_TTL_SECONDS": " 60 ",
            "LLMFT_ARTIFACT_MOUNT": "/data/",
            "LLMFT_ALLOWED_ENDPOINTS": "https://judge.example.org",
            "LLMFT_OLLAMA_HOST": "",
        }
    )

    assert settings.image_for("FineTuneJob") == "example.org/trainer:1"
    assert settings.image_for("Evaluation").startswith("ghcr.io/llmft/evaluator:")
    assert settings.image_pull_secrets == ("regcred", "other")
    assert settings.job_ttl_seconds == 60
    assert settings.artifact_mount == "/data"
    assert settings.allowed_endpoints == ("https://judge.example.org",)
    assert settings.ollama_host is None
    assert OperatorSettings.from_env({}) == OperatorSettings()


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("LLMFT_IMAGE_PULL_POLICY", "Sometimes"),
        ("LLMFT_JOB_TTL_SECONDS", "a day"),
        ("LLMFT_METRICS_PORT", "-1"),
        ("LLMFT_ARTIFACT_MOUNT", "artifacts"),
        ("LLMFT_ALLOWED_ENDPOINTS", "ftp://example.org"),
    ],
)
def test_a_value_the_operator_cannot_use_is_refused_naming_its_variable(
    variable: str, value: str
) -> None:
    with pytest.raises(SettingsError, match=f"^{variable}='{value}': "):
        OperatorSettings.from_env({variable: value})


def test_constructed_settings_ignore_the_process_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LLMFT_NAMESPACE", "elsewhere")

    assert OperatorSettings().namespace is None
    assert OperatorSettings.from_env().namespace == "elsewhere"
