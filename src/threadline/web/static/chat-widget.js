// Threadline chat widget: <script src="/static/chat-widget.js" data-threadline-chat></script>
// Speaks the chat protocol (hello / message / ack / event) over one WebSocket,
// keeps the conversation and the last seq seen in localStorage, and resends
// unacknowledged messages with the same client id after a reconnect, so a
// refresh or a dropped network loses nothing and doubles nothing.
//
// The host page may sign the visitor in with its identity provider:
//   Threadline.nonce().then(function (nonce) { /* ask the IdP for an ID token with it */ });
//   Threadline.identify(idToken).then(function (result) { /* result.customer_id, .level */ });
// A visitor who proves who she is (signed in, or by answering the bot) and has an open
// conversation on another channel continues it here: the widget switches to it and shows
// its earlier turns.
(function () {
  "use strict";
  var script = document.currentScript;
  var base = (script && script.dataset.server) || window.location.origin;
  var storeKey = "threadline.chat." + base;
  var saved = JSON.parse(localStorage.getItem(storeKey) || "{}");
  var pending = saved.pending || {};
  var socket = null;
  var retry = 500;
  var shown = {};
  var seen = 0;  // the last seq on screen; a fresh page replays the conversation from 0

  function save() {
    saved.pending = pending;
    localStorage.setItem(storeKey, JSON.stringify(saved));
  }

  function uuid() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    return "c-" + Date.now() + "-" + Math.random().toString(16).slice(2);
  }

  var root = document.createElement("section");
  root.className = "tl-chat";
  root.setAttribute("aria-label", "Chat");
  root.innerHTML =
    '<header class="tl-chat__header"><h2>Chat</h2>' +
    '<span class="tl-chat__status" role="status">Connecting…</span></header>' +
    '<p class="tl-chat__disclosure" hidden><span></span> ' +
    '<button type="button" class="tl-chat__no-ai">No assistant, a person please</button></p>' +
    '<ol class="tl-chat__log" aria-live="polite" aria-label="Conversation"></ol>' +
    '<p class="tl-chat__error" role="alert" hidden></p>' +
    '<form class="tl-chat__form"><label for="tl-chat-input">Message</label>' +
    '<textarea id="tl-chat-input" rows="2" maxlength="4000" required ' +
    'placeholder="Type your message"></textarea>' +
    '<button type="submit">Send</button></form>';
  (script && script.dataset.mount ? document.querySelector(script.dataset.mount) : document.body)
    .appendChild(root);
  var log = root.querySelector(".tl-chat__log");
  var status = root.querySelector(".tl-chat__status");
  var errorBox = root.querySelector(".tl-chat__error");
  var input = root.querySelector("textarea");
  var form = root.querySelector("form");
  var businessName = "";

  // The business's name, colours, greeting and disclosure, from the service that serves it.
  fetch(base + "/brand").then(function (r) { return r.ok ? r.json() : null; }).then(function (b) {
    if (!b) return;
    businessName = b.name;
    root.setAttribute("aria-label", "Chat with " + b.widget_title);
    root.querySelector(".tl-chat__header h2").textContent = b.widget_title;
    if (b.colours && b.colours.primary) root.style.setProperty("--tl-accent", b.colours.primary);
    if (b.disclosure) {
      var disclosure = root.querySelector(".tl-chat__disclosure");
      disclosure.querySelector("span").textContent = b.disclosure;
      disclosure.hidden = false;
    }
    if (b.greeting && !log.querySelector(".tl-chat__greeting")) {
      var hello = document.createElement("li");
      hello.className = "tl-chat__notice tl-chat__greeting";
      hello.textContent = b.greeting;
      log.insertBefore(hello, log.firstChild);
    }
  }).catch(function () { /* the chat works without the brand */ });

  // Items go in the order they happened: a conversation this chat continues shows its
  // earlier turns above what was said here.
  function place(item, at) {
    if (at) item.dataset.at = at;
    var later = null;
    if (at) {
      var items = log.querySelectorAll("li[data-at]");
      for (var i = 0; i < items.length; i++) {
        if (items[i] !== item && items[i].dataset.at > at) { later = items[i]; break; }
      }
    }
    if (later) log.insertBefore(item, later); else log.appendChild(item);
  }

  function bubble(id, who, text, note, at) {
    var item = shown[id];
    if (!item) {
      item = document.createElement("li");
      item.className = "tl-chat__msg tl-chat__msg--" + who;
      item.innerHTML = '<span class="tl-chat__who"></span><p></p><small></small>';
      place(item, at);
      shown[id] = item;
    } else if (at && !item.dataset.at) {
      item.dataset.at = at;  // sent from here: now it has its time in the log
    }
    item.querySelector(".tl-chat__who").textContent =
      who === "customer" ? "You" : who === "bot" ? "Assistant" : who === "human" ? "Agent" :
      who === "system" ? businessName : "";
    item.querySelector("p").textContent = text;
    item.querySelector("small").textContent = note || "";
    item.dataset.who = who;
    log.scrollTop = log.scrollHeight;
    return item;
  }

  // A check-in code: its QR image and six digits while valid, else what became of it.
  function checkin(item, c) {
    var box = item.querySelector(".tl-chat__checkin");
    if (!box) {
      box = document.createElement("figure");
      box.className = "tl-chat__checkin";
      item.appendChild(box);
    }
    box.textContent = "";
    var caption = document.createElement("figcaption");
    var store = c.store ? c.store.name : "the store";
    if (c.status === "valid") {
      var img = document.createElement("img");
      img.alt = c.alt;
      img.addEventListener("load", function () { log.scrollTop = log.scrollHeight; });
      img.src = c.qr;
      box.appendChild(img);
      var code = document.createElement("strong");
      code.className = "tl-chat__code";
      code.textContent = c.code.slice(0, 3) + " " + c.code.slice(3);
      caption.append("Check-in code ", code, document.createElement("br"),
        "Show this at the counter of " + store + ". It works once.");
    } else {
      caption.textContent = c.status === "used" ? "This check-in code has been used." :
        c.status === "expired" ? "This check-in code has expired; ask for a new one." :
        "This check-in code cannot be shown.";
    }
    box.dataset.status = c.status;
    box.appendChild(caption);
    log.scrollTop = log.scrollHeight;
  }

  function notice(id, text, at) {
    var item = shown[id];
    if (item) return;
    item = document.createElement("li");
    item.className = "tl-chat__notice";
    item.textContent = text;
    place(item, at);
    shown[id] = item;
  }

  // What this page showed by seq belongs to the conversation it was on.
  function forget() {
    Object.keys(shown).forEach(function (id) { if (id.indexOf("seq") === 0) delete shown[id]; });
    seen = 0;
  }

  // This chat goes on in another conversation: follow it there and replay it from the start.
  function moveTo(conversationId) {
    if (saved.conversationId === conversationId) return;
    forget();
    saved.conversationId = conversationId;
    save();
    root.dataset.conversation = conversationId;
    reconnect();
  }

  function showEvent(e) {
    seen = Math.max(seen, e.seq);
    var id = "seq" + e.seq;
    if (e.event === "message.received") {
      bubble(id, "customer", e.text, "Delivered", e.at);
    } else if (e.event === "utterance.transcribed") {
      bubble(id, "customer", e.text, e.channel === "voice" ? "On the phone" : "", e.at);
    } else if (e.event === "message.sent") {
      var item = bubble(id, e.actor, e.text, e.channel === "chat" ? "" : "On the " +
        (e.channel === "voice" ? "phone" : e.channel), e.at);
      if (e.checkin) checkin(item, e.checkin);
    } else if (e.event === "handoff.requested") {
      notice(id, "Connecting you with a person…", e.at);
    } else if (e.event === "handoff.accepted") {
      notice(id, "An agent has joined the conversation.", e.at);
    } else if (e.event === "conversation.resolved" && e.continued_in) {
      moveTo(e.continued_in);
    } else if (e.event === "conversation.resolved") {
      notice(id, "This conversation is resolved. Write again any time.", e.at);
    }
  }

  function acknowledged(clientId, seq) {
    var message = pending[clientId];
    if (!message) return;
    delete pending[clientId];
    save();
    var mine = shown[clientId];
    delete shown[clientId];
    if (shown["seq" + seq]) {
      if (mine) mine.remove();  // the event arrived first and is already on screen
    } else if (mine) {
      shown["seq" + seq] = mine;
      mine.querySelector("small").textContent = "Sent";
    }
  }

  function send(frame) {
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(frame));
  }

  // Close the socket and open it again at once (a new token, or another conversation).
  function reconnect() {
    var old = socket;
    socket = null;
    if (old) { old.onclose = null; old.close(); }
    connect();
  }

  function connect() {
    // The token rides as a subprotocol, never in the URL, which proxies and logs keep.
    var protocols = ["threadline"].concat(saved.token ? ["threadline.bearer." + saved.token] : []);
    socket = new WebSocket(base.replace(/^http/, "ws") + "/chat/ws", protocols);
    socket.onopen = function () {
      var hello = { type: "hello", after_seq: seen };
      if (saved.conversationId) hello.conversation_id = saved.conversationId;
      send(hello);
    };
    socket.onmessage = function (message) {
      var frame = JSON.parse(message.data);
      if (frame.type === "welcome") {
        if (saved.conversationId && saved.conversationId !== frame.conversation_id) {
          forget();  // it went on in another conversation, which replays from its start
        }
        saved.conversationId = frame.conversation_id;
        save();
        retry = 500;
        status.textContent = "Online";
        root.dataset.state = "online";
        Object.keys(pending).forEach(function (id) {
          send({ type: "message", client_id: id, text: pending[id].text });
        });
      } else if (frame.type === "ack") {
        acknowledged(frame.client_id, frame.seq);
      } else if (frame.type === "event") {
        showEvent(frame);
      } else if (frame.type === "error") {
        errorBox.hidden = false;
        errorBox.textContent = frame.detail;
        if (frame.code === "bad-hello") {
          delete saved.conversationId;
          seen = 0;
          save();
        }
      }
    };
    socket.onclose = function () {
      status.textContent = "Reconnecting…";
      root.dataset.state = "offline";
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 8000);
    };
  }

  // Withdrawing consent to AI processing: the assistant stops and a person takes over.
  var noAi = root.querySelector(".tl-chat__no-ai");
  noAi.addEventListener("click", function () {
    send({ type: "consent", client_id: uuid(), purpose: "ai_processing", granted: false });
    noAi.disabled = true;
    noAi.textContent = "A person will take over";
  });

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var text = input.value.trim();
    if (!text) return;
    var id = uuid();
    pending[id] = { text: text };
    save();
    bubble(id, "customer", text, "Sending…");
    send({ type: "message", client_id: id, text: text });
    input.value = "";
    errorBox.hidden = true;
  });
  input.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      form.requestSubmit();
    }
  });

  function start() {
    if (saved.token) { connect(); return Promise.resolve(); }
    return fetch(base + "/chat/session", { method: "POST" })
      .then(function (r) { return r.ok ? r.json() : {}; })
      .then(function (body) { if (body.token) { saved.token = body.token; save(); } })
      .catch(function () {})
      .then(connect);
  }

  function call(method, path, body) {
    return ready.then(function () {
      var init = { method: method, headers: { Authorization: "Bearer " + saved.token } };
      if (body) {
        init.headers["Content-Type"] = "application/json";
        init.body = JSON.stringify(body);
      }
      return fetch(base + path, init);
    }).then(function (r) {
      return r.json().then(function (answer) {
        if (!r.ok) throw new Error(answer.detail || answer.title || ("HTTP " + r.status));
        return answer;
      });
    });
  }

  window.Threadline = window.Threadline || {};
  // The nonce the identity provider must put in the ID token for this chat session.
  window.Threadline.nonce = function () {
    return call("GET", "/chat/verify/nonce").then(function (answer) { return answer.nonce; });
  };
  // Sign the visitor in with an ID token of the business's identity provider.
  window.Threadline.identify = function (idToken) {
    var body = { id_token: idToken };
    if (saved.conversationId) body.conversation_id = saved.conversationId;
    return call("POST", "/chat/verify", body).then(function (answer) {
      saved.token = answer.token;
      save();
      root.dataset.customer = answer.customer_id;
      reconnect();
      return { customer_id: answer.customer_id, level: answer.level,
               conversation_id: answer.conversation_id };
    });
  };
  Object.keys(pending).forEach(function (id) { bubble(id, "customer", pending[id].text, "Sending…"); });
  var ready = start();
})();
