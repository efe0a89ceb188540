"""Input: an upload's or a file's bytes to the model's input array. Limits checked from headers before the
expensive step, DICOM (frames, stacks), the head's framing, THE preprocessing function (input contract).

Import from here: the names in __all__ are this layer's public API (pages, CLI, tests, higher layers' entry points).
Modules not listed keep their own names for their tests."""

from .dicom import apply_window, read_dicom
from .dicom_stack import frame_count, frame_values, series_groups, study_frames
from .framing import head_box
from .limits import (
    MAX_SESSION_UPLOAD_BYTES,
    MAX_STACK_FRAMES,
    MAX_UPLOAD_FILE_BYTES,
    MAX_UPLOAD_FILE_MB,
    MAX_UPLOAD_FILES,
    check_upload_batch,
    check_upload_session,
    validate_model_name,
)
from .preprocess import (
    InputContract,
    decode_image,
    decode_upload,
    load_model_input,
    pad_to_square,
    to_8bit,
    to_model_input,
    upload_alias,
    without_alias,
)
from .reading import read_image_file

__all__ = ["InputContract", "MAX_SESSION_UPLOAD_BYTES", "MAX_STACK_FRAMES", "MAX_UPLOAD_FILES",
           "MAX_UPLOAD_FILE_BYTES", "MAX_UPLOAD_FILE_MB", "apply_window", "check_upload_batch", "read_image_file",
           "check_upload_session", "decode_image", "decode_upload", "frame_count", "frame_values",
           "head_box", "load_model_input", "pad_to_square", "read_dicom", "series_groups", "study_frames",
           "to_8bit", "to_model_input", "upload_alias", "validate_model_name", "without_alias"]
