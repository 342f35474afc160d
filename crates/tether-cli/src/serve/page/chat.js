// The behaviour of the `tether serve` chat page (docs/demo-chat.md): one WebSocket to
// ws(s)://HOST/ws (with the page's own ?name= and ?token=), the JSON chat protocol, every
// error message and every close shown as a notice, and reconnection with exponential backoff
// and full jitter following the retry advice, joining the same rooms again afterwards from
// the last position seen in each (recovery: the missed messages, or a notice that some may be
// missing).
"use strict";

(() => {
  const INITIAL_DELAY_MS = 500;
  const MAX_DELAY_MS = 10000;
  const MAX_ITEMS = 500; // per list: old entries go first
  const OVERSIZED_BYTES = 100 * 1024;
  const FLOOD_COUNT = 100;

  // The retry advice: close codes after which reconnecting can help. Everything else
  // (1000, 1002, 1003, 1007-1010, 4000-4004, unknown codes) waits for the #reconnect button.
  const RETRY = new Set([1001, 1005, 1006, 1011, 1012, 1013, 1014, 4005]);

  const CLOSE_NAMES = {
    1000: "normal closure",
    1001: "going away",
    1002: "protocol error",
    1003: "unsupported data",
    1005: "no status received",
    1006: "abnormal closure",
    1007: "invalid payload data",
    1008: "policy violation",
    1009: "message too big",
    1010: "mandatory extension",
    1011: "internal error",
    1012: "service restart",
    1013: "try again later",
    1014: "bad gateway",
    1015: "TLS handshake failure",
    4000: "bad request",
    4001: "not found",
    4002: "invalid action",
    4003: "unauthorized",
    4004: "forbidden",
    4005: "rate limited",
  };

  const $ = (id) => document.getElementById(id);
  const ui = {
    body: document.body,
    status: $("status"),
    name: $("name"),
    room: $("room"),
    roomList: $("room-list"),
    rooms: $("rooms"),
    messages: $("messages"),
    notices: $("notices"),
    text: $("text"),
  };

  let ws = null; // the current socket, if any
  let attempt = 0; // reconnects since the last welcome
  let retryTimer = null;
  let countdownTimer = null;
  let nextId = 1;
  let myName = null;
  const joined = []; // rooms joined, in order: the last one is the current room
  const pendingJoins = new Map(); // request id -> { room, since }: since is null without one
  // Room -> { epoch, offset }: the position of the last message seen there (or of the joined
  // reply), sent as `since` when the page joins the room again after a reconnect.
  const positions = new Map();

  function closeName(code) {
    if (CLOSE_NAMES[code]) return CLOSE_NAMES[code];
    if (code >= 4000 && code <= 4999) return "application error";
    if (code >= 3000 && code <= 3999) return "registered code";
    return "unknown code";
  }

  function wsUrl() {
    const page = new URLSearchParams(location.search);
    const query = new URLSearchParams();
    for (const key of ["name", "token"]) {
      const value = page.get(key);
      if (value) query.set(key, value);
    }
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const search = query.toString();
    return scheme + location.host + "/ws" + (search ? "?" + search : "");
  }

  function setState(state, words) {
    ui.body.dataset.state = state;
    ui.status.textContent = words;
  }

  function append(list, item) {
    list.appendChild(item);
    while (list.children.length > MAX_ITEMS) list.removeChild(list.firstElementChild);
    list.scrollTop = list.scrollHeight;
    const panel = list.closest(".notices-panel");
    if (panel) panel.scrollTop = panel.scrollHeight;
  }

  function notice(kind, code, text, title) {
    const li = document.createElement("li");
    li.className = "notice " + kind;
    if (code !== null) li.dataset.code = String(code);
    li.textContent = text;
    if (title) li.title = title;
    append(ui.notices, li);
    return li;
  }

  // --- Rooms ---------------------------------------------------------------------------

  function currentRoom() {
    return joined.length ? joined[joined.length - 1] : null;
  }

  function renderRooms() {
    ui.rooms.replaceChildren();
    const current = currentRoom();
    for (const room of joined) {
      const li = document.createElement("li");
      li.dataset.room = room;
      li.textContent = room;
      if (room === current) li.className = "current";
      ui.rooms.appendChild(li);
    }
  }

  function addRoom(room) {
    const at = joined.indexOf(room);
    if (at >= 0) joined.splice(at, 1);
    joined.push(room);
    renderRooms();
  }

  function removeRoom(room) {
    positions.delete(room); // joined again later, it starts afresh
    const at = joined.indexOf(room);
    if (at >= 0) {
      joined.splice(at, 1);
      renderRooms();
    }
  }

  function knownRooms(names) {
    ui.roomList.replaceChildren();
    for (const name of names) {
      const option = document.createElement("option");
      option.value = name;
      ui.roomList.appendChild(option);
    }
  }

  // --- Sending ---------------------------------------------------------------------------

  function isOpen() {
    return ws !== null && ws.readyState === WebSocket.OPEN;
  }

  function sendRaw(text) {
    if (!isOpen()) {
      notice("info", null, "not connected: nothing was sent");
      return false;
    }
    ws.send(text);
    return true;
  }

  // Sends a request with a fresh id; returns the id.
  function send(request) {
    const id = nextId++;
    if (!sendRaw(JSON.stringify(Object.assign({ id }, request)))) return null;
    if (request.type === "join") pendingJoins.set(id, { room: request.room, since: request.since || null });
    return id;
  }

  function join(room) {
    if (room) send({ type: "join", room });
  }

  // Joins a room again after a reconnect, from the last position seen there, if any.
  function rejoin(room) {
    const seen = positions.get(room);
    if (seen) send({ type: "join", room, since: { epoch: seen.epoch, offset: seen.offset } });
    else join(room);
  }

  function say(text) {
    // With no room joined yet, the room in the input: the server says whether that works.
    const room = currentRoom() || ui.room.value.trim() || "lobby";
    send({ type: "say", room, text });
  }

  // "/create R", "/close R", "/join R", "/leave R", "/rooms": the rest of the protocol.
  function command(line) {
    const [verb, ...rest] = line.slice(1).trim().split(/\s+/);
    const room = rest.join(" ") || currentRoom() || "";
    switch (verb) {
      case "create":
      case "close":
      case "join":
      case "leave":
        send({ type: verb, room });
        return true;
      case "rooms":
        send({ type: "rooms" });
        return true;
      default:
        notice("info", null, "commands: /create ROOM, /close ROOM, /join ROOM, /leave ROOM, /rooms");
        return false;
    }
  }

  // --- Receiving -------------------------------------------------------------------------

  // Whether a joined reply or a message carries a room position (a server from before
  // recovery sends none: then nothing is remembered and the page rejoins without `since`).
  function isPosition(msg) {
    return typeof msg.epoch === "string" && Number.isInteger(msg.offset);
  }

  function onMessage(msg) {
    switch (msg.type) {
      case "welcome":
        attempt = 0; // the server took us: the next failure starts the backoff afresh
        myName = msg.name;
        ui.name.textContent = msg.name;
        knownRooms(msg.rooms || []);
        break;
      case "joined": {
        const pending = pendingJoins.get(msg.id);
        pendingJoins.delete(msg.id);
        addRoom(msg.room);
        if (msg.recovered === true) break; // the missed messages follow: they move the position
        if (msg.recovered === false && pending && pending.since) {
          const li = notice(
            "missed",
            null,
            "Reconnected to " + msg.room + ": messages sent while you were away may be missing",
            "no recovery from offset " + pending.since.offset + " of epoch " + pending.since.epoch,
          );
          li.dataset.room = msg.room;
        }
        if (isPosition(msg)) positions.set(msg.room, { epoch: msg.epoch, offset: msg.offset });
        break;
      }
      case "left":
        removeRoom(msg.room);
        break;
      case "message": {
        if (isPosition(msg)) {
          const seen = positions.get(msg.room);
          if (seen && seen.epoch === msg.epoch && msg.offset <= seen.offset) break; // shown already
          positions.set(msg.room, { epoch: msg.epoch, offset: msg.offset });
        }
        const li = document.createElement("li");
        li.className = msg.from === myName ? "message mine" : "message";
        li.dataset.room = msg.room;
        li.dataset.from = msg.from;
        li.textContent = msg.from + ": " + msg.text;
        li.title = msg.ts;
        append(ui.messages, li);
        break;
      }
      case "room_closed":
        removeRoom(msg.room);
        notice("info", null, "room " + msg.room + " was closed by " + msg.by);
        break;
      case "created":
        notice("info", null, "room " + msg.room + " created: join it to talk there");
        break;
      case "rooms":
        knownRooms((msg.rooms || []).map((room) => room.name));
        notice("info", null, "rooms: " + (msg.rooms || []).map((r) => r.name + " (" + r.members + ")").join(", "));
        break;
      case "error": {
        const data = msg.data || {};
        const meta = msg.meta || {};
        const retry = data.retry_after_ms !== undefined ? " retry after " + data.retry_after_ms + " ms" : "";
        notice("error", data.code, data.code + ": " + data.message, "request " + meta.request_id + retry);
        // A join that failed (a rejoin of a room that is gone, say): not one of ours.
        const failedJoin = pendingJoins.get(Number(meta.request_id));
        if (failedJoin !== undefined) {
          pendingJoins.delete(Number(meta.request_id));
          removeRoom(failedJoin.room);
        }
        break;
      }
      default:
        break; // said, pong, closed: nothing to show
    }
  }

  // --- The connection and its backoff ----------------------------------------------------

  function clearTimers() {
    clearTimeout(retryTimer);
    clearInterval(countdownTimer);
    retryTimer = null;
    countdownTimer = null;
  }

  function connect() {
    clearTimers();
    pendingJoins.clear();
    setState("connecting", "connecting");
    let socket;
    try {
      socket = new WebSocket(wsUrl());
    } catch (error) {
      notice("info", null, "cannot connect: " + error.message);
      setState("closed", "closed: cannot connect");
      return;
    }
    ws = socket;
    socket.onopen = () => {
      if (ws !== socket) return;
      setState("open", "open");
      for (const room of joined.slice()) rejoin(room); // again, in order: the current stays last
    };
    socket.onmessage = (event) => {
      if (ws !== socket || typeof event.data !== "string") return;
      let msg;
      try {
        msg = JSON.parse(event.data);
      } catch (_) {
        return;
      }
      onMessage(msg);
    };
    socket.onclose = (event) => {
      if (ws !== socket) return;
      ws = null;
      const code = event.code;
      const name = closeName(code);
      notice("close", code, "closed: " + code + " " + name + ": " + event.reason);
      if (RETRY.has(code)) {
        scheduleReconnect();
      } else {
        setState("closed", "closed: " + code + " " + name);
      }
    };
  }

  // Exponential backoff with full jitter: a delay drawn from [0, min(max, initial * 2^n)).
  function scheduleReconnect() {
    clearTimers();
    const ceiling = Math.min(MAX_DELAY_MS, INITIAL_DELAY_MS * 2 ** Math.min(attempt, 30));
    const delay = Math.random() * ceiling;
    attempt += 1;
    const due = Date.now() + delay;
    const show = () => {
      const left = Math.max(0, due - Date.now()) / 1000;
      setState("reconnecting", "reconnecting in " + left.toFixed(1) + " s (attempt " + attempt + ")");
    };
    show();
    countdownTimer = setInterval(show, 100);
    retryTimer = setTimeout(connect, delay);
  }

  function reconnectNow() {
    if (ws !== null && ws.readyState <= WebSocket.OPEN) return; // connecting or open already
    attempt = 0;
    connect();
  }

  // --- Wiring ----------------------------------------------------------------------------

  $("join-form").addEventListener("submit", (event) => {
    event.preventDefault();
    join(ui.room.value.trim());
  });

  $("say-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = ui.text.value;
    if (!text.trim()) return;
    if (text.startsWith("/")) command(text);
    else say(text);
    ui.text.value = "";
    ui.text.focus();
  });

  $("reconnect").addEventListener("click", reconnectNow);

  $("err-malformed").addEventListener("click", () => sendRaw("{this is not JSON"));
  $("err-unknown-type").addEventListener("click", () => send({ type: "dance" }));
  $("err-missing-room").addEventListener("click", () => send({ type: "join", room: "no-such-room" }));
  $("err-not-joined").addEventListener("click", () => send({ type: "say", room: "random", text: "anyone?" }));
  $("err-oversized").addEventListener("click", () =>
    send({ type: "say", room: currentRoom() || "lobby", text: "x".repeat(OVERSIZED_BYTES) }),
  );
  $("err-flood").addEventListener("click", () => {
    for (let i = 0; i < FLOOD_COUNT; i += 1) {
      if (!isOpen()) break;
      send({ type: "ping" });
    }
  });

  connect();
})();
