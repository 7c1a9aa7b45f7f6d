r"""Read the MPI messages of a ``jax.profiler`` profile: which XLA op is which bluefog message.

``jax.profiler`` writes one ``*.xplane.pb`` per session (a serialized ``XSpace`` protocol
buffer). Its ``/host:metadata`` plane holds the optimized HLO of every compiled program
(``HloProto``, one per ``"<module>(<program_id>)"``); the timed XLA ops on the host plane
carry only the instruction name (``sendrecv_mpi.3``), the module and the program id. This
module reads the HLO protos with a minimal protobuf wire-format decoder (no generated code,
no dependency) and returns, for each mpi4jax custom call, what it is:

* the primitive, from the custom-call target (``mpi_sendrecv_ffi`` -> ``sendrecv``);
* the bluefog op, from the instruction's ``op_name`` metadata: :class:`bluefog_dist.MpiComm`
  traces each message inside ``jax.named_scope("bf.<op>.<primitive>")``
  (:mod:`bluefog_dist.op_names`), so the scope path contains e.g.
  ``bf.neighbor_allreduce.sendrecv``; a message without such a scope (a raw ``mpi4jax`` call,
  the hybrid backend) is named ``mpi/<primitive>``;
* the message size in bytes, :math:`\prod(\text{shape}) \times \text{itemsize}` of the
  first operand (the buffer sent), and the peers (``source``, ``dest``, ``root``) from the
  custom call's ``backend_config``.

The field numbers are those of ``tsl/profiler/protobuf/xplane.proto`` (``XSpace.planes = 1``,
``XPlane.name = 2``, ``event_metadata = 4``, ``stat_metadata = 5``; ``XEventMetadata.name = 2``,
``stats = 5``; ``XStat.metadata_id = 1``, ``bytes_value = 6``) and ``xla/service/hlo.proto``
(``HloProto.hlo_module = 1``; ``HloModuleProto.computations = 3``;
``HloComputationProto.instructions = 2``; ``HloInstructionProto.name = 1``, ``opcode = 2``,
``shape = 3``, ``metadata = 7`` (``OpMetadata.op_name = 2``), ``custom_call_target = 28``,
``backend_config = 43``, ``operand_shapes_with_layout = 57``; ``ShapeProto.element_type =
2``, ``dimensions = 3``, ``tuple_shapes = 4``). Reference: the protocol buffer encoding,
https://protobuf.dev/programming-guides/encoding/.
"""

from __future__ import annotations

import re
from typing import Iterator, NamedTuple

__all__ = ["MpiOp", "SCOPE_PREFIX", "fields", "mpi_ops", "message_name"]

#: Bytes per element of XLA's ``PrimitiveType`` values (xla_data.proto).
_ITEMSIZE = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 2, 8: 4, 9: 8, 10: 2, 11: 4, 12: 8,
             15: 8, 16: 2, 18: 16}
_TARGET = re.compile(r"^mpi_([a-z_]+?)(?:_ffi|_cuda|_xpu)?$")
_PEER = re.compile(r"\b(source|dest|root) = (-?\d+) : i\d+")
#: prefix of the ``jax.named_scope`` that names a bluefog message (see :mod:`op_names`)
SCOPE_PREFIX = "bf."


class MpiOp(NamedTuple):
    """One mpi4jax custom call of a compiled program (mpi4jax: Hafner & Vicentini, JOSS
    6(65), 3419, 2021)."""

    name: str      #: ``"<op>/<primitive>"``, e.g. ``"neighbor_allreduce/sendrecv"``
    bytes: int     #: size of the buffer sent (first operand)
    peers: dict    #: ``source`` / ``dest`` / ``root`` found in the backend config


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i
        shift += 7


def fields(buf: bytes) -> Iterator[tuple[int, int | bytes]]:
    r"""``(field number, value)`` of every field of one serialized protobuf message.

    Varints come back as ``int``, length-delimited fields as ``bytes``, fixed 32/64-bit
    fields as their raw 4/8 bytes (wire types 0, 2, 5, 1 of the encoding). A key is
    :math:`(\text{field} \ll 3) \,|\, \text{wire type}`; a varint is little-endian base 128,
    :math:`v = \sum_k (b_k \,\&\, 127)\, 2^{7k}`.

    Reference: https://protobuf.dev/programming-guides/encoding/.
    """
    i, n = 0, len(buf)
    while i < n:
        key, i = _varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 2:
            length, i = _varint(buf, i)
            value, i = buf[i:i + length], i + length
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            value, i = buf[i:i + width], i + width
        else:
            raise ValueError(f"xplane: unsupported protobuf wire type {wire} (field {number}); "
                             "the file is not an XSpace written by jax.profiler.")
        yield number, value


def _all(buf: bytes, number: int) -> list:
    return [v for f, v in fields(buf) if f == number]


def _first(buf: bytes, number: int, default=None):
    return next((v for f, v in fields(buf) if f == number), default)


def _nbytes(shape: bytes) -> int:
    """Bytes of an array ``ShapeProto`` (0 for tokens, tuples and unknown types)."""
    dims = 1
    for f, v in fields(shape):
        if f == 3:
            if isinstance(v, bytes):  # packed repeated int64
                i = 0
                while i < len(v):
                    d, i = _varint(v, i)
                    dims *= d
            else:
                dims *= v
    return dims * _ITEMSIZE.get(_first(shape, 2, 0), 0)


def message_name(op_name: str, primitive: str) -> str:
    """``"<op>/<primitive>"`` from an instruction's ``op_name`` scope path.

    The last path component of the form ``bf.<op>.<label>`` names the message
    (``<label>`` distinguishes e.g. ``local_allreduce`` from ``allreduce``); without one the
    message is ``"mpi/<primitive>"``.

    >>> message_name("jit(run)/while/body/bf.neighbor_allreduce.sendrecv/sendrecv_mpi", "sendrecv")
    'neighbor_allreduce/sendrecv'
    >>> message_name("jit(f)/sendrecv_mpi", "sendrecv")
    'mpi/sendrecv'

    Reference: ``jax.named_scope`` (JAX documentation), XLA's ``OpMetadata.op_name``.
    """
    for part in reversed(op_name.split("/")):
        if part.startswith(SCOPE_PREFIX) and part.count(".") >= 2:
            op, label = part[len(SCOPE_PREFIX):].split(".", 1)
            return f"{op}/{label}"
    return f"mpi/{primitive}"


def _instruction(ins: bytes) -> tuple[str, MpiOp] | None:
    """``(instruction name, MpiOp)`` if ``ins`` is an mpi4jax custom call, else ``None``."""
    if _first(ins, 2) != b"custom-call":
        return None
    match = _TARGET.match(_first(ins, 28, b"").decode("utf-8", "replace"))
    if match is None:
        return None
    metadata = _first(ins, 7, b"")
    op_name = _first(metadata, 2, b"").decode("utf-8", "replace")
    operands = _all(ins, 57)
    nbytes = _nbytes(operands[0]) if operands else 0
    if not operands:  # no layout constraints: the result's first array
        result = _first(ins, 3, b"")
        nbytes = _nbytes((_all(result, 4) or [result])[0])
    config = _first(ins, 43, b"").decode("utf-8", "replace")
    peers = {k: int(v) for k, v in _PEER.findall(config)}
    name = _first(ins, 1, b"").decode("utf-8", "replace")
    return name, MpiOp(message_name(op_name, match.group(1)), nbytes, peers)


def _hlo_protos(xspace: bytes) -> Iterator[tuple[str, bytes]]:
    """``("<module>(<program_id>)", serialized HloProto)`` from the ``/host:metadata`` plane."""
    for plane in _all(xspace, 1):
        if _first(plane, 2) != b"/host:metadata":
            continue
        stat_names = {}
        for entry in _all(plane, 5):  # map<int64, XStatMetadata>: key 1, value 2
            meta = _first(entry, 2, b"")
            stat_names[_first(meta, 1, 0)] = _first(meta, 2, b"")
        for entry in _all(plane, 4):  # map<int64, XEventMetadata>
            meta = _first(entry, 2, b"")
            for stat in _all(meta, 5):
                if stat_names.get(_first(stat, 1, -1)) == b"Hlo Proto":
                    yield _first(meta, 2, b"").decode("utf-8", "replace"), _first(stat, 6, b"")


def mpi_ops(xspace: bytes) -> dict[str, dict[str, MpiOp]]:
    r"""The mpi4jax messages of every program in a serialized ``XSpace``.

    Parameters
    ----------
    xspace : bytes
        Contents of a ``*.xplane.pb`` written by ``jax.profiler.stop_trace``.

    Returns
    -------
    dict
        ``{"<module>(<program_id>)": {instruction name: MpiOp}}``; programs without MPI
        messages are left out. The key matches the ``hlo_module`` and ``program_id`` stats
        of the XLA op events. ``bytes`` :math:`= \prod_k d_k \times` itemsize of the first
        operand.

    Reference: ``xla/service/hlo.proto``, ``tsl/profiler/protobuf/xplane.proto`` (field
    numbers in the module docstring).
    """
    found: dict[str, dict[str, MpiOp]] = {}
    for key, proto in _hlo_protos(xspace):
        ops = {}
        for module in _all(proto, 1):
            for computation in _all(module, 3):
                for ins in _all(computation, 2):
                    hit = _instruction(ins)
                    if hit is not None:
                        ops[hit[0]] = hit[1]
        if ops:
            found[key] = ops
    return found
