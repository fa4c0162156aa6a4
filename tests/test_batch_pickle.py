"""cae.batch_pickle: the unpickler loads what a CIFAR-10 batch holds and refuses any other global
before it is called."""

import pickle
import pickletools
import zlib

import numpy as np
import pytest

from cae.batch_pickle import BatchUnpickler, RefusedGlobal, load_batch

RNG = np.random.default_rng(0)


def _batch() -> dict:
    return {
        b"batch_label": b"training batch 1 of 5",
        b"labels": [3, 1, 4],
        b"data": RNG.integers(0, 256, size=(3, 3072), dtype=np.uint8),
        b"filenames": [b"a.png", b"b.png", b"c.png"],
    }


def _globals(data: bytes) -> set[str]:
    """The module.name of every global a pickle refers to."""
    names, strings = set(), []
    for op, arg, _ in pickletools.genops(data):
        if op.name == "GLOBAL":
            names.add(arg.replace(" ", "."))
        elif op.name == "STACK_GLOBAL":
            names.add(".".join(strings[-2:]))
        elif isinstance(arg, str):
            strings.append(arg)
    return names


def test_a_batch_as_the_official_files_store_it_loads():
    batch = _batch()
    # Pickle protocol 2, as the official files were written (by Python 2, with NumPy 1's module names).
    data = pickle.dumps(batch, protocol=2).replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert _globals(data) == {"numpy.core.multiarray._reconstruct", "numpy.ndarray", "numpy.dtype", "_codecs.encode"}
    loaded = load_batch(data)
    assert loaded.keys() == batch.keys()
    np.testing.assert_array_equal(loaded[b"data"], batch[b"data"])
    assert loaded[b"labels"] == batch[b"labels"] and loaded[b"filenames"] == batch[b"filenames"]


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_a_batch_of_every_pickle_protocol_loads(protocol):
    batch = _batch()
    loaded = load_batch(pickle.dumps(batch, protocol=protocol))
    np.testing.assert_array_equal(loaded[b"data"], batch[b"data"])
    assert loaded[b"labels"] == batch[b"labels"]


class _Call:
    """Pickles as a call of ``function`` with ``args``: what a hostile pickle can ask for."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


@pytest.mark.parametrize("function", [eval, getattr, zlib.decompress, np.load, np.frombuffer])
def test_any_other_global_is_refused_before_it_is_called(function):
    with pytest.raises(RefusedGlobal) as err:
        load_batch(pickle.dumps({b"data": _Call(function, "1")}, protocol=2))
    assert err.value.name.endswith(function.__name__)


def test_arrays_cannot_be_made_larger_than_the_pickle_holds():
    """numpy.ndarray and NumPy's pickled-array constructor are admitted only as a batch uses them: a
    pickle of a few bytes cannot ask for an array of 1 TB."""
    huge = (1 << 40,)
    with pytest.raises(TypeError):  # ndarray itself is not callable from a batch
        load_batch(pickle.dumps(_Call(np.ndarray, huge, "u1"), protocol=2))
    reconstruct = np.zeros(1).__reduce__()[0]
    assert load_batch(pickle.dumps(_Call(reconstruct, np.ndarray, huge, b"b"), protocol=2)).shape == (0,)


def test_the_unpickler_is_a_pickle_unpickler_with_find_class():
    assert issubclass(BatchUnpickler, pickle.Unpickler)
    assert BatchUnpickler.find_class is not pickle.Unpickler.find_class
