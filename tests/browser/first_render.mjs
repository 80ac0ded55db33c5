// first_render.mjs URL NAME PASSWORD [N] — times the page in Debian's chromium: log in once,
// then N (default 5) reloads, each from navigation start to the first contentful paint, to
// each section filled (app.js marks 'filled:ID') and to body[data-ready] seen by the test (all
// sections filled; an upper bound, by Playwright's polling).
// Prints each reload and the median and largest. Used for README's funnel-web speed figures.
import { chromium } from 'playwright-core';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const [url, name, password, n = '5'] = process.argv.slice(2);
const ctx = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), 'fw-')), {
  executablePath: '/usr/bin/chromium', headless: true, viewport: { width: 1280, height: 900 },
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const page = ctx.pages()[0] || await ctx.newPage();
await page.goto(url);
await page.fill('#login-name', name);
await page.fill('#login-password', password);
let t = Date.now();
await page.click('#login-form button[type=submit]');
await page.waitForSelector('body[data-ready="1"]', { timeout: 60000 });
console.log(`login to rendered: ${Date.now() - t} ms`);
const runs = [];
for (let i = 0; i < Number(n); i++) {
  await page.reload();
  await page.waitForSelector('body[data-ready="1"]', { timeout: 60000 });
  runs.push(await page.evaluate(() => {
    const at = (e) => (e ? Math.round(e.startTime) : null);
    const r = { fcp: at(performance.getEntriesByName('first-contentful-paint')[0]) };
    for (const m of performance.getEntriesByType('mark'))
      if (m.name.startsWith('filled:')) r[m.name.slice(7)] = at(m);
    r.ready = Math.round(performance.now()); // seen ready: an upper bound of the last section
    return r;
  }));
  console.log(`reload ${i + 1}: ` + Object.entries(runs[i]).map(([k, v]) => `${k} ${v}`).join(', ') + ' ms');
}
const stat = (k) => {
  const v = runs.map((r) => r[k]).sort((a, b) => a - b);
  return `${k} median ${v[(v.length - 1) >> 1]} ms, max ${v[v.length - 1]} ms`;
};
console.log(Object.keys(runs[0]).map(stat).join('; '));
await ctx.close();
