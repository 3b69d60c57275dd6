"""Checking the ``data`` of a ``live.signal`` frame: its kind, shape, size and modality (R6, R3).

Theory of operation
-------------------
The hub relays ``data`` to the other side unchanged; `check_signal_data` only
says whether it may pass (R10's timing is the join gate's job, `JoinGate.check_signal`).
``data`` is what the browser's WebRTC API produces, plus one message of ours:

==============================================  =========================================
``data``                                        meaning
==============================================  =========================================
``{type: "offer", sdp}``                        an ``RTCSessionDescriptionInit``; an ICE
``{type: "answer", sdp}``                       restart is an offer like any other (from
                                                ``restartIce()``: new ``ice-ufrag``/``ice-pwd``)
``{type: "candidate", candidate: {...}}``       an ``RTCIceCandidateInit``: ``candidate``,
                                                ``sdpMid``, ``sdpMLineIndex``, ``usernameFragment``
``{type: "candidate", candidate: null}``        end of candidates (so is ``candidate: ""``)
``{type: "restart"}``                           the sender has a *new* peer connection (it
                                                lost the old one, e.g. a page reload): the
                                                receiver replaces a peer connection made
                                                before the latest ``live.start``, see docs/live.md
==============================================  =========================================

Checks, in order: ``data`` is a map (`BadRequest`); its size, as compact UTF-8
JSON whatever the subprotocol, is at most ``max_bytes`` (`TooLarge`, 64 KiB by
default); its ``type`` is one of the four; it has exactly the fields of that type
(`BadRequest`); an SDP is text and fits the session's modality and service
(`signaling.sdp.check_modality`: `RuleError` R6 or R3). ``pranswer`` and
``rollback`` are refused: perfect negotiation rolls back locally, never on the wire.

Errors name fields, sizes and rules; they never echo what the client sent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal, assert_never, cast

from server.errors import BadRequest, TooLarge
from server.ids import Service

from .sdp import MediaSection, Modality, check_modality, check_service_modality

MAX_SIGNAL_BYTES = 64 * 1024
"""The default size limit of a ``live.signal`` ``data``, encoded as compact UTF-8 JSON."""

MAX_CANDIDATE_CHARS = 1024
MAX_MID_CHARS = 64
MAX_UFRAG_CHARS = 256

SignalType = Literal["offer", "answer", "candidate", "restart"]
SIGNAL_TYPES: tuple[SignalType, ...] = ("offer", "answer", "candidate", "restart")

_FIELDS: dict[SignalType, frozenset[str]] = {
    "offer": frozenset({"type", "sdp"}),
    "answer": frozenset({"type", "sdp"}),
    "candidate": frozenset({"type", "candidate"}),
    "restart": frozenset({"type"}),
}
_CANDIDATE_FIELDS = frozenset({"candidate", "sdpMid", "sdpMLineIndex", "usernameFragment"})


@dataclass(frozen=True, slots=True)
class Description:
    """An offer or an answer, with the media sections read from its SDP."""

    type: Literal["offer", "answer"]
    sections: tuple[MediaSection, ...]
    size: int


@dataclass(frozen=True, slots=True)
class Candidate:
    """An ICE candidate, or the end of candidates (``end``)."""

    end: bool
    size: int


@dataclass(frozen=True, slots=True)
class Restart:
    """The sender replaced its peer connection; the receiver should too."""

    size: int


Signal = Description | Candidate | Restart


def check_signal_data(
    data: object,
    *,
    modality: Modality,
    service: Service = "therapy",
    max_bytes: int = MAX_SIGNAL_BYTES,
) -> Signal:
    """Check a ``live.signal`` ``data`` for a session of `modality` in a `service` room.

    Returns what it is; raises `BadRequest`, `TooLarge` or `RuleError` (R6, R3).
    """
    check_service_modality(modality, service)
    if not isinstance(data, dict):
        raise BadRequest("data must be a map")
    size = encoded_size(data)
    if size > max_bytes:
        raise TooLarge(f"data is {size} bytes, over the {max_bytes} byte limit")
    raw_type = data.get("type")
    if raw_type not in SIGNAL_TYPES:
        raise BadRequest("data.type must be offer, answer, candidate or restart")
    kind = cast(SignalType, raw_type)
    fields = _FIELDS[kind]
    if not fields <= data.keys():
        raise BadRequest(f"data of type {kind} needs {', '.join(sorted(fields))}")
    if len(data) != len(fields):
        raise BadRequest(f"data of type {kind} has {len(data) - len(fields)} unexpected field(s)")
    match kind:
        case "offer" | "answer":
            sdp = data["sdp"]
            if not isinstance(sdp, str):
                raise BadRequest("data.sdp must be text")
            return Description(kind, check_modality(sdp, modality, service), size)
        case "candidate":
            return Candidate(end=_is_end_of_candidates(data["candidate"]), size=size)
        case "restart":
            return Restart(size)
        case _:
            assert_never(kind)


def encoded_size(data: object) -> int:
    """The size of `data` as compact UTF-8 JSON: the same limit over msgpack and JSON."""
    try:
        text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        raise BadRequest(
            "data must hold only maps, lists, text, numbers, booleans and null"
        ) from None
    return len(text.encode("utf-8", errors="surrogatepass"))


def _is_end_of_candidates(candidate: object) -> bool:
    """Check an ``RTCIceCandidateInit`` (or null); True if it ends the candidates."""
    if candidate is None:
        return True
    if not isinstance(candidate, dict):
        raise BadRequest("data.candidate must be a map or null")
    if not candidate.keys() <= _CANDIDATE_FIELDS:
        raise BadRequest("data.candidate has unexpected fields")
    line = candidate.get("candidate")
    if not isinstance(line, str):
        raise BadRequest("data.candidate.candidate must be text")
    if len(line) > MAX_CANDIDATE_CHARS:
        raise BadRequest(f"data.candidate.candidate is over {MAX_CANDIDATE_CHARS} characters")
    if line and not line.startswith("candidate:"):
        raise BadRequest("data.candidate.candidate must be an ICE candidate line")
    mid = candidate.get("sdpMid")
    if mid is not None and (not isinstance(mid, str) or len(mid) > MAX_MID_CHARS):
        raise BadRequest(f"data.candidate.sdpMid must be text of at most {MAX_MID_CHARS}")
    index = candidate.get("sdpMLineIndex")
    if index is not None and (
        not isinstance(index, int) or isinstance(index, bool) or not 0 <= index <= 65535
    ):
        raise BadRequest("data.candidate.sdpMLineIndex must be an integer from 0 to 65535")
    ufrag = candidate.get("usernameFragment")
    if ufrag is not None and (not isinstance(ufrag, str) or len(ufrag) > MAX_UFRAG_CHARS):
        raise BadRequest(
            f"data.candidate.usernameFragment must be text of at most {MAX_UFRAG_CHARS}"
        )
    if line and mid is None and index is None:
        raise BadRequest("data.candidate needs sdpMid or sdpMLineIndex")
    return line == ""
