"""Where the engine's model files come from: check them against SOURCES.json and the wheel.

Usage (from the repository root)::

    python scripts/engine_models.py                    # shipped files vs SOURCES.json
    python scripts/engine_models.py --wheel mediapipe-0.10.21-....whl [--extract]
    python scripts/engine_models.py --download         # pip download the wheel, then check

With a wheel, each file is also compared with its member in the wheel and with the sha256
the wheel's own RECORD lists; ``--extract`` (re)writes the shipped files from the wheel.
Exits 1 when anything differs.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

MODELS = Path(__file__).resolve().parent.parent / "idphoto_async" / "engine" / "models"


def sources() -> dict[str, dict[str, str | int]]:
    """SOURCES.json's ``files``: shipped name -> wheel_path, sha256, bytes."""
    data = json.loads((MODELS / "SOURCES.json").read_text(encoding="utf-8"))
    files: dict[str, dict[str, str | int]] = data["files"]
    return files


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_shipped() -> list[str]:
    """Problems with the shipped files (missing, other size or hash); empty when all match."""
    problems = []
    for name, meta in sources().items():
        path = MODELS / name
        if not path.is_file():
            problems.append(f"{name}: missing")
        elif sha256(path.read_bytes()) != meta["sha256"]:
            problems.append(f"{name}: sha256 differs from SOURCES.json")
    return problems


def _record_hashes(wheel: zipfile.ZipFile) -> dict[str, str]:
    """Member path -> hex sha256, from the wheel's RECORD (``sha256=<urlsafe b64>``)."""
    record = next(n for n in wheel.namelist() if n.endswith(".dist-info/RECORD"))
    hashes = {}
    for line in wheel.read(record).decode().splitlines():
        path, digest, _size = line.rsplit(",", 2)
        if digest.startswith("sha256="):
            raw = base64.urlsafe_b64decode(digest[7:] + "=" * (-len(digest[7:]) % 4))
            hashes[path] = raw.hex()
    return hashes


def check_wheel(path: Path, extract: bool = False) -> list[str]:
    """Compare every shipped file with its member in the wheel at ``path``."""
    problems = []
    with zipfile.ZipFile(path) as wheel:
        record = _record_hashes(wheel)
        for name, meta in sources().items():
            member = str(meta["wheel_path"])
            data = wheel.read(member)
            digest = sha256(data)
            if digest != meta["sha256"]:
                problems.append(f"{name}: the wheel's {member} has sha256 {digest}")
            if record.get(member) != digest:
                problems.append(f"{name}: {member} does not match the wheel's RECORD")
            if extract:
                (MODELS / name).write_bytes(data)
            print(f"{name:42} {member:75} {digest}")
    return problems


def _download(dest: Path) -> Path:
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"),
            *("--python-version", "3.11", "--platform", "manylinux_2_28_x86_64"),
            *("-d", str(dest), "mediapipe==0.10.21"),
        ],
        check=True,
    )
    return next(dest.glob("mediapipe-0.10.21-*.whl"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wheel", type=Path, help="a mediapipe 0.10.21 wheel file")
    parser.add_argument("--download", action="store_true", help="pip download the wheel")
    parser.add_argument("--extract", action="store_true", help="rewrite the files from it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        wheel = _download(Path(tmp)) if args.download else args.wheel
        problems = check_wheel(wheel, args.extract) if wheel else []
    problems += check_shipped()
    if not wheel:
        for name, meta in sources().items():
            print(f"{name:42} {meta['wheel_path']!s:75} {meta['sha256']}")
    for problem in problems:
        print("MISMATCH:", problem, file=sys.stderr)
    print("all model files match their source" if not problems else "model files differ")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
