"""Data: datasets on disk (discovery, leakage-aware splits, loading), near duplicates, extra sources and case
groups, THE decode pool, file listing and shards.

Import from here: the names in __all__ are this layer's public API (pages, CLI, tests, higher layers' entry points).
Modules not listed keep their own names for their tests."""

from .datasets import (
    DATA_ENV,
    Dataset,
    Sample,
    discover,
    extra_val_folds,
    fingerprint,
    load_arrays,
    make_splits,
    relative_path,
    resolve_data_root,
    split_extra_source,
)
from .dedup import (
    HASH_SIZE,
    NEAR_DUP_THRESHOLD,
    FileHashes,
    dedup_report,
    dhash,
    duplicate_groups,
    format_dedup_report,
    hamming_matrix,
    hash_files,
    near_pairs,
)
from .pool import chunks, decode_many
from .shard import in_shard, iter_image_files, iter_shard_files, merge_csvs, parse_shard, shard_of
from .sources import (
    Source,
    is_non_commercial,
    licence_of,
    parse_extra_data,
    sample_key,
    series_key,
    source_at,
    split_key,
)

__all__ = ["DATA_ENV", "Dataset", "FileHashes", "HASH_SIZE", "NEAR_DUP_THRESHOLD", "Sample", "Source",
           "chunks", "decode_many", "dedup_report", "dhash", "discover", "duplicate_groups", "extra_val_folds",
           "fingerprint", "format_dedup_report", "hamming_matrix", "hash_files", "in_shard", "is_non_commercial",
           "iter_image_files", "iter_shard_files", "licence_of", "load_arrays", "make_splits", "merge_csvs",
           "near_pairs", "parse_extra_data", "parse_shard", "relative_path", "resolve_data_root",
           "sample_key", "series_key", "shard_of", "source_at", "split_extra_source", "split_key"]
