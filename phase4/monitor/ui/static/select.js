// The sign-off table's "select all" box: ticks or clears every result box of its form.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("input[data-select-all]").forEach(function (box) {
    var form = document.getElementById(box.getAttribute("data-select-all"));
    if (!form) {
      return;
    }
    box.addEventListener("change", function () {
      form.querySelectorAll('input[type="checkbox"][name="result"]').forEach(function (b) {
        b.checked = box.checked;
      });
    });
  });
});
