// The store's check-in kiosk: a phone number or a check-in code puts the customer in the
// store's queue. Opened once with a kiosk token in the fragment (#token=…, which browsers
// never send), which it keeps for the session.
(function () {
  "use strict";
  var linked = new URLSearchParams(location.hash.slice(1)).get("token");
  var token = linked || sessionStorage.getItem("threadline.kiosk.token") || "";
  if (linked) {
    sessionStorage.setItem("threadline.kiosk.token", token);
    history.replaceState(null, "", location.pathname + location.search);  // out of the URL bar
  }
  var $ = function (id) { return document.getElementById(id); };
  function method() { return document.querySelector("input[name=method]:checked").value; }
  Array.prototype.forEach.call(document.querySelectorAll("input[name=method]"), function (r) {
    r.addEventListener("change", function () {
      var code = method() === "code";
      $("kiosk-label").textContent = code ? "Check-in code (6 digits)" : "Phone number";
      $("kiosk-value").inputMode = code ? "numeric" : "tel";
      $("kiosk-value").maxLength = code ? 4000 : 40;
      $("kiosk-value").value = "";
    });
  });
  $("kiosk-form").addEventListener("submit", function (event) {
    event.preventDefault();
    var value = $("kiosk-value").value.trim();
    var body = method() === "code" ? { code: value } : { phone: value };
    var key = (window.crypto && crypto.randomUUID) ? crypto.randomUUID() : String(Date.now());
    fetch("/kiosk/checkin", { method: "POST", body: JSON.stringify(body), headers: {
      "Authorization": "Bearer " + token, "Content-Type": "application/json",
      "Idempotency-Key": key } })
      .then(function (r) { return r.json().then(function (d) { return { ok: r.ok, d: d }; }); })
      .then(function (res) {
        $("kiosk-error").hidden = res.ok;
        if (!res.ok) {
          $("kiosk-error").textContent = res.d.detail || "Please ask an associate for help.";
          $("kiosk-result").textContent = "";
          return;
        }
        $("kiosk-value").value = "";
        $("kiosk-result").textContent = "You're checked in. You are number " + res.d.position +
          " in line; an associate will call you shortly.";
      })
      .catch(function () {
        $("kiosk-error").hidden = false;
        $("kiosk-error").textContent = "The kiosk is offline. Please ask an associate for help.";
      });
  });
})();
