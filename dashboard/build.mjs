// Builds dist/ from src/ with esbuild (pinned in package-lock.json):
//   dist/index.html   the page shell
//   dist/app.js       the app (Preact, uPlot), minified
//   dist/app.css      our styles and uPlot's
//   dist/world.json   country outlines as SVG paths keyed by ISO 3166-1
//                     alpha-2, projected here once (world-atlas 110m, Equal
//                     Earth), so the browser needs no map library
// The output is byte-for-byte reproducible; the server embeds dist/.
import { buildSync } from "esbuild";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { geoEqualEarth, geoPath } from "d3-geo";
import { feature } from "topojson-client";

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);

function bundle(entry, extra = {}) {
  const out = buildSync({
    entryPoints: [join(here, entry)],
    bundle: true,
    minify: true,
    target: ["es2020", "chrome100", "firefox100", "safari15"],
    format: "iife",
    jsx: "automatic",
    jsxImportSource: "preact",
    charset: "utf8",
    legalComments: "none",
    write: false,
    ...extra,
  });
  return out.outputFiles[0].text;
}

function worldMap() {
  const countries = require("i18n-iso-countries");
  const topology = JSON.parse(readFileSync(require.resolve("world-atlas/countries-110m.json"), "utf8"));
  const geo = feature(topology, topology.objects.countries);
  const width = 960;
  const height = 470;
  const land = { type: "FeatureCollection", features: geo.features.filter((f) => f.id !== "010") }; // no Antarctica
  const projection = geoEqualEarth().fitSize([width, height], land);
  const path = geoPath(projection).digits(1);
  const paths = {};
  for (const f of land.features) {
    const code = countries.numericToAlpha2(f.id);
    const d = path(f);
    if (code && d) paths[code] = (paths[code] || "") + d;
  }
  const sorted = Object.fromEntries(Object.keys(paths).sort().map((k) => [k, paths[k]]));
  return JSON.stringify({ width, height, paths: sorted });
}

export function build() {
  return {
    "index.html": readFileSync(join(here, "src/index.html"), "utf8"),
    "app.js": bundle("src/main.jsx"),
    "app.css": bundle("src/app.css", { loader: { ".css": "css" } }),
    "world.json": worldMap(),
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const files = build();
  mkdirSync(join(here, "dist"), { recursive: true });
  for (const [name, text] of Object.entries(files)) writeFileSync(join(here, "dist", name), text);
  for (const [name, text] of Object.entries(files)) console.log(`${name}\t${Buffer.byteLength(text)} bytes`);
}
