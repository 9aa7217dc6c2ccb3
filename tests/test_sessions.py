"""SessionUploads: a session's uploads are deleted when it ends, shared ones when the last user ends, and nothing
outside the upload folder is ever recorded or deleted."""

from pathlib import Path

from t2i.sessions import SessionUploads


def file(path: Path, text: str = "x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_a_session_end_deletes_its_uploads_and_keeps_shared_ones_until_the_last_user_ends(tmp_path):
    uploads = SessionUploads(tmp_path / "uploads")
    mine = file(tmp_path / "uploads" / "h1" / "init.png")
    shared = file(tmp_path / "uploads" / "h2" / "mask.png")
    theirs = file(tmp_path / "uploads" / "h3" / "control.png")
    uploads.track("a", str(mine), {"controlnet_1_image": str(shared), "controlnet_1_module": "canny"})
    uploads.track("b", [str(shared), str(theirs)], None, 0.75)

    assert uploads.end("a") == [mine.resolve()]
    assert not mine.exists() and not mine.parent.exists()  # the emptied hash folder goes too
    assert shared.exists() and theirs.exists()
    assert sorted(uploads.end("b")) == sorted([shared.resolve(), theirs.resolve()])
    assert not shared.exists() and not theirs.exists()
    assert uploads.end("b") == [] and uploads.end("never-seen") == []


def test_nothing_outside_the_upload_folder_is_recorded_or_deleted(tmp_path):
    folder = tmp_path / "uploads"
    outside = file(tmp_path / "outputs" / "result.png")
    sibling = file(tmp_path / "uploads-other" / "x.png")  # a name that only starts like the folder
    inside_folder = folder / "h1"
    file(inside_folder / "kept.txt")
    link = folder / "h2" / "link.png"
    link.parent.mkdir(parents=True)
    link.symlink_to(outside)
    uploads = SessionUploads(folder)

    recorded = uploads.track("a", str(outside), str(sibling), str(folder), str(inside_folder), str(link),
                             str(folder / "h1" / ".." / ".." / "outputs" / "result.png"), "a\0b", "x" * 100_000,
                             str(folder / "missing.png"))
    assert recorded == [] and uploads.files("a") == set()
    assert uploads.end("a") == []
    assert outside.exists() and sibling.exists() and link.is_symlink() and (inside_folder / "kept.txt").exists()


def test_tracking_needs_a_session(tmp_path):
    upload = file(tmp_path / "uploads" / "h" / "init.png")
    uploads = SessionUploads(tmp_path / "uploads")
    assert uploads.track("", str(upload)) == []
    assert uploads.end("") == [] and upload.exists()
