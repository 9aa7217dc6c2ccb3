"""Marking images as AI-generated: IPTC digital source type in XMP, our own chunk, an optional invisible
watermark (the `invisible-watermark` dwtDctSvd method, in luma), and an optional signed C2PA manifest.

The XMP and chunk labels are deterministic, so a replayed recipe still gives identical bytes. A C2PA
manifest holds a fresh id and signature, so signed files differ from run to run by design.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin

from t2i.recipes.infotext import png_bytes
from t2i.request import RequestError
from t2i.settings import Settings

AI_SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
XMP_KEY = "XML:com.adobe.xmp"
LABEL_KEY = "t2i_ai_generated"
# SDXL's 48-bit message (diffusers' StableDiffusionXLWatermarker); ours is in luma by dwtDctSvd, not in U by dwtDct
WATERMARK_BITS = [int(bit) for bit in bin(0b101100111110110010010000011110111011000110011110)[2:]]
WATERMARK_MIN_PIXELS = 256 * 256  # imwatermark refuses smaller images
WATERMARK_MIN_MATCH = 40  # of 48 bits; a random image reaches it with probability ~1e-6
# the quantisation step of each 8x8-pixel block's largest singular value (8x the mean luma of a flat block):
# 32 puts a flat block's two bit values on whole luma levels (mean = 1 or 3 mod 4), which JPEG keeps
WATERMARK_SCALE = 32
WATERMARK_PASSES = 3

_XMP = """<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about="" xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/"
    xmlns:xmp="http://ns.adobe.com/xap/1.0/">
   <Iptc4xmpExt:DigitalSourceType>{source}</Iptc4xmpExt:DigitalSourceType>
   <xmp:CreatorTool>{tool}</xmp:CreatorTool>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
<?xpacket end="r"?>"""


def label_chunks(generator: str) -> dict:
    """PNG text chunks saying the image is AI-generated: an XMP packet (iTXt) and our own JSON chunk."""
    tool = generator.replace("&", "&amp;").replace("<", "&lt;")
    return {XMP_KEY: PngImagePlugin.iTXt(_XMP.format(source=AI_SOURCE_TYPE, tool=tool), "", ""),
            LABEL_KEY: json.dumps({"ai_generated": True, "digital_source_type": AI_SOURCE_TYPE,
                                   "generator": generator})}


def read_label(data: bytes) -> str | None:
    """The IPTC digital source type a PNG declares in its XMP packet, or None."""
    with Image.open(io.BytesIO(data)) as image:
        xmp = image.info.get(XMP_KEY, "")
    start = xmp.find("<Iptc4xmpExt:DigitalSourceType>")
    if start < 0:
        return None
    start += len("<Iptc4xmpExt:DigitalSourceType>")
    return xmp[start:xmp.index("</Iptc4xmpExt:DigitalSourceType>", start)]


# --------------------------------------------------------------------------- invisible watermark


def add_watermark(image: Image.Image) -> Image.Image:
    """The image with SDXL's 48 watermark bits in its luma, by imwatermark's dwtDctSvd embedding.

    Images under 256x256 pixels are first enlarged by a whole factor with nearest-neighbour
    sampling (pixels stay sharp), because the library refuses smaller images. The library's own
    `WatermarkEncoder.encode` is not used, for reasons measured in tests/test_labels.py:
    its default marks the U channel, which JPEG's 4:2:0 chroma subsampling halves (0 of 6 detected
    after JPEG q90); it casts to uint8 between colour spaces, which wraps around at 0 and 255; and it
    swaps the horizontal and vertical wavelet details on the way back (33 dB PSNR on textured images).
    Here the library's block embedding (`encode_frame`) runs on a floating-point luma channel.
    """
    import cv2
    import pywt
    from imwatermark.dwtDctSvd import EmbedDwtDctSvd

    rgb = image.convert("RGB")
    factor = math.ceil(math.sqrt(WATERMARK_MIN_PIXELS / (rgb.width * rgb.height)))
    if factor > 1:
        rgb = rgb.resize((rgb.width * factor, rgb.height * factor), Image.Resampling.NEAREST)
    pixels = np.asarray(rgb, dtype=np.float32)
    height, width = pixels.shape[0] // 4 * 4, pixels.shape[1] // 4 * 4  # whole 4x4 wavelet blocks, as the library
    embedder = EmbedDwtDctSvd(WATERMARK_BITS, len(WATERMARK_BITS), scales=[WATERMARK_SCALE, 0, 0])
    # where one channel sits at 0 or 255 the clip undoes part of a luma change; embedding again on the
    # clipped result lets the other channels carry it (3 passes: every saturated test colour is marked)
    for _ in range(WATERMARK_PASSES):
        yuv = cv2.cvtColor(pixels, cv2.COLOR_RGB2YUV)
        approx, details = pywt.dwt2(yuv[:height, :width, 0].astype(np.float64), "haar")
        embedder.encode_frame(approx, WATERMARK_SCALE)
        yuv[:height, :width, 0] = pywt.idwt2((approx, details), "haar")
        pixels = np.clip(cv2.cvtColor(yuv, cv2.COLOR_YUV2RGB), 0, 255)
    return Image.fromarray(np.round(pixels).astype(np.uint8))


@dataclass(frozen=True)
class WatermarkReading:
    """How many of the watermark's bits an image carries."""

    matched: int
    total: int = len(WATERMARK_BITS)

    @property
    def detected(self) -> bool:
        return self.matched >= WATERMARK_MIN_MATCH


def read_watermark(image: Image.Image) -> WatermarkReading:
    """Decode the watermark bits with imwatermark's own decoder (dwtDctSvd, luma) and count those matching ours."""
    import cv2
    from imwatermark import WatermarkDecoder

    if image.width * image.height < WATERMARK_MIN_PIXELS:
        raise RequestError(f"the image is {image.width}x{image.height}; a watermark needs 256x256 pixels or more")
    bgr = cv2.cvtColor(np.asarray(image.convert("RGB")), cv2.COLOR_RGB2BGR)
    bits = WatermarkDecoder("bits", len(WATERMARK_BITS)).decode(bgr, "dwtDctSvd", scales=[WATERMARK_SCALE, 0, 0])
    return WatermarkReading(sum(int(a) == b for a, b in zip(bits, WATERMARK_BITS)))


# --------------------------------------------------------------------------- C2PA


@dataclass(frozen=True)
class C2paCredentials:
    """A PEM private key and its PEM certificate chain (signer first), with the algorithm the key implies."""

    key: bytes
    certs: bytes
    alg: str

    @classmethod
    def from_files(cls, key_path: str | Path, cert_path: str | Path) -> C2paCredentials:
        """Load and check the operator's key and certificate chain."""
        from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        key, certs = Path(key_path).read_bytes(), Path(cert_path).read_bytes()
        try:
            private = load_pem_private_key(key, password=None)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"C2PA key {key_path}: not an unencrypted PEM private key ({exc})") from None
        if isinstance(private, ec.EllipticCurvePrivateKey) and private.curve.name in _EC_ALGS:
            alg = _EC_ALGS[private.curve.name]
        elif isinstance(private, ed25519.Ed25519PrivateKey):
            alg = "ed25519"
        elif isinstance(private, rsa.RSAPrivateKey):
            alg = "ps256"
        else:
            raise ValueError(f"C2PA key {key_path}: use an EC P-256/P-384/P-521, Ed25519 or RSA key")
        if b"-----BEGIN CERTIFICATE-----" not in certs:
            raise ValueError(f"C2PA certificate {cert_path}: no PEM certificate in the file")
        return cls(key, certs, alg)


_EC_ALGS = {"secp256r1": "es256", "secp384r1": "es384", "secp521r1": "es512"}


def sign_c2pa(png: bytes, credentials: C2paCredentials, generator: str, title: str) -> bytes:
    """The PNG with an embedded C2PA manifest: created by `generator`, source type trainedAlgorithmicMedia."""
    import c2pa

    manifest = {
        "claim_generator_info": [{"name": generator.split(" ")[0], "version": generator.partition(" ")[2] or "0"}],
        "title": title,
        "assertions": [{"label": "c2pa.actions.v2", "data": {"actions": [
            {"action": "c2pa.created", "digitalSourceType": AI_SOURCE_TYPE, "softwareAgent": {"name": generator}}]}}],
    }
    # no thumbnail: a JPEG preview would be many times the size of a small PNG
    context = c2pa.Context(c2pa.Settings.from_dict({"builder": {"thumbnail": {"enabled": False}}}))
    signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(credentials.alg, credentials.certs, credentials.key, None))
    out = io.BytesIO()
    with c2pa.Builder(manifest, context=context) as builder:
        builder.sign(signer, "image/png", io.BytesIO(png), out)
    return out.getvalue()


def read_c2pa(data: bytes) -> dict | None:
    """The active C2PA manifest of a PNG with its validation state, or None when it has none."""
    import c2pa

    reader = c2pa.Reader.try_create("image/png", io.BytesIO(data))
    if reader is None:
        return None
    with reader:
        return {**(reader.get_active_manifest() or {}), "validation_state": reader.get_validation_state()}


# --------------------------------------------------------------------------- all together


@dataclass(frozen=True)
class Labeller:
    """Writes labelled PNGs as the operator configured: always XMP + our chunk; watermark and C2PA if set."""

    watermark: bool = False
    c2pa: C2paCredentials | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Labeller:
        """The labeller for `settings` (T2I_WATERMARK, T2I_C2PA_KEY + T2I_C2PA_CERT)."""
        if bool(settings.c2pa_key) != bool(settings.c2pa_cert):
            raise ValueError("set both T2I_C2PA_KEY and T2I_C2PA_CERT, or neither")
        credentials = C2paCredentials.from_files(settings.c2pa_key, settings.c2pa_cert) if settings.c2pa_key else None
        return cls(watermark=settings.watermark, c2pa=credentials)

    def png(self, image: Image.Image, params: dict, extra_text: dict | None = None, title: str = "image.png") -> bytes:
        """PNG bytes of a generated image with its recipe and every configured label."""
        generator = params.get("generator", "t2i")
        if self.watermark:
            image = add_watermark(image)
        data = png_bytes(image, params, {**(extra_text or {}), **label_chunks(generator)})
        if self.c2pa is not None:
            data = sign_c2pa(data, self.c2pa, generator, title)
        return data


def describe_labels(data: bytes) -> list[str]:
    """One line per AI-generated label a PNG carries (XMP source type, C2PA manifest, watermark)."""
    lines = []
    if (source := read_label(data)) is not None:
        lines.append(f"XMP digital source type: {source.rsplit('/', 1)[-1]}")
    if (manifest := read_c2pa(data)) is not None:
        signer = manifest.get("signature_info", {}).get("common_name", "unknown signer")
        lines.append(f"C2PA manifest signed by {signer} ({manifest['validation_state']})")
    with Image.open(io.BytesIO(data)) as image:
        if image.width * image.height >= WATERMARK_MIN_PIXELS and read_watermark(image).detected:
            lines.append("invisible watermark: detected")
    return lines
