// Numbers, durations, percentages and country names in the user's locale.
const locale = navigator.language || undefined;
const integer = new Intl.NumberFormat(locale, { maximumFractionDigits: 0 });
const compactFmt = new Intl.NumberFormat(locale, { notation: "compact", maximumFractionDigits: 1 });
const decimal = new Intl.NumberFormat(locale, { maximumFractionDigits: 2 });
const percentFmt = new Intl.NumberFormat(locale, { maximumFractionDigits: 1 });
let regionNames = null;
try {
  regionNames = new Intl.DisplayNames([locale || "en"], { type: "region" });
} catch {
  regionNames = null;
}

export const number = (n) => (n === null || n === undefined ? "–" : integer.format(n));
export const compact = (n) => (n === null || n === undefined ? "–" : n >= 10000 ? compactFmt.format(n) : integer.format(n));
export const fraction = (n) => (n === null || n === undefined ? "–" : decimal.format(n));
export const percent = (n) => (n === null || n === undefined ? "–" : percentFmt.format(n) + "%");

export function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(m / 60)}h ${String(m % 60).padStart(2, "0")}m`;
}

export function money(value) {
  // Revenue metrics come per currency: {"EUR": {"value": 12.5, "currency": "EUR"}}.
  if (!value || typeof value !== "object") return "–";
  const parts = Object.values(value).map((v) => {
    try {
      return new Intl.NumberFormat(locale, { style: "currency", currency: v.currency }).format(v.value);
    } catch {
      return `${decimal.format(v.value)} ${v.currency}`;
    }
  });
  return parts.length ? parts.join(" · ") : "–";
}

export function countryName(code) {
  if (!code) return "Unknown";
  try {
    return (regionNames && regionNames.of(code)) || code;
  } catch {
    return code;
  }
}

export function flag(code) {
  if (!code || code.length !== 2) return "";
  return String.fromCodePoint(...[...code.toUpperCase()].map((c) => 0x1f1a5 + c.charCodeAt(0)));
}

/// A metric value as shown: each metric has its own kind.
export function metricValue(metric, v) {
  switch (metric) {
    case "bounce_rate":
    case "conversion_rate":
    case "scroll_depth":
      return percent(v);
    case "visit_duration":
    case "time_on_page":
      return duration(v);
    case "views_per_visit":
      return fraction(v);
    case "total_revenue":
    case "average_revenue":
      return money(v);
    default:
      return number(v);
  }
}

export const METRIC_LABELS = {
  visitors: "Unique visitors",
  visits: "Total visits",
  pageviews: "Total pageviews",
  views_per_visit: "Views per visit",
  bounce_rate: "Bounce rate",
  visit_duration: "Visit duration",
  time_on_page: "Time on page",
  scroll_depth: "Scroll depth",
  events: "Events",
  conversion_rate: "Conversion rate",
  total_revenue: "Revenue",
  average_revenue: "Average revenue",
};

export function dateLabel(iso, interval) {
  const d = new Date(iso.length <= 10 ? iso + "T00:00:00" : iso);
  if (Number.isNaN(d.getTime())) return iso;
  if (interval === "hour") return d.toLocaleTimeString(locale, { hour: "2-digit", minute: "2-digit" });
  if (interval === "month") return d.toLocaleDateString(locale, { month: "short", year: "numeric" });
  return d.toLocaleDateString(locale, { month: "short", day: "numeric" });
}
