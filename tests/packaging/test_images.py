"""The four images match the Python package: entrypoints exist, extras cover what the code imports.

images/Dockerfile is checked as text here (hadolint plus the rules below) and against the package
it installs; the `cluster` tier builds it and runs the images (tests/cluster).
"""

from __future__ import annotations

import importlib.metadata as md
import json
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
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
    ("trainer", "liger_kernel"): "speed.liger_model_types runs only after "
    "resolve_fused_kernels found a GPU and liger-kernel installed (an optional GPU add-on)",
}
ML_STACK = {"torch", "transformers", "peft", "trl", "bitsandbytes", "accelerate", "datasets"}

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


DOCKERFILE = IMAGES_DIR / "Dockerfile"


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


@dataclass
class Stage:
    name: str
    base: str  # another stage's name, or the ${ARG} naming a registry image
    body: list[tuple[str, str]]


def stages() -> dict[str, Stage]:
    """The Dockerfile's build stages by name."""
    found: dict[str, Stage] = {}
    current: Stage | None = None
    for word, args in instructions(DOCKERFILE.read_text()):
        if word == "FROM":
            base, _, name = args.partition(" AS ")
            assert name, f"unnamed stage FROM {args}: every stage is named"
            current = found[name] = Stage(name, base, [])
        elif current is not None:
            current.body.append((word, args))
    return found


def lineage(image: str) -> list[Stage]:
    """The stages an image's final stage builds on, root first, ending with the image's own."""
    all_stages = stages()
    chain = [all_stages[image]]
    while chain[-1].base in all_stages:
        chain.append(all_stages[chain[-1].base])
    return chain[::-1]


def global_args() -> dict[str, str]:
    text = DOCKERFILE.read_text().split("\nFROM ", 1)[0]
    return {k: v.strip('"') for k, v in re.findall(r"^ARG (\w+)=(.+)$", text, re.M)}


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


def test_dockerfile_passes_hadolint(hadolint: str) -> None:
    result = subprocess.run(
        [hadolint, "--no-color", "--config", str(IMAGES_DIR / ".hadolint.yaml"), str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_one_dockerfile_builds_the_four_images() -> None:
    assert sorted(p.name for p in IMAGES_DIR.glob("*/Dockerfile")) == []
    assert set(IMAGES) <= set(stages())


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_image_starts_from_a_pinned_base(image: str) -> None:
    root = lineage(image)[0].base
    arg = re.fullmatch(r"\$\{(\w+_IMAGE)\}", root)
    assert arg, f"{image}: the first stage starts FROM {root}, not a base build argument"
    base = global_args()[arg.group(1)]
    name, _, tag = base.partition(":")
    # A full version in the tag (python 3.12.11, CUDA 12.6.3), never a moving one like "latest".
    assert re.search(r"\d+\.\d+\.\d+", tag), f"{image}: base {base} is not pinned to a version"
    expected = "nvidia/cuda" if image in ("trainer", "evaluator") else "python"
    assert name == expected
    if expected == "nvidia/cuda":
        assert "-runtime-" in tag, f"{image}: the GPU images use a CUDA *runtime* base, got {tag}"


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_image_runs_as_a_numeric_non_root_user_without_build_tools(image: str) -> None:
    chain = lineage(image)
    users = [args for word, args in chain[-1].body if word == "USER"]
    assert users, f"{image}: no USER in the final stage"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"{image}: USER {users[-1]} is not numeric non-root"
    # The chart's and the Job builder's securityContext run as uid 1000.
    assert uid == "1000"
    runs = " ".join(args for stage in chain for word, args in stage.body if word == "RUN")
    for tool in ("gcc", "g++", "make", "build-essential", "-dev", "-venv", "python3-pip", "git"):
        assert tool not in runs, f"{image}: a stage of the image installs {tool!r}"
    # What another stage built comes in by COPY: only the wheel, and the torch environment.
    for stage in chain:
        for word, args in stage.body:
            if word == "COPY":
                assert args.startswith("--from="), f"{image}: {stage.name} copies sources: {args}"


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_image_installs_its_extra_then_the_wheel_without_pip(image: str) -> None:
    extra, _ = IMAGES[image]
    chain = lineage(image)
    installs = [args for word, args in chain[-1].body if word == "RUN" and "pip" in args]
    # The extra's requirements (from pyproject.toml alone, cached while sources change), then
    # the llmft wheel without dependencies: together, `pip install llmft[extra]`.
    assert len(installs) == 2, installs
    assert f"install --requirement /tmp/dist/{extra}.txt" in installs[0]
    assert "install --no-deps /tmp/dist/llmft-*.whl" in installs[1]
    # pip runs from its wheel into a venv made without it, and the wheels leave in that step.
    runs = [args for stage in chain for word, args in stage.body if word == "RUN" and "pip" in args]
    for run in runs:
        if "venv" in run:
            assert "--without-pip" in run, run
        else:
            assert '/opt/llmft/bin/python "$(echo /tmp/dist/pip-*.whl)/pip" install' in run, run
            assert re.search(r"&& rm -rf /tmp/dist$", run), run


def test_requirements_stage_writes_every_image_extra() -> None:
    runs = " ".join(a for w, a in stages()["requirements"].body if w == "RUN")
    written = re.search(r"for x in \(([^)]*)\)", runs)
    assert written, runs
    assert sorted(x.strip(" '") for x in written.group(1).split(",")) == sorted(
        extra for extra, _ in IMAGES.values()
    )


def test_wheel_stage_copies_what_exists_in_the_repository() -> None:
    for word, args in stages()["wheel"].body + stages()["requirements"].body:
        if word == "COPY":
            *sources, _dest = args.split()
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source}: not in the repository"


def test_shared_torch_layer_has_the_extras_torch_requirement() -> None:
    torch = global_args()["TORCH_REQUIREMENT"]
    for extra in ("trainer", "evaluator"):
        reqs = PYPROJECT["project"]["optional-dependencies"][extra]
        assert torch in reqs, f"{extra} asks for {[r for r in reqs if 'torch' in r]}, not {torch}"
    assert [s.name for s in lineage("trainer")][:-1] == [s.name for s in lineage("evaluator")][:-1]


def test_gpu_images_share_a_stage_with_what_both_extras_require() -> None:
    trainer, evaluator = lineage("trainer"), lineage("evaluator")
    assert trainer[-2].name == evaluator[-2].name == "gpu-workload"
    installs = [a for w, a in trainer[-2].body if w == "RUN" and "pip" in a]
    assert len(installs) == 1 and "install --requirement /tmp/dist/gpu-shared.txt" in installs[0]
    runs = " ".join(a for w, a in stages()["requirements"].body if w == "RUN")
    assert "/requirements/{n}.txt" in runs and "w('gpu-shared'," in runs


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_image_carries_the_oci_labels(image: str) -> None:
    own = lineage(image)[-1]
    labels = " ".join(args for word, args in own.body if word == "LABEL")
    for key in ("title", "description", "version", "revision", "created", "source", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels, f"{image}: no {key} label"
    assert f'org.opencontainers.image.title="llmft-{image}"' in labels
    assert 'org.opencontainers.image.version="${VERSION}"' in labels


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_entrypoint_is_python_dash_m_of_an_existing_module(image: str) -> None:
    _, module = IMAGES[image]
    entries = [args for word, args in lineage(image)[-1].body if word == "ENTRYPOINT"]
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

    users = [a for w, a in lineage(KINDS.workload(entry.kind).name)[-1].body if w == "USER"]
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
        assert argv[argv.index("--file") + 1] == str(DOCKERFILE)
        assert argv[argv.index("--target") + 1] == image
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
