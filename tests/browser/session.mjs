// session.mjs — what the speed scripts (first_render.mjs, profile_render.mjs) share: Debian's
// chromium at 1280 px with a fresh profile, logged in to the page at url as name.
import { chromium } from 'playwright-core';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

// The API requests of the page's load, in the order they were sent: when each was sent
// (from navigation start), how long it waited for a connection, for its first byte (the
// server's time) and in all, in ms: the critical path of a load.
export function requests(page) {
  return page.evaluate(() => performance.getEntriesByType('resource')
    .filter((e) => e.name.includes('/api/v1/') && !e.name.includes('/stream'))
    .map((e) => ({
      path: e.name.replace(/^.*\/api\/v1\//, ''), at: Math.round(e.startTime),
      queued: Math.round(e.requestStart - e.startTime),
      server: Math.round(e.responseStart - e.requestStart), total: Math.round(e.duration),
    })));
}

// Returns { ctx, page, loginMs }: loginMs from the click on "Log in" to body[data-ready].
export async function loggedIn(url, name, password) {
  const ctx = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), 'fw-')), {
    executablePath: '/usr/bin/chromium', headless: true, viewport: { width: 1280, height: 900 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const page = ctx.pages()[0] || await ctx.newPage();
  await page.goto(url);
  await page.fill('#login-name', name);
  await page.fill('#login-password', password);
  const t = Date.now();
  await page.click('#login-form button[type=submit]');
  await page.waitForSelector('body[data-ready="1"]', { timeout: 60000 });
  return { ctx, page, loginMs: Date.now() - t };
}
