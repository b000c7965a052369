// Threadline desk: offers, my conversations, the cross-channel timeline, the
// handoff packet, and replying, transferring, returning and resolving.
(function () {
  "use strict";
  var params = new URLSearchParams(window.location.search);
  var token = params.get("token") || sessionStorage.getItem("threadline.desk.token") || "";
  if (params.get("token")) {
    sessionStorage.setItem("threadline.desk.token", token);
    history.replaceState(null, "", window.location.pathname);  // keep tokens out of the URL bar
  }
  var $ = function (id) { return document.getElementById(id); };
  var current = null;  // {id, socket, seen}
  var offerTimer = null;

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

  function signIn() {
    api("GET", "/agents/me").then(function (me) {
      $("sign-in").hidden = true;
      $("desk").hidden = false;
      $("me-name").textContent = me.name + " · " + me.queues.join(", ");
      $("presence").disabled = false;
      $("presence").value = me.presence;
      renderMine(me.conversations);
      pollOffers();
    }).catch(function (error) {
      $("sign-in").hidden = false;
      $("desk").hidden = true;
      if (token) showError($("sign-in-error"), error);
    });
  }

  function renderMine(ids) {
    var list = $("mine");
    list.textContent = "";
    ids.forEach(function (id) {
      var item = document.createElement("li");
      item.className = "mine-item";
      var button = document.createElement("button");
      button.className = "secondary";
      button.textContent = "Open " + id.slice(-8);
      button.addEventListener("click", function () { open(id); });
      item.appendChild(button);
      list.appendChild(item);
    });
  }

  function pollOffers() {
    clearTimeout(offerTimer);
    api("GET", "/agents/me/offers").then(function (offers) {
      var list = $("offers");
      var known = {};
      Array.prototype.forEach.call(list.children, function (li) { known[li.dataset.offer] = li; });
      offers.forEach(function (offer) {
        if (known[offer.offer_id]) { delete known[offer.offer_id]; return; }
        var li = document.createElement("li");
        li.className = "offer";
        li.dataset.offer = offer.offer_id;
        li.innerHTML = "<p></p><button>Accept</button> <button class='secondary'>Decline</button>";
        li.querySelector("p").textContent =
          "Queue " + offer.queue + " · " + (offer.reason || "handoff") + " · " +
          offer.conversation_id.slice(-8);
        li.querySelector("button").setAttribute("aria-label", "Accept offer from queue " + offer.queue);
        li.querySelector("button").addEventListener("click", function () {
          api("POST", "/conversations/" + offer.conversation_id + "/accept", { offer_id: offer.offer_id })
            .then(function () { li.remove(); open(offer.conversation_id); refreshMe(); })
            .catch(function (e) { showError($("action-error"), e); });
        });
        li.querySelector(".secondary").addEventListener("click", function () {
          api("POST", "/conversations/" + offer.conversation_id + "/decline", { offer_id: offer.offer_id })
            .then(function () { li.remove(); })
            .catch(function (e) { showError($("action-error"), e); });
        });
        list.appendChild(li);
      });
      Object.keys(known).forEach(function (id) { known[id].remove(); });
      $("no-offers").hidden = list.children.length > 0;
    }).catch(function () {}).then(function () { offerTimer = setTimeout(pollOffers, 1000); });
  }

  function refreshMe() {
    api("GET", "/agents/me").then(function (me) { renderMine(me.conversations); });
  }

  function entry(e) {
    var li = document.createElement("li");
    li.className = e.actor.kind;
    var badge = document.createElement("span");
    badge.className = "badge " + e.channel;
    badge.textContent = e.channel.replace("_", " ");
    var kind = document.createElement("span");
    kind.className = "kind";
    kind.textContent = e.type + " · " + e.actor.id;
    var text = document.createElement("p");
    text.style.margin = "2px 0 0";
    var p = e.payload;
    text.textContent = p.text || (p.name ? p.name + " = " + p.value : "") || p.intent ||
      p.outcome || p.reason_code || p.tool || "";
    li.appendChild(badge);
    li.appendChild(kind);
    if (text.textContent) li.appendChild(text);
    return li;
  }

  function open(id) {
    if (current && current.socket) current.socket.close();
    current = { id: id, seen: 0 };
    $("conv-title").textContent = "Conversation " + id.slice(-8);
    $("timeline").textContent = "";
    $("reply").hidden = false;
    var url = location.origin.replace(/^http/, "ws") + "/conversations/" + id +
      "/stream?after_seq=0&token=" + encodeURIComponent(token);
    var socket = new WebSocket(url);
    current.socket = socket;
    socket.onmessage = function (message) {
      var e = JSON.parse(message.data);
      if (!e.seq || e.seq <= current.seen) return;
      current.seen = e.seq;
      $("timeline").appendChild(entry(e));
      $("timeline").scrollTop = $("timeline").scrollHeight;
      loadPacket(id);
    };
    loadPacket(id);
  }

  function loadPacket(id) {
    api("GET", "/conversations/" + id + "/packet").then(function (packet) {
      var box = $("packet");
      box.textContent = "";
      var dl = document.createElement("dl");
      function row(term, value) {
        var dt = document.createElement("dt"); dt.textContent = term;
        var dd = document.createElement("dd"); dd.textContent = value;
        dl.appendChild(dt); dl.appendChild(dd);
      }
      row("Customer", (packet.customer_id || "unknown") + " (" + packet.verification + ")");
      row("Reason", (packet.reason_code || "-") + (packet.reason_detail ? ": " + packet.reason_detail : ""));
      row("Queue", packet.queue || "-");
      row("Status", packet.status || "-");
      packet.slots.forEach(function (slot) {
        row(slot.name.replace("_", " "), slot.value + " (from " + slot.channel.replace("_", " ") + ")");
      });
      packet.actions.forEach(function (a) { row("Action", (a.tool || a.action_id) + " — " + a.status); });
      row("Channels", packet.legs.map(function (l) { return l.channel.replace("_", " "); }).join(", ") || "-");
      box.appendChild(dl);
      var summary = document.createElement("ol");
      packet.summary.forEach(function (line) {
        var li = document.createElement("li"); li.textContent = line; summary.appendChild(li);
      });
      box.appendChild(summary);
    }).catch(function () {});
  }

  function act(path, body) {
    if (!current) return;
    api("POST", "/conversations/" + current.id + path, body)
      .then(function () { showError($("action-error"), null); refreshMe(); loadPacket(current.id); })
      .catch(function (e) { showError($("action-error"), e); });
  }

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
  $("transfer").addEventListener("click", function () { act("/transfer", { queue: $("transfer-queue").value }); });
  $("return").addEventListener("click", function () { act("/return", {}); });
  $("resolve").addEventListener("click", function () { act("/resolve", { outcome: $("outcome").value }); });
  if (token) signIn(); else $("sign-in").hidden = false;
})();
