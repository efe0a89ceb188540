"""The full-size viewer's picture: an upload at its own resolution (not the model's input size), a DICOM's
window/level applied to its grey values, and the Grad-CAM (computed on the model's input) mapped back onto it.

The map goes back through the steps of preprocess.to_model_input in reverse: resized from the model's square to
the padded square's side, the padding cut off, and placed in the head's box when the contract crops to it.
Images larger than limits.MAX_VIEWER_SIDE are shown scaled down to it. No Streamlit."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..inference.explain import overlay_heatmap
from ..input.dicom import apply_window, looks_like_dicom
from ..input.dicom_stack import FrameValues, frame_values
from ..input.framing import head_box
from ..input.limits import MAX_VIEWER_SIDE
from ..input.preprocess import InputContract, decode_upload, to_8bit


@dataclass
class OriginalView:
    image: np.ndarray  # uint8 (H, W) or (H, W, 3): the decoded upload, at most MAX_VIEWER_SIDE a side
    size: tuple[int, int]  # (width, height) of the file's own image
    heatmap_box: tuple[int, int, int, int]  # (left, top, right, bottom) of what the model saw, in `image` pixels
    values: FrameValues | None = None  # a grayscale DICOM's grey values (same scale as `image`), for window/level

    @property
    def scaled(self) -> bool:
        return self.image.shape[1] != self.size[0]


def _display_scale(width: int, height: int) -> float:
    return min(1.0, MAX_VIEWER_SIDE / max(width, height))


def original_view(data: bytes, name: str, contract: InputContract, frame: int | None = None) -> OriginalView:
    """Decode an upload again (the same checks and limits as for the model) for the viewer."""
    image, _ = decode_upload(data, name, frame)
    image = to_8bit(image)
    width, height = image.size
    box = head_box(np.asarray(image.convert("L"))) if contract.crop == "head" else None
    box = box or (0, 0, width, height)
    scale = _display_scale(width, height)
    shown = (max(round(width * scale), 1), max(round(height * scale), 1))
    values = frame_values(data, name, frame) if looks_like_dicom(data, name) else None
    if scale < 1:
        image = image.resize(shown, Image.Resampling.BILINEAR)
        if values is not None:
            small = Image.fromarray(values.values, mode="F").resize(shown, Image.Resampling.BILINEAR)
            values.values = np.asarray(small)
    return OriginalView(np.asarray(image), (width, height), tuple(round(v * scale) for v in box), values)


def heatmap_on_original(heatmap: np.ndarray, view: OriginalView) -> np.ndarray:
    """The model-input Grad-CAM (h, w in [0, 1]) as a map over the whole shown image (0 outside what the model
    saw)."""
    left, top, right, bottom = view.heatmap_box
    bw, bh = max(right - left, 1), max(bottom - top, 1)
    side = max(bw, bh)
    big = np.asarray(Image.fromarray(np.asarray(heatmap, np.float32), mode="F").resize(
        (side, side), Image.Resampling.BILINEAR))
    x0, y0 = (side - bw) // 2, (side - bh) // 2
    out = np.zeros(view.image.shape[:2], np.float32)
    region = out[top:top + bh, left:left + bw]
    region[...] = big[y0:y0 + region.shape[0], x0:x0 + region.shape[1]]
    return np.clip(out, 0, 1)


def viewer_picture(view: OriginalView, heatmap: np.ndarray | None = None, opacity: float = 0.4,
                   window: tuple[float, float] | None = None) -> np.ndarray:
    """RGB uint8 at the shown size: the image (a DICOM through `window` = (centre, width) when given), with the
    Grad-CAM over it when `heatmap` (a model-input map) is given."""
    if window is not None and view.values is not None:
        gray = apply_window(view.values.values, *window)
        base = 255 - gray if view.values.invert else gray
    else:
        base = view.image
    if heatmap is None:
        return np.repeat(base[..., None], 3, axis=-1) if base.ndim == 2 else base
    img = base.astype(np.float32) / 255.0
    return overlay_heatmap(img, heatmap_on_original(heatmap, view), opacity)
