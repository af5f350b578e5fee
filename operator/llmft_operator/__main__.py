"""`python -m llmft_operator`: run the operator with its settings from LLMFT_* variables."""

from __future__ import annotations

import argparse
import sys

from llmft_operator.settings import OperatorSettings, SettingsError, reconcile_interval

LOG_FORMATS = ("json", "plain", "full")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m llmft_operator",
        description=(
            "Reconcile DatasetGeneration, FineTuneJob and Evaluation resources (llmft.io) into "
            "GPU Jobs. Settings come from LLMFT_* environment variables (the Helm chart's "
            "ConfigMap): images, GPU product, artefact PVC, workload service account, Kueue queue."
        ),
    )
    parser.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        help="watch only this namespace (repeatable; default: LLMFT_NAMESPACE, else all)",
    )
    parser.add_argument(
        "-A",
        "--all-namespaces",
        action="store_true",
        help="watch every namespace, even when LLMFT_NAMESPACE is set",
    )
    parser.add_argument(
        "--liveness",
        metavar="URL",
        default=None,
        help="serve kopf's health endpoint, e.g. http://0.0.0.0:8080/healthz",
    )
    parser.add_argument(
        "--log-format", choices=LOG_FORMATS, default="json", help="log line format (default json)"
    )
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    parser.add_argument("--quiet", action="store_true", help="warnings and errors only")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = OperatorSettings.from_env()
        reconcile_interval()
    except SettingsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    namespaces: list[str] = list(args.namespace)
    if not namespaces and settings.namespace and not args.all_namespaces:
        namespaces = [ns.strip() for ns in settings.namespace.split(",") if ns.strip()]

    import kopf

    import llmft_operator.handlers  # noqa: F401  (registers the handlers)

    kopf.configure(
        verbose=args.verbose,
        quiet=args.quiet,
        log_format={
            "json": kopf.LogFormat.JSON,
            "plain": kopf.LogFormat.PLAIN,
            "full": kopf.LogFormat.FULL,
        }[args.log_format],
    )
    # One operator at a time (the chart's Deployment uses the Recreate strategy): no peering.
    kopf.run(
        standalone=True,
        clusterwide=not namespaces,
        namespaces=namespaces,
        liveness_endpoint=args.liveness,
        memo=kopf.Memo(namespaced=bool(namespaces)),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
