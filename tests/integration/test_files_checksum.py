"""`files.checksum`: validation of its paths (absolute paths and `..` refused with field
errors), real runs through the worker's runner on files in tmp_path, symlinks that lead out
of the root, cancellation in the middle of a file."""

from __future__ import annotations

import hashlib
import json
import os

import orjson
import pytest
from pydantic import ValidationError

from jobcast.events.history import read_history
from jobcast.jobs.kinds import files
from jobcast.jobs.kinds.files import ChecksumParams
from jobcast.jobs.models import Job
from jobcast.jobs.services import job_cancel, job_submit
from jobcast.worker.runner import run_job

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]


@pytest.fixture
def root(tmp_path, settings):
    """The files root, with a few real files, a folder outside it and a symlink to it."""
    root = tmp_path / "root"
    (root / "releases" / "1.4").mkdir(parents=True)
    (root / "releases" / "1.4" / "app.tar").write_bytes(os.urandom(300_000))
    (root / "releases" / "1.4" / "NOTES.md").write_text("fixed everything\n")
    (root / "releases" / "empty").write_bytes(b"")
    (root / "top.txt").write_text("top\n")
    outside = tmp_path / "secret"
    outside.mkdir()
    (outside / "key").write_text("do not read me")
    settings.JOBCAST = {**settings.JOBCAST, "FILES_ROOT": str(root), "PROGRESS_MAX_RATE": 0}
    return root


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def events_of(redis, job):
    return [orjson.loads(e.text) for e in read_history(redis, job.id, 0).events]


def run(user, **params) -> Job:
    job, _ = job_submit(user, "files.checksum", params)
    run_job(str(job.id))
    job.refresh_from_db()
    return job


# --- params -------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["../etc/passwd", "/etc/passwd", "a/../../b", "releases/..", "..",
                                  "..\\secret", "C:\\Windows", "C:/Windows", "", "a\x00b"])
def test_paths_that_could_leave_the_root_are_refused(path):
    with pytest.raises(ValidationError) as caught:
        ChecksumParams(paths=["ok.txt", path])
    assert [e["loc"] for e in caught.value.errors()] == [("paths", 1)]


def test_paths_are_normalised_and_default_to_the_whole_root():
    assert ChecksumParams().paths == ["."]
    assert ChecksumParams(paths=["a//b/./c", "d\\e"]).paths == ["a/b/c", "d/e"]


def test_an_escaping_path_is_a_400_with_a_field_error_per_path(api_client, root):
    body = {"kind": "files.checksum", "params": {"paths": ["top.txt", "../secret/key", "/etc/passwd"]}}
    response = api_client.post("/api/jobs/", data=json.dumps(body), content_type="application/json")
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert [e["loc"] for e in errors] == [["body", "params", "paths", 1], ["body", "params", "paths", 2]]
    assert "'..'" in errors[0]["msg"] and "not absolute" in errors[1]["msg"]
    assert not Job.objects.exists()


def test_the_kind_is_listed_with_its_schema(api_client):
    kinds = {k["name"]: k for k in api_client.get("/api/kinds/").json()}
    schema = kinds["files.checksum"]["params_schema"]
    assert set(schema["properties"]) == {"paths", "max_files"}


# --- runs ---------------------------------------------------------------------------------------

def test_checksums_every_file_under_a_folder_with_byte_progress(user, redis, root):
    job = run(user, paths=["releases"])
    assert job.state == "succeeded", job.error
    release = root / "releases" / "1.4"
    assert job.result == {
        "releases/1.4/NOTES.md": sha256(release / "NOTES.md"),
        "releases/1.4/app.tar": sha256(release / "app.tar"),
        "releases/empty": hashlib.sha256(b"").hexdigest(),
    }
    # In path order as the kind returns it (the terminal event; PostgreSQL's jsonb column
    # keeps its own key order, and JSON objects promise none).
    assert list(events_of(redis, job)[-1]["result"]) == sorted(job.result)
    total = 300_000 + len("fixed everything\n")
    progress = [e for e in events_of(redis, job) if e["type"] == "progress"]
    assert progress[0]["current"] == 0 and progress[0]["total"] == total and "3 files" in progress[0]["message"]
    currents = [e["current"] for e in progress]
    assert currents == sorted(currents) and currents[-1] == total and job.progress["percent"] == 100.0
    assert {e["message"] for e in progress[1:]} == set(job.result)  # each file named as it is read
    logs = [e["message"] for e in events_of(redis, job) if e["type"] == "log"]
    assert logs == [f"checksummed 3 files, {total} bytes"]


def test_the_default_is_the_whole_root_and_a_file_may_be_named(user, root):
    whole = run(user)
    assert set(whole.result) == {"top.txt", "releases/1.4/NOTES.md", "releases/1.4/app.tar", "releases/empty"}
    one = run(user, paths=["top.txt", "./top.txt"])
    assert one.result == {"top.txt": sha256(root / "top.txt")}


def test_a_symlink_out_of_the_root_is_skipped_when_walking_and_fails_when_named(user, redis, root, tmp_path):
    (root / "releases" / "leak").symlink_to(tmp_path / "secret" / "key")
    (root / "secret-dir").symlink_to(tmp_path / "secret", target_is_directory=True)
    os.mkfifo(root / "releases" / "pipe")  # never read: a FIFO would block the job

    walked = run(user, paths=["."])
    assert walked.state == "succeeded", walked.error
    assert not any("leak" in p or "secret" in p or "pipe" in p for p in walked.result)
    logs = [e["message"] for e in events_of(redis, walked) if e["type"] == "log"]
    assert "skipped releases/leak: it leads outside the files root" in logs

    for path in ("releases/leak", "secret-dir", "secret-dir/key"):
        named = run(user, paths=[path])
        assert named.state == "failed" and named.error["type"] == "ChecksumError", path
        assert "outside the files root" in named.error["message"]
        assert str(tmp_path) not in named.error["message"]  # no server path to the client


def test_missing_paths_too_many_files_and_a_missing_root_fail_clearly(user, root, settings):
    missing = run(user, paths=["nope"])
    assert missing.state == "failed" and missing.error == {
        "type": "ChecksumError", "message": "no file or folder 'nope' under the files root"}
    many = run(user, paths=["releases"], max_files=2)
    assert many.state == "failed" and "more than 2 files" in many.error["message"]
    settings.JOBCAST = {**settings.JOBCAST, "FILES_ROOT": str(root / "gone")}
    no_root = run(user)
    assert no_root.state == "failed" and "files root does not exist" in no_root.error["message"]


def test_an_unreadable_file_fails_the_job_naming_it(user, root, monkeypatch):
    # The suite may run as root, which reads any file whatever its mode: refuse the open instead.
    def refuse(path, mode="r"):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(files, "open", refuse, raising=False)
    job = run(user, paths=["top.txt"])
    assert job.state == "failed"
    assert job.error == {"type": "ChecksumError", "message": "cannot read top.txt: Permission denied"}


def test_a_cancel_stops_it_between_chunks_of_a_file(user, redis, root, settings, monkeypatch):
    # Small chunks and a short check interval; the cancel is requested (the real way:
    # job_cancel sets the flag the job's context polls) once 2 MiB of a 16 MiB file have
    # been hashed, and the job must stop long before the file's end.
    settings.JOBCAST = {**settings.JOBCAST, "CANCEL_CHECK_INTERVAL": 0.001}
    monkeypatch.setattr(files, "CHUNK", 4096)
    (root / "big.bin").write_bytes(os.urandom(16 << 20))
    job, _ = job_submit(user, "files.checksum", {"paths": ["big.bin"]})
    hashed = []

    class CancellingSha256:
        def __init__(self):
            self.digest = hashlib.sha256()

        def update(self, chunk):
            self.digest.update(chunk)
            hashed.append(len(chunk))
            if sum(hashed) == 2 << 20:
                job_cancel(user, job.id)

        def hexdigest(self):
            return self.digest.hexdigest()

    monkeypatch.setattr(files, "hashlib", type("hashlib", (), {"sha256": CancellingSha256}))
    run_job(str(job.id))
    job.refresh_from_db()
    assert job.state == "cancelled" and job.result is None
    assert (2 << 20) <= sum(hashed) < (8 << 20), sum(hashed)
    assert events_of(redis, job)[-1]["state"] == "cancelled"
