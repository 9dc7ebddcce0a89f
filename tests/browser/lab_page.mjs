// The lab's index page (docs/lab/index.html, or a quick run's) in headless Chromium: it loads from
// disk, asks for nothing but files beside it, and every plot on it renders (an SVG that fails to
// load or parse has no natural size). Run by tests/api/lab_page.rs and by CI after the quick lab:
//   node tests/browser/lab_page.mjs PATH/TO/index.html
// Prints one JSON line ({"plots": …, "sections": …}) and exits 0, or exits 1 saying what went wrong.
import { chromium } from "playwright-core";
import { pathToFileURL } from "node:url";
import path from "node:path";

const file = path.resolve(process.argv[2] || "docs/lab/index.html");
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-dev-shm-usage"],
});
const problems = [];
try {
  const page = await browser.newPage();
  page.on("console", (m) => { if (m.type() === "error") problems.push(m.text()); });
  page.on("pageerror", (e) => problems.push(e.message));
  page.on("request", (r) => { if (!r.url().startsWith("file://")) problems.push(`asked ${r.url()}`); });
  page.on("requestfailed", (r) => problems.push(`could not load ${r.url()}`));
  await page.goto(pathToFileURL(file).href, { waitUntil: "load" });
  const plots = await page.$$eval("img", (images) => images.map((i) => ({
    src: i.getAttribute("src"), complete: i.complete, width: i.naturalWidth, height: i.naturalHeight,
  })));
  for (const p of plots) {
    if (!p.complete || p.width === 0 || p.height === 0) problems.push(`the plot ${p.src} did not render`);
  }
  const sections = await page.$$eval("section", (s) => s.length);
  if (plots.length === 0) problems.push("the page has no plot");
  if (problems.length) throw new Error(problems.join("; "));
  console.log(JSON.stringify({ plots: plots.length, sections }));
} catch (e) {
  console.error(e.message || String(e));
  process.exitCode = 1;
} finally {
  await browser.close();
}
