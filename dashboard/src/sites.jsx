// The sites list (30-day visitors, sparkline, change) and adding a site
// (the snippet to paste, and a live wait for its first beacon).
import { useEffect, useState } from "preact/hooks";
import { api, query } from "./api.js";
import { Sparkline } from "./charts.jsx";
import { number } from "./format.js";
import { href, navigate } from "./router.js";
import { Copy, Form, Input, Loaded, Notice, Select, useLoad } from "./ui.jsx";

function SiteCard({ site }) {
  const state = useLoad(
    () =>
      Promise.all([
        query({ site_id: site.id, metrics: ["visitors"], date_range: "30d", include: { comparisons: { mode: "previous_period" } } }),
        query({ site_id: site.id, metrics: ["visitors"], date_range: "30d", dimensions: ["time:day"], include: { time_labels: true } }),
      ]),
    [site.id]
  );
  return (
    <li class="card site">
      <a class="site-link" href={href(`/site/${encodeURIComponent(site.domain)}`)}>
        <h2>{site.domain}</h2>
        <Loaded state={state}>
          {([agg, series]) => {
            const row = agg.results[0];
            const visitors = row ? row.metrics[0] : 0;
            const change = row && row.comparison ? row.comparison.change[0] : null;
            const byDay = Object.fromEntries(series.results.map((r) => [r.dimensions[0], r.metrics[0]]));
            const values = (series.meta.time_labels || []).map((l) => byDay[l] || 0);
            return (
              <div class="site-stats">
                <Sparkline values={values} label={`Visitors per day over 30 days for ${site.domain}`} />
                <p>
                  <strong>{number(visitors)}</strong> visitors in 30 days{" "}
                  {change !== null && change !== undefined && (
                    <span class={`change ${change > 0 ? "up" : change < 0 ? "down" : ""}`}>
                      {change > 0 ? "+" : ""}
                      {change}%
                    </span>
                  )}
                </p>
              </div>
            );
          }}
        </Loaded>
      </a>
    </li>
  );
}

export function Sites({ me }) {
  const state = useLoad(() => api("GET", "/api/sites"), []);
  const canAdd = me.organizations.some((o) => ["owner", "admin", "editor"].includes(o.role));
  return (
    <main class="page">
      <header class="page-head">
        <h1>Your sites</h1>
        {canAdd && (
          <a class="button primary" href={href("/sites/new")}>
            Add a site
          </a>
        )}
      </header>
      <Loaded state={state} isEmpty={(d) => d.length === 0} empty="No sites yet. Add one to start counting.">
        {(sites) => (
          <ul class="site-grid">
            {sites.map((s) => (
              <SiteCard site={s} />
            ))}
          </ul>
        )}
      </Loaded>
    </main>
  );
}

export function snippet(site) {
  return `<script defer data-site="${site.id}" src="${location.origin}/et.js"></script>`;
}

export function Installation({ site }) {
  const [seen, setSeen] = useState(null);
  useEffect(() => {
    let live = true;
    const check = () =>
      api("GET", `/api/sites/${site.id}/installation`).then(
        (r) => live && setSeen(r),
        () => {}
      );
    check();
    const t = setInterval(check, 3000);
    return () => {
      live = false;
      clearInterval(t);
    };
  }, [site.id]);
  return (
    <div class="install">
      <p>Paste this into the &lt;head&gt; of every page of {site.domain}:</p>
      <pre>
        <code>{snippet(site)}</code>
      </pre>
      <Copy text={snippet(site)} label="Copy snippet" />
      <p class="waiting" role="status" aria-live="polite">
        {seen && seen.seen ? (
          <>
            ✓ Beacons are arriving. <a href={href(`/site/${encodeURIComponent(site.domain)}`)}>Open the dashboard</a>
          </>
        ) : (
          <>
            <span class="pulse" aria-hidden="true" /> Waiting for the first beacon…
          </>
        )}
      </p>
    </div>
  );
}

export function AddSite({ me }) {
  const [site, setSite] = useState(null);
  const orgs = me.organizations.filter((o) => ["owner", "admin", "editor"].includes(o.role));
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  if (!orgs.length) return <Notice>Your role does not allow adding sites.</Notice>;
  const action = async (form) => {
    const org = form.get("organization");
    setSite(await api("POST", `/api/organizations/${org}/sites`, { domain: form.get("domain"), timezone: form.get("timezone") || "UTC" }));
  };
  return (
    <main class="page narrow">
      <h1>Add a site</h1>
      {site ? (
        <Installation site={site} />
      ) : (
        <Form action={action} submit="Add site">
          <Input label="Domain" name="domain" placeholder="example.com" required autofocus hint="Without https:// or a path." />
          <Input label="Time zone" name="timezone" value={zone} required hint="Days in the dashboard follow this zone." />
          {orgs.length > 1 ? (
            <Select label="Team" name="organization" options={orgs.map((o) => [o.organization_id, o.name])} />
          ) : (
            <input type="hidden" name="organization" value={orgs[0].organization_id} />
          )}
        </Form>
      )}
      <p class="links">
        <a href={href("/sites")} onClick={(e) => (e.preventDefault(), navigate("/sites"))}>
          Back to your sites
        </a>
      </p>
    </main>
  );
}
