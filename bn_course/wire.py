"""The format between the grader and the process that runs the learner's code.

What that process sends (a function's result, its arguments as they are after the call,
the arguments of a call back to a function the grader passed) is untrusted: it is read
as data only, JSON for the structure and ``.npy`` bytes, loaded with
``np.load(allow_pickle=False)``, for arrays. It is never unpickled, so nothing it sends
can run code in the grader (an unpickled ``__reduce__`` would). What the grader sends
that process is pickled: the grader is trusted.

A frame is an 8-byte big-endian length and a body. A data body is a 4-byte length, a
JSON header, then the ``.npy`` bytes of each array in turn (their sizes in the header).
In the header a value is a JSON ``null``, boolean, number or string, or one of the
one-key objects ``{"tuple": [...]}``, ``{"list": [...]}``, ``{"dict": [[key, value],
...]}``, ``{"array": i}`` and ``{"scalar": i}`` (the i-th array; a scalar is a NumPy
number such as ``np.float64``), ``{"function": i}`` (the i-th function the grader passed)
or ``{"object": type name, "attributes": [[name, value], ...]}`` for anything else,
which the grader sees as a :class:`ForeignObject`.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import select
import struct
import time

import numpy as np

MAX_BYTES = 64 * 2**20  # a frame larger than this is refused (a right answer is kilobytes)
MAX_DEPTH = 24  # nesting of containers
MAX_NODES = 200_000  # values in one message
ARRAY_KINDS = "biufc"  # bool, integers, floats, complex: what an answer may contain
_LENGTH = struct.Struct(">Q")
_HEADER = struct.Struct(">I")


class WireError(Exception):
    """The other side sent something that is not a well-formed message."""


class Closed(WireError):
    """The other side closed the pipe (the process ended)."""


class Timeout(WireError):
    """Nothing complete arrived before the deadline."""


class FunctionRef:
    """Stands, in a pickled call, for the i-th function the grader passed."""

    def __init__(self, index):
        self.index = index


class ForeignObject:
    """What the grader sees of a value that is not data: its type's name, its
    ``description`` ("an object of type Foo", "a NumPy array of dtype object") and the
    attributes that could be sent (``attributes``, also readable as attributes)."""

    def __init__(self, type_name, attributes=None, description=None):
        self.type_name = type_name
        self.attributes = dict(attributes or {})
        self.description = description or f"an object of type {type_name}"

    def __getattr__(self, name):
        if name.startswith("__") or name not in self.__dict__.get("attributes", {}):
            raise AttributeError(name)
        return self.attributes[name]

    def __repr__(self):
        return f"<{self.description}>"


# ----------------------------------------------------------------------------- encoding


class _Encoder:
    """A value as a JSON-able tree and its arrays as ``.npy`` bytes (the sending side)."""

    def __init__(self, functions=()):
        self.functions = list(functions)
        self.blobs, self.size, self.nodes = [], 0, 0

    def _array(self, array, tag):
        array = np.asarray(array)
        if array.dtype.kind not in ARRAY_KINDS or array.dtype.fields is not None:
            return self._foreign(type(array).__name__,
                                 f"a NumPy array of dtype {array.dtype}")
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=False)
        data = buffer.getvalue()
        if self.size + len(data) > MAX_BYTES:
            return self._foreign(type(array).__name__, f"an array too large to send "
                                 f"({array.nbytes / 2**20:.0f} MiB)")
        self.size += len(data)
        self.blobs.append(data)
        return {tag: len(self.blobs) - 1}

    @staticmethod
    def _foreign(type_name, description=None, attributes=()):
        node = {"object": type_name, "attributes": list(attributes)}
        if description:
            node["description"] = description
        return node

    def encode(self, value, depth=0):
        self.nodes += 1
        if depth > MAX_DEPTH or self.nodes > MAX_NODES:
            return self._foreign(type(value).__name__, "a value nested too deep or too large")
        kind = type(value)
        if value is None or kind in (bool, int, str):
            return value
        if kind is float:
            return value
        if isinstance(value, np.ndarray):
            return self._array(value, "array")
        if isinstance(value, np.generic):
            return self._array(value, "scalar")
        for index, function in enumerate(self.functions):
            if value is function:
                return {"function": index}
        if isinstance(value, (tuple, list)):
            items = [self.encode(item, depth + 1) for item in value]
            return {"tuple" if isinstance(value, tuple) else "list": items}
        if isinstance(value, dict):
            return {"dict": [[self.encode(k, depth + 1), self.encode(v, depth + 1)]
                             for k, v in value.items()]}
        try:
            state = object.__getattribute__(value, "__dict__")
            attributes = [[str(name), self.encode(item, depth + 1)]
                          for name, item in dict(state).items()
                          if isinstance(name, str) and not name.startswith("__")]
        except Exception:  # no __dict__, or one that cannot be read: the type is enough
            attributes = []
        return self._foreign(kind.__name__, attributes=attributes)


def data_frame(header, functions=()):
    """The bytes of one data message: ``header`` a dict whose values under the keys named
    in ``header["values"]`` are encoded (the other keys must be JSON already)."""
    encoder = _Encoder(functions)
    header = dict(header)
    for key in header.pop("values", ()):
        header[key] = encoder.encode(header[key])
    header["blobs"] = [len(b) for b in encoder.blobs]
    text = json.dumps(header).encode()
    body = _HEADER.pack(len(text)) + text + b"".join(encoder.blobs)
    return _LENGTH.pack(len(body)) + body


# ----------------------------------------------------------------------------- decoding


def _load_array(data):
    """An array from ``.npy`` bytes, checked before anything is allocated."""
    stream = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(stream)
        read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                       (2, 0): np.lib.format.read_array_header_2_0}[version]
        shape, _, dtype = read_header(stream)
    except Exception as error:
        raise WireError(f"an array header that cannot be read ({error})") from None
    if dtype.kind not in ARRAY_KINDS or dtype.fields is not None or dtype.hasobject:
        raise WireError(f"an array of dtype {dtype}")
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if count < 0 or count * dtype.itemsize != len(data) - stream.tell():
        raise WireError("an array whose size does not match its shape")
    array = np.load(io.BytesIO(data), allow_pickle=False)
    return array.astype(dtype.newbyteorder("="), copy=False)


class _Decoder:
    def __init__(self, blobs, functions):
        self.blobs, self.functions, self.nodes = blobs, functions, 0

    def _index(self, value, table):
        if type(value) is not int or not 0 <= value < len(table):
            raise WireError(f"a reference {value!r} to nothing")
        return table[value]

    def decode(self, node, depth=0):
        self.nodes += 1
        if depth > MAX_DEPTH + 2 or self.nodes > 2 * MAX_NODES:
            raise WireError("a value nested too deep or too large")
        if node is None or type(node) in (bool, int, float, str):
            return node
        if type(node) is not dict or not node:
            raise WireError(f"a malformed value of type {type(node).__name__}")
        tag = next(iter(node))
        value = node[tag]
        if tag in ("array", "scalar") and len(node) == 1:
            array = _load_array(self._index(value, self.blobs))
            if tag == "scalar":
                if array.ndim != 0:
                    raise WireError("a scalar that is not zero-dimensional")
                return array[()]
            return array
        if tag == "function" and len(node) == 1:
            return self._index(value, self.functions)
        if tag in ("tuple", "list") and len(node) == 1 and type(value) is list:
            items = [self.decode(item, depth + 1) for item in value]
            return tuple(items) if tag == "tuple" else items
        if tag == "dict" and len(node) == 1 and type(value) is list:
            result = {}
            for pair in value:
                if type(pair) is not list or len(pair) != 2:
                    raise WireError("a malformed dict item")
                key = self.decode(pair[0], depth + 1)
                try:
                    hash(key)
                except TypeError:
                    raise WireError("a dict key that cannot be hashed") from None
                result[key] = self.decode(pair[1], depth + 1)
            return result
        if tag == "object" and type(value) is str and set(node) <= {
                "object", "attributes", "description"}:
            pairs = node.get("attributes", [])
            description = node.get("description")
            if type(pairs) is not list or (description is not None
                                           and type(description) is not str):
                raise WireError("a malformed object")
            attributes = {}
            for pair in pairs:
                if type(pair) is not list or len(pair) != 2 or type(pair[0]) is not str:
                    raise WireError("a malformed attribute")
                attributes[pair[0]] = self.decode(pair[1], depth + 1)
            return ForeignObject(value[:200], attributes,
                                 description[:200] if description else None)
        raise WireError(f"a value with the unknown tag {str(tag)[:40]!r}")


def read_data(body, values=(), functions=()):
    """The header of a data body, with the keys named in ``values`` decoded; raises
    :class:`WireError` on anything malformed."""
    if len(body) < _HEADER.size:
        raise WireError("a message shorter than its header")
    (length,) = _HEADER.unpack_from(body)
    end = _HEADER.size + length
    try:
        header = json.loads(body[_HEADER.size:end].decode())
    except (ValueError, RecursionError) as error:
        raise WireError(f"a header that is not JSON ({type(error).__name__})") from None
    if type(header) is not dict:
        raise WireError("a header that is not a JSON object")
    sizes = header.get("blobs", [])
    if type(sizes) is not list or any(type(s) is not int or s < 0 for s in sizes) \
            or end + sum(sizes) != len(body):
        raise WireError("array sizes that do not match the message")
    blobs, offset = [], end
    for size in sizes:
        blobs.append(body[offset:offset + size])
        offset += size
    decoder = _Decoder(blobs, list(functions))
    try:
        for key in values:
            header[key] = decoder.decode(header.get(key))
    except RecursionError:
        raise WireError("a value nested too deep") from None
    return header


# ----------------------------------------------------------------------------- pipes


def pickle_frame(message):
    """The bytes of one message from the grader (trusted) to the learner's process."""
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(body)) + body


def write_all(fd, data, deadline=None):
    """Write ``data`` to a pipe; with a ``deadline`` (``time.monotonic()``), the pipe is
    non-blocking and a reader that stops reading raises :class:`Timeout`."""
    view = memoryview(data)
    while view:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([], [fd], [], left)[1]:
                raise Timeout("the other side stopped reading")
        try:
            written = os.write(fd, view)
        except BlockingIOError:
            continue
        except (BrokenPipeError, ConnectionResetError):
            raise Closed("the pipe is closed") from None
        view = view[written:]


def read_exactly(fd, count, deadline=None, limit=None):
    """``count`` bytes from a pipe; :class:`Closed` at its end, :class:`Timeout` at the
    deadline."""
    chunks, left = [], count
    while left:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                raise Timeout("nothing arrived in time")
        try:
            chunk = os.read(fd, min(left, 1 << 20))
        except BlockingIOError:
            continue
        if not chunk:
            raise Closed("the pipe is closed")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_frame(fd, deadline=None):
    """One frame's body, refused when it is larger than :data:`MAX_BYTES` plus room for
    its header."""
    (length,) = _LENGTH.unpack(read_exactly(fd, _LENGTH.size, deadline))
    if length > MAX_BYTES + 4 * 2**20:
        raise WireError(f"a message of {length / 2**20:.0f} MiB, more than the "
                        f"{MAX_BYTES // 2**20} MiB allowed")
    return read_exactly(fd, length, deadline)
