// A site's dashboard. Everything it shows is in the URL: the range, the
// comparison, the chart's metric and interval, and the filters (`f`, the
// Stats API's own filter JSON), so a view can be bookmarked and shared.
import { useEffect, useState } from "preact/hooks";
import { api, query } from "./api.js";
import { Sparkline, Timeseries, WorldMap } from "./charts.jsx";
import { Funnels } from "./funnels.jsx";
import { countryName, flag, METRIC_LABELS, metricValue, number } from "./format.js";
import { href, navigate } from "./router.js";
import { Loaded, Notice, Tabs, useLoad } from "./ui.jsx";

export const PERIODS = [
  ["day", "Today"],
  ["7d", "Last 7 days"],
  ["30d", "Last 30 days"],
  ["month", "This month"],
  ["12mo", "Last 12 months"],
  ["year", "This year"],
  ["custom", "Custom range"],
];

const TOP_METRICS = ["visitors", "visits", "pageviews", "views_per_visit", "bounce_rate", "visit_duration"];

export function readFilters(params) {
  try {
    const f = JSON.parse(params.f || "[]");
    return Array.isArray(f) ? f : [];
  } catch {
    return [];
  }
}

export function dateRange(params) {
  if (params.period === "custom" && params.from && params.to) return [params.from, params.to];
  const known = PERIODS.map(([k]) => k);
  return known.includes(params.period) && params.period !== "custom" ? params.period : "30d";
}

function defaultInterval(range) {
  if (range === "day") return "hour";
  if (range === "12mo" || range === "year") return "month";
  return "day";
}

const DIM_LABELS = {
  "event:page": "Page",
  "visit:entry_page": "Entry page",
  "visit:exit_page": "Exit page",
  "visit:channel": "Channel",
  "visit:source": "Source",
  "visit:referrer": "Referrer",
  "visit:utm_source": "UTM source",
  "visit:utm_medium": "UTM medium",
  "visit:utm_campaign": "UTM campaign",
  "visit:utm_term": "UTM term",
  "visit:utm_content": "UTM content",
  "visit:country": "Country",
  "visit:region": "Region",
  "visit:city": "City",
  "visit:browser": "Browser",
  "visit:os": "Operating system",
  "visit:device": "Device",
  "visit:screen": "Screen size",
  "event:goal": "Goal",
  "event:name": "Event",
};

function dimLabel(dimension) {
  if (dimension.startsWith("event:props:")) return `Property ${dimension.slice(12)}`;
  return DIM_LABELS[dimension] || dimension;
}

function valueLabel(dimension, value) {
  if (value === null || value === undefined || value === "") return "(none)";
  if (dimension === "visit:country") return `${flag(value)} ${countryName(value)}`;
  return value;
}

export function Dashboard({ site, params, q: plainQ = query, basePath, shared = false }) {
  const range = dateRange(params);
  const filters = readFilters(params);
  const compare = params.compare === "1";
  // "Include imported data" (`imports=1` in the URL): every query asks for include.imports.
  const withImports = params.imports === "1";
  const q = withImports ? (body) => plainQ({ ...body, include: { ...(body.include || {}), imports: true } }) : plainQ;
  const metric = TOP_METRICS.includes(params.metric) ? params.metric : "visitors";
  const interval = params.interval || defaultInterval(range);
  const base = { site_id: site.domain, date_range: range, filters };
  const key = JSON.stringify([site.domain, range, filters, compare, withImports]);
  const here = basePath || `/site/${encodeURIComponent(site.domain)}`;
  const set = (changes) => navigate(here, { ...params, ...changes });
  const addFilter = (dimension, value) => {
    if (value === null || value === undefined) return;
    const rest = filters.filter((f) => f[1] !== dimension);
    set({ f: JSON.stringify([...rest, ["is", dimension, [String(value)]]]) });
  };
  const removeFilter = (i) => set({ f: filters.length > 1 ? JSON.stringify(filters.filter((_, j) => j !== i)) : undefined });
  const panel = (p) => ({ base, dep: key, addFilter, q, ...p });
  return (
    <main class="dashboard">
      <header class="dash-head">
        <h1>
          {!shared && (
            <>
              <a href={href("/sites")} class="muted">Sites</a> /{" "}
            </>
          )}
          {site.domain}
        </h1>
        <RangePicker params={params} set={set} />
        <label class="check">
          <input type="checkbox" checked={compare} onChange={(e) => set({ compare: e.currentTarget.checked ? "1" : undefined })} />
          Compare with previous period
        </label>
        <label class="check">
          <input type="checkbox" checked={withImports} onChange={(e) => set({ imports: e.currentTarget.checked ? "1" : undefined })} />
          Include imported data
        </label>
        {!shared && <a class="button" href={href(`/site/${encodeURIComponent(site.domain)}/realtime`)}>Realtime</a>}
        {!shared && site.role && !["viewer", "billing"].includes(site.role) && (
          <a class="button" href={href(`/site/${encodeURIComponent(site.domain)}/settings`)}>Settings</a>
        )}
        {!shared && site.role === "viewer" && <a class="button" href={href(`/site/${encodeURIComponent(site.domain)}/mail`)}>Mail</a>}
      </header>
      {filters.length > 0 && (
        <ul class="chips" aria-label="Filters">
          {filters.map((f, i) => (
            <li class="chip">
              {dimLabel(f[1])} {f[0] === "is" ? "is" : f[0]} {Array.isArray(f[2]) ? f[2].map((v) => valueLabel(f[1], v)).join(", ") : ""}
              <button type="button" aria-label={`Remove filter ${dimLabel(f[1])}`} onClick={() => removeFilter(i)}>
                ×
              </button>
            </li>
          ))}
        </ul>
      )}
      <TopStats q={q} base={base} dep={key} compare={compare} metric={metric} onPick={(m) => set({ metric: m })} />
      <Chart q={q} base={base} dep={key + metric + interval} compare={compare} metric={metric} interval={interval} range={range} set={set} />
      <div class="panels">
        <Panel {...panel({ title: "Pages", tabs: [["event:page", "Top pages"], ["visit:entry_page", "Entry pages"], ["visit:exit_page", "Exit pages"]], metrics: ["visitors", "pageviews"] })} />
        <Panel
          {...panel({
            title: "Sources",
            tabs: [["visit:channel", "Channels"], ["visit:source", "Sources"], ["visit:referrer", "Referrers"], ["visit:utm_source", "UTM source"], ["visit:utm_medium", "UTM medium"], ["visit:utm_campaign", "UTM campaign"], ["visit:utm_term", "UTM term"], ["visit:utm_content", "UTM content"]],
            metrics: ["visitors", "bounce_rate"],
          })}
        />
        <Locations {...panel({})} />
        <Panel {...panel({ title: "Devices", tabs: [["visit:browser", "Browsers"], ["visit:os", "Operating systems"], ["visit:device", "Devices"], ["visit:screen", "Screen sizes"]], metrics: ["visitors", "visit_duration"] })} />
        <Panel {...panel({ title: "Goals", tabs: [["event:goal", "Goals"], ["event:name", "Custom events"]], metrics: { "event:goal": ["visitors", "events", "conversion_rate"], "event:name": ["visitors", "events"] }, empty: "No conversions in this range. Add goals in the site's settings." })} />
        {!shared && <Funnels site={site} base={base} dep={key} />}
        {!shared && <Properties {...panel({ site })} />}
        <Panel {...panel({ title: "Revenue", tabs: [["event:goal", "By goal"]], metrics: ["events", "total_revenue", "average_revenue"], keep: (r) => r.metrics[1] && Object.keys(r.metrics[1]).length > 0, empty: "No revenue in this range." })} />
        <Panel {...panel({ title: "Engagement", tabs: [["event:page", "Time and scroll per page"]], metrics: ["visitors", "time_on_page", "scroll_depth"] })} />
      </div>
    </main>
  );
}

function RangePicker({ params, set }) {
  const period = params.period || "30d";
  return (
    <div class="range">
      <label>
        <span class="sr-only">Date range</span>
        <select value={period} onChange={(e) => set({ period: e.currentTarget.value, interval: undefined })} aria-label="Date range">
          {PERIODS.map(([k, label]) => (
            <option value={k}>{label}</option>
          ))}
        </select>
      </label>
      {period === "custom" && (
        <>
          <label>
            From <input type="date" value={params.from || ""} onChange={(e) => set({ from: e.currentTarget.value })} />
          </label>
          <label>
            to <input type="date" value={params.to || ""} onChange={(e) => set({ to: e.currentTarget.value })} />
          </label>
        </>
      )}
    </div>
  );
}

function Change({ metric, change }) {
  if (change === null || change === undefined) return null;
  const good = metric === "bounce_rate" ? change < 0 : change > 0;
  const text = ["bounce_rate", "conversion_rate"].includes(metric) ? `${change > 0 ? "+" : ""}${change} pts` : `${change > 0 ? "+" : ""}${change}%`;
  return <span class={`change ${change === 0 ? "" : good ? "up" : "down"}`}>{text}</span>;
}

function TopStats({ q, base, dep, compare, metric, onPick }) {
  const state = useLoad(
    () => q({ ...base, metrics: TOP_METRICS, include: compare ? { comparisons: { mode: "previous_period" } } : {} }),
    [dep]
  );
  return (
    <section class="top-stats" aria-label="Top stats">
      <Loaded state={state}>
        {(data) => {
          const row = data.results[0] || { metrics: TOP_METRICS.map(() => 0) };
          const stats = TOP_METRICS.map((m, i) => (
            <button type="button" class={m === metric ? "stat active" : "stat"} aria-pressed={m === metric} onClick={() => onPick(m)}>
              <span class="stat-label">{METRIC_LABELS[m]}</span>
              <span class="stat-value">{metricValue(m, row.metrics[i])}</span>
              {row.comparison && <Change metric={m} change={row.comparison.change[i]} />}
            </button>
          ));
          // The answer says whether imported data is in it (and why not).
          if (data.meta.imports_included) stats.push(<span class="badge" role="status">Includes imported data</span>);
          else if (data.meta.imports_warning) stats.push(<span class="badge muted" role="status">{data.meta.imports_warning}</span>);
          return stats;
        }}
      </Loaded>
    </section>
  );
}

function Chart({ q, base, dep, compare, metric, interval, range, set }) {
  const state = useLoad(
    () =>
      q({
        ...base,
        metrics: [metric],
        dimensions: [`time:${interval}`],
        include: { time_labels: true, ...(compare ? { comparisons: { mode: "previous_period" } } : {}) },
      }),
    [dep]
  );
  const intervals = range === "day" ? ["hour"] : ["day", "week", "month"];
  return (
    <section class="card chart-card" aria-label="Chart">
      <div class="chart-head">
        <h2>{METRIC_LABELS[metric]}</h2>
        <label>
          <span class="sr-only">Interval</span>
          <select value={interval} aria-label="Interval" onChange={(e) => set({ interval: e.currentTarget.value })}>
            {intervals.map((i) => (
              <option value={i}>{i === "hour" ? "Hourly" : i === "day" ? "Daily" : i === "week" ? "Weekly" : "Monthly"}</option>
            ))}
          </select>
        </label>
      </div>
      <Loaded state={state}>
        {(data) => {
          const labels = data.meta.time_labels || data.results.map((r) => r.dimensions[0]);
          const byLabel = Object.fromEntries(data.results.map((r) => [r.dimensions[0], r]));
          const values = labels.map((l) => (byLabel[l] ? byLabel[l].metrics[0] : 0));
          const previous = compare ? labels.map((l) => (byLabel[l] && byLabel[l].comparison ? byLabel[l].comparison.metrics[0] : null)) : null;
          return <Timeseries labels={labels} values={values} previous={previous} metric={metric} interval={interval} />;
        }}
      </Loaded>
    </section>
  );
}

function Rows({ dimension, metrics, rows, addFilter }) {
  const max = Math.max(1, ...rows.map((r) => (typeof r.metrics[0] === "number" ? r.metrics[0] : 0)));
  return (
    <table class="rows">
      <thead>
        <tr>
          <th scope="col">{dimLabel(dimension)}</th>
          {metrics.map((m) => (
            <th scope="col" class="num">
              {METRIC_LABELS[m]}
            </th>
          ))}
        </tr>
      </thead>
      <tbody>
        {rows.map((r) => {
          const v = r.dimensions[0];
          const width = typeof r.metrics[0] === "number" ? (100 * r.metrics[0]) / max : 0;
          return (
            <tr>
              <th scope="row" class="label">
                <span class="bar" style={`width:${width.toFixed(1)}%`} aria-hidden="true" />
                <button type="button" class="link" title={`Filter by ${valueLabel(dimension, v)}`} onClick={() => addFilter(dimension, v)}>
                  {valueLabel(dimension, v)}
                </button>
              </th>
              {metrics.map((m, i) => (
                <td class="num">{metricValue(m, r.metrics[i])}</td>
              ))}
            </tr>
          );
        })}
      </tbody>
    </table>
  );
}

function Panel({ title, tabs, metrics, base, dep, addFilter, empty, keep, q }) {
  const [tab, setTab] = useState(tabs[0][0]);
  const ms = Array.isArray(metrics) ? metrics : metrics[tab];
  const state = useLoad(
    () => q({ ...base, metrics: ms, dimensions: [tab], pagination: { limit: 9 } }),
    [dep, tab]
  );
  return (
    <section class="card panel" aria-label={title}>
      <div class="panel-head">
        <h2>{title}</h2>
        {tabs.length > 1 && <Tabs label={`${title} breakdown`} tabs={tabs.map(([k, label]) => ({ key: k, label }))} active={tab} onChange={setTab} />}
      </div>
      <Loaded state={state} isEmpty={(d) => d.results.filter(keep || (() => true)).length === 0} empty={empty || "No data for this range."}>
        {(data) => <Rows dimension={tab} metrics={ms} rows={data.results.filter(keep || (() => true))} addFilter={addFilter} />}
      </Loaded>
    </section>
  );
}

/// Custom properties of goal events (e.g. the plan of a Signup), by the key picked.
function Properties({ site, base, dep, addFilter, q }) {
  const keys = useLoad(() => api("GET", `/api/sites/${encodeURIComponent(site.domain)}/property-keys`), [site.domain]);
  const [key, setKey] = useState(null);
  const chosen = key || (keys.data && keys.data.keys[0]);
  const state = useLoad(
    () => (chosen ? q({ ...base, metrics: ["visitors", "events"], dimensions: [`event:props:${chosen}`], pagination: { limit: 9 } }) : Promise.resolve({ results: [] })),
    [dep, chosen]
  );
  return (
    <section class="card panel" aria-label="Custom properties">
      <div class="panel-head">
        <h2>Custom properties</h2>
        {keys.data && keys.data.keys.length > 0 && (
          <label>
            <span class="sr-only">Property</span>
            <select aria-label="Property" value={chosen} onChange={(e) => setKey(e.currentTarget.value)}>
              {keys.data.keys.map((k) => (
                <option value={k}>{k}</option>
              ))}
            </select>
          </label>
        )}
      </div>
      <Loaded state={state} isEmpty={(d) => d.results.length === 0} empty="No custom properties on events in this range.">
        {(data) => <Rows dimension={`event:props:${chosen}`} metrics={["visitors", "events"]} rows={data.results} addFilter={addFilter} />}
      </Loaded>
    </section>
  );
}

function Locations({ base, dep, addFilter, q }) {
  const tabs = [["map", "Map"], ["visit:country", "Countries"], ["visit:region", "Regions"], ["visit:city", "Cities"]];
  const [tab, setTab] = useState("map");
  const dimension = tab === "map" ? "visit:country" : tab;
  const state = useLoad(() => q({ ...base, metrics: ["visitors"], dimensions: [dimension], pagination: { limit: tab === "map" ? 300 : 9 } }), [dep, tab]);
  return (
    <section class="card panel" aria-label="Locations">
      <div class="panel-head">
        <h2>Locations</h2>
        <Tabs label="Locations breakdown" tabs={tabs.map(([k, label]) => ({ key: k, label }))} active={tab} onChange={setTab} />
      </div>
      <Loaded state={state} isEmpty={(d) => d.results.length === 0} empty="No locations for this range.">
        {(data) =>
          tab === "map" ? (
            <WorldMap rows={data.results} onPick={(code) => addFilter("visit:country", code)} />
          ) : (
            <Rows dimension={dimension} metrics={["visitors"]} rows={data.results} addFilter={addFilter} />
          )
        }
      </Loaded>
    </section>
  );
}

const EVENT_LABELS = { pageview: "Pageview", engagement: "Time on page" };

export function Realtime({ site }) {
  const [data, setData] = useState(null);
  const [error, setError] = useState("");
  useEffect(() => {
    let live = true;
    const load = () =>
      api("GET", `/api/sites/${encodeURIComponent(site.domain)}/realtime`).then((d) => live && (setData(d), setError("")), (e) => live && setError(e.message));
    load();
    const timer = setInterval(load, 5000);
    return () => {
      live = false;
      clearInterval(timer);
    };
  }, [site.domain]);
  return (
    <main class="dashboard">
      <header class="dash-head">
        <h1>
          <a href={href(`/site/${encodeURIComponent(site.domain)}`)} class="muted">{site.domain}</a> / Realtime
        </h1>
      </header>
      <Notice>{error}</Notice>
      {!data ? (
        !error && <p class="empty">Loading…</p>
      ) : (
        <div class="panels">
          <section class="card realtime-now" aria-label="Visitors now">
            <h2>Current visitors</h2>
            <p class="big" aria-live="polite">
              <span class="pulse" aria-hidden="true" /> {number(data.visitors)}
            </p>
            <p class="muted">in the last 5 minutes</p>
            <Sparkline values={data.pageviews_per_minute.map((m) => m.pageviews)} label="Pageviews per minute, last 30 minutes" />
          </section>
          <section class="card" aria-label="Top pages now">
            <h2>Top pages now</h2>
            {data.top_pages.length === 0 ? (
              <p class="empty">Nobody is on the site right now.</p>
            ) : (
              <ul class="plain">
                {data.top_pages.map((p) => (
                  <li>
                    {p.page} <span class="muted">{number(p.visitors)}</span>
                  </li>
                ))}
              </ul>
            )}
          </section>
          <section class="card feed" aria-label="Live events">
            <h2>Live events</h2>
            {data.recent_events.length === 0 ? (
              <p class="empty">No events yet.</p>
            ) : (
              <ol class="plain" aria-live="polite">
                {data.recent_events.slice(0, 25).map((e) => (
                  <li>
                    <time>{new Date(e.ts).toLocaleTimeString()}</time> <strong>{EVENT_LABELS[e.event_type] || e.name || e.event_type}</strong> {e.page}{" "}
                    <span class="muted">
                      {e.country ? `${flag(e.country)} ` : ""}
                      {e.browser || ""}
                    </span>
                  </li>
                ))}
              </ol>
            )}
          </section>
        </div>
      )}
    </main>
  );
}

