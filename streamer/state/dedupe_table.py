"""The hash table of a partition's dedupe set (state/dedupe.py's ``Deduper``).

In memory every live hash of a partition sits in one hash table (``BlockTable``):
blocks of eight 64-bit words, one CPU cache line each, and two candidate blocks per
hash (the emptier one takes it; when both are full, one resident moves to its other
block). A probe reads two cache lines whatever the number of hashes or buckets, and a
batch record probes and inserts its 500 hashes with a few vectorised numpy operations.
The design it replaced kept a sorted array per bucket behind a filter: five filters
and a binary search per event once the horizon filled, and each freeze copied the
whole bucket (several times slower per batch once the horizon filled;
docs/BENCHMARKS.md).

A word holds its whole hash, in 64 bits beside the bucket's code, because it leaves
out what its block's address says (quotienting): the low ``width`` bits of the hash
(or of its second address, below) are the block's number, so the word keeps the
``64 - width`` bits above them, a bit for which of its two blocks it is in, and the
code of its bucket in the low byte, so expiry needs no second array: dropping a bucket
clears the words with its code. The second block's address is the first one XOR a mix
of the hash's bits 32-63, which the word holds, so either block recovers the hash.
Hence tables of at least 2**10 blocks (``MIN_LEVEL``: 54 bits above the address, plus
a marker bit that keeps every word non-zero, the mark of an empty slot).

Memory: 8 bytes a slot. The table doubles when 85 % of its slots are full, so it holds
9.4 to 19 bytes a hash (the old design: ~9 bytes frozen, ~90 for the hashes not yet
frozen). A doubling splits each block into itself and a new one (linear hashing: the
words whose next address bit is 1 move to the new block, in the same slot; every word
of the block gives one bit of its quotient to the address), spread over 32 calls: no
pause to rehash millions of hashes, and no insert can fail for it. From 2**14 blocks
(1 MB) a table's array reserves 2 GB of address space, so doublings copy nothing: a
copy held the old and the new table at once, 64 MB more at 2**20 blocks.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

SLOTS = 8  # 8 words of 8 bytes: one 64-byte cache line per block
MAX_LOAD = 0.85  # the table doubles when more of its slots than this are full
MIN_LEVEL = 10  # from 2**10 blocks a word holds the bits of its hash its block does not
MAX_LEVEL = 31  # a split reads address bit ``level`` of the 32-bit mix: 2**32 blocks
_U64 = np.uint64
_CODE = _U64(0xFF)
_MIX = 0x9E37_79B9_7F4A_7C15  # odd: bits 32-63 of ``high * _MIX`` depend on all of high
_MARK = 1 << 55  # in every key (a word without its code): no word is 0, an empty slot
_MARK_WORD = _U64(_MARK << 8)
_QUOTIENT = (1 << 54) - 1  # the quotient in ``word >> 9``, below the marker
_LOW9 = _U64(0x1FF)  # choice bit and code
_ONES = _U64(0x0101_0101_0101_0101)  # sums the bytes of a word (each 0 or 1)
_INSERT_ROUNDS = 3  # vectorised passes of a batch insert before its cuckoo step
_ONE_BY_ONE = 6  # words left that go one by one rather than through another round
_SWEEP_BLOCKS = 1 << 16  # blocks per step of an expiry sweep (bounds its temporaries)
# Tables from 1 MB reserve 2 GB of address space (2**25 blocks), not memory.
_RESERVE_FROM = 1 << 14
_RESERVE = 1 << 25


def _mix(high: np.ndarray) -> np.ndarray:
    """32 bits from a hash's bits 32-63 (``high``), XORed into its second address."""
    mixed: np.ndarray = (high * _U64(_MIX)) >> _U64(32)
    return mixed


def _mix_one(high: int) -> int:
    return ((high * _MIX) & 0xFFFF_FFFF_FFFF_FFFF) >> 32


def _strict_overcommit() -> bool:
    """Linux's mode 2 counts reserved address space as memory: reserve nothing then."""
    try:
        with open("/proc/sys/vm/overcommit_memory") as mode:
            return mode.read().strip() == "2"
    except OSError:
        return False


_CAN_RESERVE = not _strict_overcommit()


def _zeros(blocks: int) -> np.ndarray:
    """Zeroed blocks; a large table is reserved far ahead, so its later doublings
    copy nothing. Untouched zero pages cost no memory, and a copy would hold the old
    and the new array at once: a peak of one more table (64 MB at 2**20 blocks)."""
    if _CAN_RESERVE and _RESERVE_FROM <= blocks < _RESERVE:
        try:
            return np.zeros((_RESERVE, SLOTS), dtype=np.uint64)
        except MemoryError:  # an address-space limit (ulimit -v): grow by copying instead
            pass
    return np.zeros((blocks, SLOTS), dtype=np.uint64)


class Probe(NamedTuple):
    """Where a batch of hashes would sit: both blocks, and the key each would have there."""

    block1: np.ndarray
    key1: np.ndarray
    block2: np.ndarray
    key2: np.ndarray

    def take(self, positions: np.ndarray) -> Probe:
        return Probe(*(part[positions] for part in self))


class BlockTable:
    """Words in blocks of ``SLOTS``, each hash in one of two blocks.

    A hash's first address is its low 32 bits, its second that XOR ``_mix`` of its
    bits 32-63; the blocks are found by linear hashing: ``2**level + split`` blocks are
    in use, and a block below ``split`` has been split, so its address takes one more
    bit (its width is ``level + 1``). Splitting block ``j`` moves the words whose next
    address bit is 1 to block ``j + 2**level``, in the same slot (that block is new and
    empty), so a split never fails and never moves other blocks. A block not yet split
    takes twice the share of one that has, so the splits of one doubling follow each
    other closely (``grow``) rather than one block at a time.
    """

    __slots__ = ("_claims", "_flat", "entries", "level", "max_load", "split", "words")

    def __init__(self, level: int = MIN_LEVEL, max_load: float = MAX_LOAD) -> None:
        if not MIN_LEVEL <= level <= MAX_LEVEL:
            raise ValueError(f"level must be {MIN_LEVEL}-{MAX_LEVEL}, not {level}")
        self.level = level
        self.max_load = max_load
        self.split = 0
        self.entries = 0  # words stored (expired ones count until their sweep)
        self.words = _zeros(2 << level)
        self._flat = self.words.reshape(-1).data
        # Scratch of batch inserts: which word of a batch claims each block.
        self._claims = np.empty(0, dtype=np.intp)

    @property
    def blocks(self) -> int:
        return (1 << self.level) + self.split

    @property
    def nbytes(self) -> int:
        return self.blocks * SLOTS * 8

    # -- addressing ----------------------------------------------------------------

    def _address(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | np.uint64]:
        """Blocks of addresses ``x``, and how many low bits of ``x`` each one takes."""
        level = self.level
        low = x & _U64((1 << level) - 1)
        if not self.split:
            return low.astype(np.intp), _U64(level)
        wide = low < _U64(self.split)
        blocks = np.where(wide, x & _U64((2 << level) - 1), low)
        return blocks.astype(np.intp), wide.astype(np.uint64) + _U64(level)

    def probe(self, hashes: np.ndarray) -> Probe:
        block1, width1 = self._address(hashes)
        block2, width2 = self._address(hashes ^ _mix(hashes >> _U64(32)))
        key1 = ((hashes >> width1) << _U64(1)) | _U64(_MARK)
        key2 = ((hashes >> width2) << _U64(1)) | _U64(_MARK | 1)
        return Probe(block1, key1, block2, key2)

    def _address_one(self, x: int) -> tuple[int, int]:
        level = self.level
        low = x & ((1 << level) - 1)
        if low < self.split:
            return x & ((2 << level) - 1), level + 1
        return low, level

    def places_one(self, digest: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """A hash's two blocks, each with the key it would have there."""
        block1, width1 = self._address_one(digest)
        block2, width2 = self._address_one(digest ^ _mix_one(digest >> 32))
        return ((block1, _MARK | (digest >> width1) << 1),
                (block2, _MARK | (digest >> width2) << 1 | 1))

    def hash_of(self, block: int, word: int) -> int:
        """The hash a word in this block stands for: the address gives its low bits."""
        level = self.level
        wide = block < self.split or block >= 1 << level
        width = level + 1 if wide else level
        high = ((word >> 9) & _QUOTIENT) << width
        if (word >> 8) & 1:  # in its second block: undo the mix
            return high | ((block ^ _mix_one(high >> 32)) & ((1 << width) - 1))
        return high | block

    def contents(self) -> tuple[np.ndarray, np.ndarray]:
        """Every stored hash and its code (``hash_of`` over the whole table at once)."""
        words = self.words[:self.blocks]
        blocks, slots = np.nonzero(words)
        stored = words[blocks, slots]
        codes: np.ndarray = stored & _CODE
        return self._hashes_of(blocks, stored), codes

    def _hashes_of(self, blocks: np.ndarray, stored: np.ndarray) -> np.ndarray:
        """``hash_of`` for arrays of (non-empty) words and their blocks."""
        level = self.level
        wide = (blocks < self.split) | (blocks >= 1 << level)
        width = wide.astype(np.uint64) + _U64(level)
        high = ((stored >> _U64(9)) & _U64(_QUOTIENT)) << width
        address = blocks.astype(np.uint64)
        second = ((stored >> _U64(8)) & _U64(1)) != 0
        address = np.where(second, address ^ _mix(high >> _U64(32)), address)
        low = address & ((_U64(1) << width) - _U64(1))
        hashes: np.ndarray = high | low
        return hashes

    # -- batches -------------------------------------------------------------------

    def rows(self, blocks: np.ndarray) -> np.ndarray:
        rows: np.ndarray = self.words.take(blocks, axis=0)
        return rows

    @staticmethod
    def holds(rows: np.ndarray, keys: np.ndarray) -> np.ndarray:
        """Per key: whether its row holds it (any code)."""
        matches = (rows >> _U64(8)) == keys[:, None]
        held: np.ndarray = matches.view(np.uint64)[:, 0] != 0  # 8 bools are one word
        return held

    def insert(self, probe: Probe, codes: np.ndarray, digests: np.ndarray,
               rows1: np.ndarray, rows2: np.ndarray) -> list[int]:
        """Store new hashes, given their probe and the rows it read, with their codes
        (one per hash); return the positions that found no free slot.

        Vectorised rounds (each re-reads the rows of the words the one before left
        without a slot), then one cuckoo step for words whose blocks are both full,
        while enough words are left for a round to beat going one by one: a round is
        some twenty numpy calls whatever its size. The rest go one by one
        (``insert_one``, which can move a resident too).
        """
        positions = np.arange(len(digests))
        full: list[np.ndarray] = []  # positions whose two blocks were both full
        full_probes: list[Probe] = []
        full_codes: list[np.ndarray] = []
        for _ in range(_INSERT_ROUNDS):
            lost, crowded = self._insert_round(probe, codes, rows1, rows2)
            if len(crowded):
                full.append(positions[crowded])
                full_probes.append(probe.take(crowded))
                full_codes.append(codes[crowded])
            positions, probe, codes = positions[lost], probe.take(lost), codes[lost]
            if len(lost) <= _ONE_BY_ONE:
                break
            rows1, rows2 = self.rows(probe.block1), self.rows(probe.block2)
        rest = [(positions, codes)]
        if sum(map(len, full)) > _ONE_BY_ONE:  # move residents of theirs, in one step
            crowded_probe = Probe(*(np.concatenate(parts) for parts in zip(*full_probes,
                                                                           strict=True)))
            crowded_codes = np.concatenate(full_codes)
            left = self._displace_round(crowded_probe, crowded_codes)
            rest.append((np.concatenate(full)[left], crowded_codes[left]))
        else:
            rest.extend(zip(full, full_codes, strict=True))
        return [position for positions, codes in rest
                for position, code in zip(positions.tolist(), codes.tolist(), strict=True)
                if not self.insert_one(int(digests[position]), code)]

    def _insert_round(self, probe: Probe, codes: np.ndarray, rows1: np.ndarray,
                      rows2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One vectorised pass: each word into the emptier of its blocks (as the rows
        show them), at most two words per block: one claims its lowest free slot, one
        its highest (when it has two). Return the positions left: a block's further
        words (for the next round), and the words whose blocks are both full."""
        free1 = (rows1 == 0).view(np.uint64)[:, 0]  # one byte per slot: 1 if free
        free2 = (rows2 == 0).view(np.uint64)[:, 0]
        first = ((free1 * _ONES) >> _U64(56)) >= ((free2 * _ONES) >> _U64(56))
        blocks = np.where(first, probe.block1, probe.block2)
        free = np.where(first, free1, free2)
        keys = (np.where(first, probe.key1, probe.key2) << _U64(8)) | codes
        fast = free != 0
        lost = np.zeros(len(blocks), dtype=bool)
        if len(blocks) > 1:
            # Each block's last word in the batch claims it (a scatter, then a gather).
            claims = self._claims
            if len(claims) < self.blocks:
                claims = self._claims = np.empty(2 * self.blocks, dtype=np.intp)
            steps = np.arange(len(blocks))
            claims[blocks] = steps
            lost = fast & (claims[blocks] != steps)
            if lost.any():
                fast &= ~lost
                # The last of the others takes the highest free slot, if it is not the
                # only one (then two words share the block).
                others = np.flatnonzero(lost)
                claims[blocks[others]] = others
                second = others[(claims[blocks[others]] == others)
                                & ((free[others] & (free[others] - _U64(1))) != 0)]
                top = (np.frexp(free[second].astype(np.float64))[1] - 1) // 8
                self.words[blocks[second], top] = keys[second]
                self.entries += len(second)
                lost[second] = False
        lowest = free[fast] & (~free[fast] + _U64(1))  # the first free slot's byte
        slots = (np.frexp(lowest.astype(np.float64))[1] - 1) // 8
        self.words[blocks[fast], slots] = keys[fast]
        self.entries += int(np.count_nonzero(fast))
        return np.flatnonzero(lost), np.flatnonzero(free == 0)

    def _displace_round(self, probe: Probe, codes: np.ndarray) -> np.ndarray:
        """``insert_one``'s cuckoo step for a batch: a word whose two blocks are full
        takes the slot of the first of their 16 residents whose other block has a free
        slot, and that resident moves there (at most one move per block). Return the
        positions left (for ``insert_one``)."""
        count = len(codes)
        rows = np.concatenate((self.rows(probe.block1), self.rows(probe.block2)), axis=1)
        full = (rows != 0).all(axis=1)
        homes = np.repeat(np.concatenate((probe.block1[:, None], probe.block2[:, None]),
                                         axis=1), SLOTS, axis=1)
        residents = self._hashes_of(homes.reshape(-1), rows.reshape(-1))
        moved = self.probe(residents)
        in_second = ((rows.reshape(-1) >> _U64(8)) & _U64(1)) != 0
        others = np.where(in_second, moved.block1, moved.block2)
        other_keys = np.where(in_second, moved.key1, moved.key2)
        other_free = (self.rows(others) == 0).view(np.uint64)[:, 0]
        movable = (other_free != 0).reshape(count, 2 * SLOTS) & full[:, None]
        chosen = movable.argmax(axis=1)
        picked = np.arange(count) * (2 * SLOTS) + chosen
        sources, targets = homes.reshape(-1)[picked], others[picked]
        ok = movable.any(axis=1)
        claims = self._claims
        if len(claims) < self.blocks:
            claims = self._claims = np.empty(2 * self.blocks, dtype=np.intp)
        steps = np.arange(count)
        # A source block is full and a target block is not: no block is both.
        for blocks in (sources, targets):
            claims[blocks] = steps
            ok &= claims[blocks] == steps
        free = other_free[picked][ok]
        target_slots = (np.frexp((free & (~free + _U64(1))).astype(np.float64))[1] - 1) // 8
        source_slots = chosen[ok] % SLOTS
        self.words[targets[ok], target_slots] = (
            (other_keys[picked][ok] << _U64(8)) | (rows.reshape(-1)[picked][ok] & _CODE))
        keys = np.where(chosen < SLOTS, probe.key1, probe.key2)
        self.words[sources[ok], source_slots] = (keys[ok] << _U64(8)) | codes[ok]
        self.entries += int(np.count_nonzero(ok))
        left: np.ndarray = np.flatnonzero(~ok)
        return left

    # -- one at a time (single-event records) ---------------------------------------

    def find_one(self, digest: int) -> bool:
        flat = self._flat
        for block, key in self.places_one(digest):
            start = block * SLOTS
            for word in flat[start:start + SLOTS]:
                if word >> 8 == key:
                    return True
        return False

    def insert_one(self, digest: int, code: int) -> bool:
        """Store one hash in the emptier of its blocks; if both are full, move a word
        of theirs to its other block to make room (one step of cuckoo hashing).
        False if that finds no room either (the caller keeps the hash aside)."""
        flat = self._flat
        places = self.places_one(digest)
        best, best_key, best_free = -1, 0, 0
        for block, key in places:
            free = flat[block * SLOTS:(block + 1) * SLOTS].tolist().count(0)
            if free > best_free:
                best, best_key, best_free = block, key, free
        if best >= 0:
            self._put(best, best_key << 8 | code)
            return True
        for block, key in places:
            start = block * SLOTS
            for slot, resident in enumerate(flat[start:start + SLOTS].tolist()):
                elsewhere = self.places_one(self.hash_of(block, resident))
                other, other_key = elsewhere[0 if (resident >> 8) & 1 else 1]
                if other != block and 0 in flat[other * SLOTS:(other + 1) * SLOTS].tolist():
                    self._put(other, other_key << 8 | (resident & 0xFF))
                    flat[start + slot] = key << 8 | code
                    return True
        return False

    def _put(self, block: int, word: int) -> None:
        start = block * SLOTS
        self._flat[start + self._flat[start:start + SLOTS].tolist().index(0)] = word
        self.entries += 1

    # -- growth and expiry -----------------------------------------------------------

    def grow(self, wanted_entries: int) -> None:
        """Make room for ``wanted_entries`` words.

        The table doubles once its blocks are ``max_load`` full: a block that has not
        split yet takes twice the share of one that has, so the splits of one doubling
        are done within 32 calls (of a batch each), not one a call. A load far beyond
        the table (a claim reading back millions of hashes) finishes doublings at once.
        """
        half = 1 << self.level
        if self.split or wanted_entries > self.max_load * SLOTS * half:
            self._split(self.split, min(half, self.split + max(64, half // 32)))
        while wanted_entries > max(0.95, self.max_load) * SLOTS * (1 << self.level):
            self._split(self.split, 1 << self.level)

    def _split(self, start: int, stop: int) -> None:
        """Split blocks ``start`` to ``stop``: each word gives the lowest bit of its
        quotient to the address, and moves if that bit (of its address) is 1."""
        level = self.level
        if level == MAX_LEVEL:
            raise OverflowError(f"a dedupe table of 2**{MAX_LEVEL} blocks cannot split")
        half = 1 << level
        old = self.words[start:stop]
        quotient = (old >> _U64(9)) & _U64(_QUOTIENT)
        bit = quotient & _U64(1)  # bit ``level`` of the hash
        # In the second block the address is the hash XOR the mix of its bits 32-63
        # (``quotient >> (32 - level)``): flip by the mix's bit ``level`` there.
        mixed = (_mix(quotient >> _U64(32 - level)) >> _U64(level)) & _U64(1)
        bit ^= mixed & (old >> _U64(8))
        kept = (old != 0) & (bit == 0)
        move = (old != 0) & (bit != 0)
        shifted = _MARK_WORD | ((quotient >> _U64(1)) << _U64(9)) | (old & _LOW9)
        self.words[start + half:stop + half] = np.where(move, shifted, _U64(0))
        old[:] = np.where(kept, shifted, _U64(0))
        self.split = stop
        if self.split == half:
            self.level += 1
            self.split = 0
            if len(self.words) < 2 << self.level:  # not reserved: copy into a larger one
                grown = _zeros(2 << self.level)
                grown[:half * 2] = self.words[:half * 2]
                self.words = grown
                self._flat = grown.reshape(-1).data

    def sweep(self, live_codes: np.ndarray) -> None:
        """Clear the words whose code is not live (``live_codes``: 256 booleans)."""
        used = self.blocks
        for start in range(0, used, _SWEEP_BLOCKS):
            chunk = self.words[start:min(used, start + _SWEEP_BLOCKS)]
            dead = (chunk != 0) & ~live_codes[(chunk & _CODE).astype(np.intp)]
            self.entries -= int(np.count_nonzero(dead))
            chunk[dead] = 0
