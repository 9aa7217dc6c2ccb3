"""An uploaded A1111 styles.csv parses whole or is refused with the line and the problem (issue 23, item 7)."""

from __future__ import annotations

import pytest

from t2i.style_files import load_styles, read_style_upload
from t2i.styles import Style

HEADER = "name,prompt,negative_prompt\n"


def upload(tmp_path, text: str) -> list[Style]:
    path = tmp_path / "styles.csv"
    path.write_text(text, encoding="utf-8")
    return read_style_upload(path)


@pytest.mark.parametrize("body, message", [
    # a quote opened and never closed swallows the rest of the file into one field
    ('Watercolor,"watercolor {prompt},blurry\nPixel Art,pixel art {prompt},\nNoir,noir {prompt},\n',
     r"invalid CSV at line 2: unexpected end of data \(an unbalanced or stray quote\?\)"),
    # text after a closing quote: the quote was stray
    ('Watercolor,watercolor {prompt},\nPixel Art,"pixel art" of {prompt},\n',
     "invalid CSV at line 3: ',' expected after '\"'"),
    # rows that lost their fields would be presets with empty prompts
    ("Watercolor\nPixel Art\n", "line 2: 1 field where the header has 3 \\(name,prompt,negative_prompt\\)"),
    ("Watercolor,watercolor {prompt},blurry,extra\n", "line 2: 4 fields where the header has 3"),
    # the line named is where the row starts, after a quoted field over two lines
    ('Two lines,"first line\nsecond {prompt}",\nWide,wide {prompt},x,y\n', "line 4: 4 fields"),
])
def test_malformed_rows_are_refused_with_their_line(tmp_path, body, message):
    with pytest.raises(ValueError, match=message):
        upload(tmp_path, HEADER + body)


def test_an_upload_refusal_says_refused_not_skipped(tmp_path):
    with pytest.raises(ValueError) as refused:
        upload(tmp_path, HEADER + "Watercolor\n")
    assert str(refused.value) == ("invalid style file: styles.csv: line 2: 1 field where the header has 3 "
                                  "(name,prompt,negative_prompt)")


@pytest.mark.parametrize("header, message", [
    ("name,prompt,negative_prompt,notes\n", "unknown column 'notes' in the header"),
    ("name,prompt,prompt\n", "column 'prompt' appears twice"),
    ("name,prompt,text\n", "both 'prompt' and the old 'text' column"),
    ("name;prompt;negative_prompt\n", "expected a CSV header with columns name,prompt,negative_prompt"),
])
def test_headers_other_than_a1111s_are_refused(tmp_path, header, message):
    with pytest.raises(ValueError, match=message):
        upload(tmp_path, header + "Watercolor,watercolor {prompt},\n")


def test_a_well_formed_a1111_file_is_read_whole(tmp_path):
    styles = upload(tmp_path, HEADER + (
        'Watercolor,"watercolor painting of {prompt}, soft","photo, sharp"\n'
        "# a comment row,ignored,\n"
        "\n"
        'Two lines,"first line\nsecond {prompt}",\n'
        "Negative only,,\"blurry, lowres\"\n"
        "None,,\n"  # A1111's own "no style" row: well-formed, does nothing
        'Quote inside,a "quoted" word,\n'))
    source = "styles.csv"
    assert styles == [
        Style("Watercolor", "watercolor painting of {prompt}, soft", "photo, sharp", source),
        Style("Two lines", "first line\nsecond {prompt}", "", source),
        Style("Negative only", "{prompt}", "blurry, lowres", source),
        Style("None", "{prompt}", "", source),
        Style("Quote inside", '{prompt}, a "quoted" word', "", source),
    ]


def test_a_folder_scan_skips_bad_rows_and_names_their_lines(tmp_path):
    (tmp_path / "s.csv").write_text(HEADER + "Good,good {prompt},\nWide,w,x,y\nShort\n", encoding="utf-8")
    library = load_styles([tmp_path])
    assert list(library.styles) == ["Good"]
    assert [problem.split(": ", 1)[1] for problem in library.problems] == [
        "line 3: 4 fields where the header has 3 (name,prompt,negative_prompt); skipped",
        "line 4: 1 field where the header has 3 (name,prompt,negative_prompt); skipped",
    ]
