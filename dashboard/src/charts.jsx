// Charts: the timeseries (uPlot), the sites list's sparklines (plain SVG),
// and the world map shaded by visitors (outlines from /assets/world.json).
import { useEffect, useRef, useState } from "preact/hooks";
import uPlot from "uplot";
import { countryName, dateLabel, metricValue, number } from "./format.js";

export function Timeseries({ labels, values, previous, metric, interval }) {
  const box = useRef(null);
  useEffect(() => {
    if (!box.current) return;
    const css = getComputedStyle(document.documentElement);
    const accent = css.getPropertyValue("--accent").trim() || "#5b5bd6";
    const muted = css.getPropertyValue("--muted").trim() || "#888";
    const grid = css.getPropertyValue("--line").trim() || "#ddd";
    const xs = labels.map((_, i) => i);
    const series = [{ label: interval === "hour" ? "Hour" : interval === "day" ? "Day" : interval === "week" ? "Week of" : "Month", value: (_, i) => (i === null || labels[i] === undefined ? "–" : dateLabel(labels[i], interval)) }, { label: "Now", stroke: accent, fill: accent + "22", width: 2, value: (_, v) => (v === null ? "–" : metricValue(metric, v)) }];
    const data = [xs, values];
    if (previous) {
      series.push({ label: "Previous", stroke: muted, dash: [4, 4], width: 1.5, value: (_, v) => (v === null ? "–" : metricValue(metric, v)) });
      data.push(previous);
    }
    const axis = { stroke: muted, grid: { stroke: grid, width: 1 }, ticks: { show: false } };
    const opts = {
      width: box.current.clientWidth || 600,
      height: 240,
      series,
      cursor: { points: { size: 6 } },
      legend: { show: true, live: true },
      scales: { x: { time: false }, y: { range: (_, min, max) => [0, Math.max(1, max * 1.1)] } },
      axes: [
        { ...axis, values: (_, ticks) => ticks.map((t) => (labels[t] !== undefined ? dateLabel(labels[t], interval) : "")) },
        { ...axis, size: 56, values: (_, ticks) => ticks.map((t) => metricValue(metric, t)) },
      ],
    };
    const plot = new uPlot(opts, data, box.current);
    const resize = new ResizeObserver(() => plot.setSize({ width: box.current.clientWidth, height: 240 }));
    resize.observe(box.current);
    return () => {
      resize.disconnect();
      plot.destroy();
    };
  }, [labels, values, previous, metric, interval]);
  const summary = `${metric} per ${interval}: ` + labels.map((l, i) => `${dateLabel(l, interval)} ${metricValue(metric, values[i])}`).join(", ");
  return <div class="chart" ref={box} role="img" aria-label={summary} />;
}

export function Sparkline({ values, label }) {
  if (!values.length) return <svg class="spark" aria-hidden="true" />;
  const max = Math.max(1, ...values);
  const w = 120;
  const h = 32;
  const step = values.length > 1 ? w / (values.length - 1) : w;
  const points = values.map((v, i) => `${(i * step).toFixed(1)},${(h - 2 - (v / max) * (h - 4)).toFixed(1)}`).join(" ");
  return (
    <svg class="spark" viewBox={`0 0 ${w} ${h}`} role="img" aria-label={label}>
      <polyline points={points} fill="none" stroke="currentColor" stroke-width="1.5" />
    </svg>
  );
}

let worldPromise = null;
const loadWorld = () => (worldPromise ||= fetch("/assets/world.json").then((r) => r.json()));

export function WorldMap({ rows, onPick }) {
  const [world, setWorld] = useState(null);
  const [hover, setHover] = useState(null);
  useEffect(() => {
    loadWorld().then(setWorld, () => setWorld({ error: true }));
  }, []);
  if (!world) return <div class="map placeholder" />;
  if (world.error) return null;
  const visitors = Object.fromEntries(rows.map((r) => [r.dimensions[0], r.metrics[0]]));
  const max = Math.max(1, ...Object.values(visitors));
  return (
    <div class="map">
      <svg viewBox={`0 0 ${world.width} ${world.height}`} role="img" aria-label="Visitors by country">
        {Object.entries(world.paths).map(([code, d]) => {
          const v = visitors[code] || 0;
          const shade = v ? 0.15 + 0.85 * Math.sqrt(v / max) : 0;
          return (
            <path
              d={d}
              class={v ? "country has" : "country"}
              style={v ? `fill-opacity:${shade.toFixed(2)}` : undefined}
              onMouseEnter={() => setHover({ code, v })}
              onMouseLeave={() => setHover(null)}
              onClick={() => v && onPick && onPick(code)}
            >
              <title>{`${countryName(code)}: ${number(v)} visitors`}</title>
            </path>
          );
        })}
      </svg>
      <p class="map-caption" aria-live="polite">
        {hover ? `${countryName(hover.code)}: ${number(hover.v)} visitors` : "\u00a0"}
      </p>
    </div>
  );
}
