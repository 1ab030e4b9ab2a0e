"""load_image, find_dataset, verify and the command line of helpers.data."""

import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from helpers import PROJECT_ROOT, data


def test_load_image_gives_rgb_and_resizes(tmp_path):
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[..., 0] = 200  # red in RGB
    cv2.imwrite(str(tmp_path / "red.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    image = data.load_image(tmp_path / "red.png")
    assert image.dtype == np.uint8 and image.shape == (20, 30, 3)
    assert image[0, 0].tolist() == [200, 0, 0]
    assert data.load_image(tmp_path / "red.png", size=(10, 15)).shape == (10, 15, 3)
    assert data.load_image(tmp_path / "red.png", size=(40, 60)).shape == (40, 60, 3)


def test_load_image_bad_files_name_the_path(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a JPEG")
    for name, what in [
        ("missing.jpg", "does not exist"),
        ("empty.jpg", "is empty"),
        ("corrupt.jpg", "could not be decoded"),
    ]:
        with pytest.raises(ValueError) as err:
            data.load_image(tmp_path / name)
        assert str(tmp_path / name) in str(err.value) and what in str(err.value)
    cv2.imwrite(str(tmp_path / "ok.png"), np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="size must be"):
        data.load_image(tmp_path / "ok.png", size=(0, 4))


def test_find_dataset_prefers_the_environment(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FLICKR30K_DIR", str(tmp_path))
    assert data.find_dataset() == tmp_path
    assert "$FLICKR30K_DIR" in capsys.readouterr().out
    monkeypatch.setenv("FLICKR30K_DIR", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="FLICKR30K_DIR is set to .*missing, which is not a folder"):
        data.find_dataset()


def test_find_dataset_falls_back_to_the_embedded_data(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("FLICKR30K_DIR", raising=False)
    monkeypatch.setattr(data, "DATA_DIR", tmp_path)
    made = []
    monkeypatch.setattr(data, "make_mini_flickr", lambda root: made.append(root) or root)
    assert data.find_dataset() == data.MINI_FLICKR_DIR and made == [data.MINI_FLICKR_DIR]
    assert "no real Flickr30k found" in capsys.readouterr().out
    (tmp_path / "flickr30k").mkdir()
    assert data.find_dataset() == tmp_path / "flickr30k"


def test_verify_lists_missing_images_and_uncaptioned_ones(mini_root, tmp_path):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(mini_root, root)
    images = root / "flickr30k_images"
    (images / "mini00007.jpg").unlink()
    shutil.copy(images / "mini00001.jpg", images / "stray.jpg")
    out = tmp_path / "report.txt"
    with open(out, "w") as f:
        found = data.verify(root, out=f)
    report = out.read_text()
    assert found["captions_without_images"] == ["mini00007.jpg"]
    assert found["images_without_captions"] == ["stray.jpg"]
    assert found["images_on_disk"] == 120 and found["captions"] == 600
    assert "31,783 images, 158,915 captions" in report and "stray.jpg" in report and "mini00007.jpg" in report


def _cli(*args):
    env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT))
    return subprocess.run(
        [sys.executable, "-m", "helpers.data", *map(str, args)], capture_output=True, text=True, env=env
    )


def test_cli_verify_and_clear_error(mini_root, tmp_path):
    ok = _cli("verify", mini_root)
    assert ok.returncode == 0 and "captions in the file        600" in ok.stdout
    bad = _cli("verify", tmp_path / "nowhere")
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "does not exist" in bad.stderr and "Traceback" not in bad.stderr


def test_cli_agreement(mini_root, tmp_path):
    out = _cli("agreement", mini_root)
    assert out.returncode == 0 and "Human agreement" in out.stdout and "CIDER" in out.stdout
    single = tmp_path / "single"
    (single / "Images").mkdir(parents=True)
    (single / "Images" / "1.jpg").write_bytes(b"")
    (single / "captions.token").write_text("1.jpg#0\tA dog .\n")
    (single / "test.txt").write_text("1\n")
    (single / "train.txt").write_text("")
    (single / "val.txt").write_text("")
    bad = _cli("agreement", single)
    assert bad.returncode == 2 and "one caption each" in bad.stderr


def test_read_captions_needs_no_images(tmp_path):
    (tmp_path / "caps.token").write_text("1.jpg#0\tA dog &amp; a cat .\n1.jpg#1\tTwo pets .\n")
    (tmp_path / "caps.csv").write_text("image_name| comment_number| comment\n1.jpg| 0| A dog .\n")
    with pytest.warns(data.AnnotationWarning, match="caps.token, line 1: HTML entity"):
        df = data.read_captions(tmp_path / "caps.token")
    assert df.caption.tolist() == ["A dog & a cat .", "Two pets ."] and list(df.columns) == [
        "image",
        "caption_id",
        "caption",
    ]
    assert data.read_captions(tmp_path / "caps.csv").caption.tolist() == ["A dog ."]
    with pytest.raises(FileNotFoundError, match="caption file .*nope.token does not exist"):
        data.read_captions(tmp_path / "nope.token")


def test_shipped_captions_are_the_karpathy_test_split():
    df = data.read_captions(data.SHIPPED_CAPTIONS)
    test_images = set((data.SHIPPED_SPLITS / "test_images.txt").read_text().split())
    assert len(df) == 5000 and set(df.image) == test_images
