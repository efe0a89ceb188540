""".keras limits: the zip directory is checked before Keras opens the file (zip bombs, not-a-zip)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from brainclf.errors import ModelError
from brainclf.input import InputContract, limits
from brainclf.model import ModelCard, add_model, card_path, file_sha256, load_model
from brainclf.model.model_archive import check_model_archive

REPO = Path(__file__).resolve().parent.parent


def with_card(path: Path) -> Path:
    """A card beside `path` that passes the card checks (the file's own hash), so only the file is judged."""
    ModelCard(name=path.stem, architecture="compact_cnn", input_contract=InputContract(32, 1).to_dict(),
              file_sha256=file_sha256(path)).save(card_path(path))
    return path


def zip_bomb(path: Path, member: str = "config.json", size: int = 20 * limits.MiB) -> Path:
    """A .keras whose `member` inflates to `size` bytes of spaces, written in 1 MB chunks (~20 KB on disk)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open(member, "w", force_zip64=True) as f:
            chunk = b" " * limits.MiB
            for start in range(0, size, len(chunk)):
                f.write(chunk[:min(len(chunk), size - start)])
        for other, content in (("config.json", "{}"), ("metadata.json", "{}"), ("model.weights.h5", b"\0" * 100)):
            if other != member:
                zf.writestr(other, content)
    return path


def forged(path: Path, declared: int) -> Path:
    """A tiny .keras whose zip directory declares config.json to inflate to `declared` bytes."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("config.json", "{}")
        zf.writestr("model.weights.h5", b"\0" * 100)
    data = bytearray(path.read_bytes())
    at = data.index(b"PK\x01\x02")  # central directory entry of config.json (the first member)
    data[at + 24:at + 28] = declared.to_bytes(4, "little")  # its uncompressed size
    path.write_bytes(bytes(data))
    return path


def test_config_json_bomb_is_refused_before_keras(tmp_path):
    path = with_card(zip_bomb(tmp_path / "bomb.keras"))
    assert path.stat().st_size < 200_000
    with pytest.raises(ModelError, match=r"bomb.keras: config.json inflates to 20 MB \(compressed .*\), above the "
                                         r"limit of 16 MB for it; refused before loading"):
        load_model(path)


def test_forged_1_gib_member_is_refused_without_inflating(tmp_path):
    # 1 GiB declared, nothing of it allocated: only the zip directory is read.
    path = with_card(forged(tmp_path / "forged.keras", 1 << 30))
    with pytest.raises(ModelError, match="config.json inflates to 1 GB"):
        load_model(path)
    with pytest.raises(ModelError, match="config.json inflates to 1 GB"):
        check_model_archive(path)


def test_weights_member_and_total_limits(tmp_path, monkeypatch):
    path = with_card(zip_bomb(tmp_path / "w.keras", member="model.weights.h5", size=2 * limits.MiB))
    with pytest.raises(ModelError, match="config.json does not describe a Keras model"):
        check_model_archive(path)  # within the zip limits: what is refused is its config ("{}")
    monkeypatch.setattr(limits, "MAX_KERAS_MEMBER_BYTES", limits.MiB)
    with pytest.raises(ModelError, match="model.weights.h5 inflates to 2 MB .* above the limit of 1 MB"):
        load_model(path)
    monkeypatch.setattr(limits, "MAX_KERAS_MEMBER_BYTES", 4 * limits.MiB)
    monkeypatch.setattr(limits, "MAX_KERAS_TOTAL_BYTES", limits.MiB)
    with pytest.raises(ModelError, match="w.keras inflates to 2.0 MB in all, above the limit of 1 MB"):
        load_model(path)
    monkeypatch.setattr(limits, "MAX_KERAS_MEMBERS", 2)
    with pytest.raises(ModelError, match="holds 3 files"):
        load_model(path)


def test_not_a_zip_is_refused_with_a_specific_message(tmp_path):
    path = tmp_path / "text.keras"
    path.write_bytes(b"this is not a model")
    with pytest.raises(ModelError, match="text.keras could not be loaded as a Keras model: .* not a readable zip"):
        load_model(with_card(path))


def test_upload_of_a_bomb_never_lands(tmp_path):
    bomb = zip_bomb(tmp_path / "bomb.keras").read_bytes()
    card = (with_card(tmp_path / "bomb.keras").with_suffix(".json")).read_bytes()
    dest = tmp_path / "models"
    with pytest.raises(ModelError, match="config.json inflates to 20 MB"):
        add_model("bomb", bomb, card, dest)
    assert not dest.exists() or not list(dest.iterdir())


def test_shipped_models_pass_the_archive_check():
    shipped = sorted((REPO / "models").glob("*.keras"))
    assert shipped
    for path in shipped:
        check_model_archive(path)
