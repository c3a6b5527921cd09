"""The data scan reads every file the way training will: what TensorFlow cannot decode, and what is not a regular
file, fails the scan naming the file (no broker, no database, no training)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from PIL import Image

from samples.shapes import generate
from worker.training.errors import DataError
from worker.training.scan import scan


@pytest.fixture
def images(tmp_path: Path) -> Path:
    return generate(tmp_path / "set", classes=2, train=3, val=1, size=80) / "train"


def test_a_tiff_named_jpg_fails_the_scan_naming_it(images: Path):
    """Pillow reads a TIFF whatever its name; TensorFlow's decode does not, and training would fail mid-epoch."""
    Image.new("RGB", (80, 80), (10, 200, 10)).save(images / "circle" / "x.jpg", format="TIFF")
    with pytest.raises(DataError) as err:
        scan(images, field_name="train_dir")
    message = str(err.value)
    assert "file circle/x.jpg is not an image" in message and "TensorFlow cannot decode it" in message, message
    assert "Unknown image file format" in message and str(images) not in message


def test_a_webp_named_png_passes_only_if_tensorflow_reads_it(images: Path):
    """The scan's verdict is TensorFlow's, not the suffix's: whatever it accepts here, training decodes."""
    import tensorflow as tf

    from worker.training.decode import decode_image

    Image.new("RGB", (80, 80), (10, 10, 200)).save(images / "circle" / "w.png", format="WEBP")
    try:
        decode_image(tf.constant((images / "circle" / "w.png").read_bytes()))
        readable = True
    except tf.errors.InvalidArgumentError:
        readable = False
    if readable:
        assert len(scan(images, field_name="train_dir")) == 7
    else:
        with pytest.raises(DataError, match="circle/w.png is not an image"):
            scan(images, field_name="train_dir")


def test_a_fifo_named_jpg_is_reported_not_skipped(images: Path):
    os.mkfifo(images / "square" / "x.jpg")
    with pytest.raises(DataError, match=r"train_dir file square/x\.jpg is not a regular file \(a FIFO\)"):
        scan(images, field_name="train_dir")


def test_a_socket_and_a_broken_link_are_reported(images: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(images / "circle")  # a relative name: AF_UNIX paths are short
    with socket.socket(socket.AF_UNIX) as server:
        server.bind("s.png")
        with pytest.raises(DataError, match=r"train_dir file circle/s\.png is not a regular file \(a socket\)"):
            scan(images, field_name="train_dir")
    (images / "circle" / "s.png").unlink()
    os.symlink(images / "circle" / "gone.png", images / "circle" / "b.png")
    with pytest.raises(DataError, match=r"train_dir file circle/b\.png cannot be read \(a broken symlink\)"):
        scan(images, field_name="train_dir")


def test_a_decompression_bomb_is_refused_before_any_decode(images: Path):
    """A PNG header claiming 20,000 x 20,000 pixels: refused from the header, so no decoder allocates 1.2 GB."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", 20_000, 20_000, 8, 2, 0, 0, 0)
    bomb = (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )
    (images / "circle" / "bomb.png").write_bytes(bomb)
    with pytest.raises(DataError, match=r"file circle/bomb\.png is not an image \(DecompressionBombError"):
        scan(images, field_name="train_dir")
