// web.test.mjs — funnel-web's page in Debian's chromium, driven by playwright-core. Run by
// tests/test_web_browser.c, which starts funneld and funnel-web on the known stream of
// tests/support/web_fx.h and passes where to find them in the environment:
//   FW_URL        the page's base URL
//   FW_CTL        funnelctl with its endpoints, the arguments separated by newlines
//   FW_CSV        a file holding `funnelctl statement --rep ann --period FW_PERIOD --csv`
//   FW_PERIOD     ann's statement month
//   FW_SHOTS      where to save the screenshots
//   FW_TMP        a scratch directory (browser profiles, downloads)
import { chromium } from 'playwright-core';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const env = (k) => {
  if (!process.env[k]) throw new Error(`${k} is not set (run through test_web_browser)`);
  return process.env[k];
};
const URL = env('FW_URL'), CTL = env('FW_CTL').split('\n'), SHOTS = env('FW_SHOTS');
const TMP = env('FW_TMP');

const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

// A browser of its own per user, each with a fresh profile (its own cookie jar).
async function browser(name, viewport) {
  const ctx = await chromium.launchPersistentContext(mkdtempSync(join(TMP, `profile-${name}-`)), {
    executablePath: '/usr/bin/chromium', headless: true, args: ARGS, viewport,
    acceptDownloads: true,
  });
  const page = ctx.pages()[0] || await ctx.newPage();
  const errors = [];
  watch(page, errors);
  return { ctx, page, errors };
}

function watch(page, errors) {
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  page.on('pageerror', (e) => errors.push(String(e)));
}

async function login(page, name, { keyboard = false } = {}) {
  await page.goto(URL);
  await page.waitForSelector('#login:not([hidden])');
  if (keyboard) { // the form works without a mouse
    await page.keyboard.type(name);
    await page.keyboard.press('Tab');
    await page.keyboard.type(`${name}-password`);
    await page.keyboard.press('Enter');
  } else {
    await page.fill('#login-name', name);
    await page.fill('#login-password', `${name}-password`);
    await page.click('#login-form button[type=submit]');
  }
  await page.waitForSelector('body[data-ready="1"]');
}

const row = (page, key) => page.locator('#sla-table tbody tr', { has: page.locator(`td:text-is("${key}")`) });

// Polls cond (an async predicate) every 50 ms until it holds, for ms at most. (The page's CSP
// forbids eval, so Playwright's waitForFunction cannot run there.)
async function until(what, cond, ms = 5000) {
  for (const end = Date.now() + ms; !(await cond());) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
const text = (page, sel) => page.locator(sel).textContent();

let step = 0;
async function check(name, fn) {
  const t = Date.now();
  await fn();
  console.log(`ok ${++step} - ${name} (${Date.now() - t} ms)`);
}

const mia = await browser('mia', { width: 1280, height: 900 });
const ann = await browser('ann', { width: 1280, height: 900 });
try {
  await check('a manager logs in and sees the breached SLAs of the known stream', async () => {
    const t = Date.now();
    await login(mia.page, 'mia');
    console.log(`# first render after login: ${Date.now() - t} ms`);
    await assert.doesNotReject(row(mia.page, 'L1').waitFor());
    assert.equal(await row(mia.page, 'L1').getAttribute('class'), 'breached');
    assert.equal(await row(mia.page, 'L5').getAttribute('class'), 'breached');
    assert.match(await row(mia.page, 'L1').locator('.level').textContent(), /level 2/);
    assert.match(await row(mia.page, 'L1').locator('.due').textContent(), /^overdue 1h/);
    await mia.page.screenshot({ path: join(SHOTS, 'funnel-web-manager.png'), fullPage: true });
  });

  await check('switching attribution models shows each model\'s figures', async () => {
    const bars = () => text(mia.page, '#attr-bars');
    await mia.page.selectOption('#attr-model', 'first_touch');
    await until('first touch', async () => /spring \(EUR\)500\.00 EUR/.test(await bars()));
    assert.doesNotMatch(await bars(), /autumn/, 'autumn was not the first touch');
    assert.match(await bars(), /webinar \(EUR\)1,000\.00 EUR/);
    await mia.page.selectOption('#attr-model', 'last_touch');
    await until('last touch', async () => /autumn \(EUR\)500\.00 EUR/.test(await bars()));
    assert.doesNotMatch(await bars(), /spring/, 'spring was not the last touch');
    await mia.page.selectOption('#attr-model', 'linear');
    await until('linear', async () => /autumn \(EUR\)250\.00 EUR/.test(await bars()));
    assert.match(await bars(), /spring \(EUR\)250\.00 EUR/);
    assert.equal(await mia.page.locator('#attr-table thead th.num').count(), 9, 'all nine models');
  });

  await check('the funnel, the quota and the compliance table show the known figures', async () => {
    const spring = mia.page.locator('#funnel-body [data-group="spring"]');
    assert.match(await spring.textContent(), /leads2MQL2 \(100\.0%\)SQL1 \(50\.0%\)/);
    assert.match(await spring.textContent(), /Revenue: 500\.00 EUR/);
    assert.match(await mia.page.locator('#quota-body').textContent(), /of 10 minimum/);
    // bob met L2 on time after 30 minutes (its week depends on today's date)
    const bob = mia.page.locator('#comp-table tbody tr', { has: mia.page.locator('td:text-is("bob")') })
      .filter({ hasText: '100.0%' });
    assert.match(await bob.textContent(), /100\.0%30m 00s30m 00s$/);
  });

  await check('acknowledging the breached SLA stops its escalation', async () => {
    await row(mia.page, 'L1').getByRole('button', { name: /Acknowledge/ }).click();
    await until('the acknowledgement on the board',
      async () => (await row(mia.page, 'L1').locator('.acked').textContent()) === 'mia');
    assert.equal(await row(mia.page, 'L1').getByRole('button').count(), 0, 'no second acknowledgement');
  });

  await check('a new sla.escalation shows on the board within 2 s, without a reload', async () => {
    const at = Date.now() - 2 * 3600 * 1000;
    const json = JSON.stringify({ event_id: 'e-l7-sql', occurred_at_ms: at, lead_id: 'L7', stage: 'SQL', owner: 'ann' });
    execFileSync(CTL[0], [...CTL.slice(1), 'publish', 'lead.qualified', json]);
    const t = Date.now();
    await row(mia.page, 'L7').waitFor({ timeout: 2000 });
    console.log(`# escalation on the board ${Date.now() - t} ms after funneld's ack`);
    assert.equal(await row(mia.page, 'L7').getAttribute('class'), 'breached');
  });

  await check('the CSV statement downloaded equals funnelctl statement --csv', async () => {
    await mia.page.fill('#st-rep', 'ann');
    await mia.page.fill('#st-period', env('FW_PERIOD'));
    await mia.page.click('#st-form button[type=submit]');
    await mia.page.waitForSelector('#st-body table[data-currency="EUR"]');
    const [download] = await Promise.all([mia.page.waitForEvent('download'), mia.page.click('#st-csv')]);
    const file = join(TMP, 'statement.csv');
    await download.saveAs(file);
    assert.equal(readFileSync(file, 'utf8'), readFileSync(env('FW_CSV'), 'utf8'));
  });

  await check('the page works on a phone-width screen', async () => {
    const phone = await mia.ctx.newPage();
    watch(phone, mia.errors);
    await phone.setViewportSize({ width: 390, height: 844 });
    await phone.goto(URL);
    await phone.waitForSelector('body[data-ready="1"]');
    const width = await phone.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(width <= 390, `no sideways scrolling of the page (${width} px)`);
    await phone.screenshot({ path: join(SHOTS, 'funnel-web-phone.png'), fullPage: true });
    await phone.close();
  });

  await check('a rep logs in by keyboard and sees only their own data', async () => {
    await login(ann.page, 'ann', { keyboard: true });
    await row(ann.page, 'L1').waitFor();
    await row(ann.page, 'L7').waitFor();
    assert.equal(await row(ann.page, 'L5').count(), 0, "bob's SLA is not on ann's board");
    assert.equal(await ann.page.locator('#attribution').isVisible(), false);
    assert.equal(await ann.page.locator('#funnel').isVisible(), false);
    assert.equal(await ann.page.locator('#st-rep').getAttribute('readonly'), '');
    assert.equal(await row(ann.page, 'L1').getByRole('button').count(), 0, 'reps do not acknowledge');
    const bob = await ann.ctx.request.get(`${URL}api/v1/statements/bob?period=${env('FW_PERIOD')}`);
    assert.equal(bob.status(), 403);
    assert.match(await bob.text(), /"error"/);
    await ann.page.screenshot({ path: join(SHOTS, 'funnel-web-rep.png'), fullPage: true });
  });

  await check('the board draws 50 rows and compliance 4 weeks until asked for more, by a cursor', async () => {
    // 60 more breached SLAs (cara's, 2 h ago) and one opened 10 weeks ago: drawing them all
    // at once is what held the page for seconds at 100,000 leads.
    const publish = (id, at, lead) => execFileSync(CTL[0], [...CTL.slice(1), 'publish', 'lead.qualified',
      JSON.stringify({ event_id: id, occurred_at_ms: at, lead_id: lead, stage: 'SQL', owner: 'cara' })]);
    const now = Date.now(), h = 3600 * 1000;
    for (let i = 0; i < 60; i++) publish(`e-many-${i}`, now - 2 * h + i * 1000, `M${i}`);
    publish('e-old', now - 70 * 24 * h, 'OLD1');
    await mia.page.reload();
    await mia.page.waitForSelector('body[data-ready="1"]');
    const rows = () => mia.page.locator('#sla-table tbody tr').count();
    const total = Number((await text(mia.page, '#sla-count')).match(/of (\d+)/)[1]);
    assert.ok(total >= 62, `every live instance counted (${total})`);
    assert.equal(await rows(), 50, 'the first 50 by due time drawn');
    assert.equal(await text(mia.page, '#sla-more'), `Show ${Math.min(total - 50, 50)} more`);
    const dues = async () => mia.page.locator('#sla-table tbody td.due').evaluateAll(
      (tds) => tds.map((td) => (td.dataset.due === '' ? Infinity : Number(td.dataset.due))));
    const first = await dues();
    // "Show more" asks the server for the next page after the last row drawn (a cursor),
    // not for every instance up front
    const asked = mia.page.waitForRequest((q) => /\/api\/v1\/sla\?.*after=/.test(q.url()));
    await mia.page.click('#sla-more');
    const more = new globalThis.URL((await asked).url()).searchParams;
    assert.equal(more.get('limit'), '50');
    await until('the next page drawn', async () => (await rows()) === Math.min(total, 100));
    const all = await dues(), ids = await mia.page.locator('#sla-table tbody tr').evaluateAll(
      (trs) => trs.map((tr) => tr.dataset.sla));
    assert.deepEqual(all.slice(0, 50), first, 'the first 50 stay');
    for (let i = 1; i < all.length; i++) assert.ok(all[i - 1] <= all[i], `by due time at row ${i}`);
    assert.equal(new Set(ids).size, ids.length, 'no row twice');
    const day = Math.floor((now - 70 * 24 * h) / 86400000);
    const oldWeek = new Date((day - ((day + 3) % 7)) * 86400000).toISOString().slice(0, 10);
    const weeks = async () => mia.page.locator('#comp-table tbody tr td:nth-child(2)').allTextContents();
    assert.ok(!(await weeks()).includes(oldWeek), `the week of ${oldWeek} is not drawn`);
    assert.ok(new Set(await weeks()).size <= 4, `at most 4 weeks drawn: ${[...new Set(await weeks())]}`);
    await mia.page.selectOption('#comp-weeks', '');
    await until('every week', async () => (await weeks()).includes(oldWeek));
  });

  await check('an owner whose instances are on no page drawn yet can be picked', async () => {
    // due in 30 minutes: after the 60 and more drawn before it, off the first page
    const json = JSON.stringify({ event_id: 'e-dan-sql', occurred_at_ms: Date.now() - 30 * 60 * 1000,
      lead_id: 'D1', stage: 'SQL', owner: 'dan' });
    execFileSync(CTL[0], [...CTL.slice(1), 'publish', 'lead.qualified', json]);
    await mia.page.reload();
    await mia.page.waitForSelector('body[data-ready="1"]');
    assert.equal(await mia.page.locator('#sla-table tbody tr').count(), 50);
    assert.equal(await row(mia.page, 'D1').count(), 0, "dan's is not on the first page");
    assert.ok((await mia.page.locator('#sla-owner option').allTextContents()).includes('dan'));
    await mia.page.selectOption('#sla-owner', 'dan');
    await until("dan's instance alone", async () => (await row(mia.page, 'D1').count()) === 1 &&
      (await mia.page.locator('#sla-table tbody tr').count()) === 1);
    await mia.page.selectOption('#sla-owner', '');
  });

  await check('the quota chart is the count so far, day by day, against the pace line', async () => {
    const path = mia.page.locator('#quota-body path.count');
    const steps = (await path.getAttribute('data-cumulative')).split(',').map(Number);
    const count = Number((await text(mia.page, '#quota-body p')).match(/^(\d+) counted/)[1]);
    assert.equal(steps[steps.length - 1], count, 'it ends at the count');
    for (let i = 1; i < steps.length; i++) assert.ok(steps[i] >= steps[i - 1], 'never down');
    assert.equal(await mia.page.locator('#quota-body line.pace').count(), 1);
    assert.equal(await mia.page.locator('#quota-body line.min').count(), 1);
  });

  await check('no errors in the browser console', async () => {
    assert.deepEqual(mia.errors, []);
    assert.deepEqual(ann.errors, []);
  });
  console.log(`${step} passed, 0 failed`);
} finally {
  await mia.ctx.close();
  await ann.ctx.close();
}
