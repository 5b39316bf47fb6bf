#!/usr/bin/env node
// Minifies the drop-in scripts: api/assets/src/NAME.js -> api/assets/NAME.min.js.
//
//   node api/assets/build.mjs           rewrite the .min.js files
//   node api/assets/build.mjs --check   fail if a .min.js is not what the source gives
//
// The server embeds the checked-in .min.js files (include_bytes!), so building
// the Rust crate never needs Node. Terser comes from the JS test harness:
// run `npm ci` in tests/browser first. The browser test run (tests/browser/run.mjs)
// does the --check, so a stale .min.js fails CI.
import { readFile, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(join(here, "../../tests/browser/package.json"));
const { minify } = require("terser");

/** Name, and the size it must stay under (bytes, minified; "6 KB" read strictly as 6,000 bytes). */
export const SCRIPTS = [
  ["chat", 6000],
  ["widget", 4000],
  ["tour", 6000],
  // Loaded only while recording a site's map (never by chat.js): a looser budget.
  ["recorder", 8000],
];

/** Terser's options: fixed here so the output only changes with the source. */
const OPTIONS = {
  ecma: 2021,
  module: false,
  toplevel: true,
  compress: { passes: 3, unsafe_arrows: true, pure_getters: true, booleans_as_integers: false },
  mangle: { toplevel: true },
  format: { comments: false, ecma: 2021, wrap_func_args: false },
};

/** The minified text of api/assets/src/NAME.js. */
export async function build(name) {
  const source = await readFile(join(here, "src", name + ".js"), "utf8");
  const out = await minify(source, OPTIONS);
  return out.code + "\n";
}

async function main() {
  const check = process.argv.includes("--check");
  let stale = 0;
  for (const [name, limit] of SCRIPTS) {
    const code = await build(name);
    const file = join(here, name + ".min.js");
    const size = Buffer.byteLength(code);
    if (size >= limit) {
      console.error(`${name}.min.js is ${size} bytes: over its ${limit}-byte budget`);
      stale++;
    }
    if (check) {
      const current = await readFile(file, "utf8").catch(() => "");
      if (current !== code) {
        console.error(`${name}.min.js is stale: run \`node api/assets/build.mjs\``);
        stale++;
      } else console.log(`${name}.min.js is up to date (${size} bytes)`);
    } else {
      await writeFile(file, code);
      console.log(`wrote ${name}.min.js (${size} bytes)`);
    }
  }
  if (stale) process.exit(1);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) await main();
