// first_render.mjs URL NAME PASSWORD [N] — times the page in Debian's chromium: log in once,
// then N (default 5) reloads, each from navigation to every section rendered (body[data-ready]).
// Prints each time and the largest. Used for README's funnel-web speed figures.
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
const times = [];
for (let i = 0; i < Number(n); i++) {
  t = Date.now();
  await page.reload();
  await page.waitForSelector('body[data-ready="1"]', { timeout: 60000 });
  times.push(Date.now() - t);
}
console.log(`reload to rendered: ${times.join(', ')} ms; max ${Math.max(...times)} ms`);
await ctx.close();
