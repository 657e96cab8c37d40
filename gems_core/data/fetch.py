"""The paper's datasets in one command: downloaded from the manifest's sources, checked, and laid out as the
loaders read them; the loaders never download.

``manifest.json`` lists, per dataset, its files: ordered source URLs (the official host first, known
mirrors after), the MD5 published for it (torchvision's, or the host's; ``null`` where none is
published) and whether it is an archive to extract. For each file ``fetch``

1. keeps a file already verified (the dataset's ``fetched.json`` records it): nothing is fetched twice;
2. else streams it to ``<data_root>/downloads/<name>.part`` with a progress bar, checking the HTTP status,
   resuming an interrupted transfer with a Range request, and trying the next source when one fails;
3. checks the MD5 before anything is extracted (a wrong file, such as an HTML error page served with
   status 200, is deleted and the next source tried); a file with no published checksum has its MD5
   recorded on first download and checked against that record afterwards;
4. extracts archives member by member, refusing any member that would land outside the dataset's folder
   (absolute paths, ``..``, links), then builds what the loaders need beyond the archives (Aircraft's
   ``labels.pkl``).

``fetched.json`` holds each file's MD5: the image caches are keyed by it (``sources``), so another copy of
a dataset builds a new cache instead of reusing a stale one.

Command line: ``python -m gems_core.data.fetch cub dtd --data-root data`` (``make data DATASETS=cub,dtd``);
``--from DIR`` takes the files from a folder instead (FGVC Fungi's host is gone: supply its archives so);
``--manifest FILE`` reads another manifest (a lab's own mirror, in the same form).
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import pickle
import shutil
import tarfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path

from tqdm.auto import tqdm

from ..errors import KitError, run_cli
from ..io import write_json
from .manifest import MANIFEST, RECORD, folder, manifest, recorded

CHUNK = 1 << 20
ATTEMPTS_PER_SOURCE = 3  # a transfer cut short is resumed from where it stopped, this many times per source
TIMEOUT_SECONDS = 60


class FetchFailed(KitError):
    """No source gave a file that checks out; the message names every URL tried, what each answered, and how
    to place the file by hand."""


def md5_of(path: Path) -> str:
    digest = hashlib.md5()  # noqa: S324 - a checksum the hosts publish, not a security measure
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def fetch(
    names: list[str],
    data_root: Path,
    source_dir: Path | None = None,
    specs: dict | None = None,
    progress: bool = True,
) -> dict[str, str]:
    """Fetch, verify and lay out each named dataset under ``data_root``; returns what was done per dataset
    ('already present', 'fetched'). FetchFailed when a file cannot be had; KitError for an unknown name."""
    specs = specs if specs is not None else manifest()
    _known(names, specs)
    done = {}
    for name in names:
        spec = specs[name]
        target = folder(data_root, spec)
        if (old := recorded(data_root, spec)) is not None and set(old) == {f["name"] for f in spec["files"]}:
            done[name] = "already present"
            continue
        md5 = {}
        for entry in spec["files"]:
            archive, md5[entry["name"]] = _obtain(
                name, spec, entry, Path(data_root) / "downloads", source_dir, progress
            )
            _place(archive, entry, target)
        LAYOUTS.get(spec.get("layout"), lambda _: None)(target)
        _write_record(target, md5)
        done[name] = "fetched"
    return done


def _known(names: list[str], specs: dict) -> None:
    """KitError naming the datasets the manifest does not list, and those it does."""
    if unknown := [n for n in names if n not in specs]:
        raise KitError(f"unknown dataset(s) {unknown}; valid: {', '.join(specs)}")


def _obtain(
    name: str, spec: dict, entry: dict, downloads: Path, source_dir: Path | None, progress: bool
) -> tuple[Path, str]:
    """The verified file of ``entry`` in ``downloads`` and its MD5 (read once): kept from before, copied from
    ``source_dir``, or downloaded from the first source that gives a file with the right checksum."""
    downloads.mkdir(parents=True, exist_ok=True)
    final = downloads / entry["name"]
    if final.exists() and _mismatch(got := md5_of(final), entry) is None:
        return final, got
    final.unlink(missing_ok=True)
    if source_dir is not None:
        given = Path(source_dir) / entry["name"]
        if not given.is_file():
            raise FetchFailed(f"{spec['title']}: {entry['name']} is not in '{source_dir}'")
        if (why := _mismatch(got := md5_of(given), entry)) is not None:
            raise FetchFailed(f"{spec['title']}: '{given}' {why}")
        shutil.copyfile(given, final)
        return final, got
    tried = []
    for url in entry["urls"]:
        part = final.with_name(final.name + ".part")
        answer = _download(url, part, entry, progress)
        if answer is None and (answer := _mismatch(got := md5_of(part), entry)) is None:
            part.rename(final)
            return final, got
        part.unlink(missing_ok=True)  # a wrong file is deleted; never resume one source's bytes from another
        tried.append(f"{url} ({answer})")
    raise FetchFailed(_by_hand(name, spec, entry, tried, downloads))


def _mismatch(got: str, entry: dict) -> str | None:
    """Why a file of MD5 ``got`` is not the manifest's, or None (also when none is published)."""
    if entry["md5"] is None or got == entry["md5"]:
        return None
    return f"has MD5 {got}, not the published {entry['md5']}"


def _download(url: str, part: Path, entry: dict, progress: bool) -> str | None:
    """Stream ``url`` into ``part``, resuming what is there with a Range request; None when complete, else
    what the source answered. A transfer cut short is resumed up to ATTEMPTS_PER_SOURCE times."""
    answer = None
    for _ in range(ATTEMPTS_PER_SOURCE):
        have = part.stat().st_size if part.exists() else 0
        request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
                resumed = response.status == 206
                length = response.headers.get("Content-Length")
                total = (int(length) + (have if resumed else 0)) if length else None
                with (
                    open(part, "ab" if resumed else "wb") as out,
                    tqdm(
                        total=total,
                        initial=have if resumed else 0,
                        unit="B",
                        unit_scale=True,
                        desc=entry["name"],
                        disable=not progress,
                        leave=False,
                    ) as bar,
                ):
                    while block := response.read(CHUNK):
                        out.write(block)
                        bar.update(len(block))
                if total is not None and part.stat().st_size < total:
                    answer = f"cut short at {part.stat().st_size} of {total} bytes"
                    continue
                return None
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and have:  # the range starts at the end: the file is already whole
                return None
            return f"HTTP {exc.code} {exc.reason}"
        except (http.client.IncompleteRead, ConnectionError, TimeoutError) as exc:
            answer = f"cut short ({type(exc).__name__})"
        except (urllib.error.URLError, OSError) as exc:
            return f"unreachable: {getattr(exc, 'reason', exc)}"
    return answer


def _by_hand(name: str, spec: dict, entry: dict, tried: list[str], downloads: Path) -> str:
    sources = "; ".join(tried) if tried else spec.get("gone", "no source is known")
    return (
        f"{spec['title']} ({name}): {entry['name']} could not be fetched: {sources}. To place it by hand, put "
        f"{entry['name']} in a folder and run: python -m gems_core.data.fetch {name} --from FOLDER "
        f"(it is checked and laid out under '{downloads.parent}')"
    )


def _place(archive: Path, entry: dict, target: Path) -> None:
    """Extract an archive into ``target`` (safely), or copy a plain file there."""
    target.mkdir(parents=True, exist_ok=True)
    if not entry["extract"]:
        shutil.copyfile(archive, target / entry["name"])
    elif zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            for info in z.infolist():
                _inside(target, info.filename, archive)
            z.extractall(target)
    else:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            for member in members:
                _inside(target, member.name, archive)
                if member.issym() or member.islnk() or not (member.isfile() or member.isdir()):
                    raise FetchFailed(f"'{archive}' holds {member.name!r}, which is not a plain file: not extracted")
            tar.extractall(target, members)  # noqa: S202 - every member checked above


def _inside(target: Path, name: str, archive: Path) -> None:
    """Refuse an archive member that would be written outside ``target``, before anything is extracted."""
    resolved = (target / name).resolve()
    if name.startswith(("/", "\\")) or not resolved.is_relative_to(target.resolve()):
        raise FetchFailed(f"'{archive}' holds {name!r}, which lands outside '{target}': nothing extracted")


def _aircraft_labels(target: Path) -> None:
    """learn2learn's ``labels.pkl`` for FGVC Aircraft: every (image id, variant) pair of the three variant
    lists (learn2learn builds it only when it downloads the archive itself)."""
    data = target / "fgvc-aircraft-2013b" / "data"
    pairs = []
    for split in ("train", "val", "test"):
        for line in (data / f"images_variant_{split}.txt").read_text().splitlines():
            if line.strip():
                image, variant = line.split(" ", 1)
                pairs.append((image.strip(), variant.strip()))
    with open(data / "labels.pkl", "wb") as f:
        pickle.dump(pairs, f)


LAYOUTS: dict[str, Callable[[Path], None]] = {"aircraft_labels": _aircraft_labels}


def _write_record(target: Path, md5: dict[str, str]) -> None:
    write_json(target / RECORD, {"md5": md5})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "datasets", nargs="+", help=f"of {', '.join(manifest())} (or comma-separated); 'all': every one with a source"
    )
    parser.add_argument(
        "--data-root", type=Path, default=Path("data"), help="where the loaders read (parameter data_root)"
    )
    parser.add_argument("--from", dest="source_dir", type=Path, help="take the files from this folder, not the web")
    parser.add_argument("--manifest", type=Path, default=MANIFEST, help="another manifest (a lab's own mirror)")
    args = parser.parse_args(argv)

    def run() -> int:
        specs = manifest(args.manifest)
        asked = [n for arg in args.datasets for n in arg.split(",") if n]
        names = [n for n, s in specs.items() if "gone" not in s] if asked == ["all"] else asked
        _known(names, specs)  # all of them, before anything is fetched
        failed = []
        for name in names:  # each on its own: one that fails does not keep the others from being fetched
            try:
                what = fetch([name], args.data_root, args.source_dir, specs)[name]
                print(f"{name}: {what} in {folder(args.data_root, specs[name])}")
            except FetchFailed as exc:
                failed.append(str(exc))
        if failed:
            raise FetchFailed(" | ".join(failed))
        return 0

    return run_cli(run)


if __name__ == "__main__":
    raise SystemExit(main())
