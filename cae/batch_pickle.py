"""CIFAR-10's official python batches are pickles, and a pickle runs whatever callable it names. They
are loaded by an unpickler that admits only what a batch holds (dicts, lists, str/bytes, numbers,
NumPy arrays); anything else stops the load before any of it runs.
"""

from __future__ import annotations

import io
import pickle

import numpy as np


class _NDArrayName:
    """Stands for ``numpy.ndarray`` in a batch: ``_reconstruct`` needs it as an argument, but called
    itself it would allocate an array of any size the pickle asks for."""


def _empty_array(subtype: object, shape: object, dtype: object) -> np.ndarray:
    """NumPy's pickled-array constructor, limited to what it does in a batch: an empty ndarray that the
    pickle's next step fills from its own bytes (an official batch asks for shape (0,))."""
    if subtype is not _NDArrayName or not isinstance(dtype, np.dtype | bytes | str):
        raise pickle.UnpicklingError("an array constructor with arguments a batch never has")
    return _RECONSTRUCT(np.ndarray, (0,), dtype)


def _latin1(text: object, encoding: object = "latin1") -> bytes:
    """``codecs.encode`` as pickle protocols 0-2 written by Python 3 store bytes, and only that."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("codecs.encode used for something other than bytes")
    return text.encode("latin1")


# NumPy's own pickling names these functions (numpy.core.* in NumPy 1 and in the official files,
# written by Python 2; numpy._core.* in NumPy 2). They are taken from the methods that pickle an
# array, so no private name of NumPy is imported here.
_RECONSTRUCT = np.zeros(1, np.uint8).__reduce__()[0]
_FROMBUFFER = np.zeros(1, np.uint8).__reduce_ex__(5)[0]  # how protocol 5 (Python 3.14's default) stores arrays
BATCH_GLOBALS: dict[tuple[str, str], object] = {
    ("numpy.core.multiarray", "_reconstruct"): _empty_array,
    ("numpy._core.multiarray", "_reconstruct"): _empty_array,
    ("numpy.core.numeric", "_frombuffer"): _FROMBUFFER,
    ("numpy._core.numeric", "_frombuffer"): _FROMBUFFER,
    ("numpy", "ndarray"): _NDArrayName,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1,
}


class RefusedGlobal(pickle.UnpicklingError):
    """A pickle asked for a global that a CIFAR-10 batch never holds."""

    def __init__(self, module: str, name: str) -> None:
        super().__init__(f"{module}.{name}")
        self.name = f"{module}.{name}"


class BatchUnpickler(pickle.Unpickler):
    """Loads a CIFAR-10 python batch: dicts, lists, str/bytes, numbers and NumPy arrays, nothing else.

    A pickle runs whatever callable it names; ``find_class`` is where those names are resolved, so a
    name outside ``BATCH_GLOBALS`` stops the load before anything of it runs.
    """

    def find_class(self, module: str, name: str) -> object:
        try:
            return BATCH_GLOBALS[(module, name)]
        except KeyError:
            raise RefusedGlobal(module, name) from None


def load_batch(data: bytes) -> object:
    """A batch's content; RefusedGlobal for a pickle that names anything a batch does not hold."""
    return BatchUnpickler(io.BytesIO(data), encoding="bytes").load()
