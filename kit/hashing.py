"""Content digests of requests: the key under which equal requests meet.

The result cache keys answers by it and the workload generator uses it to count distinct
requests, so both live on one definition here, below ``kit.serve`` and ``kit.profile`` alike.
xxh3-128 is the point: on a 1x224x224x3 float32 input a cryptographic hash costs ~15 % of a
MobileNetV2 inference, xxh3 ~0.2 %.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import xxhash


def as_array(value: object) -> np.ndarray:
    return value if isinstance(value, np.ndarray) else np.asarray(value)


def _item_bytes(item: object) -> tuple[bytes, bytes]:
    """An object-array item as (type tag, content): ``b"a"`` and ``"b'a'"``, ``1`` and ``"1"`` differ."""
    if isinstance(item, bytes):
        return b"B", item
    if isinstance(item, str):
        return b"S", item.encode("utf-8", "surrogatepass")
    kind = type(item)
    return f"R{kind.__module__}.{kind.__qualname__}".encode(), repr(item).encode("utf-8", "backslashreplace")


def feeds_key(feeds: Mapping[str, object], identity: bytes = b"") -> bytes:
    """16-byte xxh3-128 digest of ``identity`` and every input's name, dtype, shape and bytes.

    Feed order does not matter (names are sorted); a name, dtype or shape change always
    changes the key even when the raw bytes are equal. Items of an object (string) array are
    hashed with their type: ``b"a"`` and ``"b'a'"``, or ``1`` and ``"1"``, never share a key.
    """
    h = xxhash.xxh3_128()
    h.update(len(identity).to_bytes(4, "little"))
    h.update(identity)
    for name in sorted(feeds):
        array = as_array(feeds[name])
        header = f"{len(name)}:{name}|{array.dtype.str}|{array.shape}|"
        h.update(header.encode())
        if array.dtype.kind == "O":  # strings: each item's type and content, length-prefixed
            for item in array.ravel():
                tag, data = _item_bytes(item)
                h.update(tag)
                h.update(len(data).to_bytes(8, "little"))
                h.update(data)
        else:
            h.update(np.ascontiguousarray(array).data)
    return h.digest()
