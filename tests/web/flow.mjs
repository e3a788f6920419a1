// The web page of `airback serve` driven in a real browser (Debian's chromium through
// Playwright), as a person would use it: see the base, open a snapshot and a record's
// history, compare two snapshots and see the changed record, take a snapshot now and see it
// appear, restore a deleted record in place through the confirmation. Run by
// tests/it/web.rs, which prepared the repository and the fake Airtable and checks the fake
// afterwards. Every step waits for what it needs on the page (no fixed sleeps); a missing
// element fails the step with Playwright's timeout. Screenshots of each page go to SHOTS.
//
// Environment: AIRBACK_URL, BASE, DELETED (a record deleted between the two snapshots),
// CHANGED (a record changed between them), CHANGED_TITLE (its new title), SHOTS (a folder),
// CHROMIUM (the browser's path), PLAYWRIGHT (the folder of the playwright-core package).
// Prints one JSON line: {"restore_job": id, "snapshots": n}.

import { join } from "node:path";
import { pathToFileURL } from "node:url";

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const url = env("AIRBACK_URL");
const base = env("BASE");
const deleted = env("DELETED");
const changed = env("CHANGED");
const changedTitle = env("CHANGED_TITLE");
const shots = env("SHOTS");
const { chromium } = await import(pathToFileURL(join(env("PLAYWRIGHT"), "index.mjs")).href);

const browser = await chromium.launch({
  executablePath: env("CHROMIUM"),
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
const problems = [];
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  context.setDefaultTimeout(60_000);
  const page = await context.newPage();
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("console", (m) => { if (m.type() === "error") problems.push(`console error: ${m.text()}`); });
  const shot = (name) => page.screenshot({ path: `${shots}/${name}.png`, fullPage: true });
  const step = (name) => console.error(`step: ${name}`);

  step("the base is on the front page");
  await page.goto(`${url}/#/`);
  const card = page.locator(`[data-testid=base-card][data-base=${base}]`);
  await card.waitFor();
  await shot("01-bases");

  step("its snapshots");
  await card.locator("h3 a").click();
  const rows = page.locator("[data-testid=snapshot-row]");
  await rows.nth(1).waitFor();
  const before = await rows.count();
  await shot("02-base");

  step("the newest snapshot, its Tasks table, a search, and a record's history");
  await rows.first().locator("td:nth-child(2) a").click();
  await page.locator("[data-testid=table-row]").first().waitFor();
  await shot("03-snapshot");
  await page.locator("[data-testid=table-row] a", { hasText: "Tasks" }).click();
  await page.locator("[data-testid=record-row]").first().waitFor();
  await page.fill("[data-testid=search]", changedTitle);
  await page.press("[data-testid=search]", "Enter");
  await page.locator("[data-testid=records]").filter({ has: page.locator("tr") }).and(page.locator(`[data-query="${changedTitle}"]`)).waitFor();
  const hit = page.locator(`[data-testid=record-row][data-record=${changed}]`);
  await hit.waitFor();
  const shown = await page.locator("[data-testid=record-row]").count();
  if (shown !== 1) throw new Error(`the search for "${changedTitle}" shows ${shown} records, not 1`);
  await shot("04-records");
  await hit.getByText("History").click();
  await page.locator("[data-testid=history-change][data-event=changed]").waitFor();
  await page.locator("[data-testid=history-change][data-event=added]").waitFor();
  await shot("05-history");

  step("the diff between the two snapshots shows the changed and the deleted record");
  await page.goto(`${url}/#/base/${base}`);
  await rows.nth(1).waitFor();
  await rows.nth(0).locator("[data-testid=pick]").check();
  await rows.nth(1).locator("[data-testid=pick]").check();
  await page.click("[data-testid=compare]");
  await page.locator(`[data-testid=diff-changed][data-record=${changed}]`).waitFor();
  await page.locator(`[data-testid=diff-removed][data-record=${deleted}]`).waitFor();
  const diffUrl = page.url();
  await shot("06-diff");

  step("snapshot now, and the new snapshot appears");
  await page.goto(`${url}/#/base/${base}`);
  await rows.nth(1).waitFor();
  await page.click("[data-testid=snapshot-now]");
  await page.locator("[data-testid=job-outcome]:not([data-outcome=queued]):not([data-outcome=running])").waitFor({ timeout: 120_000 });
  const outcome = await page.locator("[data-testid=job-outcome]").getAttribute("data-outcome");
  await shot("07-snapshot-job");
  if (outcome !== "ok") throw new Error(`the snapshot job ended ${outcome}`);
  await page.locator("[data-testid=job-snapshot]").click();
  await page.locator("[data-testid=table-row]").first().waitFor();
  await page.goto(`${url}/#/base/${base}`);
  await rows.nth(before).waitFor();
  const after = await rows.count();
  if (after !== before + 1) throw new Error(`${before} snapshots before and ${after} after "snapshot now"`);
  await shot("08-base-after-snapshot");

  step("a restore cancelled while its plan loads never runs");
  await page.goto(diffUrl);
  const changedRow = page.locator(`[data-testid=diff-changed][data-record=${changed}]`);
  await changedRow.waitFor();
  const planned = page.waitForResponse((r) => r.url().endsWith("/restore/plan"));
  await changedRow.getByText("Restore…").click();
  await page.keyboard.press("Escape");
  await planned;
  await page.waitForLoadState("networkidle");
  if (await page.locator("#confirm").evaluate((d) => d.open)) throw new Error("the cancelled confirmation is open");

  step("restore the deleted record in place, through the confirmation");
  const removed = page.locator(`[data-testid=diff-removed][data-record=${deleted}]`);
  await removed.waitFor();
  await removed.getByText("Restore…").click();
  const summary = page.locator("[data-testid=plan-summary]");
  await summary.waitFor();
  const planText = await summary.textContent();
  if (!planText.includes("create 1 record(s), update 0 and delete 0")) {
    throw new Error(`the confirmation shows "${planText}", not the creation of one record`);
  }
  await page.locator("#confirm .rec-added", { hasText: deleted }).waitFor();
  await shot("09-confirm-restore");
  await page.click("[data-testid=confirm-ok]");
  await page.locator("[data-testid=job-outcome]:not([data-outcome=queued]):not([data-outcome=running])").waitFor({ timeout: 120_000 });
  const restored = await page.locator("[data-testid=job-outcome]").getAttribute("data-outcome");
  await page.locator("[data-testid=job-log]").waitFor();
  await shot("10-restore-job");
  if (restored !== "ok") throw new Error(`the restore job ended ${restored}`);
  const restoreJob = Number(page.url().split("/").pop());
  const jobs = await page.evaluate(async () => (await (await fetch("/api/jobs")).json()).jobs);
  const restores = jobs.filter((j) => j.kind === "restore").length;
  if (restores !== 1) throw new Error(`${restores} restore jobs ran, not 1`);

  step("the pages on a phone");
  const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
  const small = await phone.newPage();
  small.setDefaultTimeout(60_000);
  await small.goto(`${url}/#/`);
  await small.locator("[data-testid=base-card]").waitFor();
  await small.screenshot({ path: `${shots}/11-phone-bases.png`, fullPage: true });
  await small.goto(diffUrl);
  await small.locator("[data-testid=diff-summary]").waitFor();
  await small.screenshot({ path: `${shots}/12-phone-diff.png`, fullPage: true });
  const wide = await small.evaluate(() => document.documentElement.scrollWidth > window.innerWidth + 1);
  if (wide) problems.push("the diff page is wider than a phone's screen");

  if (problems.length) throw new Error(problems.join("\n"));
  console.log(JSON.stringify({ restore_job: restoreJob, snapshots: after }));
} finally {
  await browser.close();
}
