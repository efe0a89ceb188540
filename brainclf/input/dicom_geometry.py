"""A DICOM slice's pixels made square before anything else sees them.

The model's input contract pads a slice to a square and resizes it as if its pixels were square; an MR slice
acquired with 0.5 mm between rows and 1.0 mm between columns would reach it squashed 2:1, anatomy and lesion
alike. PixelSpacing (row spacing \\ column spacing, PS3.3 C.7.6.2.1.1), else PixelAspectRatio (vertical \\
horizontal), gives the ratio; the denser direction is resampled down to the other's spacing, so the image never
grows (the pixel budget was checked on the stored size).
"""

from __future__ import annotations

import math

from PIL import Image

# Spacings within 2 % of each other are square (rounding in the header); a ratio beyond 8 is no MR slice's and is
# taken as a corrupt header, left as stored.
SQUARE_WITHIN = 0.02
MAX_RATIO = 8.0


def pixel_ratio(ds) -> float:
    """Row spacing / column spacing of a slice's pixels; 1.0 where the header gives none that can be read."""
    for keyword in ("PixelSpacing", "PixelAspectRatio"):
        value = ds.get(keyword)
        if isinstance(value, (str, bytes)):  # one value, or bytes of a malformed VR (OB): not two spacings
            continue
        try:
            vertical, horizontal = float(value[0]), float(value[1])
        except (TypeError, ValueError, IndexError, OverflowError, KeyError):
            continue
        if all(math.isfinite(v) and v > 0 for v in (vertical, horizontal)):
            return vertical / horizontal
    return 1.0


def square_pixels(ds, image: Image.Image) -> Image.Image:
    """`image` resampled so that its pixels are square (see the module's docstring); unchanged when they are."""
    ratio = pixel_ratio(ds)
    if abs(ratio - 1) <= SQUARE_WITHIN or not 1 / MAX_RATIO <= ratio <= MAX_RATIO:
        return image
    width, height = image.size
    if ratio < 1:  # rows closer together than columns: fewer rows
        size = (width, max(1, round(height * ratio)))
    else:
        size = (max(1, round(width / ratio)), height)
    return image.resize(size, Image.Resampling.LANCZOS)
