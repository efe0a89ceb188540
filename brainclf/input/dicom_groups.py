"""An enhanced multi-frame DICOM's per-frame attributes, where the rest of the pipeline looks for them.

Enhanced MR (and other enhanced objects, PS3.3 C.7.6.16) keep the rescale, the display window and the pixel
spacing in functional groups, not at the top of the dataset: the Shared Functional Groups Sequence for all frames,
the Per-Frame Functional Groups Sequence (one item per frame) for one. pydicom's modality and VOI LUT functions read
only the top level, so without this a frame would be shown through its full range instead of the window its
scanner set, and its pixels taken as square. A frame's own group overrides the shared one, which overrides the top
level (PS3.3 C.7.6.16.1: a functional group's values apply to its frames).
"""

from __future__ import annotations

# (macro sequence, the attributes it carries) that the pipeline reads: modality LUT, window, square pixels.
FRAME_MACROS = (
    ("PixelValueTransformationSequence", ("RescaleSlope", "RescaleIntercept", "RescaleType")),
    ("FrameVOILUTSequence", ("WindowCenter", "WindowWidth", "VOILUTFunction")),
    ("PixelMeasuresSequence", ("PixelSpacing",)),
)


def use_frame_groups(ds, frame: int) -> None:
    """Copy `frame`'s functional-group attributes (shared, then its own) to the top level of `ds`, in place (a
    dataset read for this one frame). A group that is missing, empty or malformed is skipped: the top level stays."""
    for sequence, index in (("SharedFunctionalGroupsSequence", 0), ("PerFrameFunctionalGroupsSequence", frame)):
        item = _item(ds, sequence, index)
        for macro, keywords in FRAME_MACROS if item is not None else ():
            values = _item(item, macro, 0)
            for keyword in keywords if values is not None else ():
                try:  # pydicom converts an element when it is read: a malformed one is skipped, the file kept
                    if keyword in values:
                        ds[keyword] = values[keyword]
                except Exception:  # noqa: BLE001 - any malformed value (wrong VR, bad length)
                    continue


def _item(ds, keyword: str, index: int):
    """Item `index` of the sequence `keyword` in `ds`, or None (absent, shorter, not a sequence)."""
    try:
        value = ds[keyword].value if keyword in ds else None
        return value[index] if value is not None and 0 <= index < len(value) and hasattr(value[index], "get") else None
    except (TypeError, KeyError, IndexError, ValueError, AttributeError):
        return None
