"""Build the Lambda zip for Lambda's platform: replicator and what its handler imports, only.

    python deploy/package.py --out dist/replicator-lambda.zip [--arch arm64] [--config FILE]

`make package [ARCH=arm64] [CONFIG=replicator.yaml]` runs it. pip is told the function's
platform (manylinux2014 for the architecture, CPython of the template's runtime, wheels only),
so a Mac, an ARM laptop or another Python builds the same zip, and the compiled modules match
the function rather than the machine that built it. Versions come from constraints.txt, the
project's one lock. The source tree is copied in as it is (without the demo subpackage); the
config, when given, sits at the zip's root as ``replicator.yaml`` (deploy/cloudformation/
lambda.yaml points REPLICATOR_CONFIG at it). The Lambda runtime's own botocore is not relied on:
the locked one (errors, credential providers, endpoint rules) travels in the zip.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "deploy" / "cloudformation" / "lambda.yaml"
LOCK = ROOT / "constraints.txt"
LIMIT_BYTES = 50 * 1024 * 1024  # Lambda's limit for a zip uploaded directly
PLATFORMS = {"x86_64": "manylinux2014_x86_64", "arm64": "manylinux2014_aarch64"}
# The distributions `replicator.lambda_mode.handler` imports (pip adds theirs). The CLI's
# typer/rich, the web server's aiohttp and the Prometheus exporter stay out: the handler
# never imports them. tests/functional/test_lambda_package.py checks this list against what
# a fresh interpreter imports while it handles a batch.
HANDLER_REQUIREMENTS = (
    "aws-lambda-powertools",
    "botocore",  # the runtime has one too; ours is the locked version
    "opentelemetry-api",  # the metric types; the SDK and its exporter stay out
    "pydantic",
    "PyYAML",
    "yarl",
)
# Fixed timestamps make two builds of the same tree byte-identical.
EPOCH = (1980, 1, 1, 0, 0, 0)


def runtime_python() -> str:
    """The template's ``Runtime: python3.X`` as ``3.X``: pip builds for that Python."""
    found = re.search(r"^\s*Runtime:\s*python(3\.\d+)\s*$", TEMPLATE.read_text(), re.MULTILINE)
    if found is None:
        raise SystemExit(f"package: no 'Runtime: python3.X' in {TEMPLATE}")
    return found.group(1)


def install(build: Path, arch: str) -> None:
    shutil.copytree(
        ROOT / "replicator",
        build / "replicator",
        ignore=shutil.ignore_patterns("__pycache__", "demo"),
    )
    subprocess.run(
        [
            sys.executable, "-m", "pip", "install", "--quiet", "--no-compile",
            "--disable-pip-version-check", "--target", str(build),
            "--platform", PLATFORMS[arch], "--implementation", "cp",
            "--python-version", runtime_python(), "--only-binary=:all:",
            "--constraint", str(LOCK), *HANDLER_REQUIREMENTS,
        ],
        check=True,
    )  # fmt: skip
    shutil.rmtree(build / "bin", ignore_errors=True)  # console scripts: Lambda runs none
    for cache in list(build.rglob("__pycache__")):
        shutil.rmtree(cache)


def write_zip(build: Path, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for path in sorted(p for p in build.rglob("*") if p.is_file()):
            info = zipfile.ZipInfo(path.relative_to(build).as_posix(), EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, path.read_bytes())


def package(out: Path, config: Path | None, arch: str = "x86_64") -> int:
    """Build ``out`` for ``arch``; return its size in bytes."""
    with tempfile.TemporaryDirectory(prefix="replicator-lambda-") as tmp:
        build = Path(tmp)
        install(build, arch)
        if config is not None:
            shutil.copyfile(config, build / "replicator.yaml")
        write_zip(build, out)
    size = out.stat().st_size
    if size >= LIMIT_BYTES:
        raise SystemExit(f"package: {out} is {size / 2**20:.1f} MB, over Lambda's 50 MB zip limit")
    return size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist" / "replicator-lambda.zip")
    parser.add_argument("--arch", choices=sorted(PLATFORMS), default="x86_64")
    parser.add_argument("--config", type=Path, help="replicator.yaml to put in the zip")
    args = parser.parse_args()
    if args.config is not None and not args.config.is_file():
        raise SystemExit(
            f"package: --config {args.config}: file not found; pass your replicator.yaml"
        )
    size = package(args.out, args.config, args.arch)
    print(
        f"{args.out}: {args.arch}, {size / 2**20:.1f} MB zipped ({size} bytes; "
        "Lambda's limit is 50 MB)"
    )


if __name__ == "__main__":
    main()
