// The live-feed page (/demo/live) in headless Chromium, two browser sessions: the reader signs
// in and follows the author, the author signs in and posts, and the post must appear on the
// reader's page within a second. Run by tests/api/live_page.rs:
//   node tests/browser/live_page.mjs BASE_URL AUTHOR_ID READER_ID PASSWORD
// Prints one JSON line ({"ms": …}) and exits 0, or exits 1 saying what went wrong.
import { chromium } from "playwright-core";

const [base, author, reader, password] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-dev-shm-usage"],
});
const problems = [];
try {
  const open = async (who) => {
    const context = await browser.newContext();
    const page = await context.newPage();
    // Anything the page logs as an error, or a request it makes elsewhere, fails the test.
    page.on("console", (m) => { if (m.type() === "error") problems.push(`${who}: ${m.text()}`); });
    page.on("pageerror", (e) => problems.push(`${who}: ${e.message}`));
    page.on("request", (r) => { if (!r.url().startsWith(base) && !r.url().startsWith(base.replace("http", "ws"))) problems.push(`${who} asked ${r.url()}`); });
    await page.goto(`${base}/demo/live`);
    return page;
  };
  const signIn = async (page, id) => {
    await page.fill("#login-id", id);
    await page.fill("#login-password", password);
    await page.click("#login");
    await page.waitForSelector("#status.live", { timeout: 10000 });
  };
  const readerPage = await open("reader");
  const authorPage = await open("author");
  await signIn(readerPage, reader);
  await readerPage.fill("#follow-id", author);
  await readerPage.click("#follow");
  await readerPage.waitForFunction(() => document.getElementById("log").textContent.startsWith("Following"), null, { timeout: 10000 });
  await signIn(authorPage, author);

  const text = `live from the browser ${Date.now()}`;
  await authorPage.fill("#post-text", text);
  const started = Date.now();
  await authorPage.click("#post");
  await readerPage.waitForFunction((t) => [...document.querySelectorAll("#feed .text")].some((e) => e.textContent === t), text, { timeout: 1000 });
  const ms = Date.now() - started;
  // The author does not get their own post.
  const own = await authorPage.$$eval("#feed .text", (items) => items.length);
  if (own !== 0) problems.push(`the author's page shows ${own} posts`);
  if (problems.length) throw new Error(problems.join("; "));
  console.log(JSON.stringify({ ms }));
} catch (e) {
  console.error(e.message || String(e));
  process.exitCode = 1;
} finally {
  await browser.close();
}
