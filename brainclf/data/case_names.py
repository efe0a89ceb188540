"""What a slice's path says about its case, beyond sources.series_key's file-name patterns: a patient/case
folder below its class folder (`glioma/P012/slice3.png`), or a leading patient/case id in the file name
(`P012_s3.png`, `case-07_slice12.png`, `Patient 12 slice 3.png`, `P012_T1_MPRAGE_s3.png`, BIDS-like
`sub-01_ses-02_T1w_slice3.png`).

Both name one case outright, so sources.case_grouping does not drop them as naming schemes the way it drops a
pattern shared by too many files: replacing every digit by '#' turned `P012_s3` and `P137_s1` into the one
pattern `p#_s#`, which covered the whole folder and so grouped nothing.
"""

from __future__ import annotations

import re
from pathlib import Path

from .. import CLASS_NAMES

# A case id: a short word and a number ('p012', 'case-07', 'sub-003'). The word must not be one that names a
# slice or a file rather than a patient: 'image_12_3' is the third slice of image 12 or a naming scheme, and
# merging every 'img_…' file would put unrelated patients in one group.
_CASE_ID = re.compile(r"(?P<word>[a-z]{1,12})[-_ ]?(?P<number>\d{1,8})")
_GENERIC_WORDS = frozenset({
    "i", "im", "img", "image", "images", "pic", "photo", "picture", "file", "frame", "f", "n", "no", "nr", "num",
    "s", "sl", "slc", "slice", "scan", "scans", "mr", "mri", "ct", "dsc", "screenshot", "export", "series",
    "ser", "se", "seq", "z", "t", "tr", "te", "train", "test", "val",
})
# What may follow the id for the id to be a case: sequence, series or session tokens, then a slice number, nothing
# else ('_s3', '_slice12', ' slice 3', '_T1_MPRAGE_12', '_ses-02_T1w_slice3'). A word after the id
# ('P12_report_final') says nothing.
_SEQUENCE_TOKEN = (r"(?:t1c\+|t1ce|t1gd|t1c|t1w|t2w|t1|t2|flair|dwi|adc|swi|pd|axial|ax|cor|sag"
                   r"|mprage|spgr|bravo|vibe|tse|fse|gre|space|dti"
                   r"|(?:se|ser|series|seq)\d+|(?:ses|run|echo)-?\d+|acq-[a-z0-9]+)")
_SLICE_WORD = r"(?:s|sl|slc|slice|img|image|im|i|z|frame|f|n|no|nr)"
_AFTER_ID = re.compile(rf"[-_. ]+(?:{_SEQUENCE_TOKEN}[-_. ]+)*{_SLICE_WORD}?[-_ ]?\d{{1,5}}[-_. ]*")


def case_id(path: str | Path) -> str | None:
    """The patient/case id that leads a slice's file name, normalised ('P012_s3.png' and 'p12-slice4.png' →
    'p12'), or None when the name does not start with an id followed only by a slice index.

    Kaggle's 'Tr-gl_0012.jpg' (no number after its word), 'image_12.png' (a generic word and no slice index)
    and 'glioma-aab-1.png' (letters, not a number) have none.
    """
    stem = Path(path).stem.lower()
    head = _CASE_ID.match(stem)
    if not head or head["word"] in _GENERIC_WORDS or not _AFTER_ID.fullmatch(stem, head.end()):
        return None
    return f"{head['word']}{int(head['number'])}"


def case_folder(path: str | Path) -> Path | None:
    """The first sub-folder below the nearest class folder above a slice whose name can be a case's: one with a
    digit that is not a sequence name ('…/glioma/P012/t1/slice3.png' and '…/glioma/T1/P012/s3.png' →
    '…/glioma/P012'; 'T1', 'png', 'export' are not cases); None for a slice directly in its class folder, or
    under no such sub-folder."""
    parents = Path(path).parents
    k = next((i for i, folder in enumerate(parents) if folder.name in CLASS_NAMES), None)
    for folder in reversed(parents[:k] if k else ()):  # from just below the class folder down to the slice's
        name = folder.name.lower()
        if re.search(r"\d", name) and not re.fullmatch(_SEQUENCE_TOKEN, name):
            return folder
    return None
