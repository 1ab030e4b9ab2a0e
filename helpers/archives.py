"""Getting the datasets onto disk: download Flickr8k, or lay out archives you already have.

No TensorFlow here. From the command line (``helpers.data`` dispatches to these)::

    python -m helpers.data download flickr8k --dest DIR [--base-url URL]
    python -m helpers.data prepare ARCHIVE... --dest DIR

``download`` fetches the two archives the TensorFlow and keras-io captioning tutorials use,
resuming a partial file (HTTP Range) with a progress bar, checks each against the digest
pinned here before anything is extracted, then runs ``prepare``. ``prepare`` understands
Kaggle's Flickr30k zip, the official ``flickr30k-images.tar.gz`` (give
``results_20130124.token`` beside it), Flickr8k's two zips and Karpathy's
``caption_datasets.zip``. It checks every member first (no absolute paths, no ``..``, no
link that points outside, no device files), extracts into a temporary folder beside DIR and
renames it into place only when complete, then runs ``helpers.data.verify``.
"""

import hashlib
import http.client
import os
import shutil
import stat
import sys
import tarfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath

FLICKR8K_URL = "https://github.com/jbrownlee/Datasets/releases/download/Flickr8k/"
# (algorithm, digest) of each archive. MD5, as two independent public projects pin them
# (mlverse/torchvision's flickr8k_dataset, and a CMake fetch script); no SHA-256 of these files
# could be confirmed offline. Any hashlib algorithm works here: swap in SHA-256 once known.
CHECKSUMS = {
    "flickr8k": {
        "Flickr8k_Dataset.zip": ("md5", "f18a1e2920de5bd84dae7cf08ec78978"),
        "Flickr8k_text.zip": ("md5", "bf6c1abcb8e4a833b7f922104de18627"),
    }
}
DATASET_URLS = {"flickr8k": FLICKR8K_URL}
CHUNK = 1 << 20
SKIPPED = ("__MACOSX/",)  # macOS resource forks in Flickr8k's zips


class ArchiveError(ValueError):
    """An archive that cannot be used: one sentence naming the file (and member)."""


# ----------------------------------------------------------------------------- download


def _check_destination(dest):
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ArchiveError(f"{dest} already exists and is not empty; give a new folder as --dest")


def file_digest(path, algorithm):
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(url, path, progress=True, timeout=60):
    """Download ``url`` to ``path``, resuming from ``path``.part if a previous try left one.

    Asks the server for the missing bytes (HTTP Range); a server that answers with the whole
    file (200) starts the part over. The part is renamed to ``path`` when complete.
    """
    from tqdm.auto import tqdm

    path = Path(path)
    part = path.with_name(path.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # the part is already whole
            part.rename(path)
            return path
        raise ArchiveError(f"could not download {url}: HTTP {err.code} {err.reason}") from None
    except (urllib.error.URLError, OSError) as err:
        raise ArchiveError(f"could not download {url}: {getattr(err, 'reason', err)}") from None
    with response:
        resumed = response.status == 206
        if not resumed:
            have = 0
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        bar = tqdm(total=total, initial=have, unit="B", unit_scale=True, desc=path.name, disable=not progress)
        with open(part, "ab" if resumed else "wb") as f:
            try:
                for block in iter(lambda: response.read(CHUNK), b""):
                    f.write(block)
                    bar.update(len(block))
            except (http.client.IncompleteRead, OSError):
                pass  # what arrived is kept; the size check below says to resume
        bar.close()
    if total is not None and part.stat().st_size != total:
        raise ArchiveError(
            f"{url}: the download stopped at {part.stat().st_size:,} of {total:,} bytes; run again to resume"
        )
    part.rename(path)
    return path


def download(name, dest, base_url=None, checksums=None, progress=True, out=sys.stdout):
    """Download dataset ``name`` ('flickr8k') into ``dest`` and lay it out there (``prepare``).

    The archives go to ``dest``/.downloads (a partial one is resumed), are checked against
    ``checksums`` ({file: (algorithm, digest)}, default: the pinned ones) and removed once
    laid out. A file that fails its check is refused before anything of it is extracted.
    """
    if name not in CHECKSUMS:
        raise ArchiveError(f"unknown dataset {name!r}; downloadable: {', '.join(CHECKSUMS)}")
    checksums = checksums or CHECKSUMS[name]
    base_url = (base_url or DATASET_URLS[name]).rstrip("/") + "/"
    dest = Path(dest).expanduser()
    _check_destination(dest)  # before a gigabyte is fetched for nothing
    store = dest.parent / f".{dest.name}.downloads"
    store.mkdir(parents=True, exist_ok=True)
    archives = []
    for file, (algorithm, expected) in checksums.items():
        path = store / file
        if not path.exists():
            fetch(base_url + file, path, progress=progress)
        actual = file_digest(path, algorithm)
        if actual != expected:
            bad = path.with_name(path.name + ".rejected")
            path.replace(bad)  # not resumed from, not extracted
            raise ArchiveError(
                f"{file} failed its {algorithm.upper()} check (expected {expected}, got {actual}); "
                f"nothing was extracted, and the file was moved to {bad}"
            )
        archives.append(path)
    prepare(archives, dest, out=out)
    shutil.rmtree(store)
    return dest


# ----------------------------------------------------------------------------- prepare


def _check_member(archive, name, kind, link=None):
    """Raise ArchiveError unless member ``name`` stays inside the folder it is extracted to.
    kind: 'file', 'dir', 'link' or 'hardlink' (``link``: its target) or 'device'."""
    where = f"{archive}: member {name!r}"
    normalised = name.replace("\\", "/")
    if normalised.startswith("/") or (len(normalised) > 1 and normalised[1] == ":"):
        raise ArchiveError(f"{where} has an absolute path; nothing was extracted")
    if ".." in PurePosixPath(normalised).parts:
        raise ArchiveError(f"{where} has a '..' component that would write outside the folder; nothing was extracted")
    if kind == "device":
        raise ArchiveError(f"{where} is a device file or pipe; nothing was extracted")
    if kind in ("link", "hardlink"):
        target = link.replace("\\", "/")
        # a symbolic link's target is relative to its folder, a tar hard link's to the archive's root
        inside = (PurePosixPath(normalised).parent if kind == "link" else PurePosixPath(".")) / target
        depth = 0
        for part in inside.parts:
            depth += -1 if part == ".." else (0 if part == "." else 1)
            if depth < 0:
                break
        if target.startswith("/") or depth < 0:
            raise ArchiveError(f"{where} is a link to {link!r}, outside the folder; nothing was extracted")


def _members(archive):
    """[(name, kind, link target)] of a zip or tar archive."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            out = []
            for info in z.infolist():
                mode = info.external_attr >> 16
                if stat.S_ISLNK(mode):
                    out.append((info.filename, "link", z.read(info).decode("utf-8", "replace")))
                elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode):
                    out.append((info.filename, "device", None))
                else:
                    out.append((info.filename, "dir" if info.is_dir() else "file", None))
            return out
    try:
        with tarfile.open(archive) as t:
            out = []
            for m in t.getmembers():
                if m.issym() or m.islnk():
                    out.append((m.name, "link" if m.issym() else "hardlink", m.linkname))
                elif m.isdev():
                    out.append((m.name, "device", None))
                else:
                    out.append((m.name, "dir" if m.isdir() else "file", None))
            return out
    except tarfile.TarError:
        raise ArchiveError(f"{archive} is neither a zip nor a tar archive (nor a caption or split file)") from None


def _wanted(name, only):
    if any(name.replace("\\", "/").startswith(s) for s in SKIPPED) or PurePosixPath(name).name.startswith("._"):
        return False
    return only is None or PurePosixPath(name).name in only


def _extract(archive, folder, only=None):
    """Extract the members of ``archive`` (those named in ``only``, if given) into ``folder``."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            for info in z.infolist():
                if _wanted(info.filename, only):
                    z.extract(info, folder)
        return
    with tarfile.open(archive) as t:
        members = [m for m in t.getmembers() if _wanted(m.name, only)]
        kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        t.extractall(folder, members=members, **kwargs)


def _karpathy_file(names_given):
    """Which dataset_*.json of Karpathy's zip to keep, from the other archives' names."""
    joined = " ".join(names_given).lower()
    return "dataset_flickr8k.json" if "flickr8k" in joined or "flicker8k" in joined else "dataset_flickr30k.json"


def prepare(archives, dest, out=sys.stdout):
    """Lay out ``archives`` (zips, tarballs, and plain caption or split files) as one dataset
    folder ``dest`` that ``helpers.data.load_flickr30k`` reads; returns ``dest``.

    Every member of every archive is checked before anything is written; the result appears
    at ``dest`` only when complete (a temporary folder beside it is renamed). ``dest`` must
    not exist yet, or be empty.
    """
    from .data import verify

    dest = Path(dest).expanduser()
    archives = [Path(a).expanduser() for a in archives]
    if not archives:
        raise ArchiveError("no archives given")
    for a in archives:
        if not a.is_file():
            raise ArchiveError(f"archive {a} does not exist")
    _check_destination(dest)
    plain, packed = [], []
    for a in archives:
        is_archive = zipfile.is_zipfile(a) or a.name.endswith((".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz"))
        (packed if is_archive else plain).append(a)
    only = {}
    for a in packed:
        members = _members(a)
        for name, kind, link in members:
            _check_member(a, name, kind, link)
        if any(PurePosixPath(n).name == "dataset_flickr30k.json" for n, _, _ in members):  # Karpathy's zip
            only[a] = {_karpathy_file([p.name for p in archives if p != a])}

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        for a in packed:
            print(f"extracting {a.name} ...", file=out, flush=True)
            _extract(a, tmp, only.get(a))
        for a in plain:
            shutil.copy2(a, tmp / a.name)
        if dest.exists():
            dest.rmdir()  # empty, checked above
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    verify(dest, out=out)
    return dest
