// Politburo console: small progressive enhancements only; every page works without this file.
"use strict";
document.addEventListener("submit", function (event) {
  // <form data-confirm="Really delete?">: ask before a destructive form goes.
  var form = event.target;
  if (form instanceof HTMLFormElement && form.dataset.confirm) {
    if (!window.confirm(form.dataset.confirm)) {
      event.preventDefault();
    }
  }
});
document.addEventListener("DOMContentLoaded", function () {
  // <meta name="politburo-refresh" content="5">: reload a progress page every few seconds.
  var meta = document.querySelector('meta[name="politburo-refresh"]');
  if (meta) {
    var seconds = parseInt(meta.getAttribute("content"), 10);
    if (seconds > 0) {
      window.setTimeout(function () { window.location.reload(); }, seconds * 1000);
    }
  }
});
