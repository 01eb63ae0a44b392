// EngageTrack tracker, memory mode: pageviews (SPA-aware) and engaged time.
// Writes nothing to the device. The full SDK comes with the SDK issue.
(function () {
  var s = document.currentScript, d = document, w = window, l = location;
  if (!s) return;
  var site = s.getAttribute("data-site");
  var api = s.getAttribute("data-api") || new URL("/api/e", s.src).href;
  var sid = Math.random().toString(36).slice(2, 10) + Date.now().toString(36);
  var last, shown = Date.now(), engaged = 0, scroll = 0;
  function send(type, extra) {
    var b = { site: site, type: type, url: l.href, sid: sid };
    for (var k in extra) b[k] = extra[k];
    var body = JSON.stringify(b);
    try {
      if (!(navigator.sendBeacon && navigator.sendBeacon(api, body)))
        fetch(api, { method: "POST", body: body, keepalive: true, headers: { "Content-Type": "text/plain" } });
    } catch (e) {}
  }
  function pageview() {
    if (l.href === last) return;
    flush();
    last = l.href;
    send("pageview", { referrer: d.referrer, title: d.title.slice(0, 300), w: screen.width, h: screen.height });
  }
  function flush() {
    if (!last) return;
    if (!d.hidden) engaged += Date.now() - shown;
    shown = Date.now();
    if (engaged > 0) send("engagement", { ms: Math.min(engaged, 86400000), scroll: scroll });
    engaged = 0;
    scroll = 0;
  }
  w.addEventListener("scroll", function () {
    var h = d.documentElement.scrollHeight - w.innerHeight;
    scroll = Math.max(scroll, h > 0 ? Math.min(100, Math.round((w.scrollY / h) * 100)) : 100);
  }, { passive: true });
  d.addEventListener("visibilitychange", function () {
    if (d.hidden) { engaged += Date.now() - shown; var e = engaged; flush(); engaged = 0; if (!e) return; }
    shown = Date.now();
  });
  var push = history.pushState;
  history.pushState = function () { push.apply(this, arguments); pageview(); };
  w.addEventListener("popstate", pageview);
  pageview();
})();
