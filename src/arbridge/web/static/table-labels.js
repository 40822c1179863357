// On a phone, tables become stacked rows (app.css): each cell shows its column's name from
// data-label. Cells a template left unlabelled get their column header's text here. Without
// JavaScript the rows still stack, only unlabelled.
document.addEventListener("DOMContentLoaded", () => {
  for (const table of document.querySelectorAll("main table")) {
    const heads = [];
    for (const th of table.querySelectorAll("thead tr:first-child > th")) {
      for (let n = 0; n < th.colSpan; n += 1) heads.push(th.textContent.trim());
    }
    if (!heads.length) continue;
    for (const row of table.querySelectorAll("tbody > tr")) {
      let column = 0;
      for (const cell of row.children) {
        if (cell.tagName === "TD" && !cell.hasAttribute("data-label") && heads[column]) {
          cell.dataset.label = heads[column];
        }
        column += cell.colSpan;
      }
    }
  }
});
