// A container's newest children with their streams' sequence numbers and rates, polled once a
// second (new children appear within a second). Rates are differences between two polls.

import { AuthError, getJSON, showError } from "./auth.js";

export const POLL_MS = 1000;

export function showListing(root, path, first, onAuthError) {
  document.getElementById("listing").hidden = false;
  const body = document.getElementById("children");
  const note = document.getElementById("listing-note");
  let previous = null;
  const render = (answer) => {
    const earlier = new Map();
    if (previous) for (const child of previous.children) earlier.set(child.key, child.sequence);
    const seconds = previous ? answer.time - previous.time : 0;
    const rows = answer.children.map((child) => row(root, child, earlier, seconds));
    if (previous) {  // children that appeared since the last answer: highlighted a moment
      for (const tr of rows) if (!earlier.has(tr.dataset.key)) tr.classList.add("new");
    }
    body.replaceChildren(...rows);
    const shown = answer.children.length;
    note.textContent = shown < answer.count
      ? `The newest ${shown} of ${answer.count} entries.`
      : shown ? "" : "No entries yet: new ones appear here as they are created.";
    previous = answer;
  };
  render(first);
  const url = `${root}/live/api/streams?path=${encodeURIComponent(path)}`;
  const poll = async () => {
    try {
      render(await getJSON(url));
      showError(null);
    } catch (error) {
      if (error instanceof AuthError) {
        onAuthError(error);
        return;
      }
      showError(`${error.message} (trying again)`);  // e.g. the server restarting
    }
    setTimeout(poll, POLL_MS);
  };
  setTimeout(poll, POLL_MS);
}

function row(root, child, earlier, seconds) {
  const tr = document.createElement("tr");
  tr.dataset.key = child.key;
  const link = document.createElement("a");
  link.href = `${root}/live/${child.path.map(encodeURIComponent).join("/")}`;
  link.textContent = child.key;
  const before = earlier.get(child.key);
  let rate = "";
  if (seconds > 0 && before != null && child.sequence != null && child.sequence >= before) {
    rate = ((child.sequence - before) / seconds).toFixed(1);
  }
  const cells = [
    link,
    child.structure_family,
    child.shape ? `(${child.shape.join(", ")})` : "",
    child.dtype ?? "",
    child.sequence ?? "",
    rate,
  ];
  cells.forEach((content, i) => {
    const td = document.createElement("td");
    if (i >= 4) td.className = "num";
    td.append(content);
    tr.append(td);
  });
  return tr;
}
