"""Style presets: loading (Fooocus JSON, A1111 CSV), applying, importing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from t2i.style_files import import_style_file, load_styles
from t2i.styles import BUILTIN_STYLES_DIR, Style, StyledPrompt, StyleLibrary, UnknownStyleError, apply_styles

REPO = Path(__file__).resolve().parent.parent


def write_json(path: Path, data) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def lib(*styles: Style) -> StyleLibrary:
    return StyleLibrary({s.name: s for s in styles}, [])


PHOTO = Style("Photo", "photo of {prompt}, sharp focus", "blurry, cartoon")
FILM = Style("Film", "{prompt}, film grain", "digital")
NONEG = Style("Plain", "{prompt} in the style of nothing", "")


# --------------------------------------------------------------------------- built-ins


def test_builtin_dir_is_repo_styles_folder():
    assert BUILTIN_STYLES_DIR == REPO / "styles"


def test_builtin_styles_load_cleanly():
    library = load_styles([BUILTIN_STYLES_DIR])
    assert library.problems == []
    assert len(library.styles) >= 24
    for name, style in library.styles.items():
        assert name == style.name
        assert style.prompt.count("{prompt}") == 1, name
        assert style.negative_prompt.count("{prompt}") == 0, name
        assert Path(style.source).parent == BUILTIN_STYLES_DIR
    for expected in ("Photographic", "Cinematic", "Watercolor", "Pixel Art", "Ukiyo-e", "Analog Film"):
        assert expected in library.styles


def test_builtin_files_are_fooocus_lists():
    files = sorted(BUILTIN_STYLES_DIR.glob("*.json"))
    assert len(files) >= 3
    for f in files:
        data = json.loads(f.read_text(encoding="utf-8"))
        assert isinstance(data, list)
        for entry in data:
            assert set(entry) == {"name", "prompt", "negative_prompt"}


def test_import_does_not_load_anything_or_gradio():
    code = (
        "import sys, t2i.styles as s; "
        "assert 'gradio' not in sys.modules; "
        "assert not [n for n in vars(s) if isinstance(getattr(s, n), s.StyleLibrary)]"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


# --------------------------------------------------------------------------- apply


def test_apply_one_style():
    out = apply_styles("a red fox", "text", ["Photo"], lib(PHOTO))
    assert out == StyledPrompt("photo of a red fox, sharp focus", "text, blurry, cartoon")
    prompt, negative = out  # still unpacks like a tuple
    assert (prompt, negative) == ("photo of a red fox, sharp focus", "text, blurry, cartoon")
    assert out.negative_prompt == "text, blurry, cartoon"


def test_apply_two_styles_wraps_in_order():
    library = lib(PHOTO, FILM)
    assert apply_styles("a red fox", "", ["Photo", "Film"], library) == (
        "photo of a red fox, sharp focus, film grain",
        "blurry, cartoon, digital",
    )
    assert apply_styles("a red fox", "", ["Film", "Photo"], library) == (
        "photo of a red fox, film grain, sharp focus",
        "digital, blurry, cartoon",
    )


def test_apply_is_case_insensitive_and_dedups():
    library = lib(PHOTO, NONEG)
    assert apply_styles("cat", "ugly", ["photo", "PLAIN", "Photo"], library) == (
        "photo of cat, sharp focus in the style of nothing",
        "ugly, blurry, cartoon",
    )


def test_apply_no_styles_strips_only():
    assert apply_styles("  cat ", " ugly ", [], lib()) == ("cat", "ugly")


def test_apply_empty_prompt():
    library = lib(PHOTO, FILM, Style("Tail", "{prompt}, 4k"), Style("Head", "poster of {prompt}"))
    assert apply_styles("", "", ["Photo"], library) == ("photo of, sharp focus", "blurry, cartoon")
    assert apply_styles("", "", ["Tail"], library) == ("4k", "")
    assert apply_styles("", "", ["Head"], library) == ("poster of", "")
    assert apply_styles("", "", ["Tail", "Film"], library) == ("4k, film grain", "digital")


def test_negative_with_placeholder_wraps_user_negative():
    library = lib(Style("W", "{prompt}", "(({prompt})), lowres"))
    assert apply_styles("x", "bad hands", ["W"], library) == ("x", "((bad hands)), lowres")


def test_unknown_style():
    with pytest.raises(UnknownStyleError, match=r"^unknown style 'xyz'$") as info:
        apply_styles("cat", "", ["Photo", "xyz"], lib(PHOTO))
    assert isinstance(info.value, ValueError)
    assert info.value.name == "xyz"


def test_apply_builtin_style_exact():
    library = load_styles([BUILTIN_STYLES_DIR])
    out = apply_styles("a lighthouse", "", ["pixel art"], library)
    assert out.prompt == (
        "pixel art of a lighthouse, 16-bit retro game sprite, limited color palette, "
        "crisp pixels, no anti-aliasing"
    )
    assert out.negative_prompt == library.styles["Pixel Art"].negative_prompt


# --------------------------------------------------------------------------- loading


def test_json_defaults_for_missing_keys(tmp_path):
    write_json(tmp_path / "a.json", [
        {"name": "OnlyName"},
        {"name": "NoNeg", "prompt": "art of {prompt}"},
        {"name": "NoPlaceholder", "prompt": "dramatic", "negative_prompt": None},
    ])
    library = load_styles([tmp_path])
    assert library.problems == []
    assert library.styles == {
        "OnlyName": Style("OnlyName", "{prompt}", "", str(tmp_path / "a.json")),
        "NoNeg": Style("NoNeg", "art of {prompt}", "", str(tmp_path / "a.json")),
        "NoPlaceholder": Style("NoPlaceholder", "{prompt}, dramatic", "", str(tmp_path / "a.json")),
    }


def test_a1111_csv(tmp_path):
    (tmp_path / "styles.csv").write_text(
        "name,prompt,negative_prompt\n"
        'Wrapped,"portrait of {prompt}, bokeh","blurry, lowres"\n'
        "Appended,masterpiece,\n"
        '"Quoted, name","trending, detailed",ugly\n'
        "# comment row,ignored,\n"
        "\n"
        "Empty,,\n",
        encoding="utf-8",
    )
    library = load_styles([tmp_path])
    assert library.problems == []
    assert list(library.styles) == ["Wrapped", "Appended", "Quoted, name", "Empty"]
    assert library.styles["Wrapped"].prompt == "portrait of {prompt}, bokeh"
    assert library.styles["Appended"].prompt == "{prompt}, masterpiece"
    assert library.styles["Quoted, name"].prompt == "{prompt}, trending, detailed"
    assert library.styles["Empty"].prompt == "{prompt}"
    assert apply_styles("a dog", "", ["Wrapped"], library) == ("portrait of a dog, bokeh", "blurry, lowres")
    # A1111 joins an appended style with ", " and skips an empty user prompt
    assert apply_styles("a dog", "bad", ["Appended", "Quoted, name"], library) == (
        "a dog, masterpiece, trending, detailed",
        "bad, ugly",
    )
    assert apply_styles("", "", ["Appended"], library) == ("masterpiece", "")


def test_a1111_csv_old_text_column_and_bom(tmp_path):
    (tmp_path / "old.csv").write_bytes("\ufeffname,text\nLegacy,oil on canvas\n".encode("utf-8"))
    library = load_styles([tmp_path])
    assert library.problems == []
    assert library.styles["Legacy"].prompt == "{prompt}, oil on canvas"
    assert library.styles["Legacy"].negative_prompt == ""


def test_broken_files_reported_and_skipped(tmp_path):
    write_json(tmp_path / "good.json", [{"name": "Good", "prompt": "good {prompt}"}])
    (tmp_path / "bad_syntax.json").write_text("[{", encoding="utf-8")
    write_json(tmp_path / "bad_shape.json", {"name": "NotAList", "prompt": "{prompt}"})
    write_json(tmp_path / "mixed.json", [
        {"prompt": "nameless {prompt}"},
        {"name": "Twice", "prompt": "{prompt} and {prompt}"},
        "just a string",
        {"name": "NumPrompt", "prompt": 3},
        {"name": "Fine", "prompt": "fine {prompt}"},
    ])
    (tmp_path / "bad.csv").write_text("title,body\nx,y\n", encoding="utf-8")
    (tmp_path / "binary.json").write_bytes(b"\xff\xfe\x00garbage")
    (tmp_path / "ignored.txt").write_text("not a style file", encoding="utf-8")
    library = load_styles([tmp_path])
    assert list(library.styles) == ["Good", "Fine"]
    assert len(library.problems) == 8
    text = "\n".join(library.problems)
    for fragment in (
        "bad_syntax.json: invalid JSON",
        "bad_shape.json: expected a JSON list of styles, got dict",
        "mixed.json: entry 1: entry has no name",
        "mixed.json: entry 2: style 'Twice': prompt contains {prompt} more than once",
        "mixed.json: entry 3: expected an object, got str",
        "mixed.json: entry 4: style 'NumPrompt': prompt is not a string",
        "bad.csv: expected a CSV header",
        "binary.json: not UTF-8 text",
    ):
        assert fragment in text, fragment


def test_csv_row_problems(tmp_path):
    (tmp_path / "s.csv").write_text(
        'name,prompt,negative_prompt\n,"{prompt}",x\nDup,"{prompt} {prompt}",\nOk,"{prompt}!",\n',
        encoding="utf-8",
    )
    library = load_styles([tmp_path])
    assert list(library.styles) == ["Ok"]
    assert [p.split(": ", 1)[1] for p in library.problems] == [
        "line 2: entry has no name; skipped",
        "line 3: style 'Dup': prompt contains {prompt} more than once; skipped",
    ]


def test_duplicate_names_first_wins(tmp_path):
    first, second = tmp_path / "builtin", tmp_path / "user"
    first.mkdir()
    second.mkdir()
    write_json(first / "a.json", [{"name": "Cinematic", "prompt": "builtin {prompt}"}])
    write_json(second / "a.json", [
        {"name": "cinematic", "prompt": "override {prompt}"},
        {"name": "Mine", "prompt": "mine {prompt}"},
        {"name": "MINE ", "prompt": "again {prompt}"},
    ])
    library = load_styles([first, second])
    assert list(library.styles) == ["Cinematic", "Mine"]
    assert library.styles["Cinematic"].prompt == "builtin {prompt}"
    assert library.get("CINEMATIC") is library.styles["Cinematic"]
    assert library.problems == [
        f"{second / 'a.json'}: duplicate style name 'cinematic' (already defined in {first / 'a.json'}); skipped",
        f"{second / 'a.json'}: duplicate style name 'MINE' (already defined in {second / 'a.json'}); skipped",
    ]


def test_missing_folder_is_ignored_file_path_is_reported(tmp_path):
    not_a_dir = tmp_path / "f.json"
    write_json(not_a_dir, [])
    library = load_styles([tmp_path / "nope", not_a_dir])
    assert library.styles == {}
    assert library.problems == [f"{not_a_dir}: not a folder; skipped"]


# --------------------------------------------------------------------------- import


def test_import_json(tmp_path):
    src = write_json(tmp_path / "My Styles!.json", [{"name": "Dreamy", "prompt": "dreamy {prompt}"}])
    dest = tmp_path / "user_styles"
    assert import_style_file(src, dest) == ["Dreamy"]
    assert [p.name for p in dest.iterdir()] == ["My_Styles.json"]
    assert (dest / "My_Styles.json").read_bytes() == src.read_bytes()
    # a second file with the same stem gets a new name, never overwrites
    src2 = write_json(tmp_path / "My Styles!.JSON", [{"name": "Sharp", "prompt": "sharp {prompt}"}])
    assert import_style_file(src2, dest) == ["Sharp"]
    assert sorted(p.name for p in dest.iterdir()) == ["My_Styles-2.json", "My_Styles.json"]
    assert list(load_styles([dest]).styles) == ["Sharp", "Dreamy"]  # files load in sorted order


def test_import_csv(tmp_path):
    src = tmp_path / "styles.csv"
    src.write_text("name,prompt,negative_prompt\nA,alpha,\nB,beta {prompt},bad\n", encoding="utf-8")
    assert import_style_file(src, tmp_path / "dest") == ["A", "B"]
    assert (tmp_path / "dest" / "styles.csv").read_bytes() == src.read_bytes()


def test_import_refuses_oversize(tmp_path):
    src = write_json(tmp_path / "big.json", [{"name": "Big", "prompt": "{prompt}" + "x" * 2000}])
    with pytest.raises(ValueError, match="larger than 1000 bytes"):
        import_style_file(src, tmp_path / "dest", max_bytes=1000)
    assert not (tmp_path / "dest").exists()


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("g.json", b"\x00\x01garbage", "not UTF-8 text|invalid JSON"),
        ("g.json", b"{not json", "invalid JSON"),
        ("g.json", b'{"name": "x"}', "expected a JSON list"),
        ("g.json", b"[]", "contains no styles"),
        ("g.json", b'[{"name": "ok"}, {"prompt": "{prompt}"}]', "entry 2: entry has no name"),
        ("g.json", b'[{"name": "a"}, {"name": "A"}]', "'A' appears twice"),
        ("g.csv", b"foo,bar\n1,2\n", "expected a CSV header"),
        ("g.png", b"\x89PNG", "expected .json or .csv"),
        ("noext", b"[]", "expected .json or .csv"),
    ],
)
def test_import_refuses_garbage(tmp_path, name, content, message):
    src = tmp_path / name
    src.write_bytes(content)
    with pytest.raises(ValueError, match=message):
        import_style_file(src, tmp_path / "dest")
    assert not (tmp_path / "dest").exists()


def test_import_refuses_existing_names(tmp_path):
    dest = tmp_path / "dest"
    import_style_file(write_json(tmp_path / "one.json", [{"name": "Mine"}]), dest)
    with pytest.raises(ValueError, match=r"style 'mine' already exists \(one.json\)"):
        import_style_file(write_json(tmp_path / "two.json", [{"name": "mine"}]), dest)
    with pytest.raises(ValueError, match=r"style 'Cinematic' already exists"):
        import_style_file(
            write_json(tmp_path / "three.json", [{"name": "Cinematic"}]),
            dest,
            existing_names=load_styles([BUILTIN_STYLES_DIR]).names(),
        )
    assert [p.name for p in dest.iterdir()] == ["one.json"]


@pytest.mark.parametrize(
    ("filename", "stored"),
    [
        ("..json", "styles.json"),
        ("...json", "styles.json"),
        ("..\\..\\evil.json", "evil.json"),
        ("%2e%2e%2fetc%2fpasswd.json", "2e_2e_2fetc_2fpasswd.json"),
        (".hidden.json", "hidden.json"),
        ("тест.json", "styles.json"),
    ],
)
def test_import_sanitizes_file_names(tmp_path, filename, stored):
    upload = tmp_path / "upload"
    upload.mkdir()
    src = write_json(upload / filename, [{"name": "S"}])
    dest = tmp_path / "dest"
    assert import_style_file(src, dest) == ["S"]
    assert [p.name for p in dest.iterdir()] == [stored]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dest", "upload"]


def test_import_traversal_path_lands_in_dest(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    src = write_json(tmp_path / "a" / "evil.json", [{"name": "E"}])
    dest = tmp_path / "a" / "b" / "dest"
    dest.mkdir()
    traversal = dest / ".." / ".." / "evil.json"  # resolves to src itself
    assert import_style_file(traversal, dest) == ["E"]
    assert [p.name for p in dest.iterdir()] == ["evil.json"]
    assert src.read_text(encoding="utf-8") == json.dumps([{"name": "E"}])
