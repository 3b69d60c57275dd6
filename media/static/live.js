// The join page of a Confide live session (docs/live.md, "What a client app must do").
//
// URL: /live/{session}#token=...  (or ?token=...&session=...; relay=1 forces TURN relay).
// Opens /ws (confide.v1.json), says hello, sends live.join, and on live.start runs
// perfect negotiation with the `polite` flag it got. Never sends live.signal before
// live.start (R10). State for tests and diagnostics: window.confide.
"use strict";

(() => {
  const query = new URLSearchParams(location.search);
  const fragment = new URLSearchParams(location.hash.slice(1));
  const param = (name) => fragment.get(name) ?? query.get(name);
  const pathSession = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop() || "");
  const token = param("token");
  const session = param("session") || pathSession;
  const relayOnly = param("relay") === "1";
  const now = () => performance.timeOrigin + performance.now(); // ms since the epoch

  const state = {
    session, relayOnly,
    phase: "connecting", // connecting, waiting, started, away, left, ended, closed, error
    user: null, modality: null, polite: null, resume: null,
    connectionState: "new", iceConnectionState: "new", signalingState: "stable",
    iceGatheringState: "new", candidatesSent: 0, log: [],
    framesDecoded: 0, audioPacketsReceived: 0,
    localCandidateType: null, remoteCandidateType: null,
    joinedAt: null, startAt: null, connectedAt: null, starts: [], restarts: 0,
    errors: [], received: [], // frame types (never their contents)
    leave: () => leave(),
  };
  window.confide = state;

  const status = document.getElementById("status");
  const remoteVideo = document.getElementById("remote");
  const localVideo = document.getElementById("local");
  const show = (text) => { status.textContent = text; };
  const fail = (where, error) => {
    const message = `${where}: ${error && error.message ? error.message : error}`;
    state.errors.push(message);
    console.warn(message);
  };

  let ws = null;
  let ids = 0;
  let localStream = null;
  let pc = null;
  let pcStart = 0; // which live.start the current peer connection was made after
  let iceServers = [];
  let makingOffer = false;
  let ignoreOffer = false;
  let signals = Promise.resolve(); // incoming signals, handled one at a time, in order
  const early = []; // signals that arrived before our first live.start
  let reconnects = 0;
  let timer = null;

  function send(frame) {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(frame));
  }

  function signal(data) {
    if (state.phase === "started" || state.phase === "away") {
      send({ t: "live.signal", session, data });
    }
  }

  async function modalityOf() {
    const r = await fetch(`/v1/sessions/${encodeURIComponent(session)}`, {
      headers: { authorization: `Bearer ${token}` }, cache: "no-store",
    });
    if (!r.ok) throw new Error(`session lookup answered ${r.status}`);
    return (await r.json()).modality;
  }

  async function openMedia() {
    if (state.modality === "chat") return new MediaStream();
    const video = state.modality === "video";
    const stream = await navigator.mediaDevices.getUserMedia({ audio: true, video });
    localVideo.srcObject = stream;
    return stream;
  }

  function configuration() {
    return { iceServers, iceTransportPolicy: relayOnly ? "relay" : "all" };
  }

  function newPeerConnection() {
    if (pc) pc.close();
    makingOffer = false;
    ignoreOffer = false;
    pcStart = state.starts.length;
    const conn = pc = new RTCPeerConnection(configuration());
    conn.onnegotiationneeded = async () => {
      // The polite side leaves a new connection's first offer to the impolite side and
      // answers it: a glare on the very first offer costs a rollback, and Chromium (156)
      // then gathers no candidates for the answer. Later negotiations are symmetric.
      if (state.polite && !conn.remoteDescription) {
        state.log.push("negotiationneeded: left to the impolite side");
        return;
      }
      try {
        makingOffer = true;
        state.log.push("negotiationneeded");
        await conn.setLocalDescription();
        const d = conn.localDescription;
        signal({ type: d.type, sdp: d.sdp });
      } catch (e) {
        fail("negotiationneeded", e);
      } finally {
        makingOffer = false;
      }
    };
    conn.onicecandidate = ({ candidate }) => {
      if (conn !== pc) return;
      state.candidatesSent += 1;
      signal({ type: "candidate", candidate: candidate ? candidate.toJSON() : null });
    };
    conn.ontrack = ({ track, streams }) => {
      const stream = streams[0] || new MediaStream([track]);
      if (remoteVideo.srcObject !== stream) remoteVideo.srcObject = stream;
    };
    conn.onsignalingstatechange = () => {
      state.signalingState = conn.signalingState;
      state.log.push(`signaling ${conn.signalingState}`);
    };
    conn.onicegatheringstatechange = () => {
      state.iceGatheringState = conn.iceGatheringState;
      state.log.push(`gathering ${conn.iceGatheringState}`);
    };
    conn.oniceconnectionstatechange = () => { state.iceConnectionState = conn.iceConnectionState; };
    conn.onconnectionstatechange = () => {
      if (conn !== pc) return;
      state.connectionState = conn.connectionState;
      if (conn.connectionState === "connected") {
        if (state.connectedAt === null) state.connectedAt = now();
        show("Connected");
      } else if (conn.connectionState === "failed") {
        show("The connection failed");
      }
    };
    if (state.modality === "chat") {
      conn.createDataChannel("chat");
    } else {
      for (const track of localStream.getTracks()) conn.addTrack(track, localStream);
    }
    state.connectionState = conn.connectionState;
    return conn;
  }

  function onStart(frame) {
    iceServers = Array.isArray(frame.ice_servers) ? frame.ice_servers : [];
    state.polite = frame.polite === true;
    state.resume = frame.resume === true;
    const at = now();
    state.starts.push({ at, resume: state.resume });
    state.phase = "started";
    if (!state.resume || state.startAt === null) {
      state.startAt = at;
      state.connectedAt = null;
    }
    show("Starting…");
    if (state.resume && pc && pc.connectionState !== "closed") {
      // Fresh TURN credentials, then an ICE restart (the next offer has a new ufrag/pwd).
      pc.setConfiguration(configuration());
      pcStart = state.starts.length;
      state.restarts += 1;
      pc.restartIce();
    } else {
      newPeerConnection();
      if (state.resume) signal({ type: "restart" });
    }
    for (const data of early.splice(0)) handleSignal(data);
  }

  function handleSignal(data) {
    signals = signals.then(() => onSignal(data)).catch((e) => fail("signal", e));
  }

  async function onSignal(data) {
    if (!data || typeof data !== "object") return;
    if (data.type === "restart") {
      // The peer has a new peer connection; ours is stale unless made after the latest start.
      if (pcStart < state.starts.length) newPeerConnection();
      return;
    }
    if (!pc) return;
    if (data.type === "offer" || data.type === "answer") {
      const collision = data.type === "offer" &&
        (makingOffer || pc.signalingState !== "stable");
      ignoreOffer = !state.polite && collision;
      state.log.push(`got ${data.type} collision=${collision} ignore=${ignoreOffer}`);
      if (ignoreOffer) return;
      await pc.setRemoteDescription({ type: data.type, sdp: data.sdp });
      if (data.type === "offer") {
        await pc.setLocalDescription();
        const d = pc.localDescription;
        signal({ type: d.type, sdp: d.sdp });
      }
    } else if (data.type === "candidate") {
      try {
        if (data.candidate && data.candidate.candidate) await pc.addIceCandidate(data.candidate);
        else await pc.addIceCandidate();
      } catch (e) {
        if (!ignoreOffer && data.candidate) throw e;
      }
    }
  }

  function closePeer() {
    if (pc) pc.close();
    pc = null;
    state.connectionState = "closed";
  }

  function onFrame(frame) {
    state.received.push(frame.t === "live.signal" && frame.data ? `${frame.t}:${frame.data.type}` : frame.t);
    switch (frame.t) {
      case "welcome":
        state.user = frame.user;
        state.phase = "joining";
        state.joinedAt = now();
        send({ t: "live.join", id: ++ids, session });
        break;
      case "live.waiting":
        state.phase = "waiting";
        show("Waiting for the other side to join…");
        break;
      case "live.start":
        onStart(frame);
        break;
      case "live.signal":
        if (!pc && state.starts.length === 0) early.push(frame.data); // overtook our live.start
        else handleSignal(frame.data);
        break;
      case "live.away":
        state.phase = "away";
        show("The other side is reconnecting…");
        break;
      case "live.left":
        if (frame.re !== undefined) break; // the answer to our own leave
        state.phase = "left";
        closePeer();
        show("The other side left");
        break;
      case "live.ended":
        state.phase = "ended";
        closePeer();
        show(`The session has ended (${frame.reason})`);
        break;
      case "error":
        fail(`error ${frame.code}${frame.rule ? " " + frame.rule : ""}`, frame.message);
        if (frame.re !== undefined && state.phase === "joining") {
          state.phase = "error";
          show(`Cannot join: ${frame.message}`);
        }
        break;
      default:
        break;
    }
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    ws = new WebSocket(`${scheme}//${location.host}/ws`, "confide.v1.json");
    ws.onopen = () => { reconnects = 0; send({ t: "hello", token }); };
    ws.onmessage = (event) => {
      try {
        onFrame(JSON.parse(event.data));
      } catch (e) {
        fail("frame", e);
      }
    };
    ws.onclose = (event) => {
      if (["ended", "error", "closed"].includes(state.phase)) return;
      if ([4400, 4401, 4403].includes(event.code) || reconnects >= 5) {
        state.phase = "error";
        show(`Disconnected (${event.code})`);
        return;
      }
      // Reconnect and join again: inside the rejoin grace this resumes the session.
      reconnects += 1;
      show("Reconnecting…");
      setTimeout(connect, 500 * reconnects);
    };
  }

  async function pollStats() {
    if (!pc || pc.connectionState === "closed") return;
    const stats = await pc.getStats();
    let frames = 0;
    let packets = 0;
    let pairId = null;
    stats.forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "video") frames += s.framesDecoded || 0;
      if (s.type === "inbound-rtp" && s.kind === "audio") packets += s.packetsReceived || 0;
      if (s.type === "transport" && s.selectedCandidatePairId) pairId = s.selectedCandidatePairId;
    });
    state.framesDecoded = frames;
    state.audioPacketsReceived = packets;
    const pair = pairId && stats.get(pairId);
    if (pair) {
      const local = stats.get(pair.localCandidateId);
      const remote = stats.get(pair.remoteCandidateId);
      state.localCandidateType = local ? local.candidateType : null;
      state.remoteCandidateType = remote ? remote.candidateType : null;
    }
  }

  function leave() {
    send({ t: "live.leave", id: ++ids, session });
    state.phase = "closed";
    closePeer();
    if (ws) ws.close(1000);
    if (timer) clearInterval(timer);
    if (localStream) for (const t of localStream.getTracks()) t.stop();
    show("You left the session");
  }

  async function main() {
    if (!token || !session) {
      state.phase = "error";
      show("This join link is incomplete: it needs a token and a session.");
      return;
    }
    document.getElementById("leave").addEventListener("click", leave);
    try {
      state.modality = await modalityOf();
      localStream = await openMedia();
    } catch (e) {
      fail("setup", e);
      state.phase = "error";
      show("Cannot open the camera or microphone, or the session is unknown.");
      return;
    }
    timer = setInterval(() => { pollStats().catch((e) => fail("stats", e)); }, 200);
    connect();
  }

  main();
})();
