"""The shared `python -m llmft.workloads.X --spec FILE` entrypoint: parse, run, report, exit."""

from __future__ import annotations

import argparse
import errno
import json
import logging
import shutil
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from llmft.api.resource import ManifestError, Resource, parse_resource
from llmft.reporting import Reporter, reporter_from_env
from llmft.workloads.stopping import STOP, Stopped


class WorkloadError(Exception):
    """Bad input or an environment the workload cannot run in; the message says what to fix."""


def load_spec_file(path: Path, kind: str) -> Resource[Any]:
    """Read a resolved spec (the manifest with references turned into paths) from JSON or YAML."""
    if not path.exists():
        raise WorkloadError(f"--spec {path}: no such file")
    text = path.read_text()
    obj = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    res = parse_resource(obj, path)
    if res.kind != kind:
        raise WorkloadError(f"--spec {path}: expected a {kind}, got a {res.kind}")
    return res


def configure_logging(verbose: bool = False) -> None:
    """Log records as JSON lines on stderr (time, level, logger, msg), for log collectors."""
    from pythonjsonlogger.json import JsonFormatter

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter(
            "{asctime}{levelname}{name}{message}",
            style="{",
            rename_fields={
                "asctime": "time",
                "levelname": "level",
                "name": "logger",
                "message": "msg",
            },
        )
    )
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler])


def run_workload(
    kind: str,
    description: str,
    main: Callable[[Resource[Any], Reporter], None],
    argv: list[str] | None = None,
) -> int:
    """Parse `--spec`, build the reporter, run `main`; on failure a one-line error and exit 1."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--spec", type=Path, required=True, help="resolved spec (JSON or YAML)")
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    # SIGINT (the runner on Ctrl-C) and SIGTERM (the kubelet) mean "save and stop", even when
    # this process was started with SIGINT ignored (a background job inherits that).
    STOP.install()
    try:
        return _run(kind, main, args.spec)
    finally:
        STOP.restore()


def _run(kind: str, main: Callable[[Resource[Any], Reporter], None], spec: Path) -> int:
    try:
        res = load_spec_file(spec, kind)
    except (WorkloadError, ManifestError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    output = getattr(res.spec, "output", None)
    out_dir = Path(output.path) if output is not None and output.path else None
    reporter = reporter_from_env(kind, res.metadata.name, res.metadata.namespace, out_dir)
    try:
        main(res, reporter)
    except WorkloadError as err:
        _fail(reporter, str(err))
        return 1
    except Stopped as stop:
        message = str(stop)
        print(f"error: {message}", file=sys.stderr)
        reporter.stopped(message)
        return stop.exit_code
    except KeyboardInterrupt:
        _fail(reporter, "interrupted")
        return 130
    except Exception as err:  # unexpected: keep the traceback in the log, a line in status
        traceback.print_exc()
        if disk_full(err, out_dir):
            _fail(reporter, disk_full_message(err, out_dir))
            return 1
        _fail(reporter, f"{type(err).__name__}: {err}")
        return 1
    return 0


DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
# How libraries that write outside Python's file objects say it (torch's zip writer, safetensors).
DISK_FULL_MARKERS = ("No space left on device", "Disk quota exceeded", "StorageFull")
LOW_SPACE_BYTES = 4 << 20


def disk_full(err: BaseException, out_dir: Path | None) -> bool:
    """Whether `err` came from a full volume: ENOSPC anywhere in its chain, or a write error
    while the output directory's volume has (almost) no space left."""
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in DISK_FULL_ERRNOS:
            return True
        if any(marker in str(seen) for marker in DISK_FULL_MARKERS):
            return True
        seen = seen.__cause__ or seen.__context__
    if out_dir is None:
        return False
    try:
        return shutil.disk_usage(out_dir).free < LOW_SPACE_BYTES
    except OSError:
        return False


def disk_full_message(err: BaseException, out_dir: Path | None) -> str:
    detail = (str(err).strip().splitlines() or [""])[0][:300]
    where = f" under {out_dir}" if out_dir is not None else ""
    return (
        f"no space left on the artefact volume{where} ({type(err).__name__}: {detail}); free "
        "space on it or give the resource a larger volume (spec.output.pvc), then run it again: "
        "complete checkpoints and finished outputs are kept, a partly written checkpoint is "
        "passed over"
    )


def _fail(reporter: Reporter, message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    reporter.failure(message)
