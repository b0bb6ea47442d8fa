/* Injected into a copy of a report page by tests/slow/test_report_browser.py (allowed there by its
   own CSP hash, beside the page's): measures the laid-out page in the browser and exercises the
   page's table script, then posts the findings as JSON to the wrapper page that frames it. */
window.addEventListener("load", function () {
  "use strict";
  function box(el) {
    var r = el.getBoundingClientRect();
    return {left: r.left, right: r.right, top: r.top + window.scrollY, bottom: r.bottom + window.scrollY,
            width: r.width, height: r.height};
  }
  function visibleRows(table) {
    return Array.prototype.filter.call(table.rows, function (r, i) {
      return i > 0 && getComputedStyle(r).display !== "none";
    }).length;
  }
  function heading(el) {
    for (var n = el.previousElementSibling; n; n = n.previousElementSibling) {
      if (/^H[1-4]$/.test(n.tagName)) { return n.textContent.trim(); }
    }
    return "";
  }
  function key(cell) {
    if (!cell) { return null; }
    var v = cell.getAttribute("data-v");
    var text = v !== null ? v : cell.textContent.trim();
    var m = /^[+\u2212-]?(\d+(\.\d+)?|\.\d+)/.exec(text);
    return m ? parseFloat(m[0].replace("\u2212", "-")) : null;
  }
  var out = {
    innerWidth: window.innerWidth, clientWidth: document.documentElement.clientWidth,
    scrollWidth: document.documentElement.scrollWidth, height: document.documentElement.scrollHeight,
    title: document.title, tables: [], images: [], overlaps: []
  };
  Array.prototype.forEach.call(document.querySelectorAll("table"), function (t, i) {
    var head = t.rows[0];
    var info = {
      index: i, id: t.id, cls: t.className, heading: heading(t), box: box(t),
      scrollWidth: t.scrollWidth, clientWidth: t.clientWidth, overflowX: getComputedStyle(t).overflowX,
      rows: t.rows.length - 1, sortable: t.querySelectorAll("th.sortable").length,
      tools: !!(t.previousElementSibling && t.previousElementSibling.className === "table-tools"),
      text: t.textContent.replace(/\s+/g, " ").slice(0, 20000),
      rowTexts: Array.prototype.map.call(t.rows, function (r) {
        return Array.prototype.map.call(r.cells, function (c) { return c.textContent.replace(/\s+/g, " ").trim(); });
      })
    };
    /* exercise sort: the first numeric column with 2+ values, ascending then descending */
    if (info.sortable && info.rows >= 2) {
      for (var col = 0; col < head.cells.length; col++) {
        var rows = Array.prototype.slice.call(t.rows, 1);
        var keys = rows.map(function (r) { return key(r.cells[col]); }).filter(function (k) { return k !== null; });
        if (keys.length < 2) { continue; }
        head.cells[col].click();
        var asc = Array.prototype.slice.call(t.rows, 1).map(function (r) { return key(r.cells[col]); })
          .filter(function (k) { return k !== null; });
        head.cells[col].click();
        var desc = Array.prototype.slice.call(t.rows, 1).map(function (r) { return key(r.cells[col]); })
          .filter(function (k) { return k !== null; });
        info.sorted = {column: head.cells[col].textContent.trim(), asc: asc, desc: desc,
                       ariaSort: head.cells[col].getAttribute("aria-sort")};
        break;
      }
      /* exercise filter: the text of the last row's first cell keeps that row and hides others */
      var tools = t.previousElementSibling;
      var input = tools && tools.querySelector("input");
      if (input) {
        var probe = t.rows[t.rows.length - 1].cells[0].textContent.trim().slice(0, 40);
        input.value = probe;
        input.dispatchEvent(new Event("input"));
        info.filtered = {probe: probe, visible: visibleRows(t), total: info.rows};
        input.value = "zzzz-no-row-has-this";
        input.dispatchEvent(new Event("input"));
        info.filtered.none = visibleRows(t);
        input.value = "";
        input.dispatchEvent(new Event("input"));
        info.filtered.cleared = visibleRows(t);
      }
    }
    out.tables.push(info);
  });
  Array.prototype.forEach.call(document.images, function (img) {
    out.images.push({alt: img.alt, box: box(img), natural: img.naturalWidth, complete: img.complete});
  });
  /* block children of the body must not overlap one another */
  var blocks = Array.prototype.filter.call(document.body.children, function (el) {
    return el.tagName !== "SCRIPT" && getComputedStyle(el).display !== "none";
  });
  for (var i = 1; i < blocks.length; i++) {
    var a = box(blocks[i - 1]), b = box(blocks[i]);
    if (a.height > 0 && b.height > 0 && b.top < a.bottom - 1) {
      out.overlaps.push([blocks[i - 1].tagName + "#" + blocks[i - 1].id, blocks[i].tagName + "#" + blocks[i].id]);
    }
  }
  var col = document.getElementById("column-filter");
  if (col) {
    var board = document.getElementById("leaderboard");
    var shown = function () {
      return Array.prototype.filter.call(board.rows[0].cells, function (c) {
        return getComputedStyle(c).display !== "none";
      }).map(function (c) { return c.textContent.trim(); });
    };
    var before = shown();
    var task = board.rows[0].cells[board.rows[0].cells.length - 1].getAttribute("data-task");
    col.value = task;
    col.dispatchEvent(new Event("input"));
    out.columnFilter = {before: before, after: shown(), probe: task};
    col.value = "";
    col.dispatchEvent(new Event("input"));
  }
  /* the page sits in an iframe of the wanted width (Chromium's headless window is never narrower
     than 500 px): the frame hands its findings to the wrapper, whose DOM the test dumps */
  window.parent.postMessage(JSON.stringify(out), "*");
});
