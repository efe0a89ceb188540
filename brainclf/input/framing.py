"""Where the head is in a slice: its bounding box and its intensity reference, for the input contract's
optional `crop="head"` and `intensity="head-p99"` steps (brainclf.input.preprocess.to_model_input runs them).

Sources frame and window the same anatomy differently (web images, screenshots, scanner exports); these
steps take both away so a model cannot tell the source by them.
"""

from __future__ import annotations

import numpy as np

from .limits import MIN_SIDE

# A pixel belongs to the head when it is brighter than this share of the image's 99th percentile; a row or
# column belongs to the head's box when more than HEAD_LINE_SHARE of it does (thin captions and rulers in
# screenshots do not), with a margin of HEAD_MARGIN of the box's side kept around it.
HEAD_THRESHOLD = 0.12
HEAD_LINE_SHARE = 0.04
HEAD_MARGIN = 0.04
HEAD_GAP = 0.03  # gaps of at most this share of the side join two runs of lines into one


def head_mask(image: np.ndarray) -> np.ndarray | None:
    """Pixels brighter than HEAD_THRESHOLD of the image's 99th percentile; None when that percentile is black."""
    ref = float(np.percentile(image, 99))
    return image > HEAD_THRESHOLD * ref if ref > 0 else None


def head_box(gray: np.ndarray) -> tuple[int, int, int, int] | None:
    """(left, top, right, bottom) of the head in a 2-D 8-bit slice, margin included; None when nothing
    stands out: a black image, or a head covering under 1 % of the frame (the 99th percentile is then
    background, so such an image is left uncropped: it fails safe). A uniform image gives the whole frame.

    Args:
        gray: H x W array of intensities (any numeric type).
    Returns:
        A box for PIL's crop, or None.
    """
    mask = head_mask(gray)
    if mask is None:
        return None
    rows, cols = _main_run(mask.mean(axis=1)), _main_run(mask.mean(axis=0))
    if rows is None or cols is None:
        return None
    h, w = gray.shape
    (top, bottom), (left, right) = rows, cols
    margin = int(round(HEAD_MARGIN * max(bottom - top, right - left)))
    box = (max(left - margin, 0), max(top - margin, 0), min(right + margin, w), min(bottom + margin, h))
    if min(box[2] - box[0], box[3] - box[1]) < MIN_SIDE:
        return None
    return box


def _main_run(profile: np.ndarray) -> tuple[int, int] | None:
    """[start, end) of the run of consecutive lines above HEAD_LINE_SHARE that holds the most head pixels:
    the head is one block of rows (and of columns); a caption or ruler apart from it is another, lighter one."""
    on = np.concatenate(([0], (profile > HEAD_LINE_SHARE).astype(np.int8), [0]))
    starts, ends = np.flatnonzero(np.diff(on) == 1), np.flatnonzero(np.diff(on) == -1)
    if starts.size == 0:
        return None
    # A gap of a few lines inside the head (a dark midline between hemispheres) does not split it.
    keep = np.concatenate(([True], starts[1:] - ends[:-1] > HEAD_GAP * profile.size))
    starts, ends = starts[keep], np.concatenate((ends[:-1][keep[1:]], ends[-1:]))
    wide = ends - starts >= 2  # a one-line run (a ruler) is never the head, however bright
    if not wide.any():
        return None
    starts, ends = starts[wide], ends[wide]
    mass = np.array([profile[a:b].sum() for a, b in zip(starts, ends, strict=True)])
    k = int(mass.argmax())
    return int(starts[k]), int(ends[k])


def head_p99_scale(arr: np.ndarray) -> np.ndarray:
    """Scale a [0, 1] image so the 99th percentile of its head (pixels above the background threshold) is 1;
    clipped to [0, 1]. A blank image is returned as it is."""
    mask = head_mask(arr)
    head = arr[mask] if mask is not None else arr[:0]
    if head.size == 0:
        return arr
    top = float(np.percentile(head, 99))
    return np.clip(arr / top, 0.0, 1.0).astype(np.float32) if top > 0 else arr
