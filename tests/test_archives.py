"""helpers.archives: prepare lays out the real archive layouts and refuses unsafe members; download
resumes over HTTP Range and refuses a file that fails its checksum. A server on 127.0.0.1 that the
tests start stands in for the internet."""

import hashlib
import io
import os
import subprocess
import sys
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from helpers import PROJECT_ROOT
from helpers.archives import ArchiveError, download, prepare
from helpers.data import load_flickr30k
from helpers.mini_flickr import write_stand_in_images

NAMES = [f"{1000 + i}.jpg" for i in range(12)]


def jpeg_bytes(tmp_path):
    folder = write_stand_in_images(tmp_path / "jpegs", NAMES, size=(24, 32))
    return {n: (folder / n).read_bytes() for n in NAMES}


def token_lines(names, captions=2):
    return "".join(
        f"{n}#{k}\tA dog number {i} runs , take {k} .\n" for i, n in enumerate(names) for k in range(captions)
    )


def make_zip(path, members):
    """members: {name: bytes}; a name ending in '/' is a folder."""
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def quiet():
    return io.StringIO()


def test_kaggle_flickr30k_zip(tmp_path):
    images = jpeg_bytes(tmp_path)
    csv = "image_name| comment_number| comment\n" + "".join(
        f"{n}| {k}| A dog {i} .\n" for i, n in enumerate(NAMES) for k in range(2)
    )
    archive = make_zip(
        tmp_path / "flickr-image-dataset.zip",
        {
            "flickr30k_images/results.csv": csv,
            **{f"flickr30k_images/flickr30k_images/{n}": b for n, b in images.items()},
        },
    )
    out = quiet()
    root = prepare([archive], tmp_path / "f30k", out=out)
    df = load_flickr30k(root)
    assert sorted(df.image.unique()) == NAMES and len(df) == 24
    assert "images on disk               12" in out.getvalue()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".f30k")]  # no temporary folder left


def test_official_tarball_with_its_token_file_beside_it(tmp_path):
    images = jpeg_bytes(tmp_path)
    tarball = tmp_path / "flickr30k-images.tar.gz"
    with tarfile.open(tarball, "w:gz") as t:
        for n, b in images.items():
            info = tarfile.TarInfo(f"flickr30k-images/{n}")
            info.size = len(b)
            t.addfile(info, io.BytesIO(b))
    token = tmp_path / "results_20130124.token"
    token.write_text(token_lines(NAMES, 5))
    root = prepare([tarball, token], tmp_path / "official", out=quiet())
    df = load_flickr30k(root)
    assert len(df) == 60 and df.attrs["images_dir"].endswith("flickr30k-images")


def test_flickr8k_zips_skip_macos_resource_forks(tmp_path):
    images = jpeg_bytes(tmp_path)
    dataset = make_zip(
        tmp_path / "Flickr8k_Dataset.zip",
        {
            **{f"Flicker8k_Dataset/{n}": b for n, b in images.items()},
            **{f"__MACOSX/Flicker8k_Dataset/._{n}": b"\x00\x05\x16\x07" for n in NAMES},
        },
    )
    text = make_zip(
        tmp_path / "Flickr8k_text.zip",
        {
            "Flickr8k.token.txt": token_lines(NAMES, 5),
            "Flickr8k.lemma.token.txt": token_lines(NAMES[:1], 1),
            "Flickr_8k.trainImages.txt": "\n".join(NAMES[:8]) + "\n",
            "Flickr_8k.devImages.txt": "\n".join(NAMES[8:10]) + "\n",
            "Flickr_8k.testImages.txt": "\n".join(NAMES[10:]) + "\n",
            "__MACOSX/._Flickr8k.token.txt": b"\x00",
        },
    )
    root = prepare([dataset, text], tmp_path / "f8k", out=quiet())
    assert not (root / "__MACOSX").exists()
    df = load_flickr30k(root)
    assert len(df) == 60 and df.drop_duplicates("image").split.value_counts().to_dict() == {
        "train": 8,
        "val": 2,
        "test": 2,
    }


def test_karpathy_zip_gives_the_json_of_the_images_given(tmp_path):
    import json

    images = jpeg_bytes(tmp_path)
    karpathy = {
        "images": [
            {"filename": n, "split": "test" if i < 2 else "train", "sentences": [{"raw": f"A cat {i} ."}] * 2}
            for i, n in enumerate(NAMES)
        ]
    }
    other = {"images": [{"filename": "x.jpg", "split": "train", "sentences": [{"raw": "no"}]}]}
    captions = make_zip(
        tmp_path / "caption_datasets.zip",
        {
            "dataset_coco.json": json.dumps(other),
            "dataset_flickr30k.json": json.dumps(other),
            "dataset_flickr8k.json": json.dumps(karpathy),
        },
    )
    dataset = make_zip(tmp_path / "Flickr8k_Dataset.zip", {f"Flicker8k_Dataset/{n}": b for n, b in images.items()})
    root = prepare([dataset, captions], tmp_path / "k8k", out=quiet())
    assert sorted(p.name for p in root.glob("*.json")) == ["dataset_flickr8k.json"]
    assert (load_flickr30k(root).drop_duplicates("image").split == "test").sum() == 2


def _tar_with(path, member):
    with tarfile.open(path, "w") as t:
        good = tarfile.TarInfo("flickr30k-images/ok.jpg")
        good.size = 3
        t.addfile(good, io.BytesIO(b"abc"))
        t.addfile(member, io.BytesIO(b"evil") if member.isfile() else None)
    return path


def _member(name, kind=tarfile.REGTYPE, link=""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    info.size = 4 if kind == tarfile.REGTYPE else 0
    return info


@pytest.mark.parametrize(
    ("member", "message"),
    [
        (_member("/etc/evil.txt"), "'/etc/evil.txt' has an absolute path"),
        (_member("flickr30k-images/../../evil.txt"), "has a '..' component"),
        (_member("flickr30k-images/link", tarfile.SYMTYPE, "../../outside"), "is a link to '../../outside', outside"),
        (_member("flickr30k-images/abs", tarfile.SYMTYPE, "/etc/passwd"), "is a link to '/etc/passwd', outside"),
        (_member("flickr30k-images/hard", tarfile.LNKTYPE, "../x"), "is a link to '../x', outside"),
        (_member("flickr30k-images/null", tarfile.CHRTYPE), "is a device file"),
        (_member("flickr30k-images/fifo", tarfile.FIFOTYPE), "is a device file or pipe"),
    ],
)
def test_unsafe_tar_members_stop_it_before_anything_is_written(tmp_path, member, message):
    work = tmp_path / "work"
    work.mkdir()
    archive = _tar_with(work / "bad.tar", member)
    token = work / "results_20130124.token"
    token.write_text("ok.jpg#0\tA cat .\n")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(ArchiveError) as err:
        prepare([archive, token], work / "dest", out=quiet())
    assert message in str(err.value) and "bad.tar" in str(err.value) and "\n" not in str(err.value)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing written anywhere


def test_unsafe_zip_members_are_refused(tmp_path):
    evil = make_zip(tmp_path / "evil.zip", {"Flicker8k_Dataset/a.jpg": b"x", "../evil.txt": b"x"})
    with pytest.raises(ArchiveError, match=r"evil.zip: member '../evil.txt' has a '..' component"):
        prepare([evil], tmp_path / "d1", out=quiet())
    link = tmp_path / "link.zip"
    with zipfile.ZipFile(link, "w") as z:
        info = zipfile.ZipInfo("Flicker8k_Dataset/link")
        info.external_attr = 0o120777 << 16  # a symbolic link, as zip -y stores one
        z.writestr(info, "/etc/passwd")
    with pytest.raises(ArchiveError, match="is a link to '/etc/passwd', outside the folder"):
        prepare([link], tmp_path / "d2", out=quiet())
    assert (
        not (tmp_path / "d1").exists()
        and not (tmp_path / "d2").exists()
        and not (tmp_path.parent / "evil.txt").exists()
    )


def test_prepare_refuses_a_folder_that_is_not_empty(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "mine.txt").write_text("keep me")
    archive = make_zip(tmp_path / "a.zip", {"Flicker8k_Dataset/a.jpg": b"x"})
    with pytest.raises(ArchiveError, match="already exists and is not empty"):
        prepare([archive], tmp_path / "full", out=quiet())
    assert (tmp_path / "full" / "mine.txt").read_text() == "keep me"


# ----------------------------------------------------------------------------- download


class Server:
    """Serves ``files`` on 127.0.0.1; honours Range unless ``ranges`` is False; the first
    response of a file listed in ``cut`` stops after that many bytes."""

    def __init__(self, files, ranges=True, cut=None):
        self.files, self.ranges, self.cut, self.requests = files, ranges, dict(cut or {}), []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                name = self.path.rsplit("/", 1)[-1]
                server.requests.append((name, self.headers.get("Range")))
                if name not in server.files:
                    self.send_error(404)
                    return
                data, start = server.files[name], 0
                asked = self.headers.get("Range")
                if asked and server.ranges:
                    start = int(asked.split("=")[1].split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                body = data[start:]
                if name in server.cut:
                    body = body[: server.cut.pop(name)]
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/mirror/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def flickr8k_archives(tmp_path):
    images = jpeg_bytes(tmp_path)
    buf_dataset, buf_text = io.BytesIO(), io.BytesIO()
    make_zip(buf_dataset, {f"Flicker8k_Dataset/{n}": b for n, b in images.items()})
    make_zip(buf_text, {"Flickr8k.token.txt": token_lines(NAMES, 5)})
    return {"Flickr8k_Dataset.zip": buf_dataset.getvalue(), "Flickr8k_text.zip": buf_text.getvalue()}


def sha256(files):
    return {n: ("sha256", hashlib.sha256(b).hexdigest()) for n, b in files.items()}


def download_from(server, files, dest):
    """``download`` from the loopback ``server``, checked against the digests of ``files``."""
    return download("flickr8k", dest, base_url=server.url, checksums=sha256(files), progress=False, out=quiet())


def test_download_resumes_an_interrupted_file_with_a_range_request(tmp_path, flickr8k_archives):
    big = "Flickr8k_Dataset.zip"
    half = len(flickr8k_archives[big]) // 2
    with Server(flickr8k_archives, cut={big: half}) as server:
        with pytest.raises(ArchiveError, match=f"{big}: the download stopped at {half:,} of"):
            download_from(server, flickr8k_archives, tmp_path / "f8k")
        assert (tmp_path / ".f8k.downloads" / f"{big}.part").stat().st_size == half
        root = download_from(server, flickr8k_archives, tmp_path / "f8k")
    assert server.requests == [(big, None), (big, f"bytes={half}-"), ("Flickr8k_text.zip", None)]
    assert len(load_flickr30k(root)) == 60
    assert not (tmp_path / ".f8k.downloads").exists()  # the archives go once laid out


def test_a_server_without_ranges_starts_the_file_over(tmp_path, flickr8k_archives):
    big = "Flickr8k_Dataset.zip"
    store = tmp_path / ".f8k.downloads"
    store.mkdir()
    (store / f"{big}.part").write_bytes(b"stale bytes of an older try")
    with Server(flickr8k_archives, ranges=False) as server:
        download_from(server, flickr8k_archives, tmp_path / "f8k")
    assert sorted(p.name for p in (tmp_path / "f8k" / "Flicker8k_Dataset").iterdir()) == NAMES


def test_download_into_a_folder_that_is_not_empty_asks_nothing_of_the_server(tmp_path, flickr8k_archives):
    (tmp_path / "f8k").mkdir()
    (tmp_path / "f8k" / "notes.txt").write_text("mine")
    with Server(flickr8k_archives) as server:
        with pytest.raises(ArchiveError, match="already exists and is not empty"):
            download_from(server, flickr8k_archives, tmp_path / "f8k")
    assert server.requests == []


def test_a_file_that_fails_its_pinned_checksum_is_refused_in_one_sentence(tmp_path, flickr8k_archives):
    env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT))
    with Server(flickr8k_archives) as server:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "helpers.data",
                "download",
                "flickr8k",
                "--dest",
                str(tmp_path / "f8k"),
                "--base-url",
                server.url,
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    line = done.stderr.strip().splitlines()[-1]
    got = hashlib.md5(flickr8k_archives["Flickr8k_Dataset.zip"]).hexdigest()
    assert "Flickr8k_Dataset.zip failed its MD5 check" in line
    assert "expected f18a1e2920de5bd84dae7cf08ec78978" in line and f"got {got}" in line
    assert not (tmp_path / "f8k").exists()  # nothing extracted
    assert (tmp_path / ".f8k.downloads" / "Flickr8k_Dataset.zip.rejected").is_file()
