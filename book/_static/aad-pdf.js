/* The whole book as one PDF, in each page's download menu (registered in _config.yml).
 *
 * The theme's ".pdf" entry prints the page on screen. Once `make pdf` has made the book's
 * PDF, tools/pdf.py copies it beside index.html and sets BOOK_PDF below, in the built copy
 * of this file, to its name; this script then adds a "book.pdf" entry under the theme's,
 * which downloads the whole book. Before that (BOOK_PDF null) it does nothing. */
(function () {
  "use strict";

  var BOOK_PDF = null;

  function addEntry() {
    var print = document.querySelector(".btn-download-pdf-button");
    if (!print) {
      return;
    }
    var root = document.documentElement.getAttribute("data-content_root") || "";
    var link = document.createElement("a");
    link.href = root + BOOK_PDF;
    link.setAttribute("download", "");
    link.className = print.className.replace("btn-download-pdf-button", "btn-download-book-pdf");
    link.title = "Download the whole book as one PDF";
    link.innerHTML =
      '<span class="btn__icon-container"><i class="fas fa-book"></i></span>' +
      '<span class="btn__text-container">book.pdf</span>';
    var item = print.closest("li");
    if (item) {
      var newItem = document.createElement("li");
      newItem.appendChild(link);
      item.parentNode.insertBefore(newItem, item.nextSibling);
    } else {
      print.parentNode.insertBefore(link, print.nextSibling);
    }
  }

  if (BOOK_PDF) {
    document.addEventListener("DOMContentLoaded", addEntry);
  }
})();
