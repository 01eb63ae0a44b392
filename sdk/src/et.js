// EngageTrack tracking script. Source of sdk/dist/et.js (built by build.mjs).
// Memory mode (default) writes nothing to the device; storage mode
// (data-persistence="storage") keeps a random visitor id in localStorage and
// the session in sessionStorage. The beacon format is the README's contract.
// Nothing here may throw into the host page: every entry point is wrapped.
((w, d, l, h, N) => {
  var s = d.currentScript;
  // f, but any error it raises is swallowed: the host page never sees ours.
  var safe = (f) => (a, b, c) => {
    try {
      return f(a, b, c);
    } catch (e) {}
  };
  safe(() => {
    var attr = (n) => s.getAttribute("data-" + n);
    var list = (n) => (attr(n) || "").split(",").map((x) => x.trim()).filter(String);
    var VID = /^[\w-]{16,64}$/, SID = /^[\w-]{8,64}$/;
    var LS, SS, VK = "et_vid", SK = "et_sid";
    var site = attr("site");
    var api = attr("api") || new URL("/api/e", s.src).href;
    var storage = attr("persistence") == "storage";
    var hosts = list("allowed-hostnames");
    var hashMode = attr("hash") == "true";
    var exclude = list("exclude").map(
      (p) => RegExp("^" + p.replace(/[.+?^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*") + "$")
    );
    var ext = list("download-extensions");
    ext = ext[0] ? ext : "pdf,xls,xlsx,doc,docx,ppt,pptx,csv,txt,rtf,zip,rar,7z,gz,dmg,exe,msi,apk,mp3,mp4,mov,wav".split(",");
    var now = Date.now;
    // 28 random characters of [0-9a-z]: about 143 bits.
    var rid = () =>
      Array.from(crypto.getRandomValues(new Uint32Array(4)), (n) => n.toString(36).padStart(7, 0)).join("");
    var sid = rid(), vid, page, key, visibleSince = d.hidden ? 0 : now(), engaged = 0, depth = 0;
    // Ignored: no site, localhost or file: (unless data-include-localhost), or
    // the visitor's opt-out flag (read, never written).
    var off = !site || (!s.hasAttribute("data-include-localhost") &&
      /^(localhost|127(\.\d+){3}|\[::1\]|)$/.test(l.hostname));
    try {
      LS = w.localStorage; // throws where storage is blocked
      off = off || LS.getItem("et_ignore") == "true";
    } catch (e) {}

    // Storage mode: the visitor id, and the session id with its last activity
    // (a new session after 30 idle minutes).
    var ids = () => {
      if (storage) {
        SS = w.sessionStorage;
        var v = LS.getItem(VK), t = (SS.getItem(SK) || "").split(".");
        VID.test(v) || LS.setItem(VK, (v = rid()));
        if (!SID.test(t[0]) || now() - t[1] > 18e5) t[0] = rid();
        SS.setItem(SK, t[0] + "." + now());
        sid = t[0];
        vid = v;
      }
    };

    var send = (type, extra) => {
      var b = { site, type, url: l.href, ...extra };
      var path = new URL(b.url).pathname;
      if (off || exclude.some((r) => r.test(path))) return;
      try {
        ids();
      } catch (e) {}
      b.sid = sid;
      b.vid = vid;
      b = JSON.stringify(b);
      (N.sendBeacon && N.sendBeacon(api, b)) ||
        fetch(api, { method: "POST", body: b, keepalive: true }).catch(Object);
    };

    // Max scroll depth: the share of the page that has been on screen.
    var scroll = () => {
      var t = d.documentElement.scrollHeight;
      depth = Math.max(depth, Math.min(100, Math.round(((scrollY + innerHeight) / t) * 100)) | 0);
    };

    // Reports the visible time on the current page since the last report.
    var report = () => {
      if (visibleSince) engaged += now() - visibleSince;
      visibleSince = d.hidden ? 0 : now();
      if (page && engaged > 0) send("engagement", { url: page, ms: Math.min(engaged, 864e5), scroll: depth });
      engaged = 0;
    };

    // The same URL twice in a row is one pageview (unless called by et()).
    var pageview = (force) => {
      var k = hashMode ? l.href : l.href.split("#")[0];
      if (k != key || force) {
        report();
        depth = 0;
        scroll();
        send("pageview", { referrer: page || d.referrer, title: d.title.slice(0, 300), w: screen.width, h: screen.height });
        key = k;
        page = l.href;
      }
    };

    var props = (el) => {
      var p = {}, n = 0;
      for (var a of el.attributes)
        if (!a.name.indexOf("data-et-prop-") && n++ < 30) p[a.name.slice(13)] = a.value.slice(0, 256);
      return p;
    };

    var on = (t, f, o) => (o || w).addEventListener(t, safe(f), true);

    // Primary and middle clicks (a right click opens a menu, not the link).
    var click = (e) => {
      if (e.button > 1) return;
      var t = e.target, a = t.closest("a[href]"), g = t.closest("[data-et-event]"), u, p;
      if (g) send("click", { name: g.getAttribute("data-et-event").slice(0, 120), props: props(g) });
      if (a) {
        u = new URL(a.href);
        p = u.protocol;
        if (p == "mailto:" || p == "tel:") send(p.slice(0, -1), { target: decodeURIComponent(u.pathname) });
        if (/^https?:$/.test(p)) {
          // Cross-domain: hand the ids to an allowed host.
          if (storage && u.host != l.host && hosts.includes(u.hostname)) {
            ids();
            u.searchParams.set("_et_vid", vid);
            u.searchParams.set("_et_sid", sid);
            a.href = u.href;
          }
          if (ext.includes(u.pathname.split(".").pop().toLowerCase()) || a.hasAttribute("download")) send("download", { target: a.href });
          else if (u.hostname != l.hostname) send("outbound", { target: a.href });
        }
      }
    };

    var et = safe((c, a, b) => {
      a = a || {};
      b = b || {};
      if (c == "pageview") pageview(1);
      if (c == "event") send("custom", { name: a, props: b.props, revenue: b.revenue });
      if (c == "purchase")
        send("purchase", { amount: a.amount, currency: a.currency, order_id: a.order_id, props: a.props });
      if (c == "identify") send("identify", { user: { id: "" + a.id, email: a.email, name: a.name, avatar: a.avatar } });
    });

    var queue = (w.et && w.et.q) || [];
    w.et = et;
    if (off) return;

    // Cross-domain: adopt the ids a linking site handed over, then clean the URL.
    var u = new URL(l.href), q = u.searchParams, v = q.get("_et_vid"), i = q.get("_et_sid");
    if (storage && hosts[0] && (v || i)) {
      q.delete("_et_vid");
      q.delete("_et_sid");
      h.replaceState(h.state, "", u.href);
      try {
        VID.test(v) && LS.setItem(VK, v);
        SID.test(i) && sessionStorage.setItem(SK, i + "." + now());
      } catch (e) {}
    }

    on("scroll", scroll);
    // Only a hidden→visible change starts a visible stretch: at unload the
    // events can come in any order, and the time so far must not be lost.
    on("visibilitychange", () => (d.hidden ? report() : visibleSince || (visibleSince = now())), d);
    on("pagehide", report);
    on("click", click, d);
    on("auxclick", click, d);
    on("submit", (e) => {
      var f = e.target;
      send("form", { target: f.getAttribute("id") || f.getAttribute("name") || void 0, props: props(f) });
    }, d);

    // Automatic pageviews, SPA navigation included (data-auto="false": manual).
    if (attr("auto") != "false") {
      for (let m of ["pushState", "replaceState"]) {
        let o = h[m];
        h[m] = function () {
          var r = o.apply(this, arguments);
          safe(pageview)();
          return r;
        };
      }
      on("popstate", () => pageview());
      hashMode && on("hashchange", () => pageview());
      pageview();
    }
    queue.forEach((a) => et(...a));
  })();
})(window, document, location, history, navigator);
