"""Reading the media sections of an SDP and fitting them to a live session's modality (R6, R3).

Theory of operation
-------------------
The server never negotiates media; it relays offers and answers between the two
browsers. It reads just enough of each SDP to enforce what a session may carry:
its ``m=`` lines (RFC 8866 section 5.14: ``m=<media> <port> <proto> <fmt> ...``).

A media section is *active* unless it is rejected: port 0 without
``a=bundle-only`` (RFC 8843: a bundle-only section has port 0 and still carries
media, so it counts as active). What each modality admits, active:

=========  =====================================  ======================================
modality   media sections allowed                  rule
=========  =====================================  ======================================
``video``  ``audio``, ``video``, ``application``  R6
``audio``  ``audio``, ``application``             R6: no video
``chat``   ``application`` (a data channel)       R6: no audio, no video; none at all is fine
=========  =====================================  ======================================

A rejected section of any kind (port 0) is always fine: it is how an answer turns
down what an offer proposed, and sections are never removed from a renegotiated SDP.
``application`` is the WebRTC data channel; any other media type (``text``,
``message``, ...) is refused.

- **R3.** A ``psychiatry`` session is a video session: any other modality is
  refused, and each of its offers and answers must keep an active ``video``
  section (a camera may be off, but the call is a video call; an SDP with audio
  only would be a live audio session, which R3 forbids).

Errors name the rule, the section's position and, for the known media types,
its type; never any other SDP text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from server.errors import BadRequest, RuleError
from server.ids import Service

Modality = Literal["video", "audio", "chat"]
MODALITIES: tuple[Modality, ...] = ("video", "audio", "chat")

KNOWN_MEDIA = frozenset({"audio", "video", "application", "text", "message"})

ALLOWED_MEDIA: Mapping[Modality, frozenset[str]] = {
    "video": frozenset({"audio", "video", "application"}),
    "audio": frozenset({"audio", "application"}),
    "chat": frozenset({"application"}),
}
"""The media types each modality admits in an active section (R6)."""

MAX_SECTIONS = 64
"""More media sections than any session of two needs; past it the SDP is refused."""


@dataclass(frozen=True, slots=True)
class MediaSection:
    """One ``m=`` section: its media type, port and whether it is bundle-only."""

    index: int
    media: str
    port: int
    bundle_only: bool

    @property
    def active(self) -> bool:
        """Carries media: a port, or bundled with another section (RFC 8843)."""
        return self.port != 0 or self.bundle_only


def media_sections(sdp: str) -> tuple[MediaSection, ...]:
    """The media sections of `sdp`, in order. `BadRequest` when it is not an SDP we can read."""
    if "\x00" in sdp:
        raise BadRequest("sdp must be text")
    lines = sdp.replace("\r\n", "\n").split("\n")
    if lines[0] != "v=0":
        raise BadRequest("sdp must begin with v=0")
    sections: list[MediaSection] = []
    for line in lines:
        if line.startswith("m="):
            if len(sections) >= MAX_SECTIONS:
                raise BadRequest(f"sdp has more than {MAX_SECTIONS} media sections")
            sections.append(_parse_m_line(line, len(sections)))
        elif line == "a=bundle-only" and sections:
            last = sections[-1]
            sections[-1] = MediaSection(last.index, last.media, last.port, bundle_only=True)
    return tuple(sections)


def check_modality(
    sdp: str, modality: Modality, service: Service = "therapy"
) -> tuple[MediaSection, ...]:
    """Refuse `sdp` if it carries media `modality` does not allow (R6), or breaks R3.

    Returns its media sections. `RuleError` for a rule, `BadRequest` for an unreadable SDP.
    """
    check_service_modality(modality, service)
    sections = media_sections(sdp)
    allowed = ALLOWED_MEDIA[modality]
    for section in sections:
        if section.active and section.media not in allowed:
            what = section.media if section.media in KNOWN_MEDIA else "an unsupported media type"
            rule = "R3" if service == "psychiatry" else "R6"
            raise RuleError(
                rule,
                f"a {modality} session carries no {what} (media section {section.index})",
            )
    if service == "psychiatry" and not any(s.active and s.media == "video" for s in sections):
        raise RuleError("R3", "a psychiatry session is a video call: the sdp has no active video")
    return sections


def check_service_modality(modality: Modality, service: Service) -> None:
    """R3: psychiatry sessions are video only; R6: the modality is one of three."""
    if modality not in MODALITIES:
        raise RuleError("R6", "a live session is video, audio or chat")
    if service == "psychiatry" and modality != "video":
        raise RuleError("R3", "psychiatry live sessions are video only")


def _parse_m_line(line: str, index: int) -> MediaSection:
    fields = line[2:].split(" ")
    if len(fields) < 4 or not fields[0]:
        raise BadRequest(f"malformed m= line (media section {index})")
    port_text = fields[1].split("/", 1)[0]
    if not port_text.isascii() or not port_text.isdigit() or int(port_text) > 65535:
        raise BadRequest(f"malformed port in m= line (media section {index})")
    return MediaSection(index, fields[0], int(port_text), bundle_only=False)
