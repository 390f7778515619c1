/* Reading comfort for "Hearing machines fail" (registered in _config.yml: html_js_files;
 * loaded in <head>, so that it also sees images that fail while the page loads).
 *
 * 1. An image that cannot load is replaced by its alt text, styled as a small button (see
 *    aad.css). The chapters' "Open in Colab" badge is an external image: a book read
 *    offline would otherwise show a broken-image icon in its place.
 * 2. A text diagram or text output a little wider than the column (the method's pipeline
 *    diagram, a Keras model summary) gets a smaller font, if MIN_FONT_PX or more makes it
 *    fit, so that it is read whole; anything wider keeps its size and scrolls in its box.
 *    A wide output of at most three lines (a long repr, a message) wraps instead (class
 *    aad-wrap).
 * 3. A table of the text wider than the column lets its inline code break anywhere (class
 *    aad-tight); a table in an output (a DataFrame) slightly too wide gets smaller type in
 *    the same way, after its column headers may break after an underscore ("auc_diff_low"
 *    reads "auc_diff_" over "low", never "pauc" over "c"). */
(function () {
  "use strict";

  var MIN_FONT_PX = 11;
  var WIDE_TEXT = [
    "div.highlight-text pre", // text diagrams
    "div.highlight-none pre",
    "div.highlight-bash pre", // shell commands with aligned comments
    "div.highlight-shell pre",
    "div.highlight-console pre",
    "div.cell_output .output pre", // text outputs
  ].join(", ");

  function showAltText(img) {
    var text = img.getAttribute("alt");
    if (!text || img.getAttribute("data-aad-fallback")) {
      return;
    }
    img.setAttribute("data-aad-fallback", "1");
    var span = document.createElement("span");
    span.className = "aad-img-fallback";
    if (/colab/i.test(img.getAttribute("src") || "")) {
      span.className += " aad-colab-badge";
    }
    span.textContent = text;
    img.replaceWith(span);
  }

  // Load errors do not bubble, but a capturing listener on window sees them.
  window.addEventListener(
    "error",
    function (event) {
      var target = event.target;
      if (target && target.tagName === "IMG") {
        showAltText(target);
      }
    },
    true
  );

  // External images that failed before this script ran, or whose error event was missed
  // (local ones are left alone: an SVG without intrinsic size also has naturalWidth 0).
  function sweep() {
    var images = document.querySelectorAll("img[alt]");
    for (var i = 0; i < images.length; i++) {
      var img = images[i];
      var src = img.getAttribute("src") || "";
      if (/^https?:\/\//.test(src) && img.complete && img.naturalWidth === 0) {
        showAltText(img);
      }
    }
  }
  document.addEventListener("DOMContentLoaded", sweep);
  window.addEventListener("load", sweep);

  function fitWideText() {
    var blocks = document.querySelectorAll(WIDE_TEXT);
    for (var i = 0; i < blocks.length; i++) {
      var pre = blocks[i];
      pre.style.fontSize = "";
      pre.classList.remove("aad-wrap");
      if (pre.clientWidth === 0 || pre.scrollWidth <= pre.clientWidth + 1) {
        continue; // hidden (a closed toggle) or fits already
      }
      var isOutput = pre.closest("div.cell_output") !== null;
      if (isOutput && pre.textContent.replace(/\n+$/, "").split("\n").length <= 3) {
        pre.classList.add("aad-wrap"); // a long repr or message: wrapped, not shrunk
        continue;
      }
      var style = window.getComputedStyle(pre);
      var pad = parseFloat(style.paddingLeft) + parseFloat(style.paddingRight);
      var size = parseFloat(style.fontSize);
      var fitted = Math.floor((10 * size * (pre.clientWidth - pad)) / (pre.scrollWidth - pad)) / 10;
      if (fitted >= MIN_FONT_PX) {
        pre.style.fontSize = fitted + "px";
      } // else too wide to be read whole: it keeps its size and scrolls
    }
  }
  function fitWideTables() {
    var boxes = document.querySelectorAll(".bd-article .pst-scrollable-table-container");
    for (var i = 0; i < boxes.length; i++) {
      var box = boxes[i];
      box.classList.remove("aad-tight");
      if (box.clientWidth > 0 && box.scrollWidth > box.clientWidth + 1) {
        box.classList.add("aad-tight");
      }
    }
  }

  // A column header of an output table may break after an underscore (a zero-width
  // space there), and nowhere else inside a word.
  function breakHeadersAtUnderscores() {
    var cells = document.querySelectorAll("div.cell_output .output.text_html table th");
    for (var i = 0; i < cells.length; i++) {
      var cell = cells[i];
      if (cell.getAttribute("data-aad-breaks") || cell.children.length) {
        continue;
      }
      cell.textContent = cell.textContent.replace(/_/g, "_\u200b");
      cell.setAttribute("data-aad-breaks", "1");
    }
  }

  // DataFrames and other HTML tables in outputs: smaller type, down to MIN_FONT_PX.
  function fitOutputTables() {
    var boxes = document.querySelectorAll("div.cell_output .output.text_html");
    for (var i = 0; i < boxes.length; i++) {
      var box = boxes[i];
      var table = box.querySelector("table");
      if (!table) {
        continue;
      }
      table.style.fontSize = "";
      if (box.clientWidth === 0 || box.scrollWidth <= box.clientWidth + 1) {
        continue;
      }
      var size = parseFloat(window.getComputedStyle(table).fontSize);
      var fitted = Math.floor((10 * size * box.clientWidth) / box.scrollWidth) / 10;
      if (fitted < MIN_FONT_PX) {
        continue; // too wide to be read whole: it keeps its size and scrolls
      }
      table.style.fontSize = fitted + "px";
      if (box.scrollWidth > box.clientWidth + 1) {
        // not quite linear (borders, fixed widths): one more step if it stays readable
        fitted = Math.floor((10 * fitted * box.clientWidth) / box.scrollWidth) / 10;
        table.style.fontSize = (fitted >= MIN_FONT_PX ? fitted : size) + "px";
      }
    }
  }

  function fitAll() {
    breakHeadersAtUnderscores();
    fitWideText();
    fitWideTables();
    fitOutputTables();
  }

  var pending = false;
  function fitSoon() {
    if (!pending) {
      pending = true;
      window.setTimeout(function () {
        pending = false;
        fitAll();
      }, 60);
    }
  }
  document.addEventListener("DOMContentLoaded", fitAll);
  window.addEventListener("load", fitAll); // after the web fonts
  window.addEventListener("resize", fitSoon);
  // Outputs inside toggles (solutions, hidden cells) are measured when they open.
  document.addEventListener("click", fitSoon, true);
  document.addEventListener("toggle", fitSoon, true);
})();
