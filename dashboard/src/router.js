// State lives in the URL hash (`#/site/example.com?period=30d&f=…`), so any
// view can be bookmarked, shared and navigated with the back button.
import { useEffect, useState } from "preact/hooks";

export function parseHash(hash = location.hash) {
  const raw = hash.replace(/^#/, "") || "/";
  const [path, search = ""] = raw.split("?");
  return { path, params: Object.fromEntries(new URLSearchParams(search)) };
}

export function href(path, params = {}) {
  const clean = Object.entries(params).filter(([, v]) => v !== undefined && v !== null && v !== "");
  const search = new URLSearchParams(clean).toString();
  return "#" + path + (search ? "?" + search : "");
}

export function navigate(path, params, { replace = false } = {}) {
  const target = href(path, params);
  if (replace) history.replaceState(null, "", target);
  else history.pushState(null, "", target);
  window.dispatchEvent(new HashChangeEvent("hashchange"));
}

export function useRoute() {
  const [route, setRoute] = useState(parseHash());
  useEffect(() => {
    const on = () => setRoute(parseHash());
    window.addEventListener("hashchange", on);
    return () => window.removeEventListener("hashchange", on);
  }, []);
  return route;
}

/// Mailed links open /verify-email?token=…, /reset-password?token=…,
/// /accept-invite?token=…, and payment providers send the customer back to
/// /billing?org=…&checkout=done; the app speaks hashes, so translate once.
export function adoptEntryPath() {
  const map = { "/verify-email": "/verify", "/reset-password": "/reset", "/accept-invite": "/accept-invite", "/signed-in": "/signed-in", "/billing": "/billing" };
  const target = map[location.pathname];
  if (target) {
    const params = Object.fromEntries(new URLSearchParams(location.search));
    history.replaceState(null, "", "/" + href(target, params));
  }
}
