"""SessionUploads: a session's uploads are deleted when it ends, shared ones when the last user ends, and nothing
outside the upload folder is ever recorded or deleted."""

from pathlib import Path

from t2i.web.sessions import SessionUploads


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


def test_a_file_recorded_at_upload_outlives_another_session_that_used_it(tmp_path):
    """Issue 23: page A uploads a training image (recorded by the input's upload event) and has not used it yet;
    page B, or a gradio_client session, uploads the same bytes (the same path), uses them and ends."""
    uploads = SessionUploads(tmp_path / "uploads")
    shared = file(tmp_path / "uploads" / "h1" / "r0.png")
    uploads.track("page-a", [{"path": str(shared), "orig_name": "r0.png", "meta": {"_type": "gradio.FileData"}}])
    uploads.track("client-b", str(shared))
    assert uploads.end("client-b") == [] and shared.exists()
    assert uploads.end("page-a") == [shared.resolve()] and not shared.exists()


def test_gone_names_uploads_that_are_no_longer_there_and_nothing_else(tmp_path):
    folder = tmp_path / "uploads"
    kept = file(folder / "h1" / "here.png")
    uploads = SessionUploads(folder)
    gone = [str(folder / "h2" / "r0.png"), {"path": str(folder / "h3" / "caption.txt")}]
    others = [str(kept), str(tmp_path / "elsewhere" / "missing.png"), "h2/r0.png", "a prompt\0", str(folder),
              "x" * 100_000, 0.75, None]
    assert uploads.gone(*gone, *others) == ["r0.png", "caption.txt"]
