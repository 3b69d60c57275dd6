"""Media sections of an SDP against the session's modality (R6) and service (R3)."""

from __future__ import annotations

import pytest

from server.errors import BadRequest, RuleError
from signaling.sdp import check_modality, media_sections

HEAD = "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
AUDIO = "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=sendrecv\r\n"
VIDEO = "m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\n"
VIDEO_REJECTED = "m=video 0 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\n"
VIDEO_BUNDLE_ONLY = "m=video 0 UDP/TLS/RTP/SAVPF 96\r\na=bundle-only\r\na=mid:1\r\n"
DATA = "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:2\r\na=sctp-port:5000\r\n"
SECRET_WORDS = "a=x-note:my private words\r\n"


def sdp(*sections: str) -> str:
    return HEAD + "".join(sections)


def test_media_sections_reads_m_lines() -> None:
    sections = media_sections(sdp(AUDIO, VIDEO_REJECTED, DATA))
    assert [(s.media, s.port, s.active) for s in sections] == [
        ("audio", 9, True),
        ("video", 0, False),
        ("application", 9, True),
    ]
    assert media_sections(sdp(VIDEO_BUNDLE_ONLY))[0].active  # RFC 8843: port 0, still bundled
    assert media_sections(sdp(AUDIO).replace("\r\n", "\n"))[0].media == "audio"


def test_r6_video_session_takes_audio_video_and_data() -> None:
    assert len(check_modality(sdp(AUDIO, VIDEO, DATA), "video")) == 3


def test_r6_audio_session_refuses_video() -> None:
    with pytest.raises(RuleError) as err:
        check_modality(sdp(AUDIO, VIDEO), "audio")
    assert err.value.rule == "R6"
    assert "video" in err.value.message and "section 1" in err.value.message


def test_r6_audio_session_takes_a_rejected_video_section() -> None:
    assert len(check_modality(sdp(AUDIO, VIDEO_REJECTED, DATA), "audio")) == 3


def test_r6_bundle_only_video_counts_as_video() -> None:
    with pytest.raises(RuleError, match="video"):
        check_modality(sdp(AUDIO, VIDEO_BUNDLE_ONLY), "audio")


def test_r6_chat_session_takes_only_a_data_channel_or_nothing() -> None:
    assert len(check_modality(sdp(DATA), "chat")) == 1
    assert check_modality(sdp(), "chat") == ()
    for media in (AUDIO, VIDEO):
        with pytest.raises(RuleError) as err:
            check_modality(sdp(DATA, media), "chat")
        assert err.value.rule == "R6"


def test_r6_unknown_media_types_are_refused_without_echo() -> None:
    with pytest.raises(RuleError) as err:
        check_modality(sdp("m=secretthing 9 RTP/AVP 0\r\n"), "video")
    assert "secretthing" not in err.value.message


def test_r3_psychiatry_sessions_are_video_only() -> None:
    for modality in ("audio", "chat"):
        with pytest.raises(RuleError) as err:
            check_modality(sdp(DATA), modality, "psychiatry")
        assert err.value.rule == "R3"


def test_r3_psychiatry_sdp_must_keep_active_video() -> None:
    assert len(check_modality(sdp(AUDIO, VIDEO), "video", "psychiatry")) == 2
    for body in (sdp(AUDIO), sdp(DATA), sdp(AUDIO, VIDEO_REJECTED)):
        with pytest.raises(RuleError) as err:
            check_modality(body, "video", "psychiatry")
        assert err.value.rule == "R3"


def test_unreadable_sdp_is_a_bad_request_that_never_echoes_it() -> None:
    bad = [
        "hello " + SECRET_WORDS,
        sdp("m=audio\r\n", SECRET_WORDS),
        sdp("m=audio x9 RTP/AVP 0\r\n", SECRET_WORDS),
        sdp("m=audio 99999 RTP/AVP 0\r\n"),
        sdp(AUDIO) + "\x00",
    ]
    for body in bad:
        with pytest.raises(BadRequest) as err:
            check_modality(body, "video")
        assert "private" not in err.value.message
        assert "m=" not in err.value.message.replace("m= line", "")


def test_too_many_sections_is_refused() -> None:
    with pytest.raises(BadRequest, match="more than 64"):
        media_sections(sdp(*([DATA] * 65)))
