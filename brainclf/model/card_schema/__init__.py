"""The model card's schema (version 2): what each section may hold, so a card that loads cannot crash its readers.

A card is JSON written by brainclf.training (trusted) or uploaded by a user (untrusted). Every key that the
package or the app reads is typed here with its range: rates in [0, 1], counts >= 0, 4 x 4 confusion
matrices, class names from brainclf.CLASS_NAMES, relative image paths without '..', identifiers in ASCII,
one-line labels without control characters or markup (links, images, HTML). Unknown keys inside sections
are allowed (the training section grows with the project) and left unchecked; known keys are checked.

Validation never changes the card: `validate_card` returns the (migrated) dict it was given, and that
dict is what ModelCard holds, so a save/load round trip keeps every value. Numbers are checked strictly:
"0.9" (a string) is not a rate, true is not a count.

Versions: 1 = cards written before this schema (no `schema_version` key; the bundled models/*.json).
`migrate` reads them as version 2: the same content plus `schema_version: 2` and an empty `provenance`.

Modules: fields (checked text, numbers, the Section base), results (prediction rows, split and external
metrics), sections (the other sections and CardSchema), validate (migrate, validate_card, error messages),
display (display_text, plain_label). Import from the package: its names below are the public ones.
"""

from .display import display_text, plain_label
from .fields import Section
from .results import ExternalMetrics, Metrics, PredictionRow, SplitMetrics
from .sections import SCHEMA_VERSION, CardSchema
from .validate import CardSchemaError, format_errors, migrate, validate_card

__all__ = ["SCHEMA_VERSION", "CardSchema", "CardSchemaError", "ExternalMetrics", "Metrics", "PredictionRow",
           "Section", "SplitMetrics", "display_text", "format_errors", "migrate", "plain_label", "validate_card"]
