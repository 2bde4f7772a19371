"""Build the Lambda zip: replicator, its runtime dependencies and Powertools, nothing else.

    python deploy/package.py --out dist/replicator-lambda.zip [--config replicator.yaml]

`make package` runs it. The zip holds no demo subpackage, no moto and no test tooling; the
config, when given, sits at the zip's root as ``replicator.yaml`` (deploy/cloudformation/
lambda.yaml points REPLICATOR_CONFIG at it). The Lambda runtime's own boto3 is not relied on:
the boto3 and botocore installed here (errors and value types) travel in the zip.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIMIT_BYTES = 50 * 1024 * 1024  # Lambda's limit for a zip uploaded directly
# Top-level names that must never ship: the demo and test tooling.
FORBIDDEN = ("moto", "pytest", "_pytest", "hypothesis", "playwright", "mypy", "ruff", "cfnlint")
# Fixed timestamps make two builds of the same tree byte-identical.
EPOCH = (1980, 1, 1, 0, 0, 0)


def install(stage: Path, build: Path) -> None:
    """The project with its `lambda` extra, as Lambda's x86_64 Python 3.11 will import it.

    It is built from a copy without the demo subpackage, so the checkout gets no build/
    directory and the installed file list names only what ships.
    """
    for name in ("pyproject.toml", "README.md"):
        shutil.copyfile(ROOT / name, stage / name)
    shutil.copytree(
        ROOT / "replicator", stage / "replicator", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.rmtree(stage / "replicator" / "demo", ignore_errors=True)
    subprocess.run(
        [
            sys.executable, "-m", "pip", "install", "--quiet", "--no-compile",
            "--disable-pip-version-check", "--target", str(build), f"{stage}[lambda]",
        ],
        check=True,
    )  # fmt: skip
    shutil.rmtree(build / "bin", ignore_errors=True)  # console scripts: Lambda runs none
    for cache in list(build.rglob("__pycache__")):
        shutil.rmtree(cache)


def forbidden(build: Path) -> list[str]:
    return sorted(p.name for p in build.iterdir() if p.name.split("-")[0].lower() in FORBIDDEN)


def write_zip(build: Path, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for path in sorted(p for p in build.rglob("*") if p.is_file()):
            info = zipfile.ZipInfo(path.relative_to(build).as_posix(), EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, path.read_bytes())


def package(out: Path, config: Path | None) -> int:
    """Build ``out``; return its size in bytes."""
    with tempfile.TemporaryDirectory(prefix="replicator-lambda-") as tmp:
        stage, build = Path(tmp) / "src", Path(tmp) / "build"
        stage.mkdir()
        install(stage, build)
        if bad := forbidden(build):
            raise SystemExit(
                f"package: {', '.join(bad)} would ship; remove it from the runtime dependencies"
            )
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
    parser.add_argument("--config", type=Path, help="replicator.yaml to put in the zip")
    args = parser.parse_args()
    if args.config is not None and not args.config.is_file():
        raise SystemExit(
            f"package: --config {args.config}: file not found; pass your replicator.yaml"
        )
    size = package(args.out, args.config)
    print(f"{args.out}: {size / 2**20:.1f} MB zipped ({size} bytes; Lambda's limit is 50 MB)")


if __name__ == "__main__":
    main()
