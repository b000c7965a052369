// Threadline desk: offers, my conversations and my queues from the live work stream
// (/agents/me/stream, resumed from the last cursor after a drop), the cross-channel
// timeline from the conversation stream, the handoff packet, and replying,
// transferring, returning and resolving. Everything works from the keyboard.
(function () {
  "use strict";
  // A sign-in link carries the token in the fragment (#token=…), which browsers never send.
  var linked = new URLSearchParams(location.hash.slice(1)).get("token");
  var token = linked || sessionStorage.getItem("threadline.desk.token") || "";
  if (linked) {
    sessionStorage.setItem("threadline.desk.token", token);
    history.replaceState(null, "", location.pathname + location.search);  // out of the URL bar
  }
  var $ = function (id) { return document.getElementById(id); };
  var WS = location.origin.replace(/^http/, "ws");
  // Sockets carry the token as a subprotocol, never in the URL, which proxies and logs keep.
  function protocols() { return ["threadline", "threadline.bearer." + token]; }
  var MAX_DELAY = 15000;
  var offers = {};   // conversation id -> offer
  var mine = {};     // conversation id -> card
  var queues = {};   // queue -> awaiting
  var work = { socket: null, cursor: null, attempt: 0, timer: null };
  var current = null;  // the open conversation: {id, socket, seen, attempt, timer}

  function api(method, path, body) {
    var headers = { Authorization: "Bearer " + token, "Idempotency-Key": crypto.randomUUID() };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    return fetch(path, { method: method, headers: headers,
                         body: body === undefined ? undefined : JSON.stringify(body) })
      .then(function (r) {
        return r.json().catch(function () { return {}; }).then(function (data) {
          if (!r.ok) throw new Error(data.detail || data.title || ("HTTP " + r.status));
          return data;
        });
      });
  }

  function showError(box, error) {
    box.hidden = !error;
    box.textContent = error ? error.message : "";
  }

  function short(id) { return id.slice(-8); }
  function words(code) { return String(code || "").replace(/_/g, " "); }
  function backoff(attempt) {
    // 0.5 s, 1 s, 2 s … up to 15 s, with jitter so desks do not reconnect in step.
    var delay = Math.min(MAX_DELAY, 500 * Math.pow(2, attempt));
    return delay / 2 + Math.random() * delay / 2;
  }

  // -- signing in ------------------------------------------------------------------

  function signIn() {
    api("GET", "/agents/me").then(function (me) {
      $("sign-in").hidden = true;
      $("desk").hidden = false;
      showError($("sign-in-error"), null);
      $("me-name").textContent = me.name + " · " + me.queues.join(", ");
      $("presence").disabled = false;
      $("presence").value = me.presence;
      work.cursor = null;
      connectWork();
    }).catch(function (error) { signedOut(token ? error : null); });
  }

  function signedOut(error) {
    closeWork();
    $("sign-in").hidden = false;
    $("desk").hidden = true;
    $("presence").disabled = true;
    $("connection").textContent = "Offline";
    showError($("sign-in-error"), error);
    if (error) $("token").focus();
  }

  // -- the work stream ---------------------------------------------------------------

  function closeWork() {
    clearTimeout(work.timer);
    if (work.socket) { var s = work.socket; work.socket = null; s.close(); }
  }

  function connectWork() {
    closeWork();
    var url = WS + "/agents/me/stream" + (work.cursor === null ? "" : "?after=" + work.cursor);
    var socket = new WebSocket(url, protocols());
    var refusal = null;
    work.socket = socket;
    socket.onopen = function () { $("connection").textContent = "Live"; };
    socket.onmessage = function (message) {
      var frame = JSON.parse(message.data);
      if (frame.type === "error") { refusal = frame; return; }
      if (work.cursor !== null && frame.cursor <= work.cursor && frame.type !== "snapshot") return;
      applyWork(frame);
      work.cursor = frame.cursor;
      work.attempt = 0;
    };
    socket.onclose = function (event) {
      if (work.socket !== socket) return;  // replaced or closed on purpose
      work.socket = null;
      if (refusal || event.code === 1008) {
        signedOut(new Error((refusal && refusal.detail) || "The desk was signed out."));
        return;
      }
      var delay = backoff(work.attempt++);
      $("connection").textContent = "Reconnecting in " + Math.ceil(delay / 1000) + " s…";
      work.timer = setTimeout(connectWork, delay);
    };
  }

  function applyWork(frame) {
    var cid = frame.conversation_id;
    if (frame.type === "snapshot") {
      offers = {}; mine = {}; queues = {};
      frame.offers.forEach(function (o) { offers[o.conversation_id] = o; });
      frame.conversations.forEach(function (c) { mine[c.conversation_id] = c; });
      Object.keys(frame.queues).forEach(function (q) { queues[q] = frame.queues[q]; });
      if (frame.agent.presence) $("presence").value = frame.agent.presence;
    }
    if (frame.type === "handoff.offered" || frame.type === "offer.updated") {
      frame.revision = frame.cursor;
      offers[cid] = frame;
    }
    if (frame.type.indexOf("offer.") === 0 && frame.type !== "offer.updated" && offers[cid] &&
        offers[cid].offer_id === frame.offer_id) {
      delete offers[cid];
    }
    if ("held" in frame) {
      if (frame.held) {
        var card = mine[cid] || frame.conversation || { conversation_id: cid };
        if (frame.status) card.status = frame.status;
        if (frame.preview) card.last = frame.preview;
        mine[cid] = card;
      } else {
        delete mine[cid];
      }
      if (current && current.id === cid) held(frame.held, frame.status);
    }
    if (frame.queues) Object.keys(frame.queues).forEach(function (q) { queues[q] = frame.queues[q]; });
    if (frame.presence) $("presence").value = frame.presence;
    renderOffers();
    renderMine();
    renderQueues();
  }

  // -- lists (kept in place, so focus stays where it is) -------------------------------

  function sync(list, items, build, fallback) {
    var byKey = {};
    Array.prototype.forEach.call(list.children, function (li) { byKey[li.dataset.key] = li; });
    items.forEach(function (item) {
      var li = byKey[item.key];
      if (li && li.dataset.version === item.version) { delete byKey[item.key]; return; }
      var fresh = build(item.value);
      fresh.dataset.key = item.key;
      fresh.dataset.version = item.version;
      if (li) { delete byKey[item.key]; replaceKeepingFocus(li, fresh); }
      else list.appendChild(fresh);
    });
    Object.keys(byKey).forEach(function (key) {
      var li = byKey[key];
      if (li.contains(document.activeElement)) {
        var next = li.nextElementSibling || li.previousElementSibling;
        var target = next && !byKey[next.dataset.key] ? next.querySelector("button") : null;
        (target || fallback).focus();
      }
      li.remove();
    });
  }

  function replaceKeepingFocus(old, fresh) {
    var focused = document.activeElement;
    var role = old.contains(focused) ? focused.dataset.role : null;
    old.replaceWith(fresh);
    var again = role ? fresh.querySelector("[data-role='" + role + "']") : null;
    if (again) again.focus();
  }

  function renderOffers() {
    var items = Object.keys(offers).map(function (cid) {
      return { key: cid, version: offers[cid].offer_id + ":" + (offers[cid].revision || 0),
               value: offers[cid] };
    });
    sync($("offers"), items, offerItem, $("offers-title"));
    $("no-offers").hidden = items.length > 0;
  }

  // How sure we are who the customer is: anonymous, unverified, or verified (and how).
  function verification(packet) {
    var level = packet.verification || "unverified";
    return level === "verified" && packet.verified_by ? "verified by " + words(packet.verified_by) : level;
  }

  // Every proof the customer gave in this conversation, with its channel, newest first.
  function proofs(packet) {
    return (packet.proofs || []).slice().reverse().map(function (p) {
      return words(p.method) + " on " + words(p.channel) + " (" + words(p.level) + ")";
    }).join(", ");
  }

  function offerItem(offer) {
    var li = document.createElement("li");
    li.className = "offer";
    var packet = offer.packet || {};
    var who = packet.customer_id || "unknown customer";
    var title = document.createElement("p");
    title.className = "offer-title";
    title.textContent = "Queue " + offer.queue + " · " + words(offer.reason || "handoff");
    var detail = document.createElement("p");
    detail.className = "offer-detail";
    var slots = (packet.slots || []).map(function (s) { return words(s.name) + " " + s.value; });
    detail.textContent = [who + " (" + verification(packet) + ")"]
      .concat(slots, packet.channels && packet.channels.length ? ["on " + packet.channels.map(words).join(", ")] : [])
      .join(" · ");
    var until = document.createElement("p");
    until.className = "offer-detail";
    var expires = new Date(offer.expires_at);
    until.textContent = "Open until " + expires.toLocaleTimeString() + " · " + short(offer.conversation_id);
    var accept = document.createElement("button");
    accept.type = "button";
    accept.textContent = "Accept";
    accept.dataset.role = "accept";
    accept.setAttribute("aria-label", "Accept offer from queue " + offer.queue + ", " + who);
    accept.addEventListener("click", function () {
      api("POST", "/conversations/" + offer.conversation_id + "/accept", { offer_id: offer.offer_id })
        .then(function () { showError($("action-error"), null); open(offer.conversation_id, true); })
        .catch(function (e) { showError($("action-error"), e); });
    });
    var decline = document.createElement("button");
    decline.type = "button";
    decline.className = "secondary";
    decline.textContent = "Decline";
    decline.dataset.role = "decline";
    decline.setAttribute("aria-label", "Decline offer from queue " + offer.queue + ", " + who);
    decline.addEventListener("click", function () {
      api("POST", "/conversations/" + offer.conversation_id + "/decline", { offer_id: offer.offer_id })
        .then(function () { showError($("action-error"), null); })
        .catch(function (e) { showError($("action-error"), e); });
    });
    var buttons = document.createElement("div");
    buttons.className = "buttons";
    buttons.appendChild(accept);
    buttons.appendChild(decline);
    [title, detail, until, buttons].forEach(function (node) { li.appendChild(node); });
    return li;
  }

  function renderMine() {
    var items = Object.keys(mine).map(function (cid) {
      var c = mine[cid];
      return { key: cid, version: [c.status, c.last, current && current.id === cid].join("|"), value: c };
    });
    sync($("mine"), items, mineItem, $("mine-title"));
    $("no-mine").hidden = items.length > 0;
  }

  function mineItem(card) {
    var li = document.createElement("li");
    var button = document.createElement("button");
    button.type = "button";
    button.className = "mine-item";
    button.dataset.role = "open";
    if (current && current.id === card.conversation_id) button.setAttribute("aria-current", "true");
    var who = document.createElement("span");
    who.className = "who";
    who.textContent = "Open " + (card.customer_id || "conversation") + " · " + short(card.conversation_id);
    var what = document.createElement("span");
    what.className = "what";
    what.textContent = words(card.status || "with human") + (card.last ? " — " + card.last : "");
    button.appendChild(who);
    button.appendChild(what);
    button.addEventListener("click", function () { open(card.conversation_id, true); });
    li.appendChild(button);
    return li;
  }

  function renderQueues() {
    var list = $("queues");
    list.textContent = "";
    Object.keys(queues).sort().forEach(function (q) {
      var li = document.createElement("li");
      li.textContent = q + ": " + queues[q] + " waiting";
      list.appendChild(li);
    });
  }

  // -- the open conversation -----------------------------------------------------------

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
    var heard = e.type === "message.heard" && !p.complete ?
      "caller heard only: " + (p.heard_text || "(nothing)") : "";
    text.textContent = p.text || heard || (p.name ? p.name + " = " + p.value : "") || p.intent ||
      p.outcome || p.reason_code || p.tool || "";
    li.appendChild(badge);
    li.appendChild(kind);
    if (text.textContent) li.appendChild(text);
    return li;
  }

  function open(id, focusReply) {
    if (current) { clearTimeout(current.timer); if (current.socket) current.socket.close(); }
    current = { id: id, seen: 0, attempt: 0, timer: null, socket: null };
    $("conv-title").textContent = "Conversation " + short(id);
    $("timeline").textContent = "";
    $("timeline").setAttribute("aria-label", "Timeline of conversation " + short(id));
    held(Boolean(mine[id]) || focusReply, mine[id] && mine[id].status);
    follow(current);
    loadPacket(id);
    renderMine();
    if (focusReply && !$("reply").hidden) $("reply-text").focus();
  }

  function held(isHeld, status) {
    $("reply").hidden = !isHeld;
    $("conv-status").textContent = isHeld ? "" : "No longer yours" + (status ? ": " + words(status) + "." : ".");
    if (!isHeld && $("conversation").contains(document.activeElement)) $("conv-title").focus();
  }

  function follow(view) {
    var url = WS + "/conversations/" + view.id + "/stream?after_seq=" + view.seen;
    var socket = new WebSocket(url, protocols());
    view.socket = socket;
    socket.onmessage = function (message) {
      var e = JSON.parse(message.data);
      if (!e.seq || e.seq <= view.seen) return;
      view.seen = e.seq;
      view.attempt = 0;
      $("timeline").appendChild(entry(e));
      $("timeline").scrollTop = $("timeline").scrollHeight;
      loadPacket(view.id);
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
      row("Customer", (packet.customer_id || "unknown") + " (" + verification(packet) + ")");
      if (packet.proofs && packet.proofs.length) row("Proofs", proofs(packet));
      row("Reason", (packet.reason_code || "-") + (packet.reason_detail ? ": " + packet.reason_detail : ""));
      row("Queue", packet.queue || "-");
      row("Status", packet.status || "-");
      packet.slots.forEach(function (slot) {
        row(words(slot.name), slot.value + " (from " + words(slot.channel) + ")");
      });
      packet.actions.forEach(function (a) { row("Action", (a.tool || a.action_id) + " — " + a.status); });
      row("Channels", packet.legs.map(function (l) { return words(l.channel); }).join(", ") || "-");
      box.appendChild(dl);
      var summary = document.createElement("ol");
      summary.setAttribute("aria-label", "Summary");
      packet.summary.forEach(function (line) {
        var li = document.createElement("li"); li.textContent = line; summary.appendChild(li);
      });
      box.appendChild(summary);
    }).catch(function () {});
  }

  function act(path, body) {
    if (!current) return;
    var id = current.id;
    api("POST", "/conversations/" + id + path, body)
      .then(function () { showError($("action-error"), null); loadPacket(id); })
      .catch(function (e) { showError($("action-error"), e); });
  }

  // -- controls ------------------------------------------------------------------------

  $("sign-in").addEventListener("submit", function (event) {
    event.preventDefault();
    token = $("token").value.trim();
    sessionStorage.setItem("threadline.desk.token", token);
    signIn();
  });
  $("presence").addEventListener("change", function () {
    api("PUT", "/agents/me/presence", { presence: $("presence").value })
      .catch(function (e) { showError($("action-error"), e); });
  });
  $("reply").addEventListener("submit", function (event) {
    event.preventDefault();
    var text = $("reply-text").value.trim();
    if (!text) return;
    act("/reply", { text: text });
    $("reply-text").value = "";
  });
  $("reply-text").addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("reply").requestSubmit();
    }
  });
  $("transfer").addEventListener("click", function () { act("/transfer", { queue: $("transfer-queue").value }); });
  $("return").addEventListener("click", function () { act("/return", {}); });
  $("resolve").addEventListener("click", function () { act("/resolve", { outcome: $("outcome").value }); });
  if (token) signIn(); else signedOut(null);
})();
