// The live view's entry point: which node (from the URL), the API key if the server wants one,
// then the listing (containers) or the viewer (arrays and tables).

import { AuthError, askForKey, getJSON, showError } from "./auth.js";
import { showListing } from "./listing.js";
import { showViewer } from "./viewer.js";

// The URL prefix before /live/ (a server mounted below a path) and the node's path after it.
function pageLocation() {
  const at = location.pathname.indexOf("/live/");
  const root = location.pathname.slice(0, at);
  const rest = location.pathname.slice(at + "/live/".length);
  const parts = rest.split("/").filter(Boolean).map(decodeURIComponent);
  return { root, parts };
}

function breadcrumbs(root, parts) {
  const nav = document.getElementById("crumbs");
  nav.replaceChildren();
  parts.forEach((part, i) => {
    const link = document.createElement("a");
    link.href = `${root}/live/${parts.slice(0, i + 1).map(encodeURIComponent).join("/")}`;
    link.textContent = part;
    nav.append(" / ", link);
  });
}

async function start() {
  const { root, parts } = pageLocation();
  const path = parts.join("/");
  breadcrumbs(root, parts);
  document.title = `${path || "/"} - ferrotile live`;
  let answer;
  let clock;
  try {
    const sent = Date.now();
    answer = await getJSON(`${root}/live/api/streams?path=${encodeURIComponent(path)}`);
    const skew = answer.time - (sent + Date.now()) / 2000;
    clock = { skew, utcOffset: answer.utc_offset };
  } catch (error) {
    await failed(error);
    return;
  }
  if (answer.node.structure_family === "container") {
    showListing(root, path, answer, failed);
  } else {
    showViewer(root, path, answer.node, clock);
  }
}

// A refused key: ask for one and start again; anything else: say what went wrong.
async function failed(error) {
  if (error instanceof AuthError) {
    document.getElementById("listing").hidden = true;
    await askForKey(error.message);
    start();
  } else {
    showError(error.message);
  }
}

start();
