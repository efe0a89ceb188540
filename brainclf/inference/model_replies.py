"""What the server accepts from its model process (brainclf.inference.inference_process): replies unpickled as tuples of
plain values and numeric NumPy arrays only, in the shape model_worker sends them."""

from __future__ import annotations

import pickle

import numpy as np


class ReplyUnpickler(pickle.Unpickler):
    """Replies are tuples of strings, numbers and NumPy arrays of numbers, and nothing else is rebuilt: a model
    process subverted by a crafted model file cannot make the server run code through pickle, nor hand it an
    object array (raw pointers) to crash on."""

    ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy._core.multiarray", "scalar"), ("numpy._core.numeric", "_frombuffer"),
               ("numpy.core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
               ("numpy.core.numeric", "_frombuffer")}  # numpy 2 names, and numpy 1's

    def find_class(self, module: str, name: str):
        if (module, name) == ("numpy", "dtype"):
            return numeric_dtype
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"the model process sent a {module}.{name}")


def numeric_dtype(*args) -> np.dtype:
    """np.dtype for a reply: booleans and numbers only. An object (or structured, string, void) dtype would let
    a forged reply rebuild an array of raw pointers, which crashes the server when NumPy reads it."""
    dtype = np.dtype(*args)
    if dtype.kind not in "biufc" or dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
        raise pickle.UnpicklingError(f"the model process sent an array of dtype {str(dtype)[:40]}")
    return dtype


def well_formed(reply) -> bool:
    """("ok", result) or ("error", (class name, message)), as model_worker sends them."""
    if not (isinstance(reply, tuple) and len(reply) == 2):
        return False
    status, value = reply
    return status == "ok" or (status == "error" and isinstance(value, tuple) and len(value) == 2
                              and all(isinstance(v, str) for v in value))
