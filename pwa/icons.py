"""The app's icons (192, 512 and maskable 512 px PNGs), drawn by Pillow from fixed shapes: no image file in the
repository, and the same bytes on every build."""

from __future__ import annotations

import io

# (file name under icons/, size in pixels, maskable); manifest.webmanifest lists them (pwa/manifest.py).
ICON_SIZES = (("icon-192.png", 192, False), ("icon-512.png", 512, False), ("icon-maskable-512.png", 512, True))


def icon_files() -> dict[str, bytes]:
    """{path in dist/: PNG bytes} of every icon."""
    return {f"icons/{name}": make_icon(size, maskable) for name, size, maskable in ICON_SIZES}


def make_icon(size: int, maskable: bool = False) -> bytes:
    """A stylised chest radiograph (two lungs, spine, a warm spot) as PNG bytes, drawn deterministically.

    Drawn at 4x and reduced with a box filter for smooth edges. The maskable variant fills the whole square and
    keeps its picture inside the central 80 % safe zone."""
    from PIL import Image, ImageDraw

    scale = 4
    s = size * scale
    image = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    navy, lung, spot = (18, 48, 77, 255), (214, 231, 245, 255), (244, 162, 97, 255)
    if maskable:
        draw.rectangle([0, 0, s, s], fill=navy)
        inset = 0.2
    else:
        draw.rounded_rectangle([0, 0, s - 1, s - 1], radius=round(s * 0.22), fill=navy)
        inset = 0.12

    def box(x0, y0, x1, y1):  # coordinates in 0..1 of the picture area
        span = s * (1 - 2 * inset)
        return [round(s * inset + x0 * span), round(s * inset + y0 * span),
                round(s * inset + x1 * span), round(s * inset + y1 * span)]

    draw.rounded_rectangle(box(0.47, 0.06, 0.53, 0.94), radius=round(s * 0.02), fill=lung)  # spine + trachea
    draw.ellipse(box(0.10, 0.14, 0.44, 0.90), fill=lung)  # right lung (viewer's left)
    draw.ellipse(box(0.56, 0.14, 0.90, 0.90), fill=lung)  # left lung
    draw.ellipse(box(0.55, 0.52, 0.72, 0.92), fill=navy)  # heart shadow
    draw.ellipse(box(0.18, 0.52, 0.34, 0.68), fill=spot)  # the heatmap's hot spot
    image = image.resize((size, size), Image.Resampling.BOX)
    buffer = io.BytesIO()
    image.save(buffer, "PNG", optimize=False, compress_level=9)
    return buffer.getvalue()
