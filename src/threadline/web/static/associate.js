// The store associates' app: check in by code or look up (with a reason), see the journey
// and the packet, work the visit. Writes go through an outbox in localStorage, each with its
// Idempotency-Key, so a flaky store network loses nothing and doubles nothing.
(function () {
  "use strict";
  // A sign-in link carries the token in the fragment (#token=…), which browsers never send.
  var linked = new URLSearchParams(location.hash.slice(1)).get("token");
  var token = linked || sessionStorage.getItem("threadline.associate.token") || "";
  if (linked) {
    sessionStorage.setItem("threadline.associate.token", token);
    history.replaceState(null, "", location.pathname + location.search);  // out of the URL bar
  }
  var WS = (location.protocol === "https:" ? "wss://" : "ws://") + location.host;
  // Sockets carry the token as a subprotocol, never in the URL, which proxies and logs keep.
  function protocols() { return ["threadline", "threadline.bearer." + token]; }
  var OUTBOX = "threadline.associate.outbox";
  var me = null, current = null, queueSocket = null, queueAttempt = 0, queue = [];
  var queueAt = 0, flushing = false;
  var $ = function (id) { return document.getElementById(id); };

  function newKey() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    return String(Date.now()) + "-" + Math.random().toString(16).slice(2);
  }
  function api(method, path, body, key) {
    var headers = { "Authorization": "Bearer " + token };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (key) headers["Idempotency-Key"] = key;
    return fetch(path, { method: method, headers: headers,
                         body: body === undefined ? undefined : JSON.stringify(body) })
      .then(function (r) {
        return r.json().catch(function () { return {}; }).then(function (data) {
          if (!r.ok) { var e = new Error(data.detail || data.title || r.statusText);
                       e.status = r.status; throw e; }
          return data;
        });
      });
  }
  function showError(box, error) {
    box.hidden = !error;
    box.textContent = error ? (error.message || String(error)) : "";
  }
  function short(id) { return String(id).slice(-8); }
  function words(code) { return String(code || "").replace(/_/g, " "); }
  function backoff(n) { return Math.min(10000, 500 * Math.pow(2, n)) * (0.5 + Math.random() / 2); }
  function minutes(s) {
    var m = Math.floor(s / 60), r = s % 60;
    return m ? m + " min " + r + " s" : r + " s";
  }

  // -- the outbox ---------------------------------------------------------------------

  function outbox() {
    try { return JSON.parse(localStorage.getItem(OUTBOX) || "[]"); } catch (e) { return []; }
  }
  function saveOutbox(items) {
    localStorage.setItem(OUTBOX, JSON.stringify(items));
    var n = items.length;
    $("pending").textContent = n ? n + (n === 1 ? " change" : " changes") + " waiting to be sent" : "";
  }
  function send(path, body) {
    var items = outbox();
    items.push({ path: path, body: body, key: newKey() });
    saveOutbox(items);
    flush();
  }
  function flush() {
    if (flushing || !token) return;
    var items = outbox();
    if (!items.length) return;
    if (navigator.onLine === false) { $("connection").textContent = "Offline"; return; }
    flushing = true;
    var item = items[0];
    api("POST", item.path, item.body, item.key).then(function () {
      done(item, null);
    }, function (error) {
      if (error.status) { done(item, error); return; }  // answered: never resend a refusal
      flushing = false;  // the network failed: keep it, try again when back online
      $("connection").textContent = "Offline";
    });
  }
  function done(item, error) {
    saveOutbox(outbox().filter(function (i) { return i.key !== item.key; }));
    flushing = false;
    if (error) showError($("visit-error"), error);
    if (current && item.path.indexOf(current.id) !== -1) loadPacket(current.id);
    flush();
  }
  window.addEventListener("online", function () { connectQueue(); flush(); });
  window.addEventListener("offline", function () { $("connection").textContent = "Offline"; });
  setInterval(flush, 5000);

  // -- signing in ---------------------------------------------------------------------

  function signIn() {
    api("GET", "/associates/me").then(function (who) {
      me = who;
      $("me-name").textContent = who.name + " · " + who.store.name;
      $("sign-in").hidden = true;
      $("app").hidden = false;
      saveOutbox(outbox());
      connectQueue();
      flush();
      $("code").focus();
    }).catch(function (error) {
      $("sign-in").hidden = false;
      $("app").hidden = true;
      showError($("sign-in-error"), token ? error : null);
    });
  }

  // -- the store's queue --------------------------------------------------------------

  function connectQueue() {
    if (!me || (queueSocket && queueSocket.readyState <= 1)) return;
    var socket = new WebSocket(WS + "/stores/" + encodeURIComponent(me.store.id) + "/queue/stream",
                               protocols());
    queueSocket = socket;
    socket.onopen = function () { $("connection").textContent = "Live"; queueAttempt = 0; };
    socket.onmessage = function (message) {
      var frame = JSON.parse(message.data);
      if (frame.type !== "queue") return;
      queue = frame.waiting;
      queueAt = Date.now();
      renderQueue(true);
    };
    socket.onclose = function (event) {
      if (queueSocket !== socket) return;
      $("connection").textContent = "Offline";
      if (event.code === 1008) return;
      setTimeout(connectQueue, backoff(queueAttempt++));
    };
  }
  function renderQueue(rebuild) {
    var list = $("queue");
    var elapsed = Math.floor((Date.now() - queueAt) / 1000);
    $("no-queue").hidden = queue.length > 0;
    if (!rebuild) {
      Array.prototype.forEach.call(list.querySelectorAll("[data-waited]"), function (node) {
        node.textContent = "waiting " + minutes(Number(node.dataset.waited) + elapsed);
      });
      return;
    }
    list.textContent = "";
    queue.forEach(function (w) {
      var li = document.createElement("li");
      li.className = "waiting";
      var name = document.createElement("span");
      name.className = "who";
      name.textContent = w.display_name + " (" + (w.method === "code" ? "code" : "phone") + ")";
      var time = document.createElement("span");
      time.className = "time";
      time.dataset.waited = w.waiting_seconds;
      time.textContent = "waiting " + minutes(w.waiting_seconds);
      var take = document.createElement("button");
      take.type = "button";
      take.textContent = "Serve " + w.display_name;
      take.addEventListener("click", function () {
        api("POST", "/stores/" + encodeURIComponent(me.store.id) + "/queue/" +
            encodeURIComponent(w.entry_id) + "/take", undefined, "take-" + w.entry_id)
          .then(function (visit) { showError($("side-error"), null); open(visit.conversation_id); })
          .catch(function (e) { showError($("side-error"), e); });
      });
      [name, time, take].forEach(function (n) { li.appendChild(n); });
      list.appendChild(li);
    });
  }
  setInterval(function () { if (queue.length) renderQueue(false); }, 1000);

  // -- the visit ----------------------------------------------------------------------

  function entry(e) {
    var li = document.createElement("li");
    li.className = e.actor.kind;
    var badge = document.createElement("span");
    badge.className = "badge " + e.channel;
    badge.textContent = words(e.channel);
    var kind = document.createElement("span");
    kind.className = "kind";
    kind.textContent = e.type + " · " + e.actor.id;
    var text = document.createElement("p");
    var p = e.payload;
    text.textContent = p.text || (p.name ? p.name + " = " + p.value : "") || p.intent ||
      p.outcome || p.reason_code || p.tool || "";
    li.appendChild(badge);
    li.appendChild(kind);
    if (text.textContent) li.appendChild(text);
    return li;
  }
  function open(id) {
    if (current) { clearTimeout(current.timer); if (current.socket) current.socket.close(); }
    current = { id: id, seen: 0, attempt: 0, timer: null, socket: null };
    $("visit-title").textContent = "Visit · conversation " + short(id);
    $("timeline").textContent = "";
    $("work").hidden = false;
    showError($("visit-error"), null);
    follow(current);
    loadPacket(id);
    $("visit-title").focus();
  }
  function follow(view) {
    var socket = new WebSocket(WS + "/conversations/" + view.id + "/stream?after_seq=" + view.seen,
                               protocols());
    view.socket = socket;
    socket.onmessage = function (message) {
      var e = JSON.parse(message.data);
      if (!e.seq || e.seq <= view.seen) return;
      view.seen = e.seq;
      view.attempt = 0;
      $("timeline").appendChild(entry(e));
      $("timeline").scrollTop = $("timeline").scrollHeight;
    };
    socket.onclose = function (event) {
      if (current !== view || view.socket !== socket || event.code === 1008) return;
      view.timer = setTimeout(function () { if (current === view) follow(view); },
                              backoff(view.attempt++));
    };
  }
  function loadPacket(id) {
    api("GET", "/conversations/" + id + "/packet").then(function (packet) {
      if (!current || current.id !== id) return;
      var box = $("packet");
      box.textContent = "";
      var dl = document.createElement("dl");
      function row(term, value) {
        var dt = document.createElement("dt"); dt.textContent = term;
        var dd = document.createElement("dd"); dd.textContent = value;
        dl.appendChild(dt); dl.appendChild(dd);
      }
      row("Customer", (packet.customer_id || "unknown") + " (" + packet.verification + ")");
      row("Status", words(packet.status) || "-");
      (packet.slots || []).forEach(function (slot) {
        row(words(slot.name), slot.value + " (from " + words(slot.channel) + ")");
      });
      (packet.actions || []).forEach(function (a) {
        row("Action", words(a.tool || a.action_id) + " — " + a.status);
      });
      row("Channels", (packet.legs || []).map(function (l) { return words(l.channel); })
        .join(", ") || "-");
      box.appendChild(dl);
      var summary = document.createElement("ol");
      summary.setAttribute("aria-label", "Summary");
      (packet.summary || []).forEach(function (line) {
        var li = document.createElement("li"); li.textContent = line; summary.appendChild(li);
      });
      box.appendChild(summary);
      $("visit-status").textContent = "Status: " + words(packet.status);
    }).catch(function () {});
  }
  function visitPath(suffix) { return "/conversations/" + current.id + "/visit/" + suffix; }

  // -- controls -----------------------------------------------------------------------

  $("sign-in").addEventListener("submit", function (event) {
    event.preventDefault();
    token = $("token").value.trim();
    sessionStorage.setItem("threadline.associate.token", token);
    signIn();
  });
  $("checkin").addEventListener("submit", function (event) {
    event.preventDefault();
    api("POST", "/visits/checkin", { code: $("code").value.trim() }, newKey())
      .then(function (visit) {
        showError($("side-error"), null); $("code").value = ""; open(visit.conversation_id);
      }).catch(function (e) { showError($("side-error"), e); });
  });
  $("lookup").addEventListener("submit", function (event) {
    event.preventDefault();
    var body = { by: $("lookup-by").value, value: $("lookup-value").value.trim(),
                 reason: $("lookup-reason").value.trim() };
    api("POST", "/customers/lookup", body, newKey()).then(function (found) {
      showError($("side-error"), null);
      var list = $("found");
      list.textContent = "";
      if (!found.conversations.length) {
        var none = document.createElement("li");
        none.textContent = found.customer.name + " has no conversation yet.";
        list.appendChild(none);
      }
      found.conversations.forEach(function (c) {
        var li = document.createElement("li");
        var button = document.createElement("button");
        button.type = "button";
        button.className = "secondary";
        button.textContent = "Start visit: " + found.customer.name + ", " + words(c.status) +
          " (" + c.channels.map(words).join(", ") + ")";
        button.addEventListener("click", function () {
          api("POST", "/conversations/" + c.conversation_id + "/visit", undefined, newKey())
            .then(function () { list.textContent = ""; open(c.conversation_id); })
            .catch(function (e) { showError($("side-error"), e); });
        });
        li.appendChild(button);
        list.appendChild(li);
      });
    }).catch(function (e) { showError($("side-error"), e); });
  });
  $("note-form").addEventListener("submit", function (event) {
    event.preventDefault();
    var text = $("note").value.trim();
    if (!text || !current) return;
    send(visitPath("note"), { text: text });
    $("note").value = "";
  });
  $("record-action").addEventListener("click", function () {
    if (current) send(visitPath("action"), { action: $("action").value });
  });
  $("resolve").addEventListener("click", function () {
    if (current) send(visitPath("resolve"), { outcome: $("outcome").value });
  });
  $("end").addEventListener("click", function () {
    if (current) send(visitPath("end"), { reason: "completed" });
  });
  $("hand-back").addEventListener("submit", function (event) {
    event.preventDefault();
    var text = $("follow-up").value.trim();
    if (!text || !current) return;
    send(visitPath("hand-back"), { text: text, mode: "bot" });
    $("follow-up").value = "";
  });
  if (token) signIn(); else { $("sign-in").hidden = false; }
})();
