"""Training datasets: gather images (+ same-name .txt captions) from uploads, a folder or a zip, and check them.

Every image is decoded before any training starts. Decisions, for the user's sake stated once:
- junk files (.DS_Store, Thumbs.db, desktop.ini, __MACOSX/, ._*) and other non-image files are skipped with a note;
- an image that cannot be decoded, a 0-byte file, a decompression bomb, an animated image (GIF/APNG/WebP) or an
  image smaller than `min_side` refuses the whole dataset with a message naming the file: a training set that
  silently loses pictures teaches something else than the user chose (export one frame of an animation yourself);
- CMYK, palette, greyscale and transparent images are converted to RGB (transparency on white), with a note;
- every image is re-encoded from its pixels after EXIF orientation is applied, so no EXIF/GPS data survives;
- exact duplicates (same pixels) are removed with a note;
- every image goes through the safety gate; a flagged image refuses the dataset;
- an optional mask per image for masked loss: NAME.mask.png (any image format) beside NAME.png, greyscale, white =
  trained on, black = ignored, grey in between; a mask must have its image's size, and a mask without its image
  or one that is black all over refuses the dataset.
A zip is read in memory member by member with size caps and is never extracted by name (no zip slip).
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Iterable

from PIL import Image, ImageOps, UnidentifiedImageError

from t2i.request import RequestError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
JUNK_NAMES = {".ds_store", "thumbs.db", "desktop.ini"}
MAX_CAPTION_CHARS = 1000
MASK_SUFFIX = ".mask"  # NAME.mask.png is the loss mask of NAME.png


@dataclass(frozen=True)
class DatasetLimits:
    """How many images a dataset may have, how small and how large each may be."""

    min_images: int = 3
    max_images: int = 500
    min_side: int = 32
    max_pixels: int = 4096 * 4096  # larger headers are decompression bombs, refused before decoding
    max_file_bytes: int = 20 << 20
    max_total_bytes: int = 1 << 30  # all files (or zip members) together, uncompressed


@dataclass
class DatasetItem:
    """One training image (RGB, metadata-free) with its caption ('' when none was given) and its optional loss mask
    (mode "L", the image's size; 255 = trained on, 0 = ignored)."""

    name: str
    image: Image.Image
    caption: str = ""
    mask: Image.Image | None = None


@dataclass
class Dataset:
    """Checked images and the notes a user should read (skipped files, conversions, duplicates)."""

    items: list[DatasetItem]
    notes: list[str] = field(default_factory=list)

    def save(self, folder: Path) -> Path:
        """Write the images as PNG (no metadata), captions as .txt and masks as .mask.png, plus a manifest of the
        source names."""
        folder.mkdir(parents=True, exist_ok=True)
        manifest = []
        for index, item in enumerate(self.items):
            stem = f"{index:04d}"
            item.image.save(folder / f"{stem}.png")
            (folder / f"{stem}.txt").write_text(item.caption, encoding="utf-8")
            entry = {"file": f"{stem}.png", "source": item.name, "caption": item.caption}
            if item.mask is not None:
                item.mask.save(folder / f"{stem}{MASK_SUFFIX}.png")
                entry["mask"] = f"{stem}{MASK_SUFFIX}.png"
            manifest.append(entry)
        (folder / "manifest.json").write_text(json.dumps({"items": manifest, "notes": self.notes}, indent=1))
        return folder


def load_saved(folder: Path) -> Dataset:
    """A dataset written by Dataset.save (the trainer's input)."""
    manifest = json.loads((folder / "manifest.json").read_text())
    items = []
    for entry in manifest["items"]:
        path = folder / entry["file"]
        with Image.open(path) as image:
            items.append(DatasetItem(entry["source"], image.convert("RGB"),
                                     path.with_suffix(".txt").read_text(encoding="utf-8").strip()))
        if entry.get("mask"):
            with Image.open(folder / entry["mask"]) as mask:
                items[-1].mask = mask.convert("L")
    return Dataset(items, manifest.get("notes", []))


@dataclass
class _RawFile:
    name: str
    data: bytes


def _is_mask(name: str) -> bool:
    return PurePosixPath(name).stem.lower().endswith(MASK_SUFFIX)


def _is_junk(name: str) -> bool:
    path = PurePosixPath(name)
    return path.name.lower() in JUNK_NAMES or path.name.startswith("._") or "__MACOSX" in path.parts


def _read_zip(path: Path, limits: DatasetLimits, notes: list[str]) -> list[_RawFile]:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise RequestError(f"{path.name} is not a readable zip file ({exc})") from exc
    with archive:
        members = [m for m in archive.infolist() if not m.is_dir()]
        _check_count(sum(PurePosixPath(m.filename).suffix.lower() in IMAGE_SUFFIXES and not _is_junk(m.filename)
                         and not _is_mask(m.filename) for m in members), limits)
        files, total = [], 0
        for member in members:
            if _is_junk(member.filename):
                notes.append(f"skipped {member.filename} (not an image)")
                continue
            if member.file_size > limits.max_file_bytes:
                raise RequestError(f"{member.filename} is {member.file_size >> 20} MB unpacked; "
                                   f"the limit is {limits.max_file_bytes >> 20} MB per file")
            with archive.open(member) as handle:  # the declared size may lie: never read past the cap
                data = handle.read(limits.max_file_bytes + 1)
            if len(data) > limits.max_file_bytes:
                raise RequestError(f"{member.filename} unpacks past {limits.max_file_bytes >> 20} MB")
            total += len(data)
            if total > limits.max_total_bytes:
                raise RequestError(f"the zip unpacks past {limits.max_total_bytes >> 20} MB in all")
            files.append(_RawFile(member.filename, data))
        return files


def _check_count(count: int, limits: DatasetLimits) -> None:
    if count > limits.max_images:
        raise RequestError(f"{count} images; at most {limits.max_images} can be trained on at once")


def _gather(sources: Iterable[Path], limits: DatasetLimits, notes: list[str]) -> list[_RawFile]:
    """Raw bytes of every file in the uploads, folders (not recursive into junk) and zips."""
    paths: list[Path] = []
    for source in map(Path, sources):
        if source.is_dir():
            paths += sorted(p for p in source.rglob("*") if p.is_file())
        elif source.is_file():
            paths.append(source)
        else:
            raise RequestError(f"{source} does not exist")
    _check_count(sum(p.suffix.lower() in IMAGE_SUFFIXES and not _is_junk(p.as_posix()) and not _is_mask(p.name)
                     for p in paths), limits)
    files, total = [], 0
    for path in paths:
        if path.suffix.lower() == ".zip":
            files += _read_zip(path, limits, notes)
            continue
        size = path.stat().st_size
        if size > limits.max_file_bytes:
            raise RequestError(f"{path.name} is {size >> 20} MB; the limit is {limits.max_file_bytes >> 20} MB per file")
        total += size
        if total > limits.max_total_bytes:
            raise RequestError(f"the files add up past {limits.max_total_bytes >> 20} MB")
        files.append(_RawFile(path.name, path.read_bytes()))
    return files


def _decode(raw: _RawFile, limits: DatasetLimits, notes: list[str]) -> Image.Image:
    """Fully decoded RGB pixels of one file, or a RequestError that names it."""
    name = raw.name
    if not raw.data:
        raise RequestError(f"{name} is an empty (0-byte) file")
    try:
        with Image.open(io.BytesIO(raw.data)) as image:
            width, height = image.size
            if width * height > limits.max_pixels:  # checked on the header, before any pixel is decoded
                raise RequestError(f"{name} claims {width}x{height} pixels (a decompression bomb?); "
                                   f"the limit is {limits.max_pixels} pixels")
            if getattr(image, "n_frames", 1) > 1:
                raise RequestError(f"{name} is animated ({image.n_frames} frames); save one frame as PNG or JPEG")
            image.load()
            mode = image.mode
            image = ImageOps.exif_transpose(image)
    except RequestError:
        raise
    except Image.DecompressionBombError as exc:  # Pillow's own guard, for headers past twice its limit
        raise RequestError(f"{name} is too large to decode (a decompression bomb?): {exc}") from exc
    except UnidentifiedImageError as exc:  # Pillow's text names the in-memory buffer, not the file
        raise RequestError(f"{name} could not be decoded as an image (not a format Pillow reads)") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise RequestError(f"{name} could not be decoded as an image ({type(exc).__name__}: {exc})") from exc
    if min(image.size) < limits.min_side:
        raise RequestError(f"{name} is {image.width}x{image.height}; images need at least {limits.min_side} pixels "
                           "on each side")
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
        notes.append(f"{name}: transparency flattened onto white")
    elif mode not in ("RGB", "L", "P"):
        notes.append(f"{name}: converted from {mode} to RGB")
    # a new image from the pixels alone: EXIF, GPS, ICC and text chunks are left behind
    return Image.frombytes("RGB", image.size, image.convert("RGB").tobytes())


def prepare_dataset(sources: Iterable[Path | str], limits: DatasetLimits = DatasetLimits(), safety=None,
                    captions: dict[str, str] | None = None) -> Dataset:
    """Gather, decode and check a dataset; raise RequestError with a clear message if it cannot be trained on.

    `safety` is a SafetyGate (engine.safety): each image is screened as an upload. `captions` (image file name ->
    text) overrides same-name .txt files, e.g. captions edited in the UI.
    """
    notes: list[str] = []
    files = _gather(sources, limits, notes)
    texts, masks = {}, {}
    images = []
    for raw in files:
        suffix = PurePosixPath(raw.name).suffix.lower()
        if _is_junk(raw.name):
            notes.append(f"skipped {raw.name} (not an image)")
        elif suffix == ".txt":
            texts[PurePosixPath(raw.name).with_suffix("").as_posix()] = raw.data
        elif suffix in IMAGE_SUFFIXES and _is_mask(raw.name):
            key = _key(raw.name)[:-len(MASK_SUFFIX)]
            if key in masks:
                raise RequestError(f"{raw.name} and {masks[key].name} are both masks of {key}; keep one")
            masks[key] = raw
        elif suffix in IMAGE_SUFFIXES:
            images.append(raw)
        else:
            notes.append(f"skipped {raw.name} (not an image)")
    orphans = sorted(set(masks) - {_key(raw.name) for raw in images})
    if orphans:
        raise RequestError(f"{masks[orphans[0]].name} is a mask, but there is no image {orphans[0]}.png (or .jpg ...) "
                           "beside it")
    items, seen = [], {}
    for raw in images:
        image = _decode(raw, limits, notes)
        digest = hashlib.sha256(f"{image.size}".encode() + image.tobytes()).hexdigest()
        if digest in seen:
            notes.append(f"removed {raw.name}: the same image as {seen[digest]}")
            continue
        seen[digest] = raw.name
        mask = _mask(masks[_key(raw.name)], raw.name, image, limits) if _key(raw.name) in masks else None
        items.append(DatasetItem(raw.name, image, _caption(raw.name, texts, captions), mask))
    if masks:
        notes.append(f"{sum(item.mask is not None for item in items)} of {len(items)} images have a loss mask")
    if len(items) < limits.min_images:
        found = f"{len(items)} usable image" + ("" if len(items) == 1 else "s")
        raise RequestError(f"{found}; training needs at least {limits.min_images}")
    if safety is not None:
        for item in items:
            if safety.screen_image(item.image, "training image").flagged:
                raise RequestError(f"{item.name} was flagged by the safety checker; remove it to train")
    return Dataset(items, notes)


def _key(name: str) -> str:
    """A file's name without its suffix: an image, its caption and its mask share it."""
    return PurePosixPath(name).with_suffix("").as_posix()


def _mask(raw: _RawFile, image_name: str, image: Image.Image, limits: DatasetLimits) -> Image.Image:
    """The decoded greyscale mask of `image`; a RequestError when its size differs or it hides everything."""
    mask = _decode(raw, limits, []).convert("L")  # decoding notes (transparency ...) concern images, not masks
    if mask.size != image.size:
        raise RequestError(f"the mask {raw.name} is {mask.width}x{mask.height} but {image_name} is "
                           f"{image.width}x{image.height}; a mask must have its image's size")
    if mask.getextrema()[1] == 0:
        raise RequestError(f"the mask {raw.name} is black all over: nothing of {image_name} would be trained on")
    return mask


def _caption(name: str, texts: dict[str, bytes], captions: dict[str, str] | None) -> str:
    key = _key(name)
    if captions is not None and PurePosixPath(name).name in captions:
        text = captions[PurePosixPath(name).name]
    elif key in texts:
        try:
            text = texts[key].decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise RequestError(f"{key}.txt is not UTF-8 text") from exc
    else:
        return ""
    text = " ".join(text.split())
    if len(text) > MAX_CAPTION_CHARS:
        raise RequestError(f"the caption of {name} has {len(text)} characters; the limit is {MAX_CAPTION_CHARS}")
    return text
