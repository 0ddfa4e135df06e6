"""The digest that tells a prepared call whether its parameters changed in place
(fastlstm.backends.cpu.digest): equal bytes give equal digests, and any change of one word,
or a structured change of several, gives another."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from fastlstm.backends.cpu.digest import LANES, PARALLEL_DIGEST_BYTES, PARTS, Digest, digest, memory_table, unchanged


def _digest(*arrays):
    lanes = np.empty((PARTS, LANES), np.uint64)
    digest(memory_table(arrays), lanes)
    return lanes


def _random_bytes(size, seed):
    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8)


@settings(max_examples=60, deadline=None)
@given(size=st.integers(1, 3 * 8 * LANES * PARTS + 13), seed=st.integers(0, 2**16), data=st.data())
def test_a_change_of_any_one_byte_changes_the_digest(size, seed, data):
    array = _random_bytes(size, seed)
    before = _digest(array)
    np.testing.assert_array_equal(_digest(array.copy()), before)      # the same bytes elsewhere: the same
    position = data.draw(st.integers(0, size - 1))
    array[position] ^= np.uint8(data.draw(st.integers(1, 255)))
    assert not np.array_equal(_digest(array), before)


@settings(max_examples=30, deadline=None)
@given(words=st.integers(2, 4 * LANES * PARTS), seed=st.integers(0, 2**16), data=st.data())
def test_a_change_of_one_whole_word_to_any_other_changes_the_digest(words, seed, data):
    array = np.random.default_rng(seed).integers(0, 2**63, words, dtype=np.uint64)
    before = _digest(array)
    position = data.draw(st.integers(0, words - 1))
    array[position] = data.draw(st.integers(0, 2**64 - 1).filter(lambda value: value != int(array[position])))
    assert not np.array_equal(_digest(array), before)


def test_structured_changes_of_float_weights_change_the_digest():
    weight = np.random.default_rng(3).standard_normal((256, 96)).astype(np.float32)
    before = _digest(weight)
    flat = weight.reshape(-1)
    changes = {
        # two signs in one lane of one part (values 2·LANES apart): the words' top bits, which a multiply
        # alone would cancel
        "two signs in a lane": lambda w: w.reshape(-1).__setitem__([1, 1 + 2 * LANES], -w.reshape(-1)[[1, 1 + 2 * LANES]]),
        "two values swapped": lambda w: w.reshape(-1).__setitem__([5, 5 + 2 * LANES], w.reshape(-1)[[5 + 2 * LANES, 5]]),
        "two words swapped": lambda w: w.__setitem__((slice(None), slice(0, 4)), w[:, [2, 3, 0, 1]]),
        "negated": lambda w: np.negative(w, out=w),
        "scaled by 2": lambda w: np.multiply(w, np.float32(2), out=w),
        "rows rolled": lambda w: w.__setitem__(slice(None), np.roll(w, 1, axis=0)),
        "one ulp": lambda w: w.reshape(-1).__setitem__(777, np.nextafter(flat[777], np.float32(np.inf))),
    }
    for name, change in changes.items():
        changed = weight.copy()
        change(changed)
        assert not np.array_equal(changed, weight), name
        assert not np.array_equal(_digest(changed), before), name


def test_unchanged_reads_each_array_of_its_table_in_order():
    first, second = _random_bytes(1000, 1), _random_bytes(77, 2)
    table = memory_table([first, second])
    expected = _digest(first, second)
    assert unchanged(table, expected)
    assert not np.array_equal(_digest(second, first), expected)      # the order of the arrays counts
    second[-1] ^= np.uint8(1)                                        # a last byte that fills no word
    assert not unchanged(table, expected)


def test_large_arrays_digested_a_part_per_thread_give_the_digest_of_one_thread():
    arrays = [_random_bytes(PARALLEL_DIGEST_BYTES // 2 + 12345, 5), _random_bytes(PARALLEL_DIGEST_BYTES // 2 + 7, 6)]
    taken = Digest(arrays)
    assert taken.nbytes >= PARALLEL_DIGEST_BYTES
    np.testing.assert_array_equal(taken.expected, _digest(*arrays))
    assert taken.unchanged()
    for array, position in ((arrays[0], 3), (arrays[0], arrays[0].size // 2 + 1), (arrays[1], arrays[1].size - 1)):
        array[position] ^= np.uint8(0x80)        # in the first part, the second, the last byte
        assert not taken.unchanged()
        array[position] ^= np.uint8(0x80)
        assert taken.unchanged()


def test_a_small_digest_runs_in_the_calling_thread_and_sees_changes():
    array = _random_bytes(1000, 7)
    taken = Digest([array])
    assert taken.nbytes < PARALLEL_DIGEST_BYTES and taken.unchanged()
    array[999] ^= np.uint8(1)
    assert not taken.unchanged()


def test_a_digest_keeps_its_arrays_alive_unless_told_not_to():
    taken = Digest([_random_bytes(PARALLEL_DIGEST_BYTES + 1, 8)])   # no other reference to the array
    assert taken.unchanged()                                          # its memory is still the digest's
    array = _random_bytes(64, 9)
    assert Digest([array], hold=False).arrays is None and Digest([array]).arrays[0] is array
