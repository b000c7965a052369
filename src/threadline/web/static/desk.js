// Threadline desk: offers, sensitive calls waiting for approval, my conversations and my
// queues from the live work stream (/agents/me/stream, resumed from the last cursor after
// a drop), the cross-channel timeline from the conversation stream, the handoff packet,
// and replying, transferring, returning, resolving, approving and denying. Everything
// works from the keyboard.
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
  var approvals = {};  // "conversation id/approval id" -> approval waiting for this desk
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
          if (!r.ok) {
            var error = new Error(data.detail || data.title || ("HTTP " + r.status));
            error.title = data.detail ? data.title : null;  // "The approval no longer waits"
            throw error;
          }
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
      offers = {}; mine = {}; queues = {}; approvals = {};
      frame.offers.forEach(function (o) { offers[o.conversation_id] = o; });
      (frame.approvals || []).forEach(function (a) { approvals[approvalKey(a)] = a; });
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
    if (frame.type === "approval.requested") approvals[approvalKey(frame)] = frame;
    if (frame.type === "approval.decided") {
      delete approvals[approvalKey(frame)];
      if (current && current.id === cid && !mine[cid]) {
        $("conv-status").textContent = (frame.decision === "granted" ? "Approved" : "Denied") +
          " by " + frame.agent_id + ".";
      }
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
    renderApprovals();
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

  // -- approvals: a sensitive call an automated agent asked to make, for a person to decide --

  var denyFields = 0;  // the deny reason fields made so far: each gets its own id

  function approvalKey(a) { return a.conversation_id + "/" + a.approval_id; }

  function renderApprovals() {
    // Oldest first; an approval's item is built once, so a reason being typed stays.
    var items = Object.keys(approvals).sort(function (x, y) {
      var a = approvals[x].requested_at || "", b = approvals[y].requested_at || "";
      return a < b ? -1 : a > b ? 1 : (x < y ? -1 : 1);
    }).map(function (key) { return { key: key, version: "1", value: approvals[key] }; });
    sync($("approvals"), items, approvalItem, $("approvals-title"));
    $("no-approvals").hidden = items.length > 0;
  }

  // A call's arguments as the person deciding reads them: one line per argument.
  function argumentList(args) {
    var dl = document.createElement("dl");
    dl.className = "approval-args";
    Object.keys(args || {}).forEach(function (name) {
      var value = args[name];
      var dt = document.createElement("dt"); dt.textContent = words(name);
      var dd = document.createElement("dd");
      dd.textContent = value !== null && typeof value === "object" ? JSON.stringify(value) : String(value);
      dl.appendChild(dt); dl.appendChild(dd);
    });
    return dl;
  }

  function approvalItem(approval) {
    var li = document.createElement("li");
    li.className = "approval";
    var cid = approval.conversation_id;
    var what = words(approval.tool);
    var who = approval.customer_id || "unknown customer";
    var title = document.createElement("p");
    title.className = "approval-title";
    title.textContent = what + " · queue " + approval.queue;
    var why = document.createElement("p");
    why.className = "approval-detail";
    why.textContent = "Why: " + (approval.reason || "no reason given");
    var about = document.createElement("p");
    about.className = "approval-detail";
    var asked = approval.requested_at ? new Date(approval.requested_at).toLocaleTimeString() : "";
    about.textContent = who + " · " + short(cid) + (asked ? " · asked " + asked : "");
    var busy = false;
    function decide(body) {
      if (busy) return;
      busy = true;
      api("POST", "/conversations/" + encodeURIComponent(cid) + "/approvals/" +
          encodeURIComponent(approval.approval_id), body)
        .then(function () {
          showError($("approval-error"), null);
          delete approvals[approvalKey(approval)];  // its approval.decided frame says so too
          renderApprovals();
        })
        .catch(function (e) {
          busy = false;
          showError($("approval-error"), new Error((e.title ? e.title + ": " : "") + e.message));
        });
    }
    function button(text, role, label, secondary) {
      var b = document.createElement("button");
      b.type = "button";
      b.textContent = text;
      b.dataset.role = role;
      if (secondary) b.className = "secondary";
      b.setAttribute("aria-label", label);
      return b;
    }
    var subject = what + " for " + who + ", conversation " + short(cid);
    var approve = button("Approve", "approve", "Approve " + subject);
    var deny = button("Deny", "deny", "Deny " + subject + "…", true);
    var view = button("Open", "view", "Open conversation " + short(cid) + " of this approval", true);
    approve.addEventListener("click", function () { decide({ decision: "approve" }); });
    view.addEventListener("click", function () {
      open(cid, false, "A call waits for approval: you may read, not reply.");
      $("conv-title").focus();
    });
    var buttons = document.createElement("div");
    buttons.className = "buttons";
    [approve, deny, view].forEach(function (b) { buttons.appendChild(b); });

    // Denying asks why, in place: the customer is told the reason.
    var form = document.createElement("form");
    form.className = "deny";
    form.hidden = true;
    var field = "deny-reason-" + (++denyFields);
    var label = document.createElement("label");
    label.htmlFor = field;
    label.textContent = "Why deny it? The customer is told.";
    var reason = document.createElement("input");
    reason.id = field;
    reason.type = "text";
    reason.required = true;
    reason.maxLength = 2000;
    reason.dataset.role = "deny-reason";
    reason.autocomplete = "off";
    var send = document.createElement("button");
    send.type = "submit";
    send.textContent = "Send denial";
    send.dataset.role = "send-denial";
    send.setAttribute("aria-label", "Send denial of " + subject);
    var cancel = button("Cancel", "cancel-denial", "Cancel denying " + subject, true);
    var formButtons = document.createElement("div");
    formButtons.className = "buttons";
    formButtons.appendChild(send);
    formButtons.appendChild(cancel);
    [label, reason, formButtons].forEach(function (node) { form.appendChild(node); });
    deny.addEventListener("click", function () {
      form.hidden = false;
      deny.setAttribute("aria-expanded", "true");
      reason.focus();
    });
    deny.setAttribute("aria-expanded", "false");
    cancel.addEventListener("click", function () {
      form.hidden = true;
      deny.setAttribute("aria-expanded", "false");
      deny.focus();
    });
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var text = reason.value.trim();
      if (!text) { reason.focus(); return; }
      decide({ decision: "deny", reason: text });
    });
    [title, argumentList(approval.arguments), why, about, buttons, form].forEach(function (node) {
      li.appendChild(node);
    });
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

  function entry(e, view) {
    if (e.type === "action.requested") view.tools[e.payload.action_id] = e.payload.tool;
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
      p.outcome || p.reason_code || approvalText(e) || p.tool || outcome(e, view) || "";
    li.appendChild(badge);
    li.appendChild(kind);
    if (text.textContent) li.appendChild(text);
    return li;
  }

  // A sensitive call waiting for a person, and their decision, as the timeline says them.
  function approvalText(e) {
    var p = e.payload;
    if (e.type === "approval.requested") {
      return words(p.tool) + " waits for approval in " + p.queue + (p.reason ? ": " + p.reason : "");
    }
    if (e.type === "approval.granted") return "approved by " + p.agent_id + (p.note ? ": " + p.note : "");
    if (e.type === "approval.denied") return "denied by " + p.agent_id + ": " + p.reason;
    return "";
  }

  // How a call ended, at a glance: its tool, and the first few plain values it returned.
  function outcome(e, view) {
    var p = e.payload;
    if (e.type !== "action.completed" && e.type !== "action.failed") return "";
    var tool = words(view.tools[p.action_id] || "call");
    if (e.type === "action.failed") return tool + " failed: " + p.error;
    var values = p.result || {};
    var plain = Object.keys(values).filter(function (k) {
      return values[k] !== null && typeof values[k] !== "object";
    }).slice(0, 3).map(function (k) {
      var v = String(values[k]);
      return words(k) + " " + (v.length > 60 ? v.slice(0, 59) + "…" : v);
    });
    return tool + " done" + (plain.length ? ": " + plain.join(" · ") : "");
  }

  function open(id, focusReply, note) {
    if (current) { clearTimeout(current.timer); if (current.socket) current.socket.close(); }
    current = { id: id, seen: 0, attempt: 0, timer: null, socket: null, tools: {} };
    $("conv-title").textContent = "Conversation " + short(id);
    $("timeline").textContent = "";
    $("timeline").setAttribute("aria-label", "Timeline of conversation " + short(id));
    held(Boolean(mine[id]) || focusReply, mine[id] && mine[id].status);
    if (note && !mine[id]) $("conv-status").textContent = note;
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
      $("timeline").appendChild(entry(e, view));
      $("timeline").scrollTop = $("timeline").scrollHeight;
      loadPacket(view.id);
    };
    socket.onclose = function (event) {
      if (current !== view || view.socket !== socket) return;
      if (event.code === 1008) {  // the policy no longer lets this desk read it
        if ($("reply").contains(document.activeElement)) $("conv-title").focus();
        $("reply").hidden = true;
        var said = $("conv-status").textContent;  // why, when the work stream said it first
        if (said.indexOf("may no longer read") < 0) {
          $("conv-status").textContent = (said ? said + " " : "") + "You may no longer read it.";
        }
        return;
      }
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
