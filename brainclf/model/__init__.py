"""Model: the network and what describes it: architectures (Keras, loaded on first use), the model card and its
schema, the .keras archive and config checks, uploads added to the models folder, removal (and restoring or
deleting for good what was removed).

Import from here: the names in __all__ are this layer's public API (pages, CLI, tests, higher layers' entry points).
Modules not listed keep their own names for their tests."""

from importlib import import_module

from .card import (
    ModelCard,
    card_from_bytes,
    card_path,
    default_model,
    file_sha256,
    library_versions,
    list_models,
    load_model,
    machine_description,
    read_card,
    short_hash,
)
from .card_schema import SCHEMA_VERSION, display_text, validate_card
from .model_config import check_model_config
from .model_files import remove_model
from .removed import RemovedModel, delete_removed, removed_models, restore_model
from .uploads import add_model, maker_record

# Loaded on first use (PEP 562), so that importing this package stays light (architectures: it imports Keras).
_LAZY = {"ARCHITECTURES": ".architectures", "build_model": ".architectures", "dtype_policy": ".architectures",
         "ensemble_from_members": ".architectures", "get_architecture": ".architectures",
         "recalibrate_batchnorm": ".architectures"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["ARCHITECTURES", "ModelCard", "RemovedModel", "SCHEMA_VERSION", "add_model", "build_model",
           "card_from_bytes", "card_path", "check_model_config", "default_model", "delete_removed", "display_text",
           "dtype_policy", "ensemble_from_members", "file_sha256", "get_architecture", "library_versions",
           "list_models", "load_model", "machine_description", "maker_record", "read_card", "recalibrate_batchnorm",
           "remove_model", "removed_models", "restore_model", "short_hash", "validate_card"]
