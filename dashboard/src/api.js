// The API client. The access token lives in memory only; the refresh token
// is an httpOnly cookie the page cannot read, sent only to /api/auth. A 401
// triggers one refresh (serialised across tabs with the Web Locks API, since
// presenting a spent refresh token twice signs every tab out) and a retry.
let accessToken = null;
let refreshing = null;

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function send(method, path, body, token) {
  const headers = {};
  // A File or Blob (an import upload) goes as it is; anything else as JSON.
  const raw = typeof Blob !== "undefined" && body instanceof Blob;
  if (body !== undefined) headers["content-type"] = raw ? "application/octet-stream" : "application/json";
  if (token) headers.authorization = "Bearer " + token;
  let res;
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : raw ? body : JSON.stringify(body), credentials: "same-origin" });
  } catch {
    throw new ApiError(0, "The server cannot be reached. Check your connection and try again.");
  }
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = text;
  }
  if (!res.ok) throw new ApiError(res.status, (data && data.error) || res.statusText || "Request failed");
  return data;
}

async function refreshOnce() {
  try {
    const data = await send("POST", "/api/auth/refresh");
    accessToken = data.access_token;
    return true;
  } catch {
    accessToken = null;
    return false;
  }
}

export function refreshSession() {
  if (!refreshing) {
    const run = navigator.locks ? () => navigator.locks.request("engagetrack-refresh", refreshOnce) : refreshOnce;
    refreshing = run().finally(() => (refreshing = null));
  }
  return refreshing;
}

export async function api(method, path, body) {
  if (!accessToken && !(await refreshSession())) throw new ApiError(401, "Please sign in.");
  try {
    return await send(method, path, body, accessToken);
  } catch (e) {
    if (e.status === 401 && (await refreshSession())) return send(method, path, body, accessToken);
    throw e;
  }
}

/// Calls that need no session (sign-in, sign-up, reset, shared links).
export const publicApi = (method, path, body) => send(method, path, body);

export function setSession(tokens) {
  accessToken = tokens.access_token;
}

export function hasSession() {
  return accessToken !== null;
}

export async function signOut() {
  try {
    await send("POST", "/api/auth/logout", undefined, accessToken);
  } catch {
    // Signed out already, or offline: the token is forgotten either way.
  }
  accessToken = null;
}

export const query = (body) => api("POST", "/api/v2/query", body);

/// A public share link's dashboard: its own query endpoint, its password in a header.
export async function sharedApi(method, path, password, body) {
  const headers = {};
  if (body !== undefined) headers["content-type"] = "application/json";
  if (password) headers["x-share-password"] = password;
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const data = await res.json().catch(() => null);
  if (!res.ok) throw new ApiError(res.status, (data && data.error) || res.statusText);
  return data;
}
