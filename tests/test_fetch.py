"""``make data``'s fetch, against a local HTTP server on 127.0.0.1 serving small archives in the datasets' real
formats: a clean fetch that the loaders then read, failing sources then a working mirror, a transfer cut
short and resumed, wrong checksums and an HTML error page refused with nothing extracted, an archive
member outside the folder refused, and a second call that downloads nothing."""

from __future__ import annotations

import copy
import hashlib
import io
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from fake_datasets import make_aircraft, make_dtd

from gems_core.data import fetch
from gems_core.data.paper import load_paper_dataset


class Server(BaseHTTPRequestHandler):
    """Serves ``files`` (path -> bytes) with Range support; ``behaviour`` (path -> what) makes a path answer
    with an HTTP status, an HTML page with status 200, or cut its first transfer short."""

    files: dict[str, bytes] = {}
    behaviour: dict[str, object] = {}
    requests: list[tuple[str, str | None]] = []

    def do_GET(self):  # noqa: N802 - http.server's name
        self.requests.append((self.path, self.headers.get("Range")))
        what = self.behaviour.get(self.path)
        if isinstance(what, int):
            return self.send_error(what)
        if what == "html":
            return self._send(200, b"<html><body>Moved. Please log in.</body></html>")
        body = self.files[self.path]
        start = int(self.headers["Range"].split("=")[1].rstrip("-")) if self.headers.get("Range") else 0
        if what == "cut once":
            self.behaviour[self.path] = None
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
            return None
        if start:
            return self._send(206, body[start:], {"Content-Range": f"bytes {start}-{len(body) - 1}/{len(body)}"})
        return self._send(200, body)

    def _send(self, status: int, body: bytes, headers: dict | None = None) -> None:
        self.send_response(status)
        for k, v in {"Content-Length": str(len(body)), **(headers or {})}.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):  # quiet
        pass


@pytest.fixture
def server():
    Server.files, Server.behaviour, Server.requests = {}, {}, []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Server)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def _tar(staging: Path, top: str, skip: tuple[str, ...] = ()) -> bytes:
    """A gzipped tar of ``staging/top`` as the dataset's host packs it (``top/...``)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        tar.add(staging / top, arcname=top, filter=lambda m: None if m.name.endswith(skip) else m)
    return out.getvalue()


def _spec(name: str, server: str, body: bytes, paths: list[str]) -> dict:
    """The real manifest's entry for ``name`` with its sources on the test server and the body's MD5."""
    spec = copy.deepcopy(fetch.manifest()[name])
    entry = spec["files"][0]
    entry["urls"] = [server + p for p in paths]
    if entry["md5"] is not None:
        entry["md5"] = hashlib.md5(body).hexdigest()
    return spec


@pytest.fixture
def dtd_archive(tmp_path):
    make_dtd(tmp_path / "staging")
    return _tar(tmp_path / "staging" / "describable_textures", "dtd")


def test_a_clean_fetch_lays_out_what_the_loader_reads_and_a_second_call_downloads_nothing(
    server, dtd_archive, tmp_path
):
    Server.files["/dtd.tgz"] = dtd_archive
    specs = {"dtd": _spec("dtd", server, dtd_archive, ["/dtd.tgz"])}
    root = tmp_path / "data"
    assert fetch.fetch(["dtd"], root, specs=specs, progress=False) == {"dtd": "fetched"}
    assert fetch.recorded(root, specs["dtd"]) == {"dtd-r1.0.1.tar.gz": hashlib.md5(dtd_archive).hexdigest()}
    images = load_paper_dataset("dtd", root, 8)
    assert len(images.class_names) == 47 and len(images.images) == 47 * 2
    assert fetch.fetch(["dtd"], root, specs=specs, progress=False) == {"dtd": "already present"}
    assert len(Server.requests) == 1


def test_the_command_line_fetches_from_a_manifest_and_the_second_time_does_nothing(
    server, dtd_archive, tmp_path, capsys
):
    import json

    Server.files["/dtd.tgz"] = dtd_archive
    manifest = tmp_path / "mirror.json"
    manifest.write_text(json.dumps({"dtd": _spec("dtd", server, dtd_archive, ["/dtd.tgz"])}))
    command = ["dtd", "--data-root", str(tmp_path / "data"), "--manifest", str(manifest)]
    assert fetch.main(command) == 0 and fetch.main(command) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"dtd: {what} in {tmp_path / 'data' / 'describable_textures'}" for what in ("fetched", "already present")
    ]
    assert len(Server.requests) == 1
    broken = _spec("dtd", server, dtd_archive, ["/missing.tgz"]) | {"folder": "elsewhere"}
    Server.behaviour["/missing.tgz"] = 404
    manifest.write_text(json.dumps({"broken": broken, "dtd": _spec("dtd", server, dtd_archive, ["/dtd.tgz"])}))
    other = ["broken,dtd", "--data-root", str(tmp_path / "other"), "--manifest", str(manifest)]
    assert fetch.main(other) == 2  # one dataset failed; the other is fetched all the same
    assert (tmp_path / "other" / "describable_textures" / fetch.RECORD).exists()
    assert f"{server}/missing.tgz (HTTP 404" in capsys.readouterr().err


def test_failing_sources_are_named_and_the_next_mirror_is_used(server, dtd_archive, tmp_path):
    Server.files["/mirror/dtd.tgz"] = dtd_archive
    Server.behaviour |= {"/gone.tgz": 403, "/moved.tgz": 404, "/login.tgz": "html"}
    spec = _spec("dtd", server, dtd_archive, ["/gone.tgz", "/moved.tgz", "/login.tgz", "/mirror/dtd.tgz"])
    assert fetch.fetch(["dtd"], tmp_path, specs={"dtd": spec}, progress=False) == {"dtd": "fetched"}
    assert [p for p, _ in Server.requests] == ["/gone.tgz", "/moved.tgz", "/login.tgz", "/mirror/dtd.tgz"]
    assert not list((tmp_path / "downloads").glob("*.part"))


def test_when_every_source_fails_one_error_names_each_url_and_how_to_place_the_file(server, dtd_archive, tmp_path):
    Server.behaviour |= {"/a.tgz": 403, "/b.tgz": "html"}
    spec = _spec("dtd", server, dtd_archive, ["/a.tgz", "/b.tgz"])
    with pytest.raises(fetch.FetchFailed) as failed:
        fetch.fetch(["dtd"], tmp_path, specs={"dtd": spec}, progress=False)
    said = str(failed.value)
    assert f"{server}/a.tgz (HTTP 403 Forbidden)" in said and f"{server}/b.tgz (has MD5 " in said
    assert "python -m gems_core.data.fetch dtd --from FOLDER" in said
    assert not (tmp_path / "describable_textures").exists()  # nothing extracted
    assert fetch.main(["dtd", "--data-root", str(tmp_path / "elsewhere")]) == 2  # the CLI: one line, status 2


def test_a_transfer_cut_short_is_resumed_where_it_stopped(server, dtd_archive, tmp_path):
    Server.files["/dtd.tgz"] = dtd_archive
    Server.behaviour["/dtd.tgz"] = "cut once"
    spec = _spec("dtd", server, dtd_archive, ["/dtd.tgz"])
    assert fetch.fetch(["dtd"], tmp_path, specs={"dtd": spec}, progress=False) == {"dtd": "fetched"}
    assert Server.requests == [("/dtd.tgz", None), ("/dtd.tgz", f"bytes={len(dtd_archive) // 2}-")]


def test_an_archive_member_outside_the_folder_is_refused_before_anything_is_extracted(server, tmp_path):
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name in ("dtd/images/ok.jpg", "../escaped.txt"):
            info = tarfile.TarInfo(name)
            info.size = 2
            tar.addfile(info, io.BytesIO(b"hi"))
    Server.files["/evil.tgz"] = out.getvalue()
    spec = _spec("dtd", server, out.getvalue(), ["/evil.tgz"])
    with pytest.raises(fetch.FetchFailed, match="'../escaped.txt', which lands outside"):
        fetch.fetch(["dtd"], tmp_path / "data", specs={"dtd": spec}, progress=False)
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "data" / "describable_textures" / "dtd").exists()


def test_aircraft_has_no_published_checksum_its_labels_are_built_and_from_dir_is_checked(server, tmp_path):
    make_aircraft(tmp_path / "staging")
    body = _tar(tmp_path / "staging" / "fgvc_aircraft", "fgvc-aircraft-2013b", skip=("labels.pkl",))
    Server.files["/aircraft.tgz"] = body
    spec = _spec("aircraft", server, body, ["/aircraft.tgz"])
    assert spec["files"][0]["md5"] is None  # none is published: the first download's is recorded
    fetch.fetch(["aircraft"], tmp_path / "data", specs={"aircraft": spec}, progress=False)
    assert fetch.recorded(tmp_path / "data", spec) == {"fgvc-aircraft-2013b.tar.gz": hashlib.md5(body).hexdigest()}
    images = load_paper_dataset("aircraft", tmp_path / "data", 8)
    assert len(images.class_names) == 100
    dtd = fetch.manifest()["dtd"]
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "dtd-r1.0.1.tar.gz").write_bytes(b"not the archive")
    with pytest.raises(fetch.FetchFailed, match="has MD5 .*, not the published fff73e5086ae6bdbea199a49dfb8a4c1"):
        fetch.fetch(["dtd"], tmp_path / "data", tmp_path / "mine", specs={"dtd": dtd}, progress=False)


def test_fungi_says_its_host_is_gone_and_takes_archives_from_a_folder(tmp_path):
    with pytest.raises(fetch.FetchFailed, match="labs.gbif.org/fgvcx/2018\\) answers HTTP 403 .* --from FOLDER"):
        fetch.fetch(["fungi"], tmp_path, progress=False)
    with pytest.raises(fetch.KitError, match="unknown dataset\\(s\\) \\['cubs'\\]; valid: cub, vgg_flowers"):
        fetch.fetch(["cubs"], tmp_path, progress=False)


def test_a_dataset_fetched_from_other_archives_builds_a_new_cache_and_says_so(server, tmp_path, tiny_params, capsys):
    import shutil

    from gems_core.data import load_distribution

    root = tmp_path / "data"
    params = tiny_params(distributions=[{"name": "textures", "source": "dtd"}], data_root=str(root))
    caches = []
    for per_class in (2, 3):  # the same dataset, fetched again from another copy of its archive
        shutil.rmtree(root / "describable_textures", ignore_errors=True)
        shutil.rmtree(root / "downloads", ignore_errors=True)
        make_dtd(tmp_path / f"staging{per_class}", per_class)
        body = _tar(tmp_path / f"staging{per_class}" / "describable_textures", "dtd")
        Server.files["/dtd.tgz"] = body
        fetch.fetch(["dtd"], root, specs={"dtd": _spec("dtd", server, body, ["/dtd.tgz"])}, progress=False)
        dist = load_distribution(params.distributions[0], params)
        assert not dist.cache_hit and sum(len(s.images) for s in dist.splits.values()) == 47 * per_class
        caches.append(dist.cache_path.name)
    assert caches[0] != caches[1] and all(hashlib.md5(b"").hexdigest() not in c for c in caches)
    said = capsys.readouterr().out
    assert f"textures: dtd was fetched from other archives than {caches[0]} was built from" in said
    assert load_distribution(params.distributions[0], params).cache_hit  # and read back the next time
