// @ts-check
// Number formatting shared by the table, the viewer and the model card.

export const percent = (p, digits = 1) => `${(100 * p).toFixed(digits)} %`;

export function fixed(x, digits = 3) {
  return typeof x === "number" && Number.isFinite(x) ? x.toFixed(digits) : "–";
}

export function interval(ci, digits = 3) {
  return Array.isArray(ci) && ci.length === 2 ? `${fixed(ci[0], digits)}–${fixed(ci[1], digits)}` : "";
}

/** A small DOM builder: el("td", {className: "num", textContent: "1"}, child, ...). Never parses HTML. */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "dataset") Object.assign(node.dataset, value);
    else if (key in node) node[key] = value;
    else node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined && child !== false) node.append(child);
  }
  return node;
}
