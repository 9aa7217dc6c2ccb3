"""Drawing an X/Y/Z grid: cells edge to edge, X labels above the columns, Y labels left of the rows, and the Z
value as a title; labels are drawn with PIL's bundled font, wrapped to their column or row."""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

BACKGROUND = (255, 255, 255)
INK = (0, 0, 0)
WITHHELD = (128, 128, 128)  # a cell the safety gate withheld


def font_for(cell_width: int) -> ImageFont.ImageFont:
    """The label font, sized to the cells (readable on 64 px cells, not huge on 1024 px ones)."""
    return ImageFont.load_default(size=max(10, min(36, cell_width // 10)))


def _wrap(text: str, font, width: int) -> list[str]:
    """`text` in lines no wider than `width` (a word longer than that is cut into pieces)."""
    lines: list[str] = []
    for word in text.split(" "):
        while font.getlength(word) > width and len(word) > 1:  # a long word alone: cut it
            cut = max(1, next(i for i in range(len(word), 0, -1) if font.getlength(word[:i]) <= width or i == 1))
            if lines and lines[-1] == "":
                lines.pop()
            lines.append(word[:cut])
            word = word[cut:]
        if lines and font.getlength(f"{lines[-1]} {word}") <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines or [""]


def draw_label(text: str, width: int, height: int, font) -> Image.Image:
    """One label box: `text` wrapped and centred in a `width`×`height` white box."""
    box = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(box)
    lines = _wrap(text, font, width - 4)
    line_height = font.size + 2
    top = (height - line_height * len(lines)) // 2
    for i, line in enumerate(lines):
        draw.text(((width - font.getlength(line)) / 2, top + i * line_height), line, fill=INK, font=font)
    return box


@dataclass(frozen=True)
class Layout:
    """Where everything goes on one grid: the label bands and each cell's top-left corner."""

    columns: int
    rows: int
    cell_width: int
    cell_height: int
    left: int  # width of the Y label band (0 without a Y axis)
    top: int  # height of the title and X label bands together
    title_height: int  # height of the Z title band (0 without a Z axis)

    @property
    def size(self) -> tuple[int, int]:
        return self.left + self.columns * self.cell_width, self.top + self.rows * self.cell_height

    def cell_box(self, column: int, row: int) -> tuple[int, int, int, int]:
        """The (left, top, right, bottom) of one cell."""
        x, y = self.left + column * self.cell_width, self.top + row * self.cell_height
        return x, y, x + self.cell_width, y + self.cell_height


def plan_layout(columns: int, rows: int, cell_size: tuple[int, int], x_labels: bool, y_labels: bool,
                title: bool) -> Layout:
    """The layout of a grid of `columns`×`rows` cells of `cell_size`, with the label bands it needs."""
    width, height = cell_size
    font = font_for(width)
    band = 3 * (font.size + 2) + 8  # room for three lines of label
    title_height = band if title else 0
    return Layout(columns, rows, width, height, left=max(width, 4 * band) if y_labels else 0,
                  top=title_height + (band if x_labels else 0), title_height=title_height)


def draw_grid(cells: list[list[Image.Image | None]], layout: Layout, x_labels: list[str], y_labels: list[str],
              title: str = "") -> Image.Image:
    """The grid image: `cells[row][column]` (None: withheld, drawn grey) with its labels."""
    grid = Image.new("RGB", layout.size, BACKGROUND)
    font = font_for(layout.cell_width)
    if layout.title_height:
        grid.paste(draw_label(title, layout.size[0], layout.title_height, font), (0, 0))
    x_band = layout.top - layout.title_height
    for column, text in enumerate(x_labels if x_band else []):
        grid.paste(draw_label(text, layout.cell_width, x_band, font), (layout.cell_box(column, 0)[0],
                                                                        layout.title_height))
    for row, text in enumerate(y_labels if layout.left else []):
        grid.paste(draw_label(text, layout.left, layout.cell_height, font), (0, layout.cell_box(0, row)[1]))
    for row, line in enumerate(cells):
        for column, image in enumerate(line):
            box = layout.cell_box(column, row)
            cell = image.convert("RGB") if image is not None else Image.new(
                "RGB", (layout.cell_width, layout.cell_height), WITHHELD)
            grid.paste(cell, box[:2])
    return grid


def stack(grids: list[Image.Image]) -> Image.Image:
    """Several grids (one per Z value) one above the other, as one image."""
    width = max(grid.width for grid in grids)
    stacked = Image.new("RGB", (width, sum(grid.height for grid in grids)), BACKGROUND)
    top = 0
    for grid in grids:
        stacked.paste(grid, (0, top))
        top += grid.height
    return stacked
