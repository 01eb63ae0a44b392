// EngageTrack tracker, memory mode: pageviews (SPA-aware) and engaged time.
// Writes nothing to the device. The full SDK comes with the SDK issue.
(function () {
  var s = document.currentScript, d = document, w = window, l = location;
  if (!s) return;
  var site = s.getAttribute("data-site");
  var api = s.getAttribute("data-api") || new URL("/api/e", s.src).href;
  var sid = Math.random().toString(36).slice(2, 10) + Date.now().toString(36);
  var page, visibleSince = d.hidden ? 0 : Date.now(), engaged = 0, scroll = 0;
  function send(type, extra) {
    var b = { site: site, type: type, url: l.href, sid: sid }, k;
    for (k in extra) b[k] = extra[k];
    b = JSON.stringify(b);
    try {
      if (!(navigator.sendBeacon && navigator.sendBeacon(api, b)))
        fetch(api, { method: "POST", body: b, keepalive: true, headers: { "Content-Type": "text/plain" } });
    } catch (e) {}
  }
  // Adds the visible time so far, then reports it for the current page.
  function report() {
    if (visibleSince) { engaged += Date.now() - visibleSince; visibleSince = d.hidden ? 0 : Date.now(); }
    if (page && engaged > 0) send("engagement", { url: page, ms: Math.min(engaged, 86400000), scroll: scroll });
    engaged = 0;
  }
  function pageview() {
    if (l.href === page) return;
    report();
    scroll = 0;
    var from = page || d.referrer;
    page = l.href;
    send("pageview", { referrer: from, title: d.title.slice(0, 300), w: screen.width, h: screen.height });
  }
  w.addEventListener("scroll", function () {
    var h = d.documentElement.scrollHeight - w.innerHeight;
    scroll = Math.max(scroll, h > 0 ? Math.min(100, Math.round((w.scrollY / h) * 100)) : 100);
  }, { passive: true });
  d.addEventListener("visibilitychange", function () {
    if (d.hidden) report(); else visibleSince = Date.now();
  });
  var push = history.pushState;
  history.pushState = function () { push.apply(this, arguments); pageview(); };
  w.addEventListener("popstate", pageview);
  pageview();
})();
