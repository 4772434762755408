// The API key, as the API takes it: asked for once when the server answers 401, kept in this
// tab's sessionStorage, sent in the Authorization header (and in the WebSocket's first message),
// never put in a URL.

const STORAGE = "ferrotile.api_key";

export function apiKey() {
  return sessionStorage.getItem(STORAGE);
}

export class AuthError extends Error {}

// GET a JSON resource of the API; throws AuthError on 401 (the page then asks for a key).
export async function getJSON(url) {
  const key = apiKey();
  const headers = key ? { Authorization: `Apikey ${key}` } : {};
  const response = await fetch(url, { headers, credentials: "same-origin" });
  const body = await response.json().catch(() => null);
  if (response.status === 401) throw new AuthError(detailOf(body, response));
  if (!response.ok) throw new Error(detailOf(body, response));
  return body;
}

function detailOf(body, response) {
  const detail = body && body.detail;
  return typeof detail === "string" ? detail : `${response.status} ${response.statusText}`;
}

// Show the key form (with why it is shown); resolves once a key was entered.
export function askForKey(reason) {
  const form = document.getElementById("login");
  const input = document.getElementById("api-key");
  if (apiKey()) showError(reason);  // a key was sent and refused: say so
  form.hidden = false;
  input.focus();
  return new Promise((resolve) => {
    form.onsubmit = (event) => {
      event.preventDefault();
      sessionStorage.setItem(STORAGE, input.value);
      input.value = "";
      form.hidden = true;
      showError(null);
      resolve();
    };
  });
}

export function forgetKey() {
  sessionStorage.removeItem(STORAGE);
}

export function showError(message) {
  const box = document.getElementById("error");
  box.textContent = message || "";
  box.hidden = !message;
}
