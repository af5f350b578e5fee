"""The `llmft` command line: `run` manifests locally, `report` the comparison, `chat` with a tuned
model, `version`."""

from __future__ import annotations

import argparse
import os
import sys

from llmft import __version__
from llmft.api.common import API_VERSION

DEFAULT_STATE_DIR = os.environ.get("LLMFT_STATE_DIR", ".llmft")

EPILOG = """\
the flow:
  DatasetGeneration (documents -> Q/A pairs) -> FineTuneJob (LoRA/QLoRA adapter)
    -> Evaluation (base vs tuned, with and without RAG) -> llmft report

examples:
  llmft run -f examples/quickstart/          run the quickstart on this machine
  llmft report                               ranked table + charts from that run
  llmft report --cluster -n ml-team          the same from Evaluations on a cluster
  llmft chat ftj/hr-lora -q "..."            ask the tuned model a question

`llmft COMMAND --help` says more about each command.
"""

RUN_EPILOG = """\
examples:
  llmft run -f examples/quickstart/                      run (or resume) everything
  llmft run -f examples/quickstart/ --only ftj/hr-lora   one job and what it needs
  llmft run -f examples/quickstart/ --only eval/hr-compare --force
                                                         redo one evaluation from scratch

Ctrl-C stops the running workload after it saves its checkpoint; run the same command
again to resume. Each resource's status (as the operator would write it) is in
STATE_DIR/status/<Kind>/<name>.json, its log in STATE_DIR/logs/, its artefacts in
STATE_DIR/artifacts/.

An Experiment runs its trials one at a time (parallelTrials applies on a cluster), stops
those the median rule says fall behind, then evaluates the best; its trials and evaluation
are tracked in STATE_DIR/mlflow.db unless its spec names an MLflow server
(mlflow ui --backend-store-uri sqlite:///STATE_DIR/mlflow.db). --only exp/NAME runs one
Experiment and its dataset.

exit status: 0 all succeeded, 1 a workload failed, 2 bad manifests or usage,
130 interrupted.
"""

REPORT_EPILOG = """\
examples:
  llmft report                                 from ./.llmft (after `llmft run`)
  llmft report --state-dir /tmp/run1 --out /tmp/run1-report
  llmft report --cluster -n ml-team --evaluation hr-compare

Numbers come from each Evaluation's summary.json (locally) or its status.metrics (on a
cluster); nothing is recomputed. Writes <evaluation>-metrics.png, <evaluation>-deltas.png,
<evaluation>-loss.png and report.html (images inlined, no external links) into --out.
"""

DEFAULT_OLLAMA = "http://localhost:11434"

CHAT_EPILOG = """\
examples:
  llmft chat ftj/hr-lora -q "How many days of annual leave do I get?"
  llmft chat ftj/hr-lora --served            the job's Ollama model (spec.output.ollama)
  llmft chat ftj/hr-lora --no-rag            without retrieved context, whatever it trained with
  llmft chat --base-model hf://acme/base --adapter hf://acme/hr-adapter@v1 -q "..."
  llmft chat --ollama hr-lora --host http://ollama:11434 < questions.txt

One answer per question on stdout (greedy unless --temperature); what is asked goes to stderr.
exit status: 0 answered, 1 a model or repository could not be loaded, 2 bad usage.
"""


class HelpFormatter(argparse.HelpFormatter):
    """Wraps one-paragraph descriptions to the terminal; keeps multi-line epilogs as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llmft",
        description=(
            "LLM fine-tuning experiments as Kubernetes resources. Without a cluster, "
            "`llmft run` runs the same manifests on this machine."
        ),
        epilog=EPILOG,
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"llmft {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="run DatasetGeneration, FineTuneJob and Evaluation manifests on this machine",
        description=(
            "Run the manifests you would `kubectl apply`, on this machine (the CPU, or one local "
            "GPU for resources that ask for one), in dependency order, with the same workload "
            "code the operator runs in its pods. Manifests are validated as the CRD schemas "
            "validate them, before anything runs. Status and artefacts go to the state "
            "directory; run again to resume after Ctrl-C. Resources that succeeded with an "
            "unchanged spec are skipped; a changed spec reruns the resource and everything "
            "that depends on it."
        ),
        epilog=RUN_EPILOG,
        formatter_class=HelpFormatter,
    )
    run.add_argument(
        "-f",
        "--filename",
        required=True,
        metavar="DIR_OR_FILE",
        help="a YAML manifest, or a directory of them (*.yaml, *.yml)",
    )
    run.add_argument(
        "--state-dir",
        default=DEFAULT_STATE_DIR,
        metavar="DIR",
        help="where status, resolved specs, logs and artefacts go (default: %(default)s; "
        "env LLMFT_STATE_DIR)",
    )
    run.add_argument(
        "--only",
        metavar="KIND/NAME",
        help="run only this resource (and whatever it needs that is not up to date), "
        "e.g. ftj/my-job; kinds: DatasetGeneration|dsgen, FineTuneJob|ftj, Evaluation|eval",
    )
    run.add_argument(
        "--force",
        action="store_true",
        help="rerun from scratch even if up to date (all resources, or the --only one)",
    )
    run.add_argument(
        "-v", "--verbose", action="store_true", help="also print the workloads' own output"
    )

    report = sub.add_parser(
        "report",
        help="print the ranked comparison and write charts (PNG + one HTML page)",
        description=(
            "Print each Evaluation's arms ranked by the primary metric (mean ± CI, other "
            "metrics, delta vs the baseline arm, retrieval hit rate) and write charts: metric "
            "bars with CI error bars, fine-tuning loss curves, base-vs-tuned deltas, and one "
            "self-contained HTML page with all of them. Reads a local state directory by "
            "default, or Evaluations on a cluster with --cluster."
        ),
        epilog=REPORT_EPILOG,
        formatter_class=HelpFormatter,
    )
    report.add_argument(
        "--state-dir",
        default=None,
        metavar="DIR",
        help=f"state directory of `llmft run` (default: {DEFAULT_STATE_DIR})",
    )
    report.add_argument(
        "--cluster", action="store_true", help="read Evaluations through the Kubernetes API"
    )
    report.add_argument(
        "-n", "--namespace", help="namespace (with --cluster; default: the context's namespace)"
    )
    report.add_argument(
        "--kubeconfig",
        metavar="FILE",
        help="kubeconfig file (with --cluster; default: $KUBECONFIG or ~/.kube/config)",
    )
    report.add_argument("--evaluation", metavar="NAME", help="only this Evaluation")
    report.add_argument(
        "--out",
        metavar="DIR",
        help="where charts and report.html go (default: <state-dir>/report, or ./llmft-report "
        "with --cluster)",
    )

    chat = sub.add_parser(
        "chat",
        help="ask a tuned model questions, locally or through its Ollama model",
        description=(
            "Ask a fine-tuned model questions: a FineTuneJob that `llmft run` finished (its base "
            "model and adapter loaded with transformers, with retrieved context when it trained "
            "with RAG, exactly as its training prompts had it), its Ollama model (--served, when "
            "spec.output.ollama created one), any base model and adapter (local or hf://), or "
            "any Ollama model. Questions come from -q, else one per line on stdin."
        ),
        epilog=CHAT_EPILOG,
        formatter_class=HelpFormatter,
    )
    chat.add_argument(
        "target", nargs="?", metavar="ftj/NAME", help="a FineTuneJob run in --state-dir"
    )
    chat.add_argument(
        "-q", "--question", action="append", help="a question (repeatable); else read stdin"
    )
    chat.add_argument(
        "--served", action="store_true", help="with ftj/NAME: ask the job's Ollama model"
    )
    chat.add_argument(
        "--base-model", metavar="NAME", help="Hub id, hf:// URI, local path or pkg:<package>"
    )
    chat.add_argument("--gguf-file", metavar="FILE", help="GGUF file in --base-model")
    chat.add_argument("--adapter", metavar="DIR", help="with --base-model: adapter dir or hf://")
    chat.add_argument("--ollama", metavar="MODEL", help="ask this Ollama model")
    chat.add_argument(
        "--host", metavar="URL", help=f"Ollama server (default: the job's, or {DEFAULT_OLLAMA})"
    )
    chat.add_argument(
        "--rag",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="put retrieved passages in the prompt (default: as the job trained)",
    )
    chat.add_argument("--top-k", type=int, metavar="K", help="passages per question")
    chat.add_argument(
        "--dataset", metavar="DIR", help="dataset directory whose chunks.jsonl RAG searches"
    )
    chat.add_argument(
        "--max-new-tokens", type=int, default=256, metavar="N", help="answer length limit"
    )
    chat.add_argument("--temperature", type=float, default=0.0, help="0 (default) answers greedily")
    chat.add_argument(
        "--state-dir",
        default=DEFAULT_STATE_DIR,
        metavar="DIR",
        help="state directory of `llmft run` (default: %(default)s)",
    )

    sub.add_parser(
        "version", help="print the llmft version", description="Print the llmft version."
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command == "version":
        print(f"llmft {__version__} (API {API_VERSION}, Python {sys.version.split()[0]})")
        return 0
    if args.command == "run":
        from llmft.cli.run import run_command

        return run_command(args)
    if args.command == "chat":
        from llmft.cli.chat import chat_command

        return chat_command(args)
    if args.command == "report":
        if not args.cluster and (args.namespace or args.kubeconfig):
            parser.error("--namespace and --kubeconfig go with --cluster")
        if args.cluster and args.state_dir:
            parser.error("--state-dir and --cluster exclude each other")
        from llmft.cli.report import report_command

        return report_command(args)
    parser.error(f"unknown command {args.command}")
    return 2
