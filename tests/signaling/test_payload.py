"""The `data` of a live.signal: kind, shape, size, and the SDP's fit to the modality (R6, R3)."""

from __future__ import annotations

import pytest

from server.errors import BadRequest, RuleError, TooLarge
from signaling.payload import (
    MAX_SIGNAL_BYTES,
    Candidate,
    Description,
    Restart,
    check_signal_data,
    encoded_size,
)

HEAD = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
AUDIO = "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n"
VIDEO = "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\n"
DATA = "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:2\r\n"
CANDIDATE = {
    "candidate": "candidate:842163049 1 udp 1677729535 203.0.113.7 46154 typ srflx "
    "raddr 0.0.0.0 rport 0 generation 0 ufrag sK4v network-cost 999",
    "sdpMid": "0",
    "sdpMLineIndex": 0,
    "usernameFragment": "sK4v",
}


def test_offer_and_answer_pass_with_their_sections() -> None:
    for kind in ("offer", "answer"):
        signal = check_signal_data({"type": kind, "sdp": HEAD + AUDIO + VIDEO}, modality="video")
        assert isinstance(signal, Description)
        assert signal.type == kind
        assert [s.media for s in signal.sections] == ["audio", "video"]


def test_candidates_and_end_of_candidates() -> None:
    signal = check_signal_data({"type": "candidate", "candidate": CANDIDATE}, modality="audio")
    assert signal == Candidate(end=False, size=signal.size)
    end = {"type": "candidate", "candidate": None}
    # len('{"type":"candidate","candidate":null}') == 37
    assert check_signal_data(end, modality="chat") == Candidate(end=True, size=37)
    empty = {"candidate": "", "sdpMid": "0", "sdpMLineIndex": 0}
    signal = check_signal_data({"type": "candidate", "candidate": empty}, modality="chat")
    assert signal == Candidate(end=True, size=signal.size)


def test_restart_is_a_bare_type() -> None:
    assert isinstance(check_signal_data({"type": "restart"}, modality="video"), Restart)
    with pytest.raises(BadRequest):
        check_signal_data({"type": "restart", "why": "x"}, modality="video")


def test_r6_audio_session_refuses_a_video_offer() -> None:
    with pytest.raises(RuleError) as err:
        check_signal_data({"type": "offer", "sdp": HEAD + AUDIO + VIDEO}, modality="audio")
    assert err.value.rule == "R6"


def test_r6_chat_session_takes_a_data_channel_offer_only() -> None:
    assert check_signal_data({"type": "offer", "sdp": HEAD + DATA}, modality="chat")
    with pytest.raises(RuleError) as err:
        check_signal_data({"type": "answer", "sdp": HEAD + AUDIO + DATA}, modality="chat")
    assert err.value.rule == "R6"


def test_r3_psychiatry_refuses_audio_only_and_non_video_sessions() -> None:
    with pytest.raises(RuleError) as err:
        check_signal_data(
            {"type": "offer", "sdp": HEAD + AUDIO}, modality="video", service="psychiatry"
        )
    assert err.value.rule == "R3"
    with pytest.raises(RuleError) as err:
        check_signal_data({"type": "restart"}, modality="audio", service="psychiatry")
    assert err.value.rule == "R3"
    ok = {"type": "offer", "sdp": HEAD + AUDIO + VIDEO}
    assert check_signal_data(ok, modality="video", service="psychiatry")


def test_size_limit_is_measured_encoded_and_configurable() -> None:
    big = {"type": "offer", "sdp": HEAD + AUDIO + "a=x:" + "é" * 40_000 + "\r\n"}
    assert encoded_size(big) > MAX_SIGNAL_BYTES  # 2 bytes per é in UTF-8
    with pytest.raises(TooLarge) as err:
        check_signal_data(big, modality="audio")
    assert "é" not in err.value.message
    small = {"type": "offer", "sdp": HEAD + AUDIO}
    with pytest.raises(TooLarge):
        check_signal_data(small, modality="audio", max_bytes=40)


@pytest.mark.parametrize(
    "data",
    [
        "offer",
        ["offer"],
        {"sdp": HEAD},
        {"type": "pranswer", "sdp": HEAD + AUDIO},
        {"type": "rollback"},
        {"type": "offer"},
        {"type": "offer", "sdp": (HEAD + AUDIO).encode()},
        {"type": "offer", "sdp": HEAD, "extra": 1},
        {"type": "candidate"},
        {"type": "candidate", "candidate": "candidate:1 1 udp 1 203.0.113.7 1 typ host"},
        {"type": "candidate", "candidate": {"candidate": "candidate:1", "sdpMid": "0", "x": 1}},
        {"type": "candidate", "candidate": {"candidate": "hello", "sdpMid": "0"}},
        {"type": "candidate", "candidate": {"candidate": "candidate:1"}},
        {"type": "candidate", "candidate": {"candidate": "candidate:1", "sdpMLineIndex": True}},
        {"type": "candidate", "candidate": {"candidate": "candidate:1", "sdpMLineIndex": -1}},
        {"type": "candidate", "candidate": {"candidate": "candidate:1", "sdpMid": 3}},
        {"type": "candidate", "candidate": {"candidate": "candidate:" + "1" * 2000, "sdpMid": "0"}},
        {"type": "candidate", "candidate": {"sdpMid": "0"}},
        {"type": "offer", "sdp": float("nan")},
    ],
)
def test_malformed_data_is_a_bad_request(data: object) -> None:
    with pytest.raises(BadRequest):
        check_signal_data(data, modality="video")


def test_errors_never_echo_sdp_or_candidate_text() -> None:
    private = "a=x-note:my private words\r\n"
    cases: list[object] = [
        {"type": "offer", "sdp": HEAD + private + "m=audio\r\n"},
        {"type": "offer", "sdp": HEAD + private + VIDEO, "private words": 1},
        {"type": "offer", "sdp": "my private words"},
        {"type": "candidate", "candidate": {"candidate": "my private words", "sdpMid": "0"}},
    ]
    for data in cases:
        with pytest.raises(BadRequest) as err:
            check_signal_data(data, modality="video")
        assert "private" not in err.value.message
    with pytest.raises(RuleError) as rule_err:
        check_signal_data({"type": "offer", "sdp": HEAD + private + VIDEO}, modality="audio")
    assert "private" not in rule_err.value.message
