(function () {
  "use strict";
  /* Sort and filter for every data table of a report page.  The page's CSP allows this one script
     by its sha256 (no other script, no inline handlers, no fetch); without it the tables still read
     as plain tables.  A cell's data-v attribute, when present, is its sort key (a number, or empty
     for "no value"); otherwise the key is the number the cell's text starts with, or its text. */
  var EMPTY = {"": 1, "\u2013": 1, "-": 1, "n/a": 1, "none": 1};

  function numberOf(text) {
    var m = /^[+\u2212-]?(\d+(\.\d+)?|\.\d+)(e[+-]?\d+)?/i.exec(text.replace(/,/g, ""));
    return m ? parseFloat(m[0].replace("\u2212", "-")) : null;
  }

  function keyOf(cell, numeric) {
    if (!cell) { return null; }
    var v = cell.getAttribute("data-v");
    if (v !== null) { return v === "" ? null : (numeric ? parseFloat(v) : v); }
    var text = cell.textContent.replace(/\s+/g, " ").trim();
    if (EMPTY[text.toLowerCase()]) { return null; }
    return numeric ? numberOf(text) : text.toLowerCase();
  }

  function isNumeric(rows, col) {
    var seen = 0;
    for (var i = 0; i < rows.length; i++) {
      var cell = rows[i].cells[col];
      if (!cell) { continue; }
      var v = cell.getAttribute("data-v");
      var text = v !== null ? v : cell.textContent.replace(/\s+/g, " ").trim();
      if (EMPTY[text.toLowerCase()]) { continue; }
      if (numberOf(text) === null) { return false; }
      seen++;
    }
    return seen > 0;
  }

  function setup(table) {
    if (table.querySelector("[colspan],[rowspan]")) { return; }
    var head = table.tHead ? table.tHead.rows[0] : table.rows[0];
    if (!head || head.cells.length < 2 || head.cells[0].tagName !== "TH") { return; }
    var body = table.tBodies[table.tBodies.length - 1];
    var rows = Array.prototype.filter.call(body.rows, function (r) { return r !== head; });
    if (rows.length < 2) { return; }

    var tools = document.createElement("div");
    tools.className = "table-tools";
    var input = document.createElement("input");
    input.type = "search";
    input.placeholder = "filter rows";
    input.setAttribute("aria-label", "filter the rows of the table below");
    var count = document.createElement("small");
    tools.appendChild(input);
    tools.appendChild(count);
    table.parentNode.insertBefore(tools, table);
    input.addEventListener("input", function () {
      var q = input.value.trim().toLowerCase();
      var shown = 0;
      rows.forEach(function (r) {
        var hide = q !== "" && r.textContent.toLowerCase().indexOf(q) < 0;
        r.classList.toggle("filtered-out", hide);
        if (!hide) { shown++; }
      });
      count.textContent = q === "" ? "" : " " + shown + " of " + rows.length + " rows";
    });

    Array.prototype.forEach.call(head.cells, function (th, col) {
      th.tabIndex = 0;
      th.classList.add("sortable");
      th.setAttribute("aria-sort", "none");
      th.title = "sort by this column";
      function sort() {
        var down = th.getAttribute("aria-sort") === "ascending";
        var numeric = isNumeric(rows, col);
        var keyed = rows.map(function (r, i) { return {row: r, key: keyOf(r.cells[col], numeric), i: i}; });
        keyed.sort(function (a, b) {
          if (a.key === null || b.key === null) {  /* rows without a value last, either way */
            return (a.key === null) - (b.key === null) || a.i - b.i;
          }
          var c = numeric ? a.key - b.key : String(a.key).localeCompare(String(b.key), undefined, {numeric: true});
          return (down ? -c : c) || a.i - b.i;
        });
        keyed.forEach(function (k) { body.appendChild(k.row); });
        rows = keyed.map(function (k) { return k.row; });
        Array.prototype.forEach.call(head.cells, function (h) { h.setAttribute("aria-sort", "none"); });
        th.setAttribute("aria-sort", down ? "descending" : "ascending");
      }
      th.addEventListener("click", sort);
      th.addEventListener("keydown", function (e) {
        if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sort(); }
      });
    });
  }

  Array.prototype.forEach.call(document.querySelectorAll("table:not(.no-sort):not(.provenance)"), setup);

  /* Leaderboard: hide task columns whose name does not match the column filter. */
  var colFilter = document.getElementById("column-filter");
  var board = document.getElementById("leaderboard");
  if (colFilter && board) {
    colFilter.addEventListener("input", function () {
      var q = colFilter.value.trim().toLowerCase();
      var head = board.rows[0];
      Array.prototype.forEach.call(head.cells, function (th, col) {
        var task = th.getAttribute("data-task");
        if (task === null) { return; }
        var hide = q !== "" && task.toLowerCase().indexOf(q) < 0;
        Array.prototype.forEach.call(board.rows, function (r) {
          if (r.cells[col]) { r.cells[col].classList.toggle("col-hidden", hide); }
        });
      });
    });
  }
})();
