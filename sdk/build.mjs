// Builds dist/et.js from src/et.js with esbuild (version pinned in
// package-lock.json), so the output is byte-for-byte reproducible.
//   node build.mjs           write dist/et.js
//   node build.mjs --stdout  print the build instead (used by the tests)
import { buildSync } from "esbuild";
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));

export function build() {
  const out = buildSync({
    entryPoints: [join(here, "src/et.js")],
    bundle: false,
    minify: true,
    target: ["es2019"],
    charset: "utf8",
    legalComments: "none",
    write: false,
  });
  return out.outputFiles[0].text;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const js = build();
  if (process.argv.includes("--stdout")) {
    process.stdout.write(js);
  } else {
    mkdirSync(join(here, "dist"), { recursive: true });
    writeFileSync(join(here, "dist/et.js"), js);
  }
}
